"""Benchmark: the Places quota through the real design, many discovery streams at once.

    .venv/bin/python bench/places_quota.py [--state AL] [--batch-size 10] [--qpm 600]
        [--worker-qpm N] [--warmup-s 30] [--measure-s 75] [--settle-s 15] [--workers 1,2]
        [--skip-enrichment] [--demo-categories]

What runs (loopback only, free ports): an ephemeral embedded stack (Postgres, the Temporal
dev server), `placesim` with `--qpm QPM` (a 60 s sliding window per method, as Google's
per-minute quota) and `python worker.py` with PLACES_QPM=QPM, so the `rollout-places` task
queue is rate limited by the Temporal server at 97.5% of QPM / 60 activities per second
(worker.places_rate) for all its workers together. A StateRolloutWorkflow for --state
(largest communities first, --batch-size of them at once, 4 search streams each: the
defaults of the design, phase 4 included unless --skip-enrichment) makes the demand; each
`places_search_page` / `places_buy` / `places_enrich` activity makes exactly one Places
request. The
default state, Alabama, has big communities (Birmingham, Huntsville, Montgomery, ~200k
people) whose regions hold at most ~15k emulated businesses, so the single-threaded emulator
answers a search in milliseconds and the rate limit, not the emulator, sets the pace (a
Dallas-Fort Worth box holds ~100k businesses: its root searches cost the emulator a good part
of a second each).

Measured from the emulator's own counters (GET /sim/stats, polled every second): requests it
received (quota-counted and refused alike), successful billed answers, and 429 refusals. The
first phase runs one worker: after --warmup-s of ramp-up, --measure-s are measured. Then a
second worker process is started, and after --settle-s another --measure-s are measured.
Achieved rate is answered requests per minute over the window, as a share of QPM; the largest
count in any 60 s window (the emulator's quota window) is also shown. The Temporal server's
own view is sampled too (DescribeTaskQueue): the rollout-places backlog (a backlog that never
empties means demand always exceeded the limit, so the limiter set the pace) and, at the
end, the effective rate limit it enforces and where that limit came from.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
    worker_environment,
)
from rollout.communities import seed_from_data_file
from rollout.contract import PLACES_TASK_QUEUE, state_workflow_id
from rollout.db.migrate import upgrade
from rollout.payloads import StateRolloutInput
from rollout.settings import Settings
from worker import places_rate
from workflows.state_rollout import StateRolloutWorkflow

# Every request of phase 1 goes through the rate-limited queue: searches, probes and the
# cover strategy's Place Details purchases.
METHODS = ("searchText", "searchNearby", "getPlace")


@dataclass(frozen=True)
class Sample:
    t: float  # monotonic seconds, when the request for the counters was sent
    t_answered: float  # and when their answer came back (the counters were read in between)
    received: int  # API requests that reached the quota check (admitted or refused)
    answered: int  # successful, billed answers
    refused: int  # 429 answers (per minute and per day)
    by_method: dict[str, int]


def sample(sim_url: str) -> Sample:
    sent = time.monotonic()
    data: dict[str, Any] = httpx.get(f"{sim_url}/sim/stats", timeout=60).json()
    by_method = {m: int(data["requests"][m]) for m in METHODS}
    return Sample(
        t=sent,
        t_answered=time.monotonic(),
        received=sum(by_method.values()),
        answered=int(data["total_requests"]),
        refused=int(data["rate_limited_total"]),
        by_method=by_method,
    )


@dataclass
class Window:
    label: str
    workers: int
    start: Sample
    end: Sample
    backlogs: list[int]  # the rollout-places backlog, sampled every ~3 s

    @property
    def seconds(self) -> float:
        return self.end.t - self.start.t

    def per_minute(self, count: int) -> float:
        return count * 60 / self.seconds


def max_in_window(samples: list[Sample], window_s: float, method: str | None = None) -> int:
    """Most requests (of one method, or all) received within `window_s`, from the samples:
    a lower bound of the emulator's own sliding-window maximum. Two samples count only when
    the counters were surely read at most `window_s` apart (from the earlier request's
    sending to the later answer's arrival)."""

    def count(s: Sample) -> int:
        return s.received if method is None else s.by_method[method]

    best = 0
    j = 0
    for later in samples:
        while samples[j].t < later.t_answered - window_s:
            j += 1
        best = max(best, count(later) - count(samples[j]))
    return best


@dataclass(frozen=True)
class QueueStat:
    t: float
    backlog: int  # activity tasks waiting in rollout-places (approximate, from the server)
    dispatch_rate: float  # tasks/s the server reports dispatching (its own moving average)


async def queue_stat(client: Client) -> QueueStat:
    answer = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace="default",
            task_queue=TaskQueue(name=PLACES_TASK_QUEUE),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            report_stats=True,
        )
    )
    return QueueStat(
        time.monotonic(),
        int(answer.stats.approximate_backlog_count),
        float(answer.stats.tasks_dispatch_rate),
    )


async def poll_for(
    sim_url: str,
    client: Client,
    seconds: float,
    samples: list[Sample],
    queue: list[QueueStat],
    console: Console,
) -> None:
    deadline = time.monotonic() + seconds
    last_print = 0.0
    while time.monotonic() < deadline:
        samples.append(await asyncio.to_thread(sample, sim_url))
        if len(samples) % 3 == 0:
            queue.append(await queue_stat(client))
        now = samples[-1].t
        if now - last_print >= 15 and len(samples) > 15:
            recent = samples[-1].received - samples[-16].received
            recent_s = samples[-1].t - samples[-16].t
            console.print(
                f"  t={now - samples[0].t:5.0f}s  received {samples[-1].received:6d}  "
                f"last 15 s: {recent / recent_s:5.2f}/s  429s {samples[-1].refused}  "
                f"rollout-places backlog {queue[-1].backlog if queue else '-'}"
            )
            last_print = now
        await asyncio.sleep(1.0)


async def describe_rate_limit(client: Client, console: Console) -> None:
    """What the Temporal server itself enforces on the rollout-places activity queue."""
    answer = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace="default",
            task_queue=TaskQueue(name=PLACES_TASK_QUEUE),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            report_config=True,
        )
    )
    limit = answer.effective_rate_limit
    console.print(
        f"Temporal: {PLACES_TASK_QUEUE} activity queue effective rate limit "
        f"{limit.requests_per_second:g}/s "
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
    config = httpx.get(f"{sim_url}/sim/config", timeout=10).json()
    console.print(
        f"placesim {sim_url}: qpm {config['qpm']} per method, window {config['quota_window_s']} s"
    )
    worker_qpm = args.worker_qpm or args.qpm
    extra_env = {"PLACES_QPM": str(worker_qpm), "LOG_LEVEL": "WARNING"}
    if args.demo_categories:
        extra_env |= DEMO_DISCOVERY
    env = worker_environment(stack, Settings(), sim_url, extra_env)
    start_worker(stack, env, name="worker-1")
    console.print(
        f"worker-1 polling with PLACES_QPM={worker_qpm} (rollout-places limited to "
        f"{places_rate(worker_qpm):g}/s); stack ready in {time.monotonic() - started:.0f} s"
    )
    return Setup(stack, sim_url, env)


async def drive(args: argparse.Namespace, setup: Setup, console: Console) -> int:
    qpm: int = args.qpm
    worker_counts = [int(w) for w in args.workers.split(",")]
    client = await Client.connect(
        setup.stack.temporal_address, namespace="default", data_converter=pydantic_data_converter
    )
    await client.start_workflow(
        StateRolloutWorkflow.run,
        # Phases 1 and 4 both send their requests through the rollout-places queue.
        StateRolloutInput(
            state_code=args.state,
            batch_size=args.batch_size,
            skip_enrichment=args.skip_enrichment,
        ),
        id=state_workflow_id(args.state),
        task_queue="rollout",
    )
    console.print(
        f"StateRolloutWorkflow {args.state} started: batch_size {args.batch_size}, 4 streams each"
    )
    samples: list[Sample] = []
    queue: list[QueueStat] = []
    windows: list[Window] = []
    running = 1
    try:
        for index, workers in enumerate(worker_counts):
            while running < workers:
                running += 1
                await asyncio.to_thread(
                    start_worker, setup.stack, setup.env, name=f"worker-{running}"
                )
                console.print(f"worker-{running} polling")
            wait = args.warmup_s if index == 0 else args.settle_s
            console.print(f"{workers} worker(s): {wait:.0f} s ramp-up, then {args.measure_s} s")
            await poll_for(setup.sim_url, client, wait, samples, queue, console)
            first, first_stat = len(samples), len(queue)
            await poll_for(setup.sim_url, client, args.measure_s, samples, queue, console)
            windows.append(
                Window(
                    f"{workers} worker(s)",
                    workers,
                    samples[first],
                    samples[-1],
                    [q.backlog for q in queue[first_stat:]],
                )
            )
        await describe_rate_limit(client, console)
    finally:
        await terminate_running(client)
    final = await asyncio.to_thread(sample, setup.sim_url)
    report(console, qpm, args.worker_qpm or qpm, windows, samples, final)
    async with httpx.AsyncClient(timeout=60) as http:
        stats = (await http.get(f"{setup.sim_url}/sim/stats")).json()
    refused = {m: c for m, c in stats["rate_limited"].items() if any(c.values())}
    console.print(f"429 answers by method and quota: {refused or 'none'}")
    return 0


def report(
    console: Console,
    qpm: int,
    worker_qpm: int,
    windows: list[Window],
    samples: list[Sample],
    final: Sample,
) -> None:
    table = Table(
        title=f"Places quota: {qpm} requests/min per method; workers' PLACES_QPM {worker_qpm} "
        f"(rollout-places limited to {places_rate(worker_qpm):g}/s)"
    )
    for column in (
        "phase", "window s", "received", "answered", "answered/min", "% of quota",
        "429s in window", "searchText/min", "searchNearby/min", "getPlace/min",
        "backlog min/mean",
    ):  # fmt: skip
        table.add_column(column, justify="left" if column == "phase" else "right", no_wrap=True)
    for w in windows:
        answered = w.end.answered - w.start.answered
        table.add_row(
            w.label,
            f"{w.seconds:.1f}",
            f"{w.end.received - w.start.received:,}",
            f"{answered:,}",
            f"{w.per_minute(answered):.1f}",
            f"{100 * w.per_minute(answered) / qpm:.1f}%",
            str(w.end.refused - w.start.refused),
            *(f"{w.per_minute(w.end.by_method[m] - w.start.by_method[m]):.1f}" for m in METHODS),
            f"{min(w.backlogs)}/{sum(w.backlogs) / len(w.backlogs):.0f}" if w.backlogs else "-",
        )
    console.print(table)
    most = ", ".join(f"{m} {max_in_window(samples, 60.0, m)}" for m in METHODS)
    console.print(
        f"whole run: {final.received:,} requests received, {final.answered:,} answered, "
        f"{final.refused} answered 429 (emulator counters, including ramp-up and shutdown); "
        f"most requests within 60 s (from the 1 s samples): {most}, both methods "
        f"{max_in_window(samples, 60.0)} (the emulator's quota: {qpm} per method per 60 s)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", default="AL")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--qpm", type=int, default=600, help="the emulator's quota per method")
    parser.add_argument(
        "--worker-qpm",
        type=int,
        default=None,
        help="the workers' PLACES_QPM (default: --qpm; lower leaves headroom for the burst)",
    )
    parser.add_argument("--warmup-s", type=float, default=30.0)
    parser.add_argument("--measure-s", type=float, default=75.0)
    parser.add_argument("--settle-s", type=float, default=15.0)
    parser.add_argument("--workers", default="1,2", help="worker processes per phase")
    parser.add_argument("--cache-businesses", type=int, default=1_000_000)
    parser.add_argument("--skip-enrichment", action="store_true", help="phase 1's requests only")
    parser.add_argument(
        "--demo-categories",
        action="store_true",
        help="the demo's short category list: phase 1 ends sooner, phase 4 joins the mix",
    )
    args = parser.parse_args()
    console = Console(width=240)
    with (
        tempfile.TemporaryDirectory(prefix="bench-quota-") as tmp,
        EmbeddedStack(StackConfig.ephemeral(Path(tmp))) as stack,
    ):
        console.print(f"stack: Temporal {stack.temporal_address}, Postgres {stack.database_url}")
        setup = prepare(args, stack, console)
        return asyncio.run(drive(args, setup, console))


if __name__ == "__main__":
    sys.exit(main())
