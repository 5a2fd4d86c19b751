"""Fault suite: a Delaware rollout on the real embedded stack, once per fault, one row each.

    .venv/bin/python bench/faults.py [--only NAME,...] [--postgres-outage-s 480]
        [--places-outage-s 600] [--batch-size 5] [--qpm 6000]

Every scenario gets its own stack (Postgres, a Temporal dev server that keeps its state in a
file, the Places emulator, `python worker.py`) and the production retry policies (a phase
is tried 3 times, 60 s and 300 s apart; a Places request 8 times). The rollout is started
with `starter.py start DE` and followed to its end, while the fault is injected:

    worker-sigkill-x3       the worker SIGKILLed three times, 20 s apart, a new one each time
    temporal-restart        the Temporal server SIGKILLed and started again on its database
    postgres-down           Postgres stopped for --postgres-outage-s (8 minutes)
    places-down             every Places request answered 5xx for --places-outage-s (10 min)
    places-flaky            10% of Places requests 5xx, timed out or malformed, throughout
    child-terminated        one community's workflow terminated with the `temporal` CLI
    state-terminated        the state workflow terminated with the `temporal` CLI, then
                            `starter.py start DE` again (the row is the new rollout's)

Each row: communities completed / failed / stuck (not finished when the rollout closed),
duplicate businesses, the usage log's total against the emulator's bill, and the time from
the fault's end to the next community completed. Targets: 0 stuck, 0 duplicated, the log
equal to the bill to the cent, and no community failed for a fault that ended (the child
terminated by hand is failed by design, "terminated").

The demo's category list (devstack/services.py) keeps a run to a few minutes plus the
outage; a row takes the outage, the retries that notice it, and the rest of the rollout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack.embedded import EmbeddedStack, ManagedProcess, StackConfig, free_port, temporal_cli
from devstack.services import DEMO_DISCOVERY, start_emulator, start_worker, worker_environment
from rollout.communities import seed_from_data_file
from rollout.contract import community_workflow_id, state_workflow_id
from rollout.db.migrate import upgrade_async
from rollout.db.session import create_engine
from rollout.settings import Settings

# A row is wide: piped into a file, keep it on one line.
console = Console() if sys.stdout.isatty() else Console(width=240)
PROJECT_ROOT = Path(__file__).resolve().parent.parent
STATE = "DE"
FINISHED = ("completed", "failed", "cancelled")


@dataclass
class Run:
    """One scenario's stack and what the bench saw of it."""

    stack: EmbeddedStack
    engine: AsyncEngine
    places_url: str
    env: dict[str, str]
    worker: ManagedProcess
    workers: int = 1
    fault_ended: float | None = None
    # Set while a fault replaces the rollout (state-terminated): the old one closing is not
    # the end to wait for.
    restarting: bool = False
    completions: list[float] = field(default_factory=list)  # when each completion was seen
    notes: list[str] = field(default_factory=list)

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar()

    async def counts(self) -> dict[str, int]:
        """Community rows of the latest rollout by status (empty while Postgres is out)."""
        try:
            async with self.engine.connect() as conn:
                rows = await conn.execute(
                    text(
                        "SELECT cr.status, count(*) FROM community_rollouts cr "
                        "WHERE cr.state_rollout_id = (SELECT max(id) FROM state_rollouts) "
                        "GROUP BY cr.status"
                    )
                )
                return {status: int(n) for status, n in rows}
        except Exception:
            return {}

    async def rollout_status(self) -> str | None:
        with contextlib.suppress(Exception):
            status = await self.scalar("SELECT status FROM state_rollouts ORDER BY id DESC LIMIT 1")
            return None if status is None else str(status)
        return None

    async def completed_at_least(self, n: int, within: float = 900) -> None:
        deadline = time.monotonic() + within
        while (await self.counts()).get("completed", 0) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {n} communities completed in {within:.0f} s")
            await asyncio.sleep(1)

    def new_worker(self) -> None:
        self.workers += 1
        self.worker = start_worker(self.stack, self.env, name=f"worker-{self.workers}")

    def kill_worker(self) -> None:
        assert self.worker.popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.worker.popen.pid, signal.SIGKILL)
        self.worker.popen.wait(10)
        self.worker.stop()

    def temporal(self, *args: str) -> str:
        done = subprocess.run(
            [temporal_cli(), *args, "--address", self.stack.temporal_address],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return done.stdout

    def starter(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, str(PROJECT_ROOT / "starter.py"), *args],
            capture_output=True,
            text=True,
            env={**self.env, "LOG_LEVEL": "WARNING"},
            timeout=120,
        )
        if done.returncode:
            raise RuntimeError(f"starter.py {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    async def sim(self, **config: Any) -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            (await http.post(f"{self.places_url}/sim/config", json=config)).raise_for_status()

    async def bill(self) -> tuple[Decimal, int]:
        async with httpx.AsyncClient(timeout=30) as http:
            billing = (await http.get(f"{self.places_url}/sim/billing")).json()
        return Decimal(billing["total_cost"]), int(billing["total_requests"])


# -- the faults -----------------------------------------------------------------------


async def worker_sigkill_x3(run: Run, args: argparse.Namespace) -> None:
    await run.completed_at_least(2)
    for _ in range(3):
        run.kill_worker()
        await asyncio.sleep(2)
        run.new_worker()
        run.fault_ended = time.monotonic()
        await asyncio.sleep(20)


async def temporal_restart(run: Run, args: argparse.Namespace) -> None:
    await run.completed_at_least(5)
    process = run.stack.temporal.process
    assert process is not None
    assert process.popen is not None
    os.killpg(process.popen.pid, signal.SIGKILL)
    process.popen.wait(10)
    process.stop()
    await asyncio.sleep(5)
    await asyncio.to_thread(run.stack.temporal.start)  # the same database file
    run.fault_ended = time.monotonic()


async def postgres_down(run: Run, args: argparse.Namespace) -> None:
    await run.completed_at_least(5)
    assert run.stack.postgres is not None
    await asyncio.to_thread(run.stack.postgres.stop)
    await asyncio.sleep(args.postgres_outage_s)
    await asyncio.to_thread(run.stack.postgres.start)
    run.fault_ended = time.monotonic()


async def places_down(run: Run, args: argparse.Namespace) -> None:
    await run.completed_at_least(5)
    await run.sim(error_rate=1.0)
    await asyncio.sleep(args.places_outage_s)
    await run.sim(error_rate=0.0)
    run.fault_ended = time.monotonic()


async def places_flaky(run: Run, args: argparse.Namespace) -> None:
    """Set before the start (see SCENARIOS); the fault never ends."""


async def child_terminated(run: Run, args: argparse.Namespace) -> None:
    await run.completed_at_least(3)
    community_id = None
    while community_id is None:
        with contextlib.suppress(Exception):
            community_id = await run.scalar(
                "SELECT community_id FROM community_rollouts WHERE status = 'processing' "
                "ORDER BY id LIMIT 1"
            )
        await asyncio.sleep(0.5)
    workflow_id = community_workflow_id(STATE, int(community_id))
    run.temporal("workflow", "terminate", "-w", workflow_id, "--reason", "bench: by hand")
    run.notes.append(f"terminated {workflow_id}")
    run.fault_ended = time.monotonic()


async def state_terminated(run: Run, args: argparse.Namespace) -> None:
    await run.completed_at_least(5)
    first = await run.scalar("SELECT max(id) FROM state_rollouts")
    run.restarting = True
    run.temporal("workflow", "terminate", "-w", state_workflow_id(STATE), "--reason", "bench")
    await asyncio.sleep(2)
    # `start` reconciles the terminated rollout's row (its in-flight communities failed: "its
    # workflow was terminated"), then starts a new rollout, whose row the workflow writes.
    run.starter("start", STATE, "--batch-size", str(args.batch_size), "--throttle-ms", "0")
    for _ in range(240):  # two minutes
        if await run.scalar("SELECT max(id) FROM state_rollouts") != first:
            break
        await asyncio.sleep(0.5)
    run.completions.clear()  # what counts is the new rollout
    run.fault_ended = time.monotonic()
    run.restarting = False


Fault = Callable[[Run, argparse.Namespace], Awaitable[None]]
SCENARIOS: dict[str, tuple[Fault, dict[str, Any]]] = {
    "worker-sigkill-x3": (worker_sigkill_x3, {}),
    "temporal-restart": (temporal_restart, {}),
    "postgres-down": (postgres_down, {}),
    "places-down": (places_down, {}),
    "places-flaky": (
        places_flaky,
        # 10% in all; a timeout hangs past the client's 10 s.
        {"error_rate": 0.034, "timeout_rate": 0.033, "malformed_rate": 0.033, "hang_s": 12},
    ),
    "child-terminated": (child_terminated, {}),
    "state-terminated": (state_terminated, {}),
}


# -- one scenario ---------------------------------------------------------------------


@dataclass
class Row:
    name: str
    completed: int
    failed: int
    stuck: int
    duplicates: int
    log: Decimal
    bill: Decimal
    log_requests: int
    bill_requests: int
    recover_s: float | None
    wall_s: float
    notes: str


async def follow(run: Run, deadline_s: float) -> float:
    """Wait for the latest rollout to close; record when completions were seen."""
    started = time.monotonic()
    last = 0
    while time.monotonic() - started < deadline_s:
        counts = await run.counts()
        done = counts.get("completed", 0)
        if done > last:
            run.completions.append(time.monotonic())
            last = done
        elif done < last:  # a new rollout (state-terminated)
            last = done
        status = await run.rollout_status()
        if status in FINISHED and not run.restarting:
            return time.monotonic() - started
        await asyncio.sleep(2)
    run.notes.append(f"not closed after {deadline_s:.0f} s")
    return time.monotonic() - started


async def scenario(name: str, args: argparse.Namespace) -> Row:
    fault, sim_config = SCENARIOS[name]
    with tempfile.TemporaryDirectory(prefix=f"faults-{name}-") as tmp:
        config = StackConfig.ephemeral(Path(tmp))
        config.persist_temporal = True  # the Temporal restart keeps its state
        with EmbeddedStack(config) as stack:
            await upgrade_async(stack.database_url)
            await seed_from_data_file(stack.database_url, STATE)
            places_url = start_emulator(stack, free_port(), seed=7, qpm=args.qpm)
            extra = {
                **DEMO_DISCOVERY,
                "PLACES_QPM": str(args.qpm),
                "USAGE_SPOOL_PATH": str(Path(tmp) / "spool.jsonl"),
                "LOG_LEVEL": "INFO",
            }
            env = worker_environment(stack, Settings(), places_url, extra)
            engine = create_engine(stack.database_url, pool_size=2)
            run = Run(stack, engine, places_url, env, start_worker(stack, env, name="worker-1"))
            try:
                if sim_config:
                    await run.sim(**sim_config)
                started = time.monotonic()
                run.starter(
                    "start", STATE, "--batch-size", str(args.batch_size), "--throttle-ms", "0"
                )
                follower = asyncio.create_task(follow(run, args.deadline_s))
                await fault(run, args)
                await follower
                wall = time.monotonic() - started
                # A graceful stop writes the worker's spool, if any, into the log.
                await asyncio.to_thread(run.worker.stop)
                return await measure(name, run, wall)
            finally:
                await engine.dispose()


async def measure(name: str, run: Run, wall: float) -> Row:
    counts = await run.counts()
    closed = await run.rollout_status() in FINISHED
    stuck = sum(n for status, n in counts.items() if status not in FINISHED)
    if not closed:
        run.notes.append(f"rollout {await run.rollout_status()}")
    duplicates = int(
        await run.scalar("SELECT count(*) - count(DISTINCT place_id) FROM businesses") or 0
    )
    log = Decimal(await run.scalar("SELECT coalesce(sum(cost), 0) FROM rollout_api_usage"))
    log_requests = int(await run.scalar("SELECT count(*) FROM rollout_api_usage") or 0)
    bill, bill_requests = await run.bill()
    after = [t for t in run.completions if run.fault_ended and t >= run.fault_ended]
    recover = after[0] - run.fault_ended if after and run.fault_ended else None
    failed_reasons = await run.scalar(
        "SELECT string_agg(DISTINCT left(coalesce(error, ''), 70), ' | ') "
        "FROM community_rollouts WHERE status = 'failed'"
    )
    if failed_reasons:
        run.notes.append(f"failed: {failed_reasons}")
    return Row(
        name=name,
        completed=counts.get("completed", 0),
        failed=counts.get("failed", 0),
        stuck=stuck,
        duplicates=duplicates,
        log=log,
        bill=bill,
        log_requests=log_requests,
        bill_requests=bill_requests,
        recover_s=recover,
        wall_s=wall,
        notes="; ".join(run.notes),
    )


def table(rows: list[Row], args: argparse.Namespace) -> Table:
    out = Table(
        title=f"Faults on a {STATE} rollout (batch {args.batch_size}, PLACES_QPM {args.qpm}, "
        f"Postgres out {args.postgres_outage_s:.0f} s, Places out {args.places_outage_s:.0f} s)"
    )
    for column in (
        "fault", "completed", "failed", "stuck", "dup. businesses", "usage log", "bill",
        "log = bill", "recovered in", "wall", "notes",
    ):  # fmt: skip
        out.add_column(column, justify="left" if column in ("fault", "notes") else "right")
    for r in rows:
        out.add_row(
            r.name,
            str(r.completed),
            str(r.failed),
            str(r.stuck),
            str(r.duplicates),
            f"${r.log:.6f} ({r.log_requests:,})",
            f"${r.bill:.6f} ({r.bill_requests:,})",
            "yes" if r.log == r.bill else f"NO ({r.log - r.bill:+.6f})",
            "-" if r.recover_s is None else f"{r.recover_s:.0f} s",
            f"{r.wall_s:.0f} s",
            r.notes,
        )
    return out


async def main_async(args: argparse.Namespace) -> None:
    names = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(
            f"error: unknown fault {', '.join(unknown)}; one of {', '.join(SCENARIOS)}"
        )
    rows = []
    for name in names:
        console.print(f"[bold]{name}[/] ...")
        try:
            rows.append(await scenario(name, args))
        except Exception as exc:  # a row that could not run says why; the others go on
            console.print(f"[red]{name}: {type(exc).__name__}: {exc}[/]")
            continue
        console.print(table(rows[-1:], args))
    console.print(table(rows, args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", help="comma-separated faults (default: all)")
    parser.add_argument("--batch-size", type=int, default=5)
    parser.add_argument("--qpm", type=int, default=6000, help="PLACES_QPM and the emulator's")
    parser.add_argument("--postgres-outage-s", type=float, default=480)
    parser.add_argument("--places-outage-s", type=float, default=600)
    parser.add_argument("--deadline-s", type=float, default=3600, help="per scenario")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
