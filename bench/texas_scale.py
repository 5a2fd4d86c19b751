"""Benchmark: a whole state's rollout at the default Places quota, on paper and in a run
(issue #16, part 4).

    .venv/bin/python bench/texas_scale.py [--paper-state TX] [--measure-state DE]
        [--places-qpm 600] [--batch-size 20] [--paper-only]

On paper: the cost model (`rollout/estimate.py`, the full default category lists, the
`cover` strategy) gives the state's Places requests by SKU and so by API method; at
PLACES_QPM the rollout cannot take less than its requests divided by the quota. Two walls
are shown: one rate for every method together (requests / quota), and a quota per method
(the busiest method's requests / its quota), which is what a per-method limit allows.

In a run: `--measure-state` (Delaware by default: 56 communities, minutes rather than
hours) is rolled out end to end on the embedded stack with the same full lists at the same
quota (the emulator enforcing it per method, 60 s sliding window, like Google), and the
model is checked against it: requests by method, estimated and measured; the wall time
against requests / quota; 429s; the largest history of any workflow (target under 10,240
events) and the worker's peak memory (VmHWM, target under 400 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack.embedded import EmbeddedStack, StackConfig, free_port
from devstack.services import start_emulator, start_worker, worker_environment
from rollout.communities import load_communities, seed_from_data_file
from rollout.contract import ROLLOUT_TASK_QUEUE, state_workflow_id
from rollout.db.migrate import upgrade_async
from rollout.estimate import Estimate, estimate
from rollout.payloads import RolloutSummary, StateRolloutInput
from rollout.phases.discovery.planning import DiscoverySettings
from rollout.settings import Settings
from rollout.states import STATE_NAMES
from worker import PLACES_QUOTA_SHARE
from workflows.state_rollout import StateRolloutWorkflow

console = Console() if sys.stdout.isatty() else Console(width=160)

METHODS = ("searchText", "searchNearby", "getPlace")
# The SKU names' first words say their method (the pricing tables' naming).
SKU_METHOD = {"Text Search": "searchText", "Nearby Search": "searchNearby"}


def method_of(sku: str) -> str:
    for prefix, method in SKU_METHOD.items():
        if sku.startswith(prefix):
            return method
    return "getPlace"


def requests_by_method(e: Estimate) -> Counter[str]:
    counts: Counter[str] = Counter()
    for s in e.skus:
        counts[method_of(s.sku)] += s.requests
    return counts


@dataclass(frozen=True)
class Walls:
    one_rate_s: float  # every method at one rate
    per_method_s: float  # each method at its own quota: the busiest sets the pace


def walls(requests: Counter[str], qpm: int) -> Walls:
    rate = qpm * PLACES_QUOTA_SHARE / 60
    return Walls(
        one_rate_s=sum(requests.values()) / rate,
        per_method_s=max(requests.values(), default=0) / rate,
    )


def _hms(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    h, rest = divmod(round(seconds), 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s"


def state_estimate(state: str) -> Estimate:
    return estimate(load_communities(state), DiscoverySettings(), everywhere=load_communities())


def paper_table(state: str, e: Estimate, qpm: int, ratios: dict[str, float] | None = None) -> Table:
    """The model's figures; with `ratios` (measured / modelled requests per method, from
    the measured run), the same scaled by them."""
    by_method = requests_by_method(e)
    w = walls(by_method, qpm)
    title = (
        f"{STATE_NAMES[state]} on paper: {e.communities:,} communities, about "
        f"{e.businesses:,} businesses, the full default category lists, PLACES_QPM {qpm:,}"
    )
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("model", justify="right")
    scaled: Counter[str] | None = None
    if ratios is not None:
        table.add_column("scaled by the measured run", justify="right")
        scaled = Counter({m: round(n * ratios.get(m, 1.0)) for m, n in by_method.items()})
    ws = walls(scaled, qpm) if scaled is not None else None

    def row(measure: str, model: str, corrected: str = "") -> None:
        table.add_row(measure, model, *([corrected] if scaled is not None else []))

    for method in METHODS:
        row(
            f"{method} requests",
            f"{by_method[method]:,}",
            f"{scaled[method]:,}" if scaled is not None else "",
        )
    row(
        "Places requests",
        f"{e.requests:,}",
        f"{sum(scaled.values()):,}" if scaled is not None else "",
    )
    row("list price", f"${e.cost_usd:,.2f}")
    row(
        f"wall at one rate ({PLACES_QUOTA_SHARE:.1%} of {qpm:,}/min for all methods)",
        _hms(w.one_rate_s),
        _hms(ws.one_rate_s) if ws is not None else "",
    )
    row(
        "wall at a quota per method (the busiest method's requests)",
        _hms(w.per_method_s),
        _hms(ws.per_method_s) if ws is not None else "",
    )
    return table


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Measured:
    summary: RolloutSummary
    wall_s: float
    requests: Counter[str]
    refused: Counter[str]
    billed: int
    largest: dict[str, int]
    peak_mb: float


async def measure(args: argparse.Namespace) -> Measured:
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        config = StackConfig.ephemeral(Path(tmp))
        with EmbeddedStack(config) as stack:
            await upgrade_async(stack.database_url)
            await seed_from_data_file(stack.database_url, args.measure_state)
            places_url = start_emulator(
                stack,
                free_port(),
                seed=3,
                qpm=args.places_qpm,
                extra=["--qpd", "0", "--site-slow-s", "1", "--cache-businesses", "600000"],
            )
            extra = {
                "PLACES_QPM": str(args.places_qpm),
                "SCAN_SITE_DEADLINE_S": "5",
                # Every emulator site shares one host:port; real sites have a host each.
                "SCAN_PER_HOST_CONCURRENCY": "32",
                "LOG_LEVEL": "WARNING",
            }
            env = worker_environment(stack, Settings(), places_url, extra)
            worker = start_worker(stack, env, name="bench-worker")
            assert worker.pid is not None
            client = await Client.connect(
                stack.temporal_address, data_converter=pydantic_data_converter
            )
            started = time.monotonic()
            handle = await client.start_workflow(
                StateRolloutWorkflow.run,
                StateRolloutInput(
                    state_code=args.measure_state, batch_size=args.batch_size, throttle_ms=0
                ),
                id=state_workflow_id(args.measure_state),
                task_queue=ROLLOUT_TASK_QUEUE,
            )
            last = started
            while True:
                try:
                    summary: RolloutSummary = await asyncio.wait_for(handle.result(), 30)
                    break
                except TimeoutError:
                    if time.monotonic() - last >= 60:
                        last = time.monotonic()
                        doc = await handle.query(StateRolloutWorkflow.progress)
                        console.print(
                            f"[dim]{last - started:6.0f}s  {doc.progress_percentage:5.1f}%  "
                            f"{doc.total_businesses:,} businesses[/]"
                        )
            wall = time.monotonic() - started
            peak = peak_rss_mb(worker.pid)
            async with httpx.AsyncClient(timeout=30) as http:
                stats = (await http.get(f"{places_url}/sim/stats")).json()
            largest: dict[str, int] = {}
            async for w in client.list_workflows(""):
                largest[w.workflow_type] = max(largest.get(w.workflow_type, 0), w.history_length)
    refused = Counter({m: int(c["per_minute"]) for m, c in stats["rate_limited"].items()})
    return Measured(
        summary=summary,
        wall_s=wall,
        requests=Counter({m: int(n) for m, n in stats["requests"].items()}),
        refused=refused,
        billed=int(stats["total_requests"]),
        largest=largest,
        peak_mb=peak,
    )


def measured_table(args: argparse.Namespace, e: Estimate, m: Measured) -> Table:
    qpm = args.places_qpm
    predicted = requests_by_method(e)
    answered = m.requests - m.refused
    w_model = walls(predicted, qpm)
    w_actual = walls(answered, qpm)
    table = Table(
        title=f"{STATE_NAMES[args.measure_state]} measured: the full default category lists, "
        f"PLACES_QPM {qpm:,} (the emulator enforcing it per method), batch {args.batch_size}"
    )
    for column in ("measure", "model", "measured", "target"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for method in METHODS:
        table.add_row(
            f"{method} requests (429s)",
            f"{predicted[method]:,}",
            f"{answered[method]:,} ({m.refused[method]:,})",
            "0 429s",
        )
    total = sum(answered.values())
    table.add_row("Places requests", f"{e.requests:,}", f"{total:,}", "")
    table.add_row("list price", f"${e.cost_usd:,.2f}", f"${m.summary.cost_usd:,.2f}", "")
    table.add_row(
        "wall (model: requests / quota at one rate)",
        _hms(w_model.one_rate_s),
        _hms(m.wall_s),
        "",
    )
    table.add_row(
        "measured requests / quota at one rate, per method", "",
        f"{_hms(w_actual.one_rate_s)}, {_hms(w_actual.per_method_s)}", "",
    )  # fmt: skip
    table.add_row(
        "quota used over the whole run",
        "",
        f"{total / (m.wall_s * qpm / 60):.1%}",
        "",
    )
    table.add_row(
        "communities",
        f"{e.communities:,}",
        f"{m.summary.completed:,} completed, {m.summary.failed} failed",
        "",
    )
    table.add_row("businesses", f"{e.businesses:,}", f"{m.summary.businesses:,}", "")
    for kind, events in sorted(m.largest.items(), key=lambda kv: -kv[1]):
        table.add_row(f"largest history: {kind}", "", f"{events:,} events", "< 10,240")
    table.add_row("worker peak memory (VmHWM)", "", f"{m.peak_mb:,.0f} MB", "< 400 MB")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paper-state", default="TX")
    parser.add_argument("--measure-state", default="DE")
    parser.add_argument("--places-qpm", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--paper-only", action="store_true")
    args = parser.parse_args()
    args.paper_state = args.paper_state.upper()
    args.measure_state = args.measure_state.upper()
    paper = state_estimate(args.paper_state)
    if args.paper_only:
        console.print(paper_table(args.paper_state, paper, args.places_qpm))
        return
    e = state_estimate(args.measure_state)
    measured = asyncio.run(measure(args))
    console.print(measured_table(args, e, measured))
    # The measured run checks the model: its requests per method against the model's for
    # the same state scale the paper state's.
    modelled = requests_by_method(e)
    answered = measured.requests - measured.refused
    ratios = {m: answered[m] / modelled[m] for m in METHODS if modelled[m]}
    console.print(paper_table(args.paper_state, paper, args.places_qpm, ratios))


if __name__ == "__main__":
    main()
