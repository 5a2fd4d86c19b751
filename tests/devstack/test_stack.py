"""The embedded stack answers (Postgres, Temporal, Web UI) and leaves no process behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import ListNamespacesRequest
from temporalio.client import Client

from devstack.embedded import SEARCH_ATTRIBUTES, EmbeddedStack, StackConfig, free_port
from tests.conftest import PROJECT_ROOT
from tests.support.processes import alive, own_stack_env, processes_using, wait_gone

# Each test starts a whole embedded stack of its own.
pytestmark = pytest.mark.integration


async def test_stack_answers(stack: EmbeddedStack) -> None:
    # Postgres: a real query against the rollout database.
    conn = await asyncpg.connect(stack.database_url.replace("+asyncpg", ""))
    try:
        assert await conn.fetchval("SELECT current_database()") == stack.config.database_name
    finally:
        await conn.close()

    # Temporal: the namespace is listed and the contract's search attributes exist.
    client = await Client.connect(stack.temporal_address, namespace=stack.config.namespace)
    namespaces = await client.workflow_service.list_namespaces(ListNamespacesRequest())
    assert stack.config.namespace in {n.namespace_info.name for n in namespaces.namespaces}
    attributes = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=stack.config.namespace)
    )
    for name in SEARCH_ATTRIBUTES:
        assert name in attributes.custom_attributes

    # Web UI: the page and its API.
    async with httpx.AsyncClient(base_url=stack.ui_url, timeout=10) as http:
        page = await http.get("/")
        assert page.status_code == 200
        assert "<html" in page.text.lower()
        api = await http.get("/api/v1/namespaces")
        assert api.status_code == 200


def test_exception_inside_the_stack_stops_every_process(tmp_path: Path) -> None:
    pids: list[int] = []

    def failing_test() -> None:
        with EmbeddedStack(StackConfig.ephemeral(tmp_path)) as stack:
            pids.extend(stack.pids())
            assert len(pids) == 2
            assert all(alive(p) for p in pids)
            raise RuntimeError("a failing test")

    with pytest.raises(RuntimeError, match="a failing test"):
        failing_test()
    assert wait_gone(pids) == []
    assert processes_using(tmp_path) == []


@contextlib.contextmanager
def running_dev(
    stack_dir: Path,
) -> Iterator[tuple[subprocess.Popen[str], list[int], dict[str, str]]]:
    """`starter.py dev` in a subprocess; yields once it printed its pids."""
    env = own_stack_env(stack_dir)
    proc = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "starter.py"), "dev"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    with proc:
        assert proc.stdout is not None
        output: list[str] = []
        pids: list[int] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not pids:
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            if line.strip().startswith("pids:"):
                pids = [int(p) for p in line.split(":", 1)[1].split()]
        try:
            assert pids, "dev did not come up:\n" + "".join(output)
            yield proc, pids, env
        finally:
            if proc.poll() is None:
                proc.kill()


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM])
def test_dev_stops_everything_on_ctrl_c_and_sigterm(tmp_path: Path, how: signal.Signals) -> None:
    with running_dev(tmp_path) as (proc, pids, env):
        # Postgres, Temporal, the Places emulator and a worker.
        assert len(pids) == 4
        assert all(alive(p) for p in pids)
        ui = httpx.get(f"http://127.0.0.1:{env['STACK_UI_PORT']}/", timeout=10)
        assert ui.status_code == 200

        proc.send_signal(how)
        assert proc.wait(60) == 130
    assert wait_gone(pids) == []
    assert processes_using(tmp_path) == []


def test_dev_killed_outright_leaves_nothing_behind(tmp_path: Path) -> None:
    with running_dev(tmp_path) as (proc, pids, _):
        proc.kill()  # SIGKILL: no handler runs; the kernel's parent-death signal does the work
        proc.wait(30)
    assert wait_gone(pids, timeout=30) == []
    assert processes_using(tmp_path) == []


def test_port_in_use_is_one_clear_error(tmp_path: Path, stack: EmbeddedStack) -> None:
    env = {
        **os.environ,
        "STACK_DIR": str(tmp_path),
        "STACK_TEMPORAL_PORT": str(stack.config.temporal_port),
        "STACK_POSTGRES_PORT": str(free_port()),
        "STACK_UI_PORT": str(free_port()),
    }
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "starter.py"), "dev"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: port {stack.config.temporal_port} for Temporal is already in use on 127.0.0.1 "
        "(another `starter.py dev`? set STACK_*_PORT to move it)"
    ]
    assert processes_using(tmp_path) == []
