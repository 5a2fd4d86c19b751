"""Benchmark: each Places method's quota through the real design, from a cold start.

    .venv/bin/python bench/places_quota.py [--state AL] [--batch-size 10] [--qpm 600]
        [--worker-qpm N] [--workers 1,2] [--windows 2] [--window-s 75]
        [--skip-enrichment] [--demo-categories] [--refresh-details] [--cold-emulator]

What runs (loopback only, free ports): an ephemeral embedded stack (Postgres, the Temporal
dev server with devstack's dynamic config), `placesim` with `--qpm QPM` (a 60 s sliding
window per method, as Google's per-minute quota) and `python worker.py` with
PLACES_QPM=QPM, so each Places method's task queue is rate limited by the Temporal server at
97.5% of QPM / 60 activities per second (worker.places_rate) for all its workers together.
A StateRolloutWorkflow for --state (largest communities first, --batch-size at once, 4
search streams each, phase 4 included unless --skip-enrichment) makes the demand; each
`places_search_page` / `places_buy` / `places_enrich` activity makes exactly one request.
With --refresh-details (ENRICHMENT_FRESH_DAYS=0) phase 4 makes a Place Details for every
business, so Place Details is busy beside the Text Searches of the communities behind;
--demo-categories (the demo's short category list) brings communities to phase 4 sooner.

Before the rollout the emulator generates the state's communities (devstack's `warm_emulator`;
--cold-emulator skips it): generating one stalls its single thread, and requests that
arrive meanwhile would be counted in a bunch, a stall Google's servers do not have.

The windows are back to back, --window-s each, from the first Places request the emulator
receives (the cold start: the stack, the queues and their rate limiters are new): --windows
of them with the first worker count of --workers, then a worker is started and --windows
more are measured with the next count, and so on. For each window and method: requests the
emulator answered per minute as a share of the method's quota, its 429 answers, and the
method's queue backlog on the Temporal server (DescribeTaskQueue, sampled every ~2 s). A
method whose backlog never emptied in a window was busy: demand exceeded the limit the
whole time, so the limit alone set its pace, and it is held to >= 95% of its quota with no
429 (the issue's target). Counts come from the emulator's own counters (GET /sim/stats),
sampled every half second and interpolated at the window edges; the largest count in any
60 s (the emulator's quota window) is shown too. At the end, the effective rate limit the
server enforces on each queue and where it came from.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from temporalio.api.enums.v1 import RateLimitSource, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from devstack.embedded import EmbeddedStack, StackConfig, free_port
from devstack.services import (
    DEMO_DISCOVERY,
    start_emulator,
    start_worker,
    warm_emulator,
    worker_environment,
)
from rollout.communities import seed_from_data_file
from rollout.contract import PLACES_TASK_QUEUE, PLACES_TASK_QUEUES, state_workflow_id
from rollout.db.migrate import upgrade
from rollout.payloads import StateRolloutInput
from rollout.places.pricing import Endpoint
from rollout.settings import Settings
from worker import places_rate
from workflows.common import rollout_priority
from workflows.state_rollout import StateRolloutWorkflow

METHODS = tuple(Endpoint)
# A busy method is held to at least this share of its quota in every window (issue #16).
TARGET_SHARE = 0.95
SAMPLE_EVERY_S = 0.5
QUEUE_EVERY_S = 2.0


@dataclass(frozen=True)
class Sample:
    t: float  # monotonic seconds, halfway between asking for the counters and the answer
    received: dict[Endpoint, int]  # requests that reached the quota check, by method
    refused: dict[Endpoint, int]  # 429 answers (per minute and per day), by method


async def sample(http: httpx.AsyncClient) -> Sample:
    sent = time.monotonic()
    data: dict[str, Any] = (await http.get("/sim/stats")).json()
    return Sample(
        t=(sent + time.monotonic()) / 2,
        received={m: int(data["requests"][m.value]) for m in METHODS},
        refused={m: sum(int(c) for c in data["rate_limited"][m.value].values()) for m in METHODS},
    )


def at(samples: list[Sample], t: float, count: str, method: Endpoint) -> float:
    """A counter's value at time `t`, linear between the samples around it."""

    def value(s: Sample) -> int:
        return (s.received if count == "received" else s.refused)[method]

    before = max((s for s in samples if s.t <= t), key=lambda s: s.t, default=samples[0])
    after = min((s for s in samples if s.t >= t), key=lambda s: s.t, default=samples[-1])
    if after.t == before.t:
        return float(value(before))
    share = (t - before.t) / (after.t - before.t)
    return value(before) + share * (value(after) - value(before))


def max_in_window(samples: list[Sample], start: float, end: float, method: Endpoint) -> int:
    """Most requests of `method` received within any 60 s inside [start - 60, end]: from the
    samples, a lower bound of the emulator's own sliding-window maximum (two samples count
    only when they are at most 60 s apart)."""
    best = 0
    inside = [s for s in samples if start - 60 <= s.t <= end]
    j = 0
    for later in inside:
        while inside[j].t < later.t - 60:
            j += 1
        best = max(best, later.received[method] - inside[j].received[method])
    return best


@dataclass(frozen=True)
class QueueSample:
    t: float
    backlog: dict[str, int]  # approximate backlog of each places queue


async def queue_sample(client: Client, queues: list[str]) -> QueueSample:
    backlog: dict[str, int] = {}
    for queue in queues:
        answer = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace="default",
                task_queue=TaskQueue(name=queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
                report_stats=True,
            )
        )
        backlog[queue] = int(answer.stats.approximate_backlog_count)
    return QueueSample(time.monotonic(), backlog)


@dataclass(frozen=True)
class Window:
    index: int
    workers: int
    start: float
    end: float


@dataclass(frozen=True)
class Row:
    window: Window
    method: Endpoint
    answered_per_min: float
    share: float  # of the emulator's per-method quota
    refused: int
    most_in_60s: int
    backlog_min: int
    backlog_mean: float

    @property
    def busy(self) -> bool:
        return self.backlog_min > 0

    @property
    def verdict(self) -> str:
        if self.refused:
            return "FAIL (429s)"
        if self.share >= TARGET_SHARE:
            return "ok"
        # Below the target with an empty queue at times: too little demand, not the limit.
        return "FAIL (< 95%)" if self.busy else "< 95%, demand ran out"


def rows_of(window: Window, samples: list[Sample], queue: list[QueueSample], qpm: int) -> list[Row]:
    rows = []
    seconds = window.end - window.start
    for method in METHODS:
        # Where this method's requests wait: its own queue, and the queue all methods
        # shared before (empty unless activities from before the split are left).
        names = (PLACES_TASK_QUEUES[method], PLACES_TASK_QUEUE)
        received = at(samples, window.end, "received", method) - at(
            samples, window.start, "received", method
        )
        refused = at(samples, window.end, "refused", method) - at(
            samples, window.start, "refused", method
        )
        if received < 0.5:
            continue
        backlogs = [
            sum(q.backlog[n] for n in names) for q in queue if window.start <= q.t <= window.end
        ]
        per_min = (received - refused) * 60 / seconds
        rows.append(
            Row(
                window=window,
                method=method,
                answered_per_min=per_min,
                share=per_min / qpm,
                refused=round(refused),
                most_in_60s=max_in_window(samples, window.start, window.end, method),
                backlog_min=min(backlogs, default=0),
                backlog_mean=sum(backlogs) / len(backlogs) if backlogs else 0.0,
            )
        )
    return rows


def cold_start(console: Console, samples: list[Sample], t0: float) -> None:
    """Requests received in each of the first ten seconds, and when any 429 was answered:
    what a burst or a bunching of requests looks like from the emulator."""
    first = [
        sum(at(samples, t0 + i + 1, "received", m) - at(samples, t0 + i, "received", m)
            for m in METHODS)
        for i in range(10)
    ]  # fmt: skip
    console.print("first 10 s, requests per second: " + " ".join(f"{n:.0f}" for n in first))
    refusals = [
        f"{later.t - t0:.0f}s:{sum(later.refused.values()) - sum(earlier.refused.values())}"
        for earlier, later in itertools.pairwise(samples)
        if sum(later.refused.values()) > sum(earlier.refused.values())
    ]
    console.print("429s (seconds from the first request: count): " + (" ".join(refusals) or "none"))


async def describe_rate_limits(client: Client, console: Console) -> None:
    """What the Temporal server itself enforces on each places activity queue."""
    for queue in [*PLACES_TASK_QUEUES.values(), PLACES_TASK_QUEUE]:
        answer = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace="default",
                task_queue=TaskQueue(name=queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
                report_config=True,
            )
        )
        limit = answer.effective_rate_limit
        console.print(
            f"Temporal: {queue} effective rate limit {limit.requests_per_second:g}/s "
            f"(source {RateLimitSource.Name(limit.rate_limit_source)}), "
            f"{len(answer.pollers)} poller(s)"
        )


async def terminate_running(client: Client) -> None:
    async for execution in client.list_workflows("ExecutionStatus = 'Running'"):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        with contextlib.suppress(Exception):  # closed meanwhile
            await handle.terminate("benchmark over")


@dataclass
class Setup:
    stack: EmbeddedStack
    sim_url: str
    env: dict[str, str]


def prepare(args: argparse.Namespace, stack: EmbeddedStack, console: Console) -> Setup:
    """Schema, communities, the emulator and the first worker (blocking start-up)."""
    started = time.monotonic()
    upgrade(stack.database_url)
    seeded = asyncio.run(seed_from_data_file(stack.database_url, args.state))
    console.print(f"schema migrated, {seeded.communities} {args.state} communities seeded")
    extra = ["--cache-businesses", str(args.cache_businesses)]
    sim_url = start_emulator(stack, free_port(), seed=1, qpm=args.qpm, extra=extra)
    if not args.cold_emulator:
        warmed = warm_emulator(sim_url, args.state)
        console.print(f"placesim: {warmed} {args.state} communities generated before the run")
    config = httpx.get(f"{sim_url}/sim/config", timeout=10).json()
    console.print(
        f"placesim {sim_url}: qpm {config['qpm']} per method, window {config['quota_window_s']} s"
    )
    worker_qpm = args.worker_qpm or args.qpm
    extra_env = {"PLACES_QPM": str(worker_qpm), "LOG_LEVEL": "WARNING"}
    if args.demo_categories:
        extra_env |= DEMO_DISCOVERY
    if args.refresh_details:
        extra_env["ENRICHMENT_FRESH_DAYS"] = "0"
    env = worker_environment(stack, Settings(), sim_url, extra_env)
    start_worker(stack, env, name="worker-1")
    console.print(
        f"worker-1 polling with PLACES_QPM={worker_qpm} (each method's queue limited to "
        f"{places_rate(worker_qpm):g}/s); stack ready in {time.monotonic() - started:.0f} s"
    )
    return Setup(stack, sim_url, env)


async def drive(args: argparse.Namespace, setup: Setup, console: Console) -> list[Row]:
    worker_counts = [int(w) for w in args.workers.split(",")]
    client = await Client.connect(
        setup.stack.temporal_address, namespace="default", data_converter=pydantic_data_converter
    )
    queues = [*PLACES_TASK_QUEUES.values(), PLACES_TASK_QUEUE]
    http = httpx.AsyncClient(base_url=setup.sim_url, timeout=60)
    await client.start_workflow(
        StateRolloutWorkflow.run,
        StateRolloutInput(
            state_code=args.state,
            batch_size=args.batch_size,
            skip_enrichment=args.skip_enrichment,
        ),
        id=state_workflow_id(args.state),
        task_queue="rollout",
        priority=rollout_priority(args.state),
    )
    console.print(f"StateRolloutWorkflow {args.state} started: batch_size {args.batch_size}")
    samples: list[Sample] = []
    queue: list[QueueSample] = []
    windows: list[Window] = []
    rows: list[Row] = []
    try:
        # The cold start: the first window opens with the first request the emulator sees
        # (between the last sample without one and the first with one).
        before = await sample(http)
        while True:
            first = await sample(http)
            if sum(first.received.values()):
                break
            before = first
            await asyncio.sleep(0.1)
        samples += [before, first]
        t0 = before.t
        console.print("first Places request: the windows start")
        running, starting = 1, None
        plan = [w for w in worker_counts for _ in range(args.windows)]
        next_queue = 0.0
        for index, workers in enumerate(plan):
            window = Window(index + 1, workers, t0 + index * args.window_s, 0.0)
            if workers > running:
                # Started at the window's start, so the window includes the new worker's
                # first polls (it has none of the stack's warm-up).
                running += 1
                starting = asyncio.create_task(
                    asyncio.to_thread(
                        start_worker, setup.stack, setup.env, name=f"worker-{running}"
                    )
                )
            end = window.start + args.window_s
            while time.monotonic() < end + SAMPLE_EVERY_S:
                samples.append(await sample(http))
                if time.monotonic() >= next_queue:
                    queue.append(await queue_sample(client, queues))
                    next_queue = time.monotonic() + QUEUE_EVERY_S
                await asyncio.sleep(SAMPLE_EVERY_S)
            if starting is not None and starting.done():
                await starting
                starting = None
            window = Window(window.index, workers, window.start, end)
            windows.append(window)
            new = rows_of(window, samples, queue, args.qpm)
            rows += new
            console.print(
                f"  window {window.index} ({workers} worker(s)): "
                + ", ".join(
                    f"{r.method.value} {r.answered_per_min:.0f}/min {100 * r.share:.1f}% "
                    f"429s {r.refused} backlog min {r.backlog_min}"
                    for r in new
                )
            )
        await describe_rate_limits(client, console)
        cold_start(console, samples, t0)
    finally:
        await terminate_running(client)
        await http.aclose()
    return rows


def report(console: Console, args: argparse.Namespace, rows: list[Row]) -> None:
    worker_qpm = args.worker_qpm or args.qpm
    table = Table(
        title=f"Places quota per method: {args.qpm} requests/min each (emulator); workers' "
        f"PLACES_QPM {worker_qpm} (each method's queue limited to {places_rate(worker_qpm):g}/s); "
        f"{args.window_s:g} s windows from the first request (window 1 is the cold start)"
    )
    for column in (
        "window", "workers", "method", "answered/min", "% of quota", "429s",
        "most in 60 s", "queue backlog min/mean", "busy", "verdict",
    ):  # fmt: skip
        table.add_column(column, justify="left" if column in ("method", "verdict") else "right")
    for r in rows:
        table.add_row(
            str(r.window.index),
            str(r.window.workers),
            r.method.value,
            f"{r.answered_per_min:.1f}",
            f"{100 * r.share:.1f}%",
            str(r.refused),
            str(r.most_in_60s),
            f"{r.backlog_min}/{r.backlog_mean:.0f}",
            "yes" if r.busy else "no",
            r.verdict,
        )
    console.print(table)
    busy = [r for r in rows if r.busy]
    refused = sum(r.refused for r in rows)
    low = [r for r in busy if r.share < TARGET_SHARE]
    console.print(
        f"busy method-windows: {len(busy)}, lowest share "
        f"{min((100 * r.share for r in busy), default=0):.1f}%, below 95%: {len(low)}; "
        f"429s in all windows: {refused}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", default="AL")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--qpm", type=int, default=600, help="the emulator's quota per method")
    parser.add_argument(
        "--worker-qpm", type=int, default=None, help="the workers' PLACES_QPM (default: --qpm)"
    )
    parser.add_argument("--workers", default="1,2", help="worker processes, one count per phase")
    parser.add_argument("--windows", type=int, default=2, help="windows per worker count")
    parser.add_argument("--window-s", type=float, default=75.0)
    parser.add_argument("--cache-businesses", type=int, default=1_000_000)
    parser.add_argument("--skip-enrichment", action="store_true", help="phase 1's requests only")
    parser.add_argument(
        "--demo-categories",
        action="store_true",
        help="the demo's short category list: purchases (Place Details too) come sooner",
    )
    parser.add_argument(
        "--cold-emulator",
        action="store_true",
        help="do not have the emulator generate the state's communities before the run",
    )
    parser.add_argument(
        "--refresh-details",
        action="store_true",
        help="ENRICHMENT_FRESH_DAYS=0: phase 4 refreshes every business with a Place Details, "
        "so Place Details is busy while later communities run their Text Searches",
    )
    args = parser.parse_args()
    console = Console(width=200)
    with (
        tempfile.TemporaryDirectory(prefix="bench-quota-") as tmp,
        EmbeddedStack(StackConfig.ephemeral(Path(tmp))) as stack,
    ):
        console.print(f"stack: Temporal {stack.temporal_address}, Postgres {stack.database_url}")
        setup = prepare(args, stack, console)
        rows = asyncio.run(drive(args, setup, console))
    report(console, args, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
