"""Benchmark: the outbox relay delivering 10,000 events to a local receiver (issue #13).

    .venv/bin/python bench/outbox_relay.py [--events 10000] [--runs 200x8,200x32,1000x32]
        [--no-outage]

What runs (loopback only): embedded Postgres and the Temporal dev server (StackConfig.
ephemeral: free ports, throwaway data), `python worker.py` as a child process with
PLATFORM_WEBHOOK_URLS pointing at a receiver in this process
(tests/support/platform_receiver.py: a real HTTP server on 127.0.0.1 that checks every
signature and its replay window, applies an entity's events in version order and each event
id once, and counts what it sees).

For each run `BxC` (B rows claimed per batch, C = PLATFORM_WEBHOOK_CONCURRENCY posts at
once), the outbox is emptied and filled with `--events` pending rows written by the real
upsert (rollout.phases.seeding.outbox.upsert_items; the four platforms in turn, payloads the
size of a listing), a fresh receiver and worker start, and OutboxRelayWorkflow runs (started
directly, as the schedule would; the `outbox-relay` schedule itself is paused so that only
the measured runs deliver) until every row is delivered. The `outage` run starts with the
receiver answering 503 to everything: the first relay run backs every row off (1 s, then
2 s), the receiver comes back, and the time counts from its return.

Checked after every run, from the database and the receiver: every row delivered at its
version, every event id applied exactly once (none lost, none twice), no bad signature.
Also printed: the worker's and the receiver's CPU time per event (utime + stime), which
say where the time goes on a small machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select, text
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from devstack.embedded import EmbeddedStack, StackConfig
from devstack.services import start_worker, worker_environment
from rollout.contract import OUTBOX_RELAY_SCHEDULE_ID, ROLLOUT_TASK_QUEUE
from rollout.db.migrate import upgrade_async
from rollout.db.models import PlatformOutbox
from rollout.db.session import create_engine, session_factory
from rollout.phases.seeding.outbox import OutboxItem, upsert_items
from rollout.phases.seeding.payloads import RelayCounts, RelayRun
from rollout.settings import EMULATOR_API_KEY, Settings
from rollout.status import Platform
from tests.support.platform_receiver import PlatformReceiver, platform_receiver
from worker import ensure_relay_schedule
from workflows.outbox_relay import OutboxRelayWorkflow

console = Console()
SECRET = "bench-outbox-relay-secret"  # noqa: S105 - signs loopback requests only
PLATFORMS = list(Platform)


@dataclass(frozen=True, slots=True)
class Run:
    batch: int
    concurrency: int
    outage: bool = False

    @property
    def label(self) -> str:
        return f"{self.batch}x{self.concurrency}" + (" after outage" if self.outage else "")


def cpu_s(pid: int) -> float:
    """utime + stime of a process, from /proc (its name may hold spaces: split after ')')."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    rest = raw[raw.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Result:
    run: Run
    events: int
    wall_s: float
    relay_runs: int
    batches: int
    posts: int
    applied_once: int
    applied_twice: int
    lost: int
    duplicates: int
    bad_signatures: int
    history_events: int
    worker_cpu_s: float
    receiver_cpu_s: float


def listing(i: int) -> dict[str, object]:
    """A payload the size of a DowntownGuide listing."""
    return {
        "schema": "downtownguide.listing/1",
        "place_id": f"ChIJ-bench-{i:06d}",
        "name": f"Business {i}",
        "address": f"{i} Main St, Dover, DE 19901, USA",
        "location": {"latitude": 39.158 + i * 1e-6, "longitude": -75.524 - i * 1e-6},
        "category": "restaurant",
        "types": ["restaurant", "food", "point_of_interest", "establishment"],
        "phone": f"(302) 555-{i % 10000:04d}",
        "website": f"https://business-{i}.example/",
        "business_status": "OPERATIONAL",
        "community": {"id": 4142290, "name": "Dover", "state_code": "DE"},
        "verification_flags": [],
        "google_maps_uri": f"https://maps.google.com/?cid={10**12 + i}",
        "rating": 4.5,
        "user_rating_count": 100 + i % 400,
    }


async def fill_outbox(database_url: str, events: int) -> None:
    engine = create_engine(database_url)
    try:
        sessions = session_factory(engine)
        async with sessions.begin() as session:
            await session.execute(text("TRUNCATE platform_outbox RESTART IDENTITY"))
            items = [
                (OutboxItem(PLATFORMS[i % 4], "business", i // 4 + 1, listing(i)), None)
                for i in range(events)
            ]
            await upsert_items(session, items)
    finally:
        await engine.dispose()


async def outbox_state(database_url: str) -> tuple[int, set[str]]:
    """Rows delivered, and the event ids of every row ("<id>.<version>")."""
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            delivered = await session.scalar(
                select(func.count()).where(PlatformOutbox.status == "delivered")
            )
            ids = {
                f"{row_id}.{version}"
                for row_id, version in await session.execute(
                    select(PlatformOutbox.id, PlatformOutbox.version)
                )
            }
    finally:
        await engine.dispose()
    return int(delivered or 0), ids


async def relay_once(client: Client, inp: RelayRun) -> tuple[RelayCounts, int]:
    handle = await client.start_workflow(
        OutboxRelayWorkflow.run,
        inp,
        id=f"outbox-relay-bench-{uuid.uuid4().hex[:8]}",
        task_queue=ROLLOUT_TASK_QUEUE,
    )
    counts = await handle.result()
    described = await handle.describe()
    return counts, described.raw_description.workflow_execution_info.history_length


async def measure(
    stack: EmbeddedStack, client: Client, run: Run, events: int, receiver: PlatformReceiver
) -> Result:
    database_url = stack.database_url
    await fill_outbox(database_url, events)
    env = worker_environment(
        stack,
        Settings(),
        None,
        {
            "PLATFORM_WEBHOOK_URLS": json.dumps(receiver.urls()),
            "PLATFORM_WEBHOOK_SECRET": SECRET,
            "PLATFORM_WEBHOOK_CONCURRENCY": str(run.concurrency),
            "LOG_LEVEL": "ERROR",
            "METRICS_PORT": "0",
            # The worker needs a key to start; the relay sends no Places request.
            "PLACES_API_KEY": EMULATOR_API_KEY,
        },
    )
    worker = start_worker(stack, env, name=f"bench-worker-{run.batch}-{run.concurrency}")
    inp = RelayRun(
        batch_size=run.batch, max_batches=10_000, backoff_initial_s=1.0, backoff_maximum_s=2.0
    )
    relay_runs = batches = history = 0
    try:
        if run.outage:
            # One pass over the rows while the receiver is down: rows never tried come
            # first, so each is tried once and backs off.
            receiver.outage = True
            passes = inp.model_copy(update={"max_batches": -(-events // run.batch)})
            counts, _ = await relay_once(client, passes)
            assert counts.retrying == events, counts
            receiver.outage = False
        assert worker.pid is not None
        started = time.monotonic()
        worker_cpu, receiver_cpu = cpu_s(worker.pid), time.process_time()
        while True:
            counts, length = await relay_once(client, inp)
            relay_runs += 1
            batches += counts.batches
            history = max(history, length)
            delivered, event_ids = await outbox_state(database_url)
            if delivered == events:
                break
            await asyncio.sleep(0.2)  # rows backing off: the next run takes them when due
        wall = time.monotonic() - started
        worker_cpu = cpu_s(worker.pid) - worker_cpu
        receiver_cpu = time.process_time() - receiver_cpu
    finally:
        await asyncio.to_thread(worker.stop)
    applied = receiver.applications
    return Result(
        run=run,
        events=events,
        wall_s=wall,
        relay_runs=relay_runs,
        batches=batches,
        posts=sum(receiver.requests.values()),
        applied_once=sum(1 for e in event_ids if applied[e] == 1),
        applied_twice=sum(1 for n in applied.values() if n > 1),
        lost=sum(1 for e in event_ids if applied[e] == 0),
        duplicates=receiver.duplicates,
        bad_signatures=receiver.bad_signatures,
        history_events=history,
        worker_cpu_s=worker_cpu,
        receiver_cpu_s=receiver_cpu,
    )


async def run(args: argparse.Namespace) -> None:
    runs = [Run(int(b), int(c)) for b, c in (r.split("x") for r in args.runs)]
    if not args.no_outage:
        runs.append(Run(runs[-1].batch, runs[-1].concurrency, outage=True))
    results: list[Result] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp,
        EmbeddedStack(StackConfig.ephemeral(Path(tmp))) as stack,
    ):
        await upgrade_async(stack.database_url)
        client = await Client.connect(
            stack.temporal_address, data_converter=pydantic_data_converter
        )
        # Only the measured runs deliver: the schedule the workers keep stays paused.
        await ensure_relay_schedule(client)
        await client.get_schedule_handle(OUTBOX_RELAY_SCHEDULE_ID).pause(note="benchmark")
        for r in runs:
            async with platform_receiver(SECRET) as receiver:
                result = await measure(stack, client, r, args.events, receiver)
            results.append(result)
            console.print(f"[dim]{r.label}: {result.events / result.wall_s:,.0f} events/s[/]")

    table = Table(title=f"Outbox relay: {args.events:,} events to a local receiver")
    for column in (
        "batch x concurrency", "wall", "events/s", "relay runs", "batches", "POSTs",
        "applied once", "applied twice", "lost", "repeats dropped", "bad signatures",
        "largest history", "worker CPU/event", "receiver CPU/event",
    ):  # fmt: skip
        table.add_column(column, justify="right")
    for res in results:
        table.add_row(
            res.run.label,
            f"{res.wall_s:,.1f} s",
            f"{res.events / res.wall_s:,.0f}",
            f"{res.relay_runs}",
            f"{res.batches:,}",
            f"{res.posts:,}",
            f"{res.applied_once:,}",
            f"{res.applied_twice}",
            f"{res.lost}",
            f"{res.duplicates}",
            f"{res.bad_signatures}",
            f"{res.history_events:,} events",
            f"{res.worker_cpu_s / res.events * 1000:.2f} ms",
            f"{res.receiver_cpu_s / res.events * 1000:.2f} ms",
        )
    console.print(table)
    console.print(
        "POSTs include the outage run's 503s; 'applied once' counts rows whose event id "
        "(<id>.<version>) the receiver applied exactly once. CPU per event: the worker "
        "process (claims, posts, outcomes, workflow tasks) and this process (the receiver: "
        "a new connection per POST, signature check, JSON), over the measured time; "
        f"{os.cpu_count()} CPUs."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument(
        "--runs", type=lambda s: s.split(","), default=["200x8", "200x32", "1000x32"]
    )
    parser.add_argument("--no-outage", action="store_true")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
