"""Benchmark: where the CPU goes per Places request in a whole-state rollout (issue #16).

    .venv/bin/python bench/rollout_cpu.py [--state DE] [--batch-size 20] [--full-categories]

Starts its own Postgres, Temporal dev server, Places emulator (no latency, no quota worth
the name) and one `python worker.py` (PLACES_QPM=60000, Prometheus metrics on loopback),
seeds one state and rolls it out end to end with StateRolloutWorkflow (throttle 0). Each
process's CPU time (utime + stime from /proc, its whole process tree included, children
that exited too: Postgres's backends are the postmaster's children) is sampled when the
rollout starts and when it ends. Prints, per process: CPU seconds, CPU seconds per minute
of wall time, cores used, and CPU milliseconds per Places request; then the totals (wall
time, Places requests per second, the whole machine's busy CPU, the rest of it not in the
stack), and the worker's workflow tasks and activities (from its Prometheus counters) and
the Temporal history events (from the visibility store) per Places request.

The category list defaults to the demo's (devstack/services.py DEMO_DISCOVERY) so a run
takes minutes; `--full-categories` uses the default lists (rollout/phases/discovery/
planning.py).
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import os
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from devstack.embedded import EmbeddedStack, ManagedProcess, StackConfig, free_port
from devstack.services import DEMO_DISCOVERY, start_emulator, start_worker, worker_environment
from rollout.communities import seed_from_data_file
from rollout.contract import state_workflow_id
from rollout.db.migrate import upgrade_async
from rollout.db.models import WebsiteScan
from rollout.db.session import create_engine
from rollout.payloads import RolloutSummary, StateRolloutInput
from rollout.settings import Settings
from workflows.state_rollout import StateRolloutWorkflow

console = Console() if sys.stdout.isatty() else Console(width=160)
TICKS = os.sysconf("SC_CLK_TCK")
WORKER = "worker (python worker.py)"


# --------------------------------------------------------------------------------------
# CPU time from /proc
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcStat:
    ppid: int
    own: int  # utime + stime, ticks
    reaped: int  # cutime + cstime: children that exited and were waited for, ticks


def _read_stat(pid: int) -> ProcStat | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone between the listing and the read
        return None
    # The command name is in parentheses and may hold spaces: split after the last ')'.
    rest = raw[raw.rindex(")") + 2 :].split()
    return ProcStat(
        ppid=int(rest[1]),
        own=int(rest[11]) + int(rest[12]),
        reaped=int(rest[13]) + int(rest[14]),
    )


def all_stats() -> dict[int, ProcStat]:
    stats: dict[int, ProcStat] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read_stat(int(entry))
            if stat is not None:
                stats[int(entry)] = stat
    return stats


def tree_cpu_s(root: int, stats: dict[int, ProcStat]) -> float:
    """CPU seconds of `root` and every process below it, live or exited and reaped."""
    children: dict[int, list[int]] = {}
    for pid, stat in stats.items():
        children.setdefault(stat.ppid, []).append(pid)
    total = 0
    stack = [root]
    while stack:
        pid = stack.pop()
        found = stats.get(pid)
        if found is None:
            continue
        # A live process's own time, plus the time of its children that already exited
        # (a live child's time is counted at the child, so nothing is counted twice).
        total += found.own + found.reaped
        stack.extend(children.get(pid, []))
    return total / TICKS


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already in user/nice
    return (total - idle) / TICKS, total / TICKS


def threads_cpu_s(pid: int) -> dict[int, tuple[str, float]]:
    """Each live thread of `pid`: (its name, its CPU seconds)."""
    threads: dict[int, tuple[str, float]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return threads
    for tid in tids:
        try:
            raw = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        rest = raw[raw.rindex(")") + 2 :].split()
        threads[int(tid)] = (name, (int(rest[11]) + int(rest[12])) / TICKS)
    return threads


@dataclass(frozen=True)
class Sample:
    at: float
    cpu: dict[str, float]
    machine_busy: float
    machine_total: float
    worker_threads: dict[int, tuple[str, float]]
    load: float  # the 1-minute load average (others share the machine)


def sample(processes: dict[str, int], worker_pid: int) -> Sample:
    stats = all_stats()
    busy, total = machine_busy_s()
    threads = threads_cpu_s(worker_pid)
    cpu = {name: tree_cpu_s(pid, stats) for name, pid in processes.items()}
    own = Path("/proc/self/stat").read_text()
    rest = own[own.rindex(")") + 2 :].split()
    cpu["bench client (this process)"] = (int(rest[11]) + int(rest[12])) / TICKS
    return Sample(time.monotonic(), cpu, busy, total, threads, os.getloadavg()[0])


# --------------------------------------------------------------------------------------
# Counters
# --------------------------------------------------------------------------------------

_SAMPLE_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def prometheus_counts(text: str, metric: str, by: str | None = None) -> Counter[str]:
    """Sum of `metric` over its label sets, keyed by the value of label `by` ("" if none)."""
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        match = _SAMPLE_LINE.match(line)
        if match is None or match.group(1) != metric:
            continue
        labels = dict(_LABEL.findall(match.group(2) or ""))
        counts[labels.get(by, "") if by else ""] += int(float(match.group(3)))
    return counts


def places_requests(stats: dict[str, Any]) -> int:
    """Places requests the emulator answered: every authenticated request by method (free
    ones included, unlike the billed SKUs), less those refused for quota."""
    asked = sum(int(n) for n in stats["requests"].values())
    return asked - int(stats["rate_limited_total"])


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


def _worker_env(args: argparse.Namespace, metrics_port: int) -> dict[str, str]:
    extra = {
        "PLACES_QPM": str(args.places_qpm),
        "METRICS_PORT": str(metrics_port),
        "METRICS_BIND": "127.0.0.1",
        "SCAN_SITE_DEADLINE_S": "5",
        # Every emulator site shares one host:port; real sites have a host each.
        "SCAN_PER_HOST_CONCURRENCY": DEMO_DISCOVERY["SCAN_PER_HOST_CONCURRENCY"],
        "LOG_LEVEL": "WARNING",
    }
    if not args.full_categories:
        extra.update(DEMO_DISCOVERY)
        # A few categories leave the smallest towns with no business.
        extra["VERIFY_MIN_BUSINESSES"] = "0"
    return extra


# How often the emulator's request count is sampled, for the sustained rate.
RATE_SAMPLE_S = 2.0


async def _sample_rate(
    http: httpx.AsyncClient, places_url: str, samples: list[tuple[float, int]]
) -> None:
    """(time, Places requests so far) every RATE_SAMPLE_S, until cancelled."""
    while True:
        stats = (await http.get(f"{places_url}/sim/stats")).json()
        samples.append((time.monotonic(), places_requests(stats)))
        await asyncio.sleep(RATE_SAMPLE_S)


def sustained_rate(samples: list[tuple[float, int]], low: float, high: float) -> float:
    """Places requests per second between the samples where the run had made `low` and
    `high` of its requests (0.1 and 0.9: the middle 80%, without the start, when the
    first communities plan, and the tail, when the last ones finish their later phases)."""
    if len(samples) < 2:
        return 0.0
    first, last = samples[0][1], samples[-1][1]
    total = last - first
    start = next(s for s in samples if s[1] - first >= low * total)
    end = next(s for s in samples if s[1] - first >= high * total)
    return (end[1] - start[1]) / (end[0] - start[0]) if end[0] > start[0] else 0.0


def peak_rate(samples: list[tuple[float, int]], window_s: float = 30.0) -> float:
    """The highest rate over any `window_s` of the run."""
    best = 0.0
    for i, (t0, n0) in enumerate(samples):
        for t1, n1 in samples[i + 1 :]:
            if t1 - t0 >= window_s:
                best = max(best, (n1 - n0) / (t1 - t0))
                break
    return best


async def _follow(handle: Any, started: float) -> RolloutSummary:
    last_report = started
    while True:
        try:
            summary: RolloutSummary = await asyncio.wait_for(handle.result(), 30)
            return summary
        except TimeoutError:
            now = time.monotonic()
            if now - last_report >= 60:
                doc = await handle.query(StateRolloutWorkflow.progress)
                console.print(
                    f"[dim]{now - started:6.0f}s  {doc.progress_percentage:5.1f}%  "
                    f"{doc.total_businesses:,} businesses[/]"
                )
                last_report = now


@dataclass
class Result:
    summary: RolloutSummary
    start: Sample
    end: Sample
    places_before: int
    places_after: int
    billed: int
    http_before: int
    http_after: int
    workflow_tasks: int
    activities: Counter[str]
    workflows: int
    history_events: int
    rates: list[tuple[float, int]]
    scans: Counter[str]
    worker_pid: int


def compile_tree() -> None:
    """Bytecode for the worker's code. The workflow sandbox imports the workflow modules
    afresh for every workflow run: from __pycache__ when it is there, else compiled from
    source each time (three times the CPU), which PYTHONDONTWRITEBYTECODE (set in the
    Docker image) leaves to happen on every run. Runs are compared with bytecode."""
    for package in ("workflows", "activities", "rollout"):
        compileall.compile_dir(PROJECT_ROOT / package, quiet=1)


async def scan_statuses(database_url: str) -> Counter[str]:
    """Website scans by status: phase 2's outcome, which a faster run must not change (a
    site that times out under load is "unreachable" and has its feeds left unprobed)."""
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                select(WebsiteScan.status, func.count()).group_by(WebsiteScan.status)
            )
            return Counter({str(status): int(n) for status, n in rows})
    finally:
        await engine.dispose()


async def run(args: argparse.Namespace) -> Result:
    compile_tree()
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
        config = StackConfig.ephemeral(Path(tmp))
        with EmbeddedStack(config) as stack:
            await upgrade_async(stack.database_url)
            await seed_from_data_file(stack.database_url, args.state)
            places_url = start_emulator(
                stack,
                free_port(),
                seed=3,
                qpm=1_000_000,
                extra=["--qpd", "0", "--site-slow-s", "1", "--cache-businesses", "600000"],
            )
            metrics_port = free_port()
            env = worker_environment(stack, Settings(), places_url, _worker_env(args, metrics_port))
            worker = start_worker(stack, env, name="bench-worker")
            processes = _pids(stack, worker)

            client = await Client.connect(
                stack.temporal_address, data_converter=pydantic_data_converter
            )
            async with httpx.AsyncClient(timeout=30) as http:
                before = (await http.get(f"{places_url}/sim/stats")).json()
                metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
                metrics_before = (await http.get(metrics_url)).text
                worker_pid = processes[WORKER]
                start = sample(processes, worker_pid)
                handle = await client.start_workflow(
                    StateRolloutWorkflow.run,
                    StateRolloutInput(
                        state_code=args.state,
                        batch_size=args.batch_size,
                        throttle_ms=0,
                        skip_enrichment=args.skip_enrichment,
                    ),
                    id=state_workflow_id(args.state),
                    task_queue="rollout",
                )
                rates: list[tuple[float, int]] = []
                sampler = asyncio.create_task(_sample_rate(http, places_url, rates))
                try:
                    summary = await _follow(handle, start.at)
                finally:
                    sampler.cancel()
                end = sample(processes, worker_pid)
                after = (await http.get(f"{places_url}/sim/stats")).json()
                metrics_after = (await http.get(metrics_url)).text
            histories = [w.history_length async for w in client.list_workflows("")]
            scans = await scan_statuses(stack.database_url)

    wft = "temporal_workflow_task_execution_latency_seconds_count"
    act = "temporal_activity_execution_latency_seconds_count"
    activities = prometheus_counts(metrics_after, act, "activity_type")
    activities.subtract(prometheus_counts(metrics_before, act, "activity_type"))
    return Result(
        summary=summary,
        start=start,
        end=end,
        places_before=places_requests(before),
        places_after=places_requests(after),
        billed=int(after["total_requests"]) - int(before["total_requests"]),
        http_before=int(before["http"]["requests"]),
        http_after=int(after["http"]["requests"]),
        workflow_tasks=prometheus_counts(metrics_after, wft).total()
        - prometheus_counts(metrics_before, wft).total(),
        activities=+activities,
        workflows=len(histories),
        history_events=sum(histories),
        rates=rates,
        scans=scans,
        worker_pid=worker_pid,
    )


def _pids(stack: EmbeddedStack, worker: ManagedProcess) -> dict[str, int]:
    def pid(process: ManagedProcess | None) -> int:
        assert process is not None
        assert process.pid is not None
        return process.pid

    emulator = next(p for p in stack.extra if p.name == "placesim")
    assert stack.postgres is not None
    return {
        WORKER: pid(worker),
        "Temporal dev server": pid(stack.temporal.process),
        "Postgres (all backends)": pid(stack.postgres.process),
        "Places emulator": pid(emulator),
    }


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def worker_threads_table(r: Result, wall: float, per_request: int, worker: float) -> Table:
    """The worker's CPU by thread: the main thread runs Python (the event loop: workflow
    code, activities, the SDK's Python side, JSON and pydantic); the SDK core's Rust
    threads (tokio-runtime-w...) poll Temporal and carry the gRPC; threads that started
    and ended between the samples are "exited threads"."""
    grouped: defaultdict[str, float] = defaultdict(float)
    for tid, (name, cpu) in r.end.worker_threads.items():
        before = r.start.worker_threads.get(tid, (name, 0.0))[1]
        # The main thread's id is the process id (the smallest id is not always it).
        label = "main thread (Python event loop)" if tid == r.worker_pid else name
        grouped[label] += cpu - before
    exited = worker - sum(grouped.values())
    if abs(exited) >= 0.05:
        grouped["exited threads (and children)"] += exited
    table = Table(title="Worker CPU by thread")
    table.add_column("thread")
    table.add_column("CPU s", justify="right")
    table.add_column("cores used", justify="right")
    table.add_column("share of worker", justify="right")
    table.add_column("CPU ms / Places req", justify="right")
    for name, cpu in sorted(grouped.items(), key=lambda item: -item[1]):
        if cpu < 0.05:
            continue
        table.add_row(
            name,
            f"{cpu:,.1f}",
            f"{cpu / wall:.2f}",
            f"{cpu / worker:.0%}" if worker else "",
            f"{cpu * 1000 / per_request:.2f}",
        )
    return table


def report(args: argparse.Namespace, r: Result) -> None:
    wall = r.end.at - r.start.at
    requests = r.places_after - r.places_before
    per_request = max(requests, 1)
    cores = os.cpu_count() or 1

    table = Table(
        title=f"CPU per Places request: {args.state} rollout "
        f"(batch {args.batch_size}, {'full' if args.full_categories else 'demo'} categories)"
    )
    table.add_column("process")
    table.add_column("CPU s", justify="right")
    table.add_column("CPU s / wall min", justify="right")
    table.add_column("cores used", justify="right")
    table.add_column("share of stack", justify="right")
    table.add_column("CPU ms / Places req", justify="right")
    used = {name: r.end.cpu[name] - r.start.cpu[name] for name in r.end.cpu}
    stack_total = sum(used.values())
    for name, cpu in sorted(used.items(), key=lambda item: -item[1]):
        table.add_row(
            name,
            f"{cpu:,.1f}",
            f"{cpu / wall * 60:,.1f}",
            f"{cpu / wall:.2f}",
            f"{cpu / stack_total:.0%}",
            f"{cpu * 1000 / per_request:.2f}",
        )
    table.add_section()
    table.add_row(
        "stack total",
        f"{stack_total:,.1f}",
        f"{stack_total / wall * 60:,.1f}",
        f"{stack_total / wall:.2f}",
        "100%",
        f"{stack_total * 1000 / per_request:.2f}",
    )
    machine = r.end.machine_busy - r.start.machine_busy
    table.add_row(
        f"whole machine busy ({cores} cores)",
        f"{machine:,.1f}",
        f"{machine / wall * 60:,.1f}",
        f"{machine / wall:.2f}",
        "",
        f"{machine * 1000 / per_request:.2f}",
    )
    other = machine - stack_total
    table.add_row(
        "other processes on the machine",
        f"{other:,.1f}",
        f"{other / wall * 60:,.1f}",
        f"{other / wall:.2f}",
        "",
        "",
    )
    console.print(table)
    console.print(worker_threads_table(r, wall, per_request, used[WORKER]))

    totals = Table(title="Totals")
    totals.add_column("measure")
    totals.add_column("value", justify="right")
    totals.add_column("per Places request", justify="right")
    s = r.summary
    http = r.http_after - r.http_before

    def counted(name: str, n: int, digits: int = 2) -> tuple[str, str, str]:
        return (name, f"{n:,}", f"{n / per_request:.{digits}f}")

    rows = [
        ("communities", f"{s.completed:,} completed, {s.failed} failed", ""),
        ("businesses", f"{s.businesses:,}", ""),
        ("news sources", f"{s.news_sources:,}", ""),
        ("cost", f"${s.cost_usd:,.2f}", ""),
        ("wall time", f"{wall:,.1f} s", ""),
        ("Places requests (free ones included)", f"{requests:,}", ""),
        ("  of them billed", f"{r.billed:,}", ""),
        ("Places requests per second", f"{requests / wall:,.1f}", ""),
        (
            "  sustained (middle 80% of the requests)",
            f"{sustained_rate(r.rates, 0.1, 0.9):,.1f}",
            "",
        ),
        ("  best 30 s", f"{peak_rate(r.rates):,.1f}", ""),
        ("machine busy", f"{machine / (wall * cores):.0%} of {cores} cores", ""),
        ("load average (1 min) at start, end", f"{r.start.load:.2f}, {r.end.load:.2f}", ""),
        counted("emulator HTTP requests (Places + websites)", http),
        counted("workflow tasks (worker)", r.workflow_tasks),
        counted("activities (worker)", r.activities.total()),
        counted("workflow executions", r.workflows, 3),
        counted("history events (all executions)", r.history_events),
    ]
    for row in rows:
        totals.add_row(*row)
    console.print(totals)

    scans = Table(title="Website scans by status (phase 2's outcome)")
    scans.add_column("status")
    scans.add_column("sites", justify="right")
    for status, count in sorted(r.scans.items()):
        scans.add_row(status, f"{count:,}")
    console.print(scans)

    kinds = Table(title="Activities by type (worker)")
    kinds.add_column("activity")
    kinds.add_column("executions", justify="right")
    kinds.add_column("per Places request", justify="right")
    for name, count in r.activities.most_common():
        kinds.add_row(name, f"{count:,}", f"{count / per_request:.3f}")
    console.print(kinds)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--state", default="DE")
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--places-qpm", type=int, default=60_000)
    parser.add_argument(
        "--full-categories",
        action="store_true",
        help="the default category lists instead of the demo's",
    )
    parser.add_argument("--skip-enrichment", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    report(args, result)


if __name__ == "__main__":
    main()
