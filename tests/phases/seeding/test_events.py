"""Update and tombstone events (sync_business_events) on real Postgres: a closed, moved,
not-found or purged business's rows become tombstones that carry nothing of Google's but
the place id, a changed business's rows an update at the next version, and a second call
changes nothing."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import ActivityEnvironment

from activities.seeding import SeedingActivities
from rollout.db.models import Business, CollectionMethod, NewsSource, PlatformOutbox
from rollout.phase_settings import PhaseSettings
from rollout.phases.seeding.events import EventCounts, sync_business_events
from rollout.retention import purge_expired
from tests.support.phase_fixtures import Seeded, add_business, seed_rollout

Key = tuple[str, str, int]
TOMBSTONE_KEYS = {"schema", "event", "place_id", "reason", "moved_to_place_id"}


async def _outbox(seeded: Seeded) -> dict[Key, PlatformOutbox]:
    async with seeded.sessions() as session:
        rows = (await session.scalars(select(PlatformOutbox))).all()
    return {(r.platform, r.entity_type, r.entity_id): r for r in rows}


async def _seed_phase6(seeded: Seeded) -> None:
    acts = SeedingActivities(seeded.sessions, PhaseSettings())
    try:
        await ActivityEnvironment().run(acts.seed_platforms, seeded.phase_input())
    finally:
        await acts.aclose()


async def _set(seeded: Seeded, business_id: int, **values: Any) -> None:
    async with seeded.sessions.begin() as session:
        await session.execute(update(Business).where(Business.id == business_id).values(**values))


async def _sync(seeded: Seeded, ids: list[int]) -> EventCounts:
    async with seeded.sessions.begin() as session:
        return await sync_business_events(session, ids)


async def test_events_for_changed_closed_moved_and_purged_businesses(engine: AsyncEngine) -> None:
    seeded = await seed_rollout(engine)
    phone = "(302) 555-0100"
    ids = {
        "open": await add_business(seeded, "p-open", "Open Cafe", phone=phone),
        "quiet": await add_business(seeded, "p-quiet", "Quiet Place"),
        "shut": await add_business(seeded, "p-shut", "Shut Shop", phone="(302) 555-0111"),
        "moved": await add_business(seeded, "p-moved", "Moved Bakery"),
        "gone": await add_business(seeded, "p-gone", "Gone Diner"),
        "purged": await add_business(
            seeded, "p-purged", "Purged Books", website="http://books.example/", phone=phone
        ),
    }
    async with seeded.sessions.begin() as session:
        source = (
            await session.execute(
                insert(NewsSource)
                .values(business_id=ids["purged"], community_id=seeded.community_id, name="Books")
                .returning(NewsSource.id)
            )
        ).scalar_one()
        await session.execute(
            insert(CollectionMethod).values(
                news_source_id=source, method="ical", url="http://books.example/c.ics"
            )
        )
    # Its listing was fetched 40 days ago: the retention purge takes it after phase 6.
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    await _set(seeded, ids["purged"], places_fetched_at=old, first_seen_at=old)
    await _seed_phase6(seeded)
    before = await _outbox(seeded)
    assert len(before) == 3 + 2 + 3 + 2 + 2 + 4
    assert {r.version for r in before.values()} == {1}

    # What the retention run learns; and one business changes its phone.
    now = dt.datetime.now(dt.UTC)
    await _set(seeded, ids["shut"], closed_at=now, closed_reason="closed_permanently")
    await _set(
        seeded, ids["moved"], closed_at=now, closed_reason="moved", moved_to_place_id="p-new"
    )
    await _set(seeded, ids["gone"], closed_at=now, closed_reason="not_found")
    await _set(seeded, ids["open"], national_phone_number="(302) 555-0199")
    async with seeded.sessions.begin() as session:
        assert await purge_expired(session, now) == 1
    # Seeded after phase 6 ran and closed since: it has no rows and gets none.
    never = await add_business(seeded, "p-never", "Never Seeded")
    await _set(seeded, never, closed_at=now, closed_reason="closed_permanently")

    counts = await _sync(seeded, [*ids.values(), never])
    assert counts == EventCounts(updates=3, tombstones=11, unchanged=2)
    after = await _outbox(seeded)
    assert set(after) == set(before)  # no row for the business never seeded

    def rows_of(name: str) -> list[PlatformOutbox]:
        business = ids[name]
        return [
            r
            for k, r in after.items()
            if (k[1], k[2]) == ("business", business)
            or (name == "purged" and k == ("goeventcity", "news_source", source))
        ]

    google = ["Shut Shop", "Moved Bakery", "Gone Diner", "Purged Books", "Main St", "555-01"]
    expected = {"shut": "closed", "moved": "moved", "gone": "not_found", "purged": "purged"}
    for name, reason in expected.items():
        for row in rows_of(name):
            assert (row.event, row.version, row.status) == ("tombstone", 2, "pending")
            assert set(row.payload) == TOMBSTONE_KEYS
            assert row.payload["schema"] == f"{row.platform}.tombstone/1"
            assert row.payload["reason"] == reason
            assert row.payload["place_id"] == f"p-{name}"
            text = json.dumps(row.payload)
            assert not [g for g in google if g in text], text
            assert "latitude" not in text
            assert "books.example" not in text
    assert {r.payload["moved_to_place_id"] for r in rows_of("moved")} == {"p-new"}
    assert {r.payload["moved_to_place_id"] for r in rows_of("shut")} == {None}
    for row in rows_of("open"):
        assert (row.event, row.version, row.status) == ("upsert", 2, "pending")
        assert row.payload["phone"] == "(302) 555-0199"
        assert (
            row.payload["schema"]
            == before[(row.platform, "business", ids["open"])].payload["schema"]
        )
    for row in rows_of("quiet"):
        assert (row.event, row.version) == ("upsert", 1)
        assert row.updated_at == before[(row.platform, "business", ids["quiet"])].updated_at

    # Idempotent: a second call, and phase 6 run again, change nothing.
    assert await _sync(seeded, [*ids.values(), never]) == EventCounts(unchanged=16)
    await _seed_phase6(seeded)
    again = await _outbox(seeded)
    assert {k: (r.version, r.event, r.updated_at) for k, r in again.items()} == {
        k: (r.version, r.event, r.updated_at) for k, r in after.items()
    }


async def test_a_listing_fetched_again_after_its_purge_is_an_update(engine: AsyncEngine) -> None:
    seeded = await seed_rollout(engine)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    business = await add_business(seeded, "p-back", "Back Again")
    await _set(seeded, business, places_fetched_at=old, first_seen_at=old)
    await _seed_phase6(seeded)
    async with seeded.sessions.begin() as session:
        await purge_expired(session, dt.datetime.now(dt.UTC))
    assert await _sync(seeded, [business]) == EventCounts(tombstones=2)

    # A later rollout buys the listing again: the platforms get it back, at version 3.
    await _set(
        seeded,
        business,
        name="Back Again",
        formatted_address="2 Main St",
        places_fetched_at=dt.datetime.now(dt.UTC),
    )
    assert await _sync(seeded, [business]) == EventCounts(updates=2)
    rows = await _outbox(seeded)
    assert {(r.event, r.version, r.payload["name"]) for r in rows.values()} == {
        ("upsert", 3, "Back Again")
    }


async def test_phase6_sends_tombstones_for_what_closed_since_it_last_ran(
    engine: AsyncEngine,
) -> None:
    """A rollout run again after a retention run that did not tell the outbox (or before
    it): phase 6 turns the rows of closed and purged businesses into tombstones itself,
    rather than sending them as listings with their Google content gone."""
    seeded = await seed_rollout(engine)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    purged = await add_business(seeded, "p-stale", "Stale Listing")
    closed = await add_business(seeded, "p-shut", "Shut For Good")
    await _set(seeded, purged, places_fetched_at=old, first_seen_at=old)
    await _seed_phase6(seeded)
    now = dt.datetime.now(dt.UTC)
    async with seeded.sessions.begin() as session:
        assert await purge_expired(session, now) == 1
    await _set(seeded, closed, closed_at=now, closed_reason="closed_permanently")

    acts = SeedingActivities(seeded.sessions, PhaseSettings())
    try:
        result = await ActivityEnvironment().run(acts.seed_platforms, seeded.phase_input())
    finally:
        await acts.aclose()
    assert result.counts["outbox_tombstones"] == 4
    assert result.counts["outbox_rows"] == 0  # nothing else is built for them
    rows = await _outbox(seeded)
    assert {(k[2], r.event, r.version, r.payload["reason"]) for k, r in rows.items()} == {
        (purged, "tombstone", 2, "purged"),
        (closed, "tombstone", 2, "closed"),
    }
