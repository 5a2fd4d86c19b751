"""Benchmark: two states rolled out at once, each method's quota shared between them.

    .venv/bin/python bench/two_states.py [--states AL,MS] [--batch-sizes 20,3] [--qpm 600]
        [--workers 1] [--windows 4] [--window-s 75] [--demo-categories]

What runs (loopback only, free ports): an ephemeral embedded stack (Postgres, the Temporal
dev server with devstack's dynamic config), `placesim` with `--qpm QPM` per method and
--workers `python worker.py` processes with PLACES_QPM=QPM. Two StateRolloutWorkflows start
together, as `starter.py start` starts them (the state code as the fairness key), with
unequal batch sizes: the first state keeps several times the second's requests waiting, the
backlog that would take most of the quota if the queues dispatched first come, first
served. Both states run phase 1's Text Search probes from the start, so both have work on
that queue throughout.

The windows are back to back, --window-s each, from the first Places request the emulator
receives. Per window and Places method: each state's answered requests per minute as a
share of the method's quota, both together, and the emulator's 429 answers. A state's
requests are counted from the billed-request log (`rollout_api_usage`, one row per request,
joined to its community's rollout), polled every second; 429s from the emulator's counters.
The issue's target, while both states have work: each state >= 40% of the quota, together
>= 95%.
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

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import text
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
from rollout.contract import ROLLOUT_TASK_QUEUE, state_workflow_id
from rollout.db.migrate import upgrade
from rollout.db.session import create_engine
from rollout.payloads import StateRolloutInput
from rollout.places.pricing import Endpoint
from rollout.settings import Settings
from worker import places_rate
from workflows.common import rollout_priority
from workflows.state_rollout import StateRolloutWorkflow

STATE_SHARE = 0.40  # each state's least share of a method's quota while both have work
TOTAL_SHARE = 0.95  # both together
POLL_EVERY_S = 1.0
REFUSED = "429"  # count_at's pseudo-state for the emulator's 429 answers

# Places requests by state and method, from the billed-request log.
BY_STATE = text(
    """
    SELECT s.state_code, u.endpoint, count(*)
    FROM rollout_api_usage u
    JOIN community_rollouts c ON c.id = u.community_rollout_id
    JOIN state_rollouts s ON s.id = c.state_rollout_id
    GROUP BY s.state_code, u.endpoint
    """
)


async def refusals(http: httpx.AsyncClient) -> dict[str, int]:
    """The emulator's 429 answers so far, by method."""
    stats = (await http.get("/sim/stats")).json()
    return {m: sum(int(n) for n in by.values()) for m, by in stats["rate_limited"].items()}


async def terminate_running(client: Client) -> None:
    async for execution in client.list_workflows("ExecutionStatus = 'Running'"):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        with contextlib.suppress(Exception):  # closed meanwhile
            await handle.terminate("benchmark over")


@dataclass(frozen=True)
class Count:
    t: float
    requests: dict[tuple[str, str], int]  # (state, method) -> requests logged so far
    refused: dict[str, int]  # method -> the emulator's 429 answers so far


def count_at(counts: list[Count], t: float, key: tuple[str, str]) -> float:
    """A state's count of one method at time `t`, linear between the polls around it."""
    before = max((c for c in counts if c.t <= t), key=lambda c: c.t, default=counts[0])
    after = min((c for c in counts if c.t >= t), key=lambda c: c.t, default=counts[-1])
    if key[0] == REFUSED:
        low, high = before.refused.get(key[1], 0), after.refused.get(key[1], 0)
    else:
        low, high = before.requests.get(key, 0), after.requests.get(key, 0)
    if after.t == before.t:
        return float(low)
    return low + (t - before.t) / (after.t - before.t) * (high - low)


@dataclass(frozen=True)
class Row:
    window: int
    method: Endpoint
    per_min: dict[str, float]  # by state
    share: dict[str, float]  # of the method's quota, by state
    refused: int

    @property
    def total(self) -> float:
        return sum(self.share.values())

    @property
    def verdict(self) -> str:
        if self.refused:
            return "FAIL (429s)"
        if min(self.share.values()) < STATE_SHARE:
            return "FAIL (a state < 40%)"
        return "ok" if self.total >= TOTAL_SHARE else "FAIL (together < 95%)"


def prepare(args: argparse.Namespace, stack: EmbeddedStack, console: Console) -> str:
    upgrade(stack.database_url)
    for state in args.states:
        seeded = asyncio.run(seed_from_data_file(stack.database_url, state))
        console.print(f"{seeded.communities} {state} communities seeded")
    extra = ["--cache-businesses", str(args.cache_businesses)]
    sim_url = start_emulator(stack, free_port(), seed=1, qpm=args.qpm, extra=extra)
    for state in args.states:  # (see devstack.services.warm_emulator)
        warm_emulator(sim_url, state)
    extra_env = {"PLACES_QPM": str(args.qpm), "LOG_LEVEL": "WARNING"}
    if args.demo_categories:
        extra_env |= DEMO_DISCOVERY
    env = worker_environment(stack, Settings(), sim_url, extra_env)
    for n in range(1, args.workers + 1):
        start_worker(stack, env, name=f"worker-{n}")
    console.print(
        f"placesim {sim_url}: {args.qpm}/min per method; {args.workers} worker(s), each "
        f"method's queue limited to {places_rate(args.qpm):g}/s"
    )
    return sim_url


async def drive(
    args: argparse.Namespace, stack: EmbeddedStack, sim_url: str, console: Console
) -> list[Row]:
    client = await Client.connect(
        stack.temporal_address, namespace="default", data_converter=pydantic_data_converter
    )
    engine = create_engine(stack.database_url)
    http = httpx.AsyncClient(base_url=sim_url, timeout=60)
    counts: list[Count] = []
    rows: list[Row] = []

    async def poll() -> None:
        async with engine.connect() as conn:
            result = await conn.execute(BY_STATE)
            requests = {(str(s), str(m)): int(n) for s, m, n in result}
        counts.append(Count(time.monotonic(), requests, await refusals(http)))

    try:
        for state, batch_size in zip(args.states, args.batch_sizes, strict=True):
            await client.start_workflow(
                StateRolloutWorkflow.run,
                StateRolloutInput(state_code=state, batch_size=batch_size),
                id=state_workflow_id(state),
                task_queue=ROLLOUT_TASK_QUEUE,
                priority=rollout_priority(state),
            )
        # The windows start with the first request logged.
        await poll()
        while not sum(counts[-1].requests.values()):
            await asyncio.sleep(0.1)
            await poll()
        t0 = counts[-2].t if len(counts) > 1 else counts[-1].t
        for index in range(args.windows):
            start, end = t0 + index * args.window_s, t0 + (index + 1) * args.window_s
            while time.monotonic() < end + POLL_EVERY_S:
                await poll()
                await asyncio.sleep(POLL_EVERY_S)
            quota = args.qpm * args.window_s / 60
            for method in Endpoint:
                per_state = {
                    state: count_at(counts, end, (state, method.value))
                    - count_at(counts, start, (state, method.value))
                    for state in args.states
                }
                refused = count_at(counts, end, (REFUSED, method.value)) - count_at(
                    counts, start, (REFUSED, method.value)
                )
                if sum(per_state.values()) < 1:
                    continue
                row = Row(
                    window=index + 1,
                    method=method,
                    per_min={s: n * 60 / args.window_s for s, n in per_state.items()},
                    share={s: n / quota for s, n in per_state.items()},
                    refused=round(refused),
                )
                rows.append(row)
                console.print(
                    f"  window {row.window} {method.value}: "
                    + ", ".join(f"{s} {100 * v:.1f}%" for s, v in row.share.items())
                    + f", together {100 * row.total:.1f}%, 429s {row.refused}"
                )
    finally:
        await terminate_running(client)
        await http.aclose()
        await engine.dispose()
    return rows


def report(console: Console, args: argparse.Namespace, rows: list[Row]) -> None:
    a, b = args.states
    table = Table(
        title=f"Two states at once: {a} (batch {args.batch_sizes[0]}) and {b} (batch "
        f"{args.batch_sizes[1]}), {args.qpm} requests/min per method, {args.workers} worker(s), "
        f"{args.window_s:g} s windows from the first request"
    )
    for column in (
        "window", "method", f"{a}/min", f"{b}/min", f"{a} share", f"{b} share",
        "together", "429s", "verdict",
    ):  # fmt: skip
        table.add_column(column, justify="left" if column in ("method", "verdict") else "right")
    for r in rows:
        table.add_row(
            str(r.window),
            r.method.value,
            f"{r.per_min[a]:.1f}",
            f"{r.per_min[b]:.1f}",
            f"{100 * r.share[a]:.1f}%",
            f"{100 * r.share[b]:.1f}%",
            f"{100 * r.total:.1f}%",
            str(r.refused),
            r.verdict,
        )
    console.print(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--states", default="AL,MS", type=lambda v: v.split(","))
    parser.add_argument(
        "--batch-sizes", default="20,3", type=lambda v: [int(n) for n in v.split(",")]
    )
    parser.add_argument("--qpm", type=int, default=600, help="the emulator's quota per method")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--window-s", type=float, default=75.0)
    parser.add_argument("--cache-businesses", type=int, default=1_000_000)
    parser.add_argument("--demo-categories", action="store_true")
    args = parser.parse_args()
    console = Console(width=200)
    with (
        tempfile.TemporaryDirectory(prefix="bench-two-states-") as tmp,
        EmbeddedStack(StackConfig.ephemeral(Path(tmp))) as stack,
    ):
        sim_url = prepare(args, stack, console)
        rows = asyncio.run(drive(args, stack, sim_url, console))
    report(console, args, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
