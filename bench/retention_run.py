"""Benchmark: the retention run over a whole state after its rollout (issue #13).

    .venv/bin/python bench/retention_run.py [--state DE] [--places-qpm 60000]
        [--full-categories] [--churn 0.01]

Starts its own Postgres, Temporal dev server, Places emulator and one `python worker.py`
with PLACES_CONTENT_POLICY=refresh, rolls the state out (the demo category list unless
--full-categories), then moves the clock by ageing the rows: a third of the businesses
fetched 27 days ago (due a refresh), a third 31 days ago (past Google's 30: purged), a
third 10 days ago (untouched), and one in ten of all fetched 400 days ago (purged, then its
place id due a re-check). --churn of the refreshes and re-checks
find their place gone (404) or moved (the emulator's gone_places / moved_places).

One PlacesRetentionWorkflow then runs as the schedule would. Its `progress` query is polled
every half second to time each stage. Prints per stage: businesses, wall seconds, rows per
second, Places requests and cost; then the usage log against the emulator's bill, and the
outbox events the run wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import text
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from activities.retention import RetentionCounts, RetentionRun
from devstack.embedded import EmbeddedStack, StackConfig, free_port
from devstack.services import DEMO_DISCOVERY, start_emulator, start_worker, worker_environment
from rollout.communities import seed_from_data_file
from rollout.contract import ROLLOUT_TASK_QUEUE, state_workflow_id
from rollout.db.migrate import upgrade_async
from rollout.db.session import create_engine
from rollout.payloads import StateRolloutInput
from rollout.settings import Settings
from workflows.retention import PlacesRetentionWorkflow
from workflows.state_rollout import StateRolloutWorkflow

console = Console() if sys.stdout.isatty() else Console(width=160)

AGEING = """
UPDATE businesses SET
    places_fetched_at = now() - make_interval(days => CASE id % 3 WHEN 0 THEN 27
                                                                 WHEN 1 THEN 31 ELSE 10 END),
    enriched_at = CASE WHEN enriched_at IS NOT NULL
                       THEN now() - make_interval(days => CASE id % 3 WHEN 0 THEN 27
                                                                      WHEN 1 THEN 31 ELSE 10 END)
                  END,
    first_seen_at = now() - make_interval(days => CASE id % 3 WHEN 0 THEN 27
                                                            WHEN 1 THEN 31 ELSE 10 END)
;
-- One in ten not fetched for 400 days: purged, then its place id re-checked.
UPDATE businesses SET places_fetched_at = now() - interval '400 days',
                      first_seen_at = now() - interval '400 days',
                      enriched_at = CASE WHEN enriched_at IS NOT NULL
                                         THEN now() - interval '400 days' END
WHERE id % 10 = 7
"""


@dataclass
class Stage:
    name: str
    started: float
    ended: float = 0.0
    requests_at_start: int = 0
    cost_at_start: Decimal = Decimal(0)
    rows_at_start: int = 0
    rows: int = 0
    requests: int = 0
    cost: Decimal = Decimal(0)


@dataclass
class Outcome:
    counts: RetentionCounts
    stages: list[Stage]
    wall_s: float
    businesses: int
    logged_requests: int
    logged_cost: Decimal
    billed_requests: int
    billed_cost: Decimal
    events: dict[str, int] = field(default_factory=dict)


def _rows_done(stage: str, progress: dict[str, str]) -> int:
    if stage == "purge":
        return int(progress.get("purged", "0"))
    keys = ("refreshed", "confirmed", "followed", "closed", "moved", "not_found", "failed")
    return sum(int(progress.get(k, "0")) for k in keys)


async def _roll_out(client: Client, state: str) -> None:
    handle = await client.start_workflow(
        StateRolloutWorkflow.run,
        StateRolloutInput(state_code=state, batch_size=20, throttle_ms=0),
        id=state_workflow_id(state),
        task_queue=ROLLOUT_TASK_QUEUE,
    )
    started = time.monotonic()
    summary = await handle.result()
    console.print(
        f"[dim]rollout of {state}: {summary.completed} communities, "
        f"{summary.businesses:,} businesses in {time.monotonic() - started:.0f} s[/]"
    )


async def _churn(engine: Any, places_url: str, share: float) -> tuple[int, int]:
    """Mark a share of the due businesses' places gone or moved in the emulator."""
    async with engine.connect() as conn:
        due = [
            r[0]
            for r in await conn.execute(
                text("SELECT place_id FROM businesses WHERE id % 3 = 0 OR id % 10 = 7 ORDER BY id")
            )
        ]
    every = max(int(1 / share), 2) if share > 0 else 0
    picked = due[::every] if every else []
    gone = picked[::2]
    moved = {p: "ChIJ" + uuid.uuid5(uuid.NAMESPACE_URL, p).hex[:23] for p in picked[1::2]}
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(
            f"{places_url}/sim/config", json={"gone_places": gone, "moved_places": moved}
        )
        response.raise_for_status()
    return len(gone), len(moved)


async def run(args: argparse.Namespace) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="bench-retention-") as tmp:
        config = StackConfig.ephemeral(Path(tmp))
        with EmbeddedStack(config) as stack:
            await upgrade_async(stack.database_url)
            await seed_from_data_file(stack.database_url, args.state)
            places_url = start_emulator(
                stack,
                free_port(),
                seed=3,
                qpm=args.places_qpm,
                extra=["--qpd", "0", "--site-slow-s", "1", "--cache-businesses", "600000"],
            )
            extra = {
                "PLACES_QPM": str(args.places_qpm),
                "PLACES_CONTENT_POLICY": "refresh",
                "RETENTION_BUDGET_USD": "100000",
                "SCAN_SITE_DEADLINE_S": "5",
                "SCAN_PER_HOST_CONCURRENCY": DEMO_DISCOVERY["SCAN_PER_HOST_CONCURRENCY"],
                "LOG_LEVEL": "WARNING",
            }
            if not args.full_categories:
                extra.update(DEMO_DISCOVERY)
                extra["VERIFY_MIN_BUSINESSES"] = "0"
            env = worker_environment(stack, Settings(), places_url, extra)
            start_worker(stack, env, name="bench-worker")
            client = await Client.connect(
                stack.temporal_address, data_converter=pydantic_data_converter
            )
            await _roll_out(client, args.state)

            engine = create_engine(stack.database_url)
            try:
                async with engine.begin() as conn:
                    for statement in AGEING.split(";"):
                        await conn.execute(text(statement))
                    businesses = int(
                        (await conn.execute(text("SELECT count(*) FROM businesses"))).scalar_one()
                    )
                    await conn.execute(text("DELETE FROM rollout_api_usage"))
                gone, moved = await _churn(engine, places_url, args.churn)
                console.print(f"[dim]churn: {gone} places gone, {moved} moved[/]")
                async with httpx.AsyncClient(timeout=30) as http:
                    (await http.post(f"{places_url}/sim/reset")).raise_for_status()
                    outcome = await _retention(client, businesses)
                    bill = (await http.get(f"{places_url}/sim/billing")).json()
                async with engine.connect() as conn:
                    logged = (
                        await conn.execute(
                            text("SELECT count(*), coalesce(sum(cost), 0) FROM rollout_api_usage")
                        )
                    ).one()
                    events = await _events(conn)
            finally:
                await engine.dispose()
    outcome.logged_requests, outcome.logged_cost = int(logged[0]), Decimal(logged[1])
    outcome.billed_requests = int(bill["total_requests"])
    outcome.billed_cost = Decimal(bill["total_cost"])
    outcome.events = events
    return outcome


async def _events(conn: Any) -> dict[str, int]:
    """Outbox rows by event kind, where the outbox knows kinds (else by status)."""
    columns = {
        r[0]
        for r in await conn.execute(
            text(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'platform_outbox'"
            )
        )
    }
    by = "event" if "event" in columns else "status"
    rows = await conn.execute(text(f"SELECT {by}, count(*) FROM platform_outbox GROUP BY 1"))
    return {f"{by}={r[0]}": int(r[1]) for r in rows}


async def _retention(client: Client, businesses: int) -> Outcome:
    handle = await client.start_workflow(
        PlacesRetentionWorkflow.run,
        RetentionRun(),
        id=f"places-retention-bench-{uuid.uuid4().hex[:8]}",
        task_queue=ROLLOUT_TASK_QUEUE,
    )
    started = time.monotonic()
    stages: list[Stage] = []
    result: RetentionCounts | None = None
    while result is None:
        try:
            progress = await handle.query(PlacesRetentionWorkflow.progress)
        except Exception:  # not started yet, or just continued-as-new
            progress = {}
        if progress.get("stage"):
            name = progress["stage"]
            requests = int(progress.get("requests", "0"))
            cost = Decimal(progress.get("cost_usd", "0"))
            now = time.monotonic()
            if not stages or stages[-1].name != name:
                if stages:
                    # The stage just ended: its totals as this answer has them.
                    ended = stages[-1]
                    ended.ended = now
                    ended.rows = _rows_done(ended.name, progress) - ended.rows_at_start
                    ended.requests = requests - ended.requests_at_start
                    ended.cost = cost - ended.cost_at_start
                # The first stage counts from the run's start (it may be under way, or
                # over, by the first answer).
                first = not stages
                stages.append(
                    Stage(name, started if first else now,
                          requests_at_start=0 if first else requests,
                          cost_at_start=Decimal(0) if first else cost,
                          rows_at_start=0 if first else _rows_done(name, progress))
                )  # fmt: skip
            current = stages[-1]
            current.rows = _rows_done(name, progress) - current.rows_at_start
            current.requests = requests - current.requests_at_start
            current.cost = cost - current.cost_at_start
        try:
            result = await asyncio.wait_for(handle.result(), 0.2)
        except TimeoutError:
            continue
    wall = time.monotonic() - started
    if stages:
        stages[-1].ended = time.monotonic()
        last = stages[-1]
        if last.name == "purge":
            last.rows = result.purged
        else:
            last.requests = result.requests - last.requests_at_start
            last.cost = result.cost_usd - last.cost_at_start
            done = result.refreshed + result.confirmed + result.followed + result.closed
            done += result.moved + result.not_found + result.failed
            last.rows = done - last.rows_at_start
    return Outcome(result, stages, wall, businesses, 0, Decimal(0), 0, Decimal(0))


def report(args: argparse.Namespace, o: Outcome) -> None:
    c = o.counts
    table = Table(
        title=f"Retention run over {args.state} after its rollout ({o.businesses:,} businesses, "
        f"PLACES_CONTENT_POLICY=refresh, PLACES_QPM {args.places_qpm:,})"
    )
    for column in ("stage", "businesses", "wall s", "rows/s", "requests", "cost"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for s in o.stages:
        wall = max(s.ended - s.started, 1e-9)
        table.add_row(
            s.name, f"{s.rows:,}", f"{wall:.1f}", f"{s.rows / wall:,.0f}", f"{s.requests:,}",
            f"${s.cost:.2f}",
        )  # fmt: skip
    table.add_row(
        "whole run", f"{c.purged + c.requests:,}", f"{o.wall_s:.1f}", "", f"{c.requests:,}",
        f"${c.cost_usd:.2f}", style="bold",
    )  # fmt: skip
    console.print(table)
    console.print(
        f"purged {c.purged:,}; refreshed {c.refreshed:,}; ids confirmed {c.confirmed:,}, "
        f"followed {c.followed:,}; closed {c.closed:,}, moved {c.moved:,}, not found "
        f"{c.not_found:,}; failed {c.failed:,}",
        soft_wrap=True,
    )
    equal = (o.logged_requests, o.logged_cost) == (o.billed_requests, o.billed_cost)
    console.print(
        f"usage log {o.logged_requests:,} requests ${o.logged_cost:.2f}; emulator bill "
        f"{o.billed_requests:,} requests ${o.billed_cost:.2f}: "
        + ("[green]log = bill[/]" if equal else "[red]log != bill[/]"),
        soft_wrap=True,
    )
    console.print(
        "outbox after the run: " + ", ".join(f"{k} {v:,}" for k, v in sorted(o.events.items())),
        soft_wrap=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", default="DE")
    parser.add_argument("--places-qpm", type=int, default=60_000)
    parser.add_argument("--full-categories", action="store_true")
    parser.add_argument("--churn", type=float, default=0.01)
    args = parser.parse_args()
    args.state = args.state.upper()
    report(args, asyncio.run(run(args)))


if __name__ == "__main__":
    main()
