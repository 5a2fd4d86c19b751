"""Community data file, region radius model, and idempotent seeding into Postgres."""

from __future__ import annotations

import csv
import dataclasses

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from rollout.communities import (
    DATA_FILE,
    MAX_RADIUS_M,
    MIN_RADIUS_M,
    counts_by_state,
    load_communities,
    region_radius_m,
    seed_communities,
)
from rollout.db.models import Community, CommunityRegion, Region
from rollout.states import STATE_NAMES, UnknownStateError


def _file_counts() -> dict[str, int]:
    with DATA_FILE.open(newline="", encoding="utf-8") as fh:
        counts: dict[str, int] = {}
        for row in csv.DictReader(fh):
            counts[row["state_code"]] = counts.get(row["state_code"], 0) + 1
    return counts


def test_data_file_covers_every_state_and_dc() -> None:
    records = load_communities()
    counts = counts_by_state(records)
    assert set(counts) == set(STATE_NAMES)
    assert all(n > 0 for n in counts.values())
    assert 21_000 <= len(records) <= 22_500
    assert 1_200 <= counts["TX"] <= 1_350
    assert 50 <= counts["DE"] <= 70
    assert len({r.id for r in records}) == len(records)  # GeoNames ids are unique
    assert all(r.population >= 500 for r in records)


def test_load_one_state_normalises_the_code() -> None:
    assert {r.state_code for r in load_communities(" de ")} == {"DE"}
    with pytest.raises(UnknownStateError, match="unknown state code 'XX'"):
        load_communities("XX")
    with pytest.raises(UnknownStateError):
        load_communities("PR")  # a territory, not a state


@pytest.mark.parametrize(
    ("population", "radius"),
    [(0, MIN_RADIUS_M), (500, 2_000), (20_000, 3_780), (250_000, 13_380), (10_000_000, 30_000)],
)
def test_region_radius_model(population: int, radius: int) -> None:
    assert region_radius_m(population) == radius


def test_region_radius_grows_with_population_within_bounds() -> None:
    radii = [region_radius_m(p) for p in range(0, 5_000_000, 25_000)]
    assert radii == sorted(radii)
    assert min(radii) == MIN_RADIUS_M
    assert max(radii) == MAX_RADIUS_M


async def _state_counts(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(Community.state_code, func.count()).group_by(Community.state_code)
    )
    return {state: count for state, count in rows}


async def test_seed_all_states_matches_file_and_is_idempotent(engine: AsyncEngine) -> None:
    records = load_communities()
    async with AsyncSession(engine) as session, session.begin():
        await seed_communities(session, records)

    async with AsyncSession(engine) as session:
        assert await _state_counts(session) == _file_counts()
        for state, expected in (("TX", 1268), ("DE", 56), ("CA", 1241), ("WY", 80)):
            assert (await _state_counts(session))[state] == expected
        regions = await session.scalar(select(func.count()).select_from(Region))
        primaries = await session.scalar(
            select(func.count()).select_from(CommunityRegion).where(CommunityRegion.is_primary)
        )
        assert regions == primaries == len(records)
        before = (await session.execute(text("SELECT max(updated_at) FROM regions"))).scalar()

    # A second run inserts nothing and touches no row.
    async with AsyncSession(engine) as session, session.begin():
        await seed_communities(session, records)
    async with AsyncSession(engine) as session:
        assert await _state_counts(session) == _file_counts()
        assert await session.scalar(select(func.count()).select_from(CommunityRegion)) == len(
            records
        )
        after = (await session.execute(text("SELECT max(updated_at) FROM regions"))).scalar()
        assert after == before


async def test_seed_one_state_gives_each_community_its_primary_region(
    engine: AsyncEngine,
) -> None:
    records = load_communities("DE")
    async with AsyncSession(engine) as session, session.begin():
        result = await seed_communities(session, records)
    assert result.communities == len(records) == 56

    async with AsyncSession(engine) as session:
        rows = (
            await session.execute(
                select(Community.population, Region.radius_m, Region.center_latitude)
                .join(CommunityRegion, CommunityRegion.community_id == Community.id)
                .join(Region, Region.id == CommunityRegion.region_id)
                .where(CommunityRegion.is_primary, Community.state_code == "DE")
            )
        ).all()
    assert len(rows) == 56
    assert all(radius == region_radius_m(pop) for pop, radius, _ in rows)
    assert await _seeded_states(engine) == {"DE"}


async def _seeded_states(engine: AsyncEngine) -> set[str]:
    async with AsyncSession(engine) as session:
        return set(await _state_counts(session))


async def test_corrected_data_updates_in_place(engine: AsyncEngine) -> None:
    records = load_communities("RI")
    async with AsyncSession(engine) as session, session.begin():
        await seed_communities(session, records)
    grown = [dataclasses.replace(records[0], population=2_000_000)]
    async with AsyncSession(engine) as session, session.begin():
        await seed_communities(session, grown)
    async with AsyncSession(engine) as session:
        community = await session.get(Community, records[0].id)
        assert community is not None
        assert community.population == 2_000_000
        radius = await session.scalar(
            select(Region.radius_m).where(Region.slug == records[0].region_slug)
        )
        assert radius == region_radius_m(2_000_000)
        assert await session.scalar(select(func.count()).select_from(Community)) == len(records)
