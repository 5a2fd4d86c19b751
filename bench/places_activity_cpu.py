"""Benchmark: CPU of one phase 1 Places activity (issue #16), outside Temporal.

    .venv/bin/python bench/places_activity_cpu.py [--requests 600] [--at-once 40]

Starts its own Postgres (migrated, Delaware seeded) and Places emulator, then runs the
worker's `DiscoveryActivities.places_search_page` directly (temporalio's ActivityEnvironment,
each call a distinct activity of its own run) on Dover: IDs-only probes (the bulk of a
rollout's requests) and paid pages (listing fields: places upserted into `businesses`),
`--at-once` concurrently, as the worker runs them. Reports CPU milliseconds per activity of
this process (the worker's share: SQLAlchemy, asyncpg, httpx, pydantic, JSON), of Postgres
(all backends) and of the emulator, and Postgres transactions per activity (a statement
outside a transaction counts as one). A tight loop for one part of bench/rollout_cpu.py's
"worker" row: what the SDK and the workflows cost is not in it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr
from rich.console import Console
from rich.table import Table
from sqlalchemy import text
from temporalio.testing import ActivityEnvironment

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rollout_cpu import all_stats, tree_cpu_s  # bench/ is this script's sys.path[0]

from activities.billing import BillingLog
from activities.discovery import DiscoveryActivities
from devstack.embedded import EmbeddedPostgres, StackConfig
from placesim.process import PlacesimServer
from rollout.communities import seed_from_data_file
from rollout.db.migrate import upgrade
from rollout.db.models import CommunityRollout, StateRollout
from rollout.db.session import create_engine, session_factory
from rollout.db.usage_spool import UsageSpool
from rollout.phases.discovery.payloads import Box, PageRequest, SearchKind, SearchTask
from rollout.phases.discovery.planning import DiscoverySettings
from rollout.settings import embedded_database_url
from worker import places_client, worker_engine

console = Console() if sys.stdout.isatty() else Console(width=160)
SIM_KEY = "bench-key"  # the emulator takes any key but "invalid"
CATEGORIES = ("restaurant", "cafe", "hair_salon", "church", "florist", "plumber")


@dataclasses.dataclass
class Run:
    label: str
    activities: int
    wall_s: float
    worker_cpu_s: float
    postgres_cpu_s: float
    emulator_cpu_s: float
    transactions: int


def tasks(lat: float, lng: float, probe: bool, count: int) -> list[SearchTask]:
    """`count` searches over a grid of cells around the community, category by category."""
    out: list[SearchTask] = []
    step = 0.01
    i = 0
    while len(out) < count:
        category = CATEGORIES[i % len(CATEGORIES)]
        row, col = divmod(i // len(CATEGORIES), 12)
        south, west = lat - 0.06 + row * step, lng - 0.06 + col * step
        out.append(
            SearchTask(
                kind=SearchKind.TEXT,
                label=category,
                text_query=category.replace("_", " "),
                included_type=category,
                box=Box(south=south, west=west, north=south + step, east=west + step),
                probe=probe,
            )
        )
        i += 1
    return out


async def transactions(url: str) -> int:
    """Transactions committed or rolled back in the database so far."""
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT xact_commit + xact_rollback FROM pg_stat_database "
                        "WHERE datname = current_database()"
                    )
                )
            ).one()
        return int(row[0])
    finally:
        await engine.dispose()


async def run_activities(
    url: str, places_url: str, spool: Path, label: str, probe: bool, args: argparse.Namespace
) -> Run:
    engine = worker_engine(url)
    sessions = session_factory(engine)
    settings = DiscoverySettings()
    try:
        async with sessions() as session:
            seeded = await session.execute(
                text(
                    "SELECT cr.id, cr.community_id, r.id, r.center_latitude, r.center_longitude "
                    "FROM community_rollouts cr JOIN community_region c "
                    "ON c.community_id = cr.community_id AND c.is_primary "
                    "JOIN regions r ON r.id = c.region_id LIMIT 1"
                )
            )
            cr_id, community_id, region_id, lat, lng = seeded.one()
        async with places_client(places_url, SecretStr(SIM_KEY)) as places:
            acts = DiscoveryActivities(
                sessions, places, settings, BillingLog(sessions, UsageSpool(spool))
            )
            requests = [
                PageRequest(
                    task=task,
                    community_rollout_id=cr_id,
                    community_id=community_id,
                    region_id=region_id,
                    run_key=f"bench-{label}",
                )
                for task in tasks(lat, lng, probe, args.requests)
            ]
            gate = asyncio.Semaphore(args.at_once)
            base = ActivityEnvironment().info

            async def one(i: int, req: PageRequest) -> None:
                env = ActivityEnvironment()
                env.info = dataclasses.replace(
                    base, workflow_run_id=f"bench-{label}", activity_id=str(i + 1)
                )
                async with gate:
                    await env.run(acts.places_search_page, req)

            # Warm up: connections, prepared statements, compiled SQL.
            await asyncio.gather(*(one(-1 - i, r) for i, r in enumerate(requests[:20])))
            tx0 = await transactions(url)
            stats0 = all_stats()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
            cpu1, wall1 = time.process_time(), time.perf_counter()
            stats1 = all_stats()
            tx1 = await transactions(url)
    finally:
        await engine.dispose()
    return Run(
        label,
        len(requests),
        wall1 - wall0,
        cpu1 - cpu0,
        tree_cpu_s(args.postgres_pid, stats1) - tree_cpu_s(args.postgres_pid, stats0),
        tree_cpu_s(args.emulator_pid, stats1) - tree_cpu_s(args.emulator_pid, stats0),
        tx1 - tx0 - 1,  # the counter's own read
    )


def report(runs: list[Run]) -> None:
    table = Table(title="CPU per phase 1 Places activity (places_search_page, Dover)")
    for column in (
        "activities",
        "wall s",
        "activities / s",
        "worker CPU ms",
        "Postgres CPU ms",
        "emulator CPU ms",
        "transactions",
    ):
        table.add_column(column, justify="right")
    table.add_column("kind")
    for r in runs:
        n = r.activities
        table.add_row(
            f"{n:,}",
            f"{r.wall_s:.1f}",
            f"{n / r.wall_s:.0f}",
            f"{r.worker_cpu_s * 1000 / n:.2f}",
            f"{r.postgres_cpu_s * 1000 / n:.2f}",
            f"{r.emulator_cpu_s * 1000 / n:.2f}",
            f"{r.transactions / n:.2f}",
            r.label,
        )
    console.print(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--at-once", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-act-") as tmp:
        config = StackConfig.ephemeral(Path(tmp))
        postgres = EmbeddedPostgres(
            config.stack_dir / "pgdata", config.postgres_port, config.stack_dir / "logs",
            durable=False,
        )  # fmt: skip
        postgres.start()
        try:
            postgres.ensure_database("bench")
            url = embedded_database_url(config.postgres_port, "bench")
            upgrade(url)
            asyncio.run(seed_from_data_file(url, "DE"))
            asyncio.run(_seed_rollout(url))
            with PlacesimServer(Path(tmp), seed=3, qpm=0, extra_args=["--qpd", "0"]) as sim:
                assert postgres.process is not None
                assert postgres.process.pid is not None
                assert sim.process.pid is not None
                args.postgres_pid = postgres.process.pid
                args.emulator_pid = sim.process.pid
                runs = [
                    asyncio.run(
                        run_activities(
                            url, sim.base_url, Path(tmp) / "spool.jsonl", label, probe, args
                        )
                    )
                    for label, probe in (("probe (IDs only)", True), ("paid page", False))
                ]
        finally:
            postgres.stop()
    report(runs)
    return 0


async def _seed_rollout(url: str) -> None:
    engine = create_engine(url, pool_size=1)
    sessions = session_factory(engine)
    try:
        async with sessions.begin() as session:
            community_id = (
                await session.execute(text("SELECT id FROM communities WHERE name = 'Dover'"))
            ).scalar_one()
            rollout = StateRollout(
                state_code="DE",
                state_name="Delaware",
                status="in_progress",
                workflow_id="state-rollout-DE",
                total_communities=1,
            )
            session.add(rollout)
            await session.flush()
            session.add(
                CommunityRollout(
                    state_rollout_id=rollout.id,
                    community_id=community_id,
                    position=1,
                    status="processing",
                )
            )
    finally:
        await engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
