"""Benchmark: phase 1 writes, bulk upsert against row-at-a-time upsert of the same places.

    .venv/bin/python bench/upsert_writes.py [--places 50000] [--state DE]
        [--batches 20,100,500,1000] [--previous 20]

What runs (loopback only): embedded Postgres from the project's wheel on a free port, with the
settings of StackConfig.ephemeral (throwaway data: fsync off, as the tests and benchmarks run
it). One database is migrated (rollout.db.migrate.upgrade) and seeded with one state's
communities, so the foreign keys exist; every mode then gets a fresh copy of it (CREATE
DATABASE ... TEMPLATE), so no mode writes into another's tables.

The same synthetic `Place` objects (ids, names, addresses, locations, types, status,
website, phone, rating) are written by every mode, twice: a first insert into empty tables,
then a re-upsert of the same places (every row exists; the Google fields are refreshed):
- bulk N: `rollout.db.businesses.upsert_places` on pages of N places, one transaction per page
  (N = 20 is exactly what the places_search_page activity does per page): ONE statement per
  page (rows as column arrays through unnest, INSERT ... ON CONFLICT DO UPDATE, and the
  business_region links in the same statement);
- row-at-a-time: the same function called with one place at a time (the same statement, one
  row each), still one transaction per page of 20, as the activity's granularity;
- row-at-a-time ORM updateOrCreate: what the Laravel design's job does per business
  (`updateOrCreate`: a SELECT by place id, then an INSERT or an UPDATE) plus the region
  link, three statements per place through the SQLAlchemy ORM;
- previous VALUES bulk N (`--previous`): the implementation before 2026-11-29, a multi-row
  VALUES list that SQLAlchemy compiles anew for every page, and a second statement for the
  links; kept to show what the change bought.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from devstack.embedded import EmbeddedPostgres, StackConfig
from rollout.communities import seed_from_data_file
from rollout.db.businesses import _REFRESHED as REFRESHED
from rollout.db.businesses import _row as place_row
from rollout.db.businesses import primary_region, upsert_places
from rollout.db.migrate import upgrade
from rollout.db.models import Business, BusinessRegion, Community
from rollout.db.session import create_engine, session_factory
from rollout.places.models import BusinessStatus, LatLng, Place
from rollout.settings import embedded_database_url

ACTIVITY_PAGE = 20  # places per Text Search page, and per activity transaction
TYPES = (
    ("restaurant", "food"), ("cafe", "food"), ("hair_salon", "hair_care", "beauty_salon"),
    ("dentist", "health"), ("car_repair",), ("church", "place_of_worship"), ("lawyer",),
    ("grocery_store", "food", "store"), ("bank", "finance"), ("gym", "fitness_center"),
)  # fmt: skip
STATUSES = (BusinessStatus.OPERATIONAL,) * 18 + (
    BusinessStatus.CLOSED_TEMPORARILY,
    BusinessStatus.CLOSED_PERMANENTLY,
)


def synthetic_places(count: int, seed: int = 1) -> list[Place]:
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    places: list[Place] = []
    for i in range(count):
        types = rng.choice(TYPES)
        rated = rng.random() > 0.06
        places.append(
            Place(
                id=f"ChIJbench{i:08d}{rng.getrandbits(40):010x}",
                display_name=f"Business {i} {rng.choice(('Grill', 'Salon', 'Dental', 'Motors'))}",
                formatted_address=f"{rng.randrange(1, 9900)} Main St, Dover, DE 19901, USA",
                location=LatLng(
                    latitude=39.1 + rng.uniform(-0.1, 0.1),
                    longitude=-75.5 + rng.uniform(-0.1, 0.1),
                ),
                types=(*types, "point_of_interest", "establishment"),
                primary_type=types[0],
                business_status=rng.choice(STATUSES),
                website_uri=f"https://business-{i}.example.com/" if rng.random() < 0.6 else None,
                national_phone_number=f"(302) 555-{rng.randrange(10_000):04d}",
                google_maps_uri=f"https://maps.google.com/?cid={rng.getrandbits(63)}",
                pure_service_area_business=None,
                rating=round(rng.uniform(1, 5), 1) if rated else None,
                user_rating_count=rng.randrange(1, 2000) if rated else None,
            )
        )
    return places


async def upsert_places_values(
    session: AsyncSession, places: Sequence[Place], *, community_id: int, region_id: int
) -> int:
    """The previous implementation (before 2026-11-29): a multi-row VALUES list per page,
    which SQLAlchemy compiles anew every time, then the region links as a second one."""
    unique = {p.id: p for p in places}
    if not unique:
        return 0
    stmt = insert(Business).values([place_row(p, community_id) for p in unique.values()])
    rows = await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Business.place_id],
            set_={
                **{c: stmt.excluded[c] for c in REFRESHED},
                "last_seen_at": func.now(),
                "places_fetched_at": func.now(),
                "updated_at": func.now(),
            },
        ).returning(Business.id)
    )
    ids = [business_id for (business_id,) in rows]
    linked = await session.execute(
        insert(BusinessRegion)
        .values([{"business_id": b, "region_id": region_id} for b in ids])
        .on_conflict_do_nothing()
        .returning(BusinessRegion.business_id)
    )
    return len(linked.all())


async def update_or_create(
    session: AsyncSession, places: Sequence[Place], *, community_id: int, region_id: int
) -> int:
    """Laravel's `Business::updateOrCreate(['place_id' => ...], [...])` and a link, per place,
    as the ORM does it: SELECT by place id, then INSERT or UPDATE, then the region link."""
    new = 0
    for place in places:
        row = place_row(place, community_id)
        del row["places_fetched_at"]
        business = await session.scalar(select(Business).where(Business.place_id == place.id))
        if business is None:
            business = Business(**row, places_fetched_at=func.now())
            session.add(business)
        else:
            for column in REFRESHED:
                setattr(business, column, row[column])
            business.last_seen_at = func.now()
            business.places_fetched_at = func.now()
        await session.flush()
        linked = await session.execute(
            insert(BusinessRegion)
            .values(business_id=business.id, region_id=region_id)
            .on_conflict_do_nothing()
            .returning(BusinessRegion.business_id)
        )
        new += len(linked.all())
    return new


Upsert = Callable[..., Awaitable[int]]


@dataclass
class Pass:
    seconds: float
    cpu_seconds: float  # this process: SQLAlchemy, asyncpg, the event loop
    new_links: int


@dataclass
class ModeResult:
    mode: str
    family: str  # the implementation: row-at-a-time of the same family is the baseline
    batch: int
    statements_per_page: str
    first: Pass
    again: Pass
    rows: int
    links: int


def statements(upsert: Upsert, batch: int, *, row_at_a_time: bool) -> str:
    if upsert is update_or_create:
        return f"{3 * batch} (3 per row)"
    if row_at_a_time:
        return f"{batch} (1 per row)"
    return "1" if upsert is upsert_places else "2"


def pages(places: Sequence[Place], size: int) -> list[Sequence[Place]]:
    return [places[i : i + size] for i in range(0, len(places), size)]


async def write_all(
    url: str, places: Sequence[Place], batch: int, *, row_at_a_time: bool, upsert: Upsert
) -> tuple[Pass, Pass, int, int]:
    engine = create_engine(url, pool_size=2)
    sessions = session_factory(engine)
    try:
        async with sessions() as session:
            community_id = await session.scalar(
                select(Community.id).order_by(Community.population.desc()).limit(1)
            )
            assert community_id is not None
            region = await primary_region(session, community_id)
            assert region is not None
        region_id = region.id

        async def one_pass() -> Pass:
            new = 0
            started = time.perf_counter()
            cpu = time.process_time()
            for page in pages(places, batch):
                async with sessions.begin() as session:  # one transaction per page
                    if row_at_a_time:
                        for place in page:
                            new += await upsert(
                                session, [place], community_id=community_id, region_id=region_id
                            )
                    else:
                        new += await upsert(
                            session, page, community_id=community_id, region_id=region_id
                        )
            return Pass(time.perf_counter() - started, time.process_time() - cpu, new)

        first = await one_pass()
        again = await one_pass()
        async with sessions() as session:
            rows = await session.scalar(select(func.count()).select_from(Business))
            links = await session.scalar(select(func.count()).select_from(BusinessRegion))
        return first, again, int(rows or 0), int(links or 0)
    finally:
        await engine.dispose()


def bench(args: argparse.Namespace, console: Console) -> int:
    batches = [int(b) for b in args.batches.split(",")]
    places = synthetic_places(args.places)
    console.print(f"{len(places):,} synthetic places generated")
    results: list[ModeResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-upsert-") as tmp:
        config = StackConfig.ephemeral(Path(tmp))
        postgres = EmbeddedPostgres(
            config.stack_dir / "pgdata",
            config.postgres_port,
            config.stack_dir / "logs",
            durable=config.durable_postgres,
        )
        try:
            postgres.start()
            template = "bench_template"
            postgres.ensure_database(template)
            template_url = embedded_database_url(config.postgres_port, template)
            upgrade(template_url)
            seeded = asyncio.run(seed_from_data_file(template_url, args.state))
            console.print(
                f"Postgres on 127.0.0.1:{config.postgres_port}: template migrated, "
                f"{seeded.communities} {args.state} communities seeded"
            )
            modes: list[tuple[str, int, bool, Upsert]] = [
                ("row-at-a-time", ACTIVITY_PAGE, True, upsert_places),
                ("row-at-a-time ORM updateOrCreate", ACTIVITY_PAGE, False, update_or_create),
                *((f"bulk {b}", b, False, upsert_places) for b in batches),
                *(
                    (f"previous VALUES bulk {b}", b, False, upsert_places_values)
                    for b in (int(x) for x in args.previous.split(",") if x)
                ),
            ]
            for index, (mode, batch, row_at_a_time, upsert) in enumerate(modes):
                name = f"bench_{index}"
                postgres.psql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                url = embedded_database_url(config.postgres_port, name)
                first, again, rows, links = asyncio.run(
                    write_all(url, places, batch, row_at_a_time=row_at_a_time, upsert=upsert)
                )
                postgres.drop_database(name)
                results.append(
                    ModeResult(
                        mode,
                        "previous" if upsert is upsert_places_values else "project",
                        batch,
                        statements(upsert, batch, row_at_a_time=row_at_a_time),
                        first,
                        again,
                        rows,
                        links,
                    )
                )
                console.print(
                    f"  {mode}: first {first.seconds:.1f} s, re-upsert {again.seconds:.1f} s "
                    f"({rows:,} businesses, {links:,} region links)"
                )
        finally:
            postgres.stop()
    report(console, results, len(places))
    return 0


def report(console: Console, results: list[ModeResult], count: int) -> None:
    base = next(r for r in results if r.statements_per_page.endswith("(1 per row)"))
    table = Table(title=f"Upsert of {count:,} places (one transaction per page)")
    for column in (
        "mode", "places/page", "statements/page", "first insert s", "first rows/s",
        "vs row-at-a-time", "re-upsert s", "re-upsert rows/s", "vs row-at-a-time ",
        "client CPU s (1st+2nd)", "new links (1st/2nd)", "rows ok",
    ):  # fmt: skip
        table.add_column(column, justify="left" if column == "mode" else "right", no_wrap=True)
    for r in results:
        table.add_row(
            r.mode,
            str(r.batch),
            r.statements_per_page,
            f"{r.first.seconds:.2f}",
            f"{count / r.first.seconds:,.0f}",
            f"{base.first.seconds / r.first.seconds:.1f}x",
            f"{r.again.seconds:.2f}",
            f"{count / r.again.seconds:,.0f}",
            f"{base.again.seconds / r.again.seconds:.1f}x",
            f"{r.first.cpu_seconds + r.again.cpu_seconds:.1f}",
            f"{r.first.new_links:,}/{r.again.new_links:,}",
            "yes" if r.rows == count and r.links == count else f"NO ({r.rows}, {r.links})",
        )
    console.print(table)
    console.print(
        "vs row-at-a-time: against the project's upsert_places called with one place at a "
        "time (the same statement, one row per statement); higher is better. The ORM "
        "updateOrCreate row is the Laravel design's way (3 statements per place). previous: the "
        "implementation before 2026-11-29 (a VALUES list compiled per page, 2 statements)."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--places", type=int, default=50_000)
    parser.add_argument("--state", default="DE", help="communities seeded for the foreign keys")
    parser.add_argument("--batches", default="20,100,500,1000", help="bulk page sizes")
    parser.add_argument(
        "--previous",
        default="20",
        help="bulk page sizes of the previous implementation ('' to skip it)",
    )
    return bench(parser.parse_args(), Console(width=240))


if __name__ == "__main__":
    sys.exit(main())
