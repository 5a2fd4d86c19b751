"""Fixtures for end-to-end rollout tests: the session's real stack, the Places emulator as
a real HTTP server, and `python worker.py` as a real subprocess (so a test can SIGKILL it).

Each test gets its own database and its own worker; at teardown every workflow still running
is terminated, so no abandoned child of one test can reach the next test's worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter

from devstack.embedded import EmbeddedStack, ManagedProcess, free_port
from placesim.process import placesim_process, placesim_ready
from rollout.communities import load_communities, seed_communities
from rollout.contract import state_workflow_id
from rollout.db.migrate import upgrade
from rollout.db.session import create_engine
from rollout.payloads import ProgressDocument, RetrySpec, StateRolloutInput
from rollout.settings import embedded_database_url
from tests.conftest import PROJECT_ROOT
from workflows.state_rollout import StateRolloutWorkflow

API_KEY = "test-places-key"
# A small category mix keeps each community to a handful of Places requests.
WORKER_DISCOVERY_ENV = {
    "DISCOVERY_DENSE_CATEGORIES": '["bakery"]',
    "DISCOVERY_SPARSE_CATEGORIES": '["florist"]',
    "DISCOVERY_TEXT_QUERIES": "[]",
}
FAST_RETRY = RetrySpec(initial_s=0.5, backoff=2.0, maximum_s=2.0, attempts=3)
FAST_PLACES_RETRY = RetrySpec(initial_s=0.2, backoff=2.0, maximum_s=1.0, attempts=3)


@dataclass
class Emulator:
    url: str
    process: ManagedProcess

    def post(self, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        response = httpx.post(f"{self.url}{path}", json=payload or {}, timeout=10)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=30)
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="session")
def emulator(stack: EmbeddedStack) -> Emulator:
    """The emulator for the session; the stack stops it with everything else."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = placesim_process(
        port,
        stack.log_dir / "placesim.log",
        seed=7,
        qpm=100_000,
        extra_args=["--api-key", API_KEY, "--site-slow-s", "1"],
    )
    stack.add_process(process, placesim_ready(url), timeout=60)
    return Emulator(url=url, process=process)


@dataclass
class RolloutEnv:
    stack: EmbeddedStack
    emulator: Emulator
    client: Client
    database_url: str
    engine: AsyncEngine
    log_dir: Path
    worker_env: dict[str, str]
    worker: ManagedProcess | None = None
    workers_started: list[ManagedProcess] = field(default_factory=list)

    # -- worker ------------------------------------------------------------------------

    def start_worker(self, **env: str) -> ManagedProcess:
        """A worker on the environment's settings, with `env` on top (e.g. a setting)."""
        n = len(self.workers_started) + 1
        log_path = self.log_dir / f"worker-{n}.log"
        ready_file = self.log_dir / f"worker-{n}.ready"
        process = ManagedProcess(
            "worker",
            [sys.executable, str(PROJECT_ROOT / "worker.py")],
            log_path,
            env={**self.worker_env, **env, "WORKER_READY_FILE": str(ready_file)},
            cwd=PROJECT_ROOT,
        )
        process.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not process.running():
                raise process.failure()
            if ready_file.exists():
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"worker did not start; see {log_path}")
        self.worker = process
        self.workers_started.append(process)
        return process

    def stop_worker(self, how: signal.Signals, timeout: float = 60) -> int:
        """Ask the worker to stop (SIGTERM, or SIGINT as Ctrl-C); its exit code."""
        assert self.worker is not None
        assert self.worker.popen is not None
        self.worker.popen.send_signal(how)
        code = self.worker.popen.wait(timeout)
        self.worker.stop()
        return code

    def kill_worker(self) -> None:
        assert self.worker is not None
        assert self.worker.popen is not None
        os.killpg(self.worker.popen.pid, signal.SIGKILL)
        self.worker.popen.wait(10)
        self.worker.stop()

    # -- rollouts ----------------------------------------------------------------------

    async def start(self, state: str, **settings: Any) -> WorkflowHandle[Any, Any]:
        settings.setdefault("phase_retry", FAST_RETRY)
        settings.setdefault("places_retry", FAST_PLACES_RETRY)
        settings.setdefault("throttle_ms", 0)
        settings.setdefault("service_probe_s", 1.0)
        return await self.client.start_workflow(
            StateRolloutWorkflow.run,
            StateRolloutInput(state_code=state, **settings),
            id=state_workflow_id(state),
            task_queue="rollout",
        )

    async def progress(self, state: str) -> ProgressDocument:
        handle = self.client.get_workflow_handle_for(
            StateRolloutWorkflow.run, state_workflow_id(state)
        )
        return await handle.query(StateRolloutWorkflow.progress)

    async def wait_for(
        self, state: str, predicate: Any, *, within: float = 120, what: str = "condition"
    ) -> ProgressDocument:
        deadline = time.monotonic() + within
        doc = await self.progress(state)
        while not predicate(doc):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {doc.model_dump_json()}")
            await asyncio.sleep(0.3)
            doc = await self.progress(state)
        return doc

    async def rows(self, sql: str, **params: Any) -> Sequence[Any]:
        async with AsyncSession(self.engine) as session:
            return (await session.execute(text(sql), params)).all()

    async def write(self, sql: str, **params: Any) -> Any:
        """Run a statement in its own committed transaction; returns its scalar result."""
        async with self.engine.begin() as conn:
            return (await conn.execute(text(sql), params)).scalar()

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with AsyncSession(self.engine) as session:
            return (await session.execute(text(sql), params)).scalar()


async def terminate_running(client: Client) -> None:
    async for execution in client.list_workflows("ExecutionStatus = 'Running'"):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        with contextlib.suppress(Exception):  # closed meanwhile
            await handle.terminate("test teardown")


@pytest_asyncio.fixture
async def rollout_env(
    stack: EmbeddedStack, emulator: Emulator, tmp_path: Path
) -> AsyncIterator[RolloutEnv]:
    assert stack.postgres is not None
    name = f"r_{uuid.uuid4().hex[:10]}"
    stack.postgres.ensure_database(name)
    url = embedded_database_url(stack.config.postgres_port, name)
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    async with engine.begin() as conn:
        session = AsyncSession(bind=conn)
        for state in ("DE", "RI"):
            await seed_communities(session, load_communities(state))
    client = await Client.connect(
        stack.temporal_address, namespace="default", data_converter=pydantic_data_converter
    )
    await terminate_running(client)
    emulator.post("/sim/reset")
    # Every knob a test may turn, back to the session's defaults.
    emulator.post(
        "/sim/config",
        {
            "api_key": API_KEY,
            "error_rate": 0.0,
            "timeout_rate": 0.0,
            "malformed_rate": 0.0,
            "latency_ms": 0.0,
            "disabled": False,
            "fail_near": [],
            "gone_places": [],
            "moved_places": {},
        },
    )
    env_vars = {
        **os.environ,
        "TEMPORAL_ADDRESS": stack.temporal_address,
        "TEMPORAL_NAMESPACE": "default",
        "DATABASE_URL": url,
        "PLACES_BASE_URL": emulator.url,
        "PLACES_API_KEY": API_KEY,
        "PLACES_QPM": "60000",
        "LOG_LEVEL": "INFO",
        "METRICS_PORT": str(free_port()),
        # The emulator hosts the business websites on loopback: allow exactly it.
        "SCAN_ALLOW_HOSTS": emulator.url.removeprefix("http://"),
        "SCAN_SITE_DEADLINE_S": "2",
        "SCAN_TIMEOUT_S": "1",
        # Two categories leave the smallest towns with no business at all; the zero-business
        # threshold itself is tested in tests/phases/verification/test_verification.py.
        "VERIFY_MIN_BUSINESSES": "0",
        **WORKER_DISCOVERY_ENV,
    }
    env = RolloutEnv(
        stack=stack,
        emulator=emulator,
        client=client,
        database_url=url,
        engine=engine,
        log_dir=tmp_path,
        worker_env=env_vars,
    )
    env.start_worker()
    try:
        yield env
    finally:
        await terminate_running(client)
        for worker in env.workers_started:
            worker.stop()
        await engine.dispose()
        stack.postgres.drop_database(name)


def max_overlap(intervals: Sequence[tuple[Any, Any]]) -> int:
    """Largest number of [start, end] intervals open at one instant."""
    events = sorted(
        [(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
        key=lambda e: (e[0], e[1]),
    )
    best = current = 0
    for _, delta in events:
        current += delta
        best = max(best, current)
    return best


def money(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.000001"))
