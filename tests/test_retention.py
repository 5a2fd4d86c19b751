"""Google's storage terms kept (rollout/retention.py, `starter.py retention`), on Postgres:
the plan counts each business by the age of its Google content under each policy, the purge
clears exactly the expired Google columns and nothing else, twice changes nothing, and the
command line's dry run changes nothing."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from rollout.communities import load_communities, seed_communities
from rollout.db.models import Business, NewsSource
from rollout.phases.discovery.planning import details_mask
from rollout.places.pricing import Endpoint, request_cost, sku_for
from rollout.retention import (
    CONTENT_DAYS,
    GOOGLE_LISTING_COLUMNS,
    PlacesContentPolicy,
    RetentionPlan,
    purge_expired,
    purge_expired_page,
    retention_plan,
)
from rollout.settings import Settings
from tests.cli.test_starter_cli import one_error_line
from tests.conftest import PROJECT_ROOT, ScratchDatabase
from tests.support.phase_fixtures import Seeded, add_business, seed_rollout

NOW = dt.datetime.now(dt.UTC)
PROFILE = {
    "page": "https://aging-bakery.example/",
    "fields": {
        "telephone": {"value": "+1 302-555-0100", "source": "json-ld"},
        "description": {"value": "Bread since 1950", "source": "meta"},
    },
}
ENRICHMENT = {"id": "ChIJ-expired", "internationalPhoneNumber": "+1 302-555-0100"}


@dataclass(frozen=True, slots=True)
class World:
    seeded: Seeded
    ids: dict[str, int]  # by place id


async def _age(seeded: Seeded, business_id: int, days: int, **values: Any) -> None:
    """Make the business's Google content `days` old (found then too)."""
    fetched = NOW - dt.timedelta(days=days)
    async with seeded.sessions.begin() as session:
        await session.execute(
            update(Business)
            .where(Business.id == business_id)
            .values(places_fetched_at=fetched, first_seen_at=fetched, **values)
        )


@pytest.fixture
async def world(engine: AsyncEngine) -> World:
    """Delaware businesses fetched 10, 29, 31 (one with its website's profile and an
    enrichment, one closed permanently) and 400 days ago, and one Rhode Island business
    fetched 40 days ago."""
    seeded = await seed_rollout(engine)
    ids: dict[str, int] = {}
    for place_id, days, extra in (
        ("ChIJ-fresh", 10, {}),
        ("ChIJ-aging", 29, {}),
        (
            "ChIJ-expired",
            31,
            {
                "enrichment": ENRICHMENT,
                "enriched_at": NOW - dt.timedelta(days=31),
                "website_profile": PROFILE,
                "website_profile_at": NOW - dt.timedelta(days=31),
                "website_uri": "https://aging-bakery.example/",
                "google_maps_uri": "https://maps.google.com/?cid=1",
                "pure_service_area_business": False,
                "user_rating_count": 12,
            },
        ),
        ("ChIJ-closed", 31, {"business_status": "CLOSED_PERMANENTLY"}),
        ("ChIJ-ancient", 400, {}),
    ):
        ids[place_id] = await add_business(seeded, place_id, place_id.removeprefix("ChIJ-"))
        await _age(seeded, ids[place_id], days, **extra)
    rhode_island = load_communities("RI")
    async with seeded.sessions.begin() as session:
        await seed_communities(session, rhode_island)
        ids["ChIJ-providence"] = (
            await session.execute(
                insert(Business)
                .values(
                    place_id="ChIJ-providence",
                    community_id=next(c.id for c in rhode_island if c.name == "Providence"),
                    name="Providence Diner",
                    latitude=41.82,
                    longitude=-71.41,
                    types=["diner"],
                )
                .returning(Business.id)
            )
        ).scalar_one()
    await _age(seeded, ids["ChIJ-providence"], 40)
    return World(seeded, ids)


async def _plan(
    world: World, policy: PlacesContentPolicy, as_of: dt.datetime = NOW, state: str | None = None
) -> RetentionPlan:
    async with world.seeded.sessions() as session:
        return await retention_plan(session, policy, as_of, state=state)


def _counts(plan: RetentionPlan) -> dict[str | None, tuple[int, int, int, int, int]]:
    return {s.state_code: (s.held, s.expiring, s.purge, s.refresh, s.recheck) for s in plan.states}


async def _rows(engine: AsyncEngine) -> list[Sequence[Any]]:
    async with engine.connect() as conn:
        return [tuple(r) for r in await conn.execute(text("SELECT * FROM businesses ORDER BY id"))]


async def _business(world: World, place_id: str) -> Business:
    async with world.seeded.sessions() as session:
        return (await session.scalars(select(Business).where(Business.place_id == place_id))).one()


# --------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------

# (held, older than 30 days, purge, refresh, re-check ids) per state.
PLANS: list[tuple[PlacesContentPolicy, int, dict[str | None, tuple[int, int, int, int, int]]]] = [
    # purge: the 31-, 31- and 400-day-old go; the 400-day-old id is re-checked.
    ("purge", 0, {"DE": (5, 3, 3, 0, 1), "RI": (1, 1, 1, 0, 0)}),
    # refresh: the 29-day-old is refreshed before it expires; what is past 30 was not
    # refreshed in time and goes as under purge; the 400-day-old id is re-checked.
    ("refresh", 0, {"DE": (5, 3, 3, 1, 1), "RI": (1, 1, 1, 0, 0)}),
    ("keep", 0, {"DE": (5, 3, 0, 0, 1), "RI": (1, 1, 0, 0, 0)}),
    # Two days on, the 29-day-old is past 30 too.
    ("purge", 2, {"DE": (5, 4, 4, 0, 1), "RI": (1, 1, 1, 0, 0)}),
    ("refresh", 2, {"DE": (5, 4, 4, 0, 1), "RI": (1, 1, 1, 0, 0)}),
    # Sixteen days on, the 10-day-old is due for refresh.
    ("refresh", 16, {"DE": (5, 4, 4, 1, 1), "RI": (1, 1, 1, 0, 0)}),
    # Two days back, only the 400-day-old (and the 40-day-old) were past 30.
    ("purge", -2, {"DE": (5, 1, 1, 0, 1), "RI": (1, 1, 1, 0, 0)}),
]


@pytest.mark.parametrize(("policy", "days_on", "expected"), PLANS)
async def test_the_plan_counts_each_business_by_age_and_policy(
    world: World,
    policy: PlacesContentPolicy,
    days_on: int,
    expected: dict[str | None, tuple[int, int, int, int, int]],
) -> None:
    plan = await _plan(world, policy, NOW + dt.timedelta(days=days_on))
    assert _counts(plan) == expected
    assert plan.purge == sum(c[2] for c in expected.values())
    # A refresh is a Place Details with phase 1's fields, at list price; a re-check is free.
    assert plan.refresh_sku == sku_for(Endpoint.GET_PLACE, details_mask())
    assert plan.refresh_sku == "Place Details Enterprise"
    assert plan.refresh_cost_usd == plan.refresh * request_cost("Place Details Enterprise")
    assert plan.recheck_sku == "Place Details Essentials IDs Only"
    assert plan.recheck_cost_usd == Decimal(0)


async def test_the_plan_of_one_state(world: World) -> None:
    plan = await _plan(world, "refresh", NOW - dt.timedelta(days=12), state="RI")
    assert _counts(plan) == {"RI": (1, 0, 0, 1, 0)}
    assert plan.refresh_cost_usd == Decimal("0.02")


async def test_the_plan_needs_a_time_zone(world: World) -> None:
    with pytest.raises(ValueError, match="time zone"):
        await _plan(world, "purge", NOW.replace(tzinfo=None))


# --------------------------------------------------------------------------------------
# The purge
# --------------------------------------------------------------------------------------


async def test_purge_clears_exactly_the_expired_google_columns(world: World) -> None:
    engine = world.seeded.engine
    before = {row[0]: row for row in await _rows(engine)}
    async with world.seeded.sessions.begin() as session:
        assert await purge_expired(session, NOW) == 4  # 31, 31, 400 and 40 days old

    expired = await _business(world, "ChIJ-expired")
    for column in GOOGLE_LISTING_COLUMNS:
        assert getattr(expired, column) == ([] if column == "types" else None), column
    assert expired.enrichment is None
    assert expired.enriched_at is None
    assert expired.places_purged_at is not None
    # The place id, the business's own content and the fetch time stay.
    assert expired.place_id == "ChIJ-expired"
    assert expired.website_profile == PROFILE
    assert expired.website_profile_at == NOW - dt.timedelta(days=31)
    assert expired.places_fetched_at == NOW - dt.timedelta(days=31)
    assert expired.community_id == world.seeded.community_id

    after = {row[0]: row for row in await _rows(engine)}
    for place_id in ("ChIJ-fresh", "ChIJ-aging"):
        business_id = world.ids[place_id]
        assert after[business_id] == before[business_id], place_id
    for place_id in ("ChIJ-closed", "ChIJ-ancient", "ChIJ-providence"):
        purged = await _business(world, place_id)
        assert (purged.name, purged.latitude, purged.types) == (None, None, [])
        assert purged.places_purged_at is not None

    # Nothing is held past 30 days any more; the old place id still wants its check.
    assert _counts(await _plan(world, "purge")) == {
        "DE": (2, 0, 0, 0, 1),
        "RI": (0, 0, 0, 0, 0),
    }


async def test_purging_twice_changes_nothing_the_second_time(world: World) -> None:
    async with world.seeded.sessions.begin() as session:
        assert await purge_expired(session, NOW) == 4
    once = await _rows(world.seeded.engine)
    async with world.seeded.sessions.begin() as session:
        assert await purge_expired(session, NOW) == 0
    assert await _rows(world.seeded.engine) == once


async def test_purge_of_one_state_leaves_the_others(world: World) -> None:
    async with world.seeded.sessions.begin() as session:
        assert await purge_expired(session, NOW, state="RI") == 1
    assert (await _business(world, "ChIJ-expired")).name == "expired"
    assert (await _business(world, "ChIJ-providence")).name is None


async def test_a_later_fetch_holds_the_content_again(world: World) -> None:
    async with world.seeded.sessions.begin() as session:
        await purge_expired(session, NOW)
    # A later rollout buys the business again (phase 1's upsert stamps places_fetched_at).
    async with world.seeded.sessions.begin() as session:
        await session.execute(
            update(Business)
            .where(Business.place_id == "ChIJ-ancient")
            .values(name="Ancient Books", places_fetched_at=text("now() + interval '1 second'"))
        )
    plan = await _plan(world, "purge", NOW + dt.timedelta(days=CONTENT_DAYS + 1))
    assert _counts(plan)["DE"] == (3, 3, 3, 0, 0)
    async with world.seeded.sessions.begin() as session:
        assert await purge_expired(session, NOW + dt.timedelta(days=CONTENT_DAYS + 1)) == 3


async def test_an_enrichment_older_than_its_listing_is_purged_alone(world: World) -> None:
    """A page bought without the enrichment fields refreshes the listing and keeps the
    earlier enrichment, with its own age."""
    business_id = world.ids["ChIJ-fresh"]
    await _age(
        world.seeded,
        business_id,
        5,
        enrichment={"id": "ChIJ-fresh", "priceLevel": "PRICE_LEVEL_MODERATE"},
        enriched_at=NOW - dt.timedelta(days=35),
    )
    async with world.seeded.sessions() as session:
        assert await purge_expired(session, NOW, state="DE") == 4
        fresh = (await session.scalars(select(Business).where(Business.id == business_id))).one()
        assert (fresh.enrichment, fresh.enriched_at) == (None, None)
        assert fresh.name == "fresh"
        assert fresh.places_purged_at is None


async def test_field_sources_say_where_each_value_came_from(world: World) -> None:
    query = text(
        "SELECT field, source, detail, as_of FROM business_field_sources "
        "WHERE business_id = :id ORDER BY field"
    )
    business_id = world.ids["ChIJ-expired"]
    fetched = NOW - dt.timedelta(days=31)
    async with world.seeded.engine.connect() as conn:
        rows = {r.field: r for r in await conn.execute(query, {"id": business_id})}
    assert (rows["name"].source, rows["name"].detail, rows["name"].as_of) == (
        "google",
        "places",
        fetched,
    )
    assert rows["latitude"].source == "google"
    assert rows["enrichment.internationalPhoneNumber"].source == "google"
    assert rows["website_profile.telephone"][1:] == ("website", "json-ld", fetched)
    assert rows["website_profile.description"].detail == "meta"
    assert "national_phone_number" not in rows  # nothing stored, nothing listed

    async with world.seeded.sessions.begin() as session:
        await purge_expired(session, NOW)
    async with world.seeded.engine.connect() as conn:
        after = {r.field: r.source for r in await conn.execute(query, {"id": business_id})}
    assert after == {
        "place_id": "google",
        "website_profile.description": "website",
        "website_profile.telephone": "website",
    }


# --------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------


def test_keep_is_refused_without_the_acknowledgement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLACES_CONTENT_POLICY_ACKNOWLEDGED", raising=False)
    monkeypatch.delenv("PLACES_CONTENT_POLICY", raising=False)
    assert Settings(_env_file=None).places_content_policy == "purge"
    monkeypatch.setenv("PLACES_CONTENT_POLICY", "keep")
    with pytest.raises(ValidationError, match="PLACES_CONTENT_POLICY_ACKNOWLEDGED=true"):
        Settings(_env_file=None)
    monkeypatch.setenv("PLACES_CONTENT_POLICY_ACKNOWLEDGED", "true")
    assert Settings(_env_file=None).places_content_policy == "keep"
    monkeypatch.setenv("PLACES_CONTENT_POLICY", "delete")
    with pytest.raises(ValidationError, match="places_content_policy"):
        Settings(_env_file=None)


# --------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------


def retention(
    *args: str, database_url: str, policy: str | None = None, acknowledged: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "COLUMNS": "160"}
    env.pop("PLACES_CONTENT_POLICY", None)
    env.pop("PLACES_CONTENT_POLICY_ACKNOWLEDGED", None)
    if policy is not None:
        env["PLACES_CONTENT_POLICY"] = policy
    if acknowledged:
        env["PLACES_CONTENT_POLICY_ACKNOWLEDGED"] = "true"
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "starter.py"), "retention", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _total_row(stdout: str) -> list[str]:
    line = next(line for line in stdout.splitlines() if re.search(r"\btotal\b", line))
    return re.findall(r"\$?[\d.,]+", line)


async def test_cli_dry_run_prints_the_plan_and_changes_nothing(
    world: World, migrated_db: ScratchDatabase
) -> None:
    before = await _rows(world.seeded.engine)
    result = retention("--dry-run", database_url=migrated_db.url)
    assert result.returncode == 0, result.stderr
    # held, over 30 days, purge, refresh, refresh cost, re-check ids
    assert _total_row(result.stdout) == ["6", "4", "4", "0", "$0.00", "1"]
    assert "PLACES_CONTENT_POLICY=purge" in result.stdout
    assert "Dry run: nothing changed" in result.stdout

    result = retention(
        "--dry-run", "--as-of", (NOW + dt.timedelta(days=2)).date().isoformat(), "de",
        database_url=migrated_db.url, policy="refresh",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert _total_row(result.stdout) == ["5", "4", "4", "0", "$0.00", "1"]
    assert "in Delaware" in result.stdout
    assert "re-checked by the run" in result.stdout
    # The legal caution is logged once, at start-up.
    assert result.stderr.count("legal call for the owners") == 1
    assert await _rows(world.seeded.engine) == before


async def test_cli_run_purges_once(world: World, migrated_db: ScratchDatabase) -> None:
    result = retention("DE", database_url=migrated_db.url)
    assert result.returncode == 0, result.stderr
    assert "purged the Google content of 3 businesses" in result.stdout
    assert (await _business(world, "ChIJ-providence")).name == "Providence Diner"
    once = await _rows(world.seeded.engine)

    result = retention("DE", database_url=migrated_db.url)
    assert result.returncode == 0, result.stderr
    assert "nothing to purge in Delaware" in result.stdout
    assert "Place ids last confirmed over 365 days ago: 1, re-checked by the run" in result.stdout
    assert await _rows(world.seeded.engine) == once


async def test_cli_refresh_purges_what_is_expired_and_keep_purges_nothing(
    world: World, migrated_db: ScratchDatabase
) -> None:
    before = await _rows(world.seeded.engine)
    kept = retention(database_url=migrated_db.url, policy="keep", acknowledged=True)
    assert kept.returncode == 0, kept.stderr
    assert "nothing purged; 4 businesses hold Google content older than 30 days" in kept.stdout
    assert await _rows(world.seeded.engine) == before

    refreshed = retention(database_url=migrated_db.url, policy="refresh")
    assert refreshed.returncode == 0, refreshed.stderr
    assert "purged the Google content of 4 businesses" in refreshed.stdout
    assert "Refreshes are bought by the scheduled run" in refreshed.stdout


@pytest.mark.parametrize(
    ("args", "policy", "message"),
    [
        (["--dry-run", "--as-of", "2026-13-01"], None, "date '2026-13-01' is not a YYYY-MM-DD"),
        (["--dry-run", "--as-of", "tomorrow"], None, "date 'tomorrow' is not a YYYY-MM-DD"),
        (["XX"], None, "unknown state code 'XX'"),
        (["--as-of", "2030-01-01"], None, "--as-of plans a later run: use it with --dry-run"),
        ([], "keep", "PLACES_CONTENT_POLICY_ACKNOWLEDGED"),
    ],
)
async def test_cli_bad_input_is_one_line_and_changes_nothing(
    world: World,
    migrated_db: ScratchDatabase,
    args: list[str],
    policy: str | None,
    message: str,
) -> None:
    before = await _rows(world.seeded.engine)
    result = retention(*args, database_url=migrated_db.url, policy=policy)
    assert result.returncode == 2
    assert message in one_error_line(result)
    assert result.stdout == ""
    assert await _rows(world.seeded.engine) == before


def test_cli_before_the_migration_says_what_to_do(empty_db: ScratchDatabase) -> None:
    result = retention("--dry-run", database_url=empty_db.url)
    assert result.returncode == 1
    assert "run `python starter.py migrate` first" in one_error_line(result)


async def test_news_sources_named_after_a_purged_listing_are_renamed(world: World) -> None:
    """A source's name copied from the Google listing goes with it: the business's own
    site's name when it publishes one, else the site's host; a name of its own stays."""
    profile = {"fields": {"name": {"value": "Expired Bakery & Co", "source": "json-ld"}}}
    async with world.seeded.sessions.begin() as session:
        await session.execute(
            update(Business)
            .where(Business.id == world.ids["ChIJ-expired"])
            .values(website_profile=profile)
        )
        for place_id, name, homepage in (
            ("ChIJ-expired", "expired", "https://expired-bakery.example/"),
            ("ChIJ-closed", "closed", "https://closed.example:8443/news?x=1"),
            ("ChIJ-ancient", "The Ancient Gazette", "https://gazette.example/"),
            ("ChIJ-aging", "aging", "https://aging.example/"),
        ):
            await session.execute(
                insert(NewsSource).values(
                    business_id=world.ids[place_id],
                    community_id=world.seeded.community_id,
                    name=name,
                    homepage_url=homepage,
                )
            )
    async with world.seeded.sessions.begin() as session:
        page = await purge_expired_page(session, NOW, after_business_id=0, limit=2)
        assert page.business_ids == (world.ids["ChIJ-expired"], world.ids["ChIJ-closed"])
        assert page.next_after_id == world.ids["ChIJ-closed"]
        rest = await purge_expired_page(session, NOW, after_business_id=page.next_after_id, limit=2)
        assert rest.business_ids == (world.ids["ChIJ-ancient"], world.ids["ChIJ-providence"])
        last = await purge_expired_page(
            session, NOW, after_business_id=rest.next_after_id or 0, limit=2
        )
        assert last.business_ids == ()
        assert last.next_after_id is None
    async with world.seeded.sessions() as session:
        rows = await session.execute(select(NewsSource.business_id, NewsSource.name))
        names = {business_id: name for business_id, name in rows}
    assert names[world.ids["ChIJ-expired"]] == "Expired Bakery & Co"  # its own site's
    assert names[world.ids["ChIJ-closed"]] == "closed.example"  # its site's host
    assert names[world.ids["ChIJ-ancient"]] == "The Ancient Gazette"  # not Google's name
    assert names[world.ids["ChIJ-aging"]] == "aging"  # its listing is not expired


def test_the_worker_refuses_keep_unacknowledged_in_one_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PLACES_CONTENT_POLICY": "keep",
        "PLACES_CONTENT_POLICY_ACKNOWLEDGED": "false",
    }
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "worker.py")],
        cwd=tmp_path,  # no .env here
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: invalid settings: PLACES_CONTENT_POLICY=keep")
    assert "PLACES_CONTENT_POLICY_ACKNOWLEDGED=true" in result.stderr
