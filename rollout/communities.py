"""US communities: the shipped GeoNames data file and idempotent seeding into Postgres.

Each community gets a primary region: a circle around the GeoNames point whose radius grows
with population (see `region_radius_m`). Phase 1 searches Places inside that region.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from rollout.db.models import Community, Region
from rollout.states import STATE_NAMES, normalize_state_code

DATA_FILE = Path(__file__).resolve().parent / "data" / "us_communities.csv"
CSV_COLUMNS = ("geonameid", "name", "state_code", "latitude", "longitude", "population", "timezone")
MIN_POPULATION = 500

# Region radius model, see region_radius_m.
RESIDENTS_PER_KM2 = 1_000
FRINGE_FACTOR = 1.5
MIN_RADIUS_M = 2_000
MAX_RADIUS_M = 30_000

# Rows per executemany call (SQLAlchemy pages each call into multi-row INSERTs).
CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class CommunityRecord:
    id: int  # GeoNames id
    name: str
    state_code: str
    latitude: float
    longitude: float
    population: int
    timezone: str | None

    @property
    def region_slug(self) -> str:
        return f"{self.state_code.lower()}-{self.id}"


def region_radius_m(population: int) -> int:
    """Search radius of a community's primary region, in metres.

    Assume the place is settled at about RESIDENTS_PER_KM2 (1,000 people/km², a typical US
    urban-area density): its built-up area is population / 1,000 km², a circle of radius
    sqrt(area / pi). Widen that by FRINGE_FACTOR (1.5) to take in the commercial fringe along
    the roads out of town, then clamp to [2 km, 30 km]: even a hamlet's businesses spread over
    a couple of kilometres, and past 30 km a search circle would swallow neighbouring cities.
    Rounded to 10 m. Examples: 500 people -> 2,000 m; 20,000 -> 3,780 m; 250,000 -> 13,380 m;
    1,000,000+ -> 26,760 m up to the 30,000 m cap.
    """
    area_km2 = max(population, 0) / RESIDENTS_PER_KM2
    radius_m = FRINGE_FACTOR * math.sqrt(area_km2 / math.pi) * 1_000
    return int(round(min(max(radius_m, MIN_RADIUS_M), MAX_RADIUS_M), -1))


def load_communities(state: str | None = None, path: Path = DATA_FILE) -> list[CommunityRecord]:
    """Communities from the data file, all states or one (normalised; unknown raises)."""
    wanted = normalize_state_code(state) if state is not None else None
    records: list[CommunityRecord] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
            raise ValueError(f"{path}: unexpected columns {reader.fieldnames}")
        for row in reader:
            if wanted is not None and row["state_code"] != wanted:
                continue
            records.append(
                CommunityRecord(
                    id=int(row["geonameid"]),
                    name=row["name"],
                    state_code=row["state_code"],
                    latitude=float(row["latitude"]),
                    longitude=float(row["longitude"]),
                    population=int(row["population"]),
                    timezone=row["timezone"] or None,
                )
            )
    return records


def largest(records: Iterable[CommunityRecord], n: int) -> list[CommunityRecord]:
    """The `n` largest communities, in the order a rollout takes them (population, then id)."""
    return sorted(records, key=lambda r: (-r.population, r.id))[:n]


def counts_by_state(records: Iterable[CommunityRecord]) -> dict[str, int]:
    counts = dict.fromkeys(STATE_NAMES, 0)
    for record in records:
        counts[record.state_code] += 1
    return counts


@dataclass(frozen=True, slots=True)
class SeedResult:
    communities: int
    regions: int
    states: int


def _chunks(records: Sequence[CommunityRecord]) -> Iterable[Sequence[CommunityRecord]]:
    for start in range(0, len(records), CHUNK):
        yield records[start : start + CHUNK]


async def seed_communities(session: AsyncSession, records: Sequence[CommunityRecord]) -> SeedResult:
    """Upsert communities, their primary regions and the links, in the caller's transaction.

    Idempotent: a second run with the same records changes nothing (updates only rows whose
    data changed), and a run with corrected data updates them in place.
    """
    # executemany: SQLAlchemy batches the rows into multi-row INSERTs ("insertmanyvalues").
    community_stmt = insert(Community)
    changed = ("name", "state_code", "latitude", "longitude", "population", "timezone")
    for chunk in _chunks(records):
        await session.execute(
            community_stmt.on_conflict_do_update(
                index_elements=[Community.id],
                set_={**{c: community_stmt.excluded[c] for c in changed}, "updated_at": func.now()},
                # Only rows whose data changed are written: a re-seed touches nothing.
                where=func.row(*(getattr(Community, c) for c in changed)).is_distinct_from(
                    func.row(*(community_stmt.excluded[c] for c in changed))
                ),
            ),
            [
                {
                    "id": r.id,
                    "name": r.name,
                    "state_code": r.state_code,
                    "latitude": r.latitude,
                    "longitude": r.longitude,
                    "population": r.population,
                    "timezone": r.timezone,
                }
                for r in chunk
            ],
        )

    region_stmt = insert(Region)
    region_cols = ("name", "state_code", "center_latitude", "center_longitude", "radius_m")
    for chunk in _chunks(records):
        await session.execute(
            region_stmt.on_conflict_do_update(
                index_elements=[Region.slug],
                set_={
                    **{c: region_stmt.excluded[c] for c in region_cols},
                    "updated_at": func.now(),
                },
                where=func.row(*(getattr(Region, c) for c in region_cols)).is_distinct_from(
                    func.row(*(region_stmt.excluded[c] for c in region_cols))
                ),
            ),
            [
                {
                    "slug": r.region_slug,
                    "name": f"{r.name}, {r.state_code}",
                    "state_code": r.state_code,
                    "kind": "community",
                    "center_latitude": r.latitude,
                    "center_longitude": r.longitude,
                    "radius_m": region_radius_m(r.population),
                }
                for r in chunk
            ],
        )

    # Link each community to its region by slug, server-side in one statement.
    await session.execute(
        text(
            "INSERT INTO community_region (community_id, region_id, is_primary) "
            "SELECT c.id, r.id, true FROM communities c "
            "JOIN regions r ON r.slug = lower(c.state_code) || '-' || c.id "
            "WHERE c.id = ANY(:ids) "
            "ON CONFLICT DO NOTHING"
        ),
        {"ids": [r.id for r in records]},
    )

    return SeedResult(
        communities=len(records),
        regions=len(records),
        states=len({r.state_code for r in records}),
    )


class SchemaMissingError(RuntimeError):
    pass


async def seed_from_data_file(
    database_url: str, state: str | None = None, *, limit: int | None = None
) -> SeedResult:
    """Load the shipped data file (one state or all) into the database at `database_url`;
    with `limit`, only that many of the largest communities (the demo's short rollouts)."""
    from sqlalchemy.exc import ProgrammingError

    from rollout.db.errors import is_connection_error, unavailable
    from rollout.db.session import create_engine, describe_url

    records = load_communities(state)  # validates the state before touching the database
    if limit is not None:
        records = largest(records, limit)
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            session = AsyncSession(bind=conn)
            return await seed_communities(session, records)
    except ProgrammingError as exc:
        if "UndefinedTable" in type(exc.orig).__name__ or "does not exist" in str(exc.orig):
            raise SchemaMissingError(
                f"the database at {describe_url(database_url)} has no rollout schema; "
                "run `python starter.py migrate` first"
            ) from None
        raise
    except Exception as exc:
        if is_connection_error(exc):
            raise unavailable(database_url, exc) from None
        raise
    finally:
        await engine.dispose()
