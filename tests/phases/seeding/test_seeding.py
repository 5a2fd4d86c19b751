"""Phase 6 (cross-platform seeding) on real Postgres with a local webhook receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import ActivityEnvironment

from activities.seeding import SeedingActivities
from rollout.communities import load_communities
from rollout.db.models import (
    Business,
    CollectionMethod,
    CommunityRollout,
    CommunityRolloutPhase,
    NewsSource,
    PlatformOutbox,
    WebsiteScan,
)
from rollout.phase_settings import PhaseSettings
from rollout.phases.seeding.webhooks import sign, verify_signature
from rollout.status import Platform
from tests.support.phase_fixtures import Seeded, add_business, seed_rollout
from tests.support.platform_receiver import PlatformReceiver, platform_receiver

SECRET = "webhook-secret-for-tests"


async def _seed(seeded: Seeded) -> dict[str, int]:
    ids = {
        "shop": await add_business(
            seeded,
            "p-shop",
            "Shop",
            website="http://shop.example/",
            phone="(302) 555-0100",
        ),
        "quiet": await add_business(seeded, "p-quiet", "Quiet Place"),
    }
    # A business of the overlap, found first by another town: that town seeds it.
    other = next(r for r in load_communities("DE") if r.name == "Wilmington")
    neighbour = await add_business(seeded, "p-neighbour", "Neighbour", phone="1")
    async with seeded.sessions.begin() as session:
        await session.execute(
            update(Business).where(Business.id == neighbour).values(community_id=other.id)
        )
        source_id = (
            await session.execute(
                insert(NewsSource)
                .values(business_id=ids["shop"], community_id=seeded.community_id, name="Shop")
                .returning(NewsSource.id)
            )
        ).scalar_one()
        await session.execute(
            insert(CollectionMethod),
            [
                {"news_source_id": source_id, "method": "rss", "url": "http://shop.example/feed"},
                {"news_source_id": source_id, "method": "ical", "url": "http://shop.example/c.ics"},
                {
                    "news_source_id": source_id,
                    "method": "html",
                    "url": "http://shop.example/events",
                },
            ],
        )
        await session.execute(
            insert(WebsiteScan).values(
                business_id=ids["shop"],
                url="http://shop.example/",
                status="ok",
                found={"event_pages": [{"url": "http://shop.example/events"}]},
            )
        )
        await session.execute(
            update(CommunityRollout)
            .where(CommunityRollout.id == seeded.community_rollout_id)
            .values(verification_report={"flags": {str(ids["quiet"]): ["missing:website"]}})
        )
    ids["source"] = source_id
    return ids


async def _outbox(seeded: Seeded) -> dict[tuple[str, str, int], PlatformOutbox]:
    async with seeded.sessions() as session:
        rows = (await session.scalars(select(PlatformOutbox))).all()
    return {(r.platform, r.entity_type, r.entity_id): r for r in rows}


async def test_phase6_outbox_without_webhooks_is_idempotent(engine: AsyncEngine) -> None:
    seeded = await seed_rollout(engine)
    ids = await _seed(seeded)
    acts = SeedingActivities(seeded.sessions, PhaseSettings())
    env = ActivityEnvironment()
    try:
        first = await env.run(acts.seed_platforms, seeded.phase_input())
        rows_first = await _outbox(seeded)
        second = await env.run(acts.seed_platforms, seeded.phase_input())
        rows_second = await _outbox(seeded)
    finally:
        await acts.aclose()

    assert set(rows_first) == {
        ("downtownguide", "business", ids["shop"]),
        ("downtownguide", "business", ids["quiet"]),
        ("alphasite", "business", ids["shop"]),
        ("alphasite", "business", ids["quiet"]),
        ("crm", "business", ids["shop"]),  # the quiet place cannot be contacted
        ("goeventcity", "news_source", ids["source"]),
    }
    assert first.counts["outbox_created"] == 6
    assert second.counts["outbox_created"] == second.counts["outbox_changed"] == 0
    assert second.counts["outbox_pending"] == 6
    assert {k: r.updated_at for k, r in rows_first.items()} == {
        k: r.updated_at for k, r in rows_second.items()
    }
    event = rows_second[("goeventcity", "news_source", ids["source"])].payload
    assert (event["calendars"], event["event_pages"]) == (
        ["http://shop.example/c.ics"],
        ["http://shop.example/events"],
    )
    listing = rows_second[("downtownguide", "business", ids["quiet"])].payload
    assert listing["verification_flags"] == ["missing:website"]
    assert listing["community"]["id"] == seeded.community_id
    async with seeded.sessions() as session:
        phase = (await session.scalars(select(CommunityRolloutPhase))).one()
    assert (phase.phase, phase.status) == (6, "completed")


@pytest.fixture
async def receiver() -> AsyncIterator[PlatformReceiver]:
    """DowntownGuide fails once per event then accepts, the CRM accepts, GoEventCity
    rejects (400), AlphaSite is down (503)."""
    async with platform_receiver(SECRET) as running:
        running.behaviour |= {
            "downtownguide": "flaky",
            "crm": "ok",
            "goeventcity": "reject",
            "alphasite": "down",
        }
        yield running


async def test_phase6_delivers_signed_webhooks_with_retries(
    engine: AsyncEngine, receiver: PlatformReceiver
) -> None:
    seeded = await seed_rollout(engine)
    ids = await _seed(seeded)
    settings = PhaseSettings(
        platform_webhook_urls=receiver.urls(),
        platform_webhook_secret=SecretStr(SECRET),
        platform_webhook_attempts_per_run=2,
        platform_webhook_max_attempts=3,
        phase_heartbeat_s=0.2,
    )
    acts = SeedingActivities(seeded.sessions, settings, backoff_s=0.01)
    env = ActivityEnvironment()
    try:
        first = await env.run(acts.seed_platforms, seeded.phase_input())
        requests_first = len(receiver.server.requests)
        rows = await _outbox(seeded)
        second = await env.run(acts.seed_platforms, seeded.phase_input())
        rows_after = await _outbox(seeded)

        assert receiver.bad_signatures == 0
        # DowntownGuide: each delivery failed once (503) and was retried; CRM at once.
        assert sorted((a["platform"], a["entity_id"]) for a in receiver.applied) == sorted(
            [("downtownguide", ids["shop"]), ("downtownguide", ids["quiet"]), ("crm", ids["shop"])]
        )
        assert first.counts["delivered_now"] == 3
        states = {k: (r.status, r.attempts, r.delivered_at is not None) for k, r in rows.items()}
        assert states[("downtownguide", "business", ids["shop"])] == ("delivered", 2, True)
        assert states[("crm", "business", ids["shop"])] == ("delivered", 1, True)
        assert states[("goeventcity", "news_source", ids["source"])] == ("failed", 1, False)
        assert states[("alphasite", "business", ids["quiet"])] == ("pending", 2, False)
        # Left to the relay, once their backoff has passed; no sender holds them now.
        down = rows[("alphasite", "business", ids["quiet"])]
        assert down.next_attempt_at is not None
        assert down.next_attempt_at > down.updated_at
        assert all(r.claimed_until is None for r in rows.values())
        assert {r.version for r in rows.values()} == {1}
        assert "HTTP 400" in (rows[("goeventcity", "news_source", ids["source"])].last_error or "")

        # Second run: nothing delivered is sent again; the one still pending is retried
        # and, past PLATFORM_WEBHOOK_MAX_ATTEMPTS, marked failed.
        assert second.counts["delivered_now"] == 0
        assert second.counts["outbox_created"] == 0
        assert len(receiver.server.requests) == requests_first + 4  # 2 alphasite rows x 2
        assert rows_after[("alphasite", "business", ids["quiet"])].status == "failed"
        assert rows_after[("alphasite", "business", ids["quiet"])].attempts == 4
        assert second.counts["outbox_delivered"] == 3
        assert second.counts["outbox_failed"] == 3

        # A changed business makes its rows pending again, and they are delivered anew.
        async with seeded.sessions.begin() as session:
            await session.execute(
                update(Business)
                .where(Business.id == ids["shop"])
                .values(national_phone_number="(302) 555-0199")
            )
        third = await env.run(acts.seed_platforms, seeded.phase_input())
        assert third.counts["outbox_changed"] == 3  # listing, page and contact of the shop
        assert third.counts["delivered_now"] == 2  # DowntownGuide and CRM accept it
        assert [a["payload"]["phone"] for a in receiver.applied[-2:]] == ["(302) 555-0199"] * 2
    finally:
        await acts.aclose()


def test_webhook_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "PLATFORM_WEBHOOK_URLS", "crm=https://crm.example/hook, alphasite=http://a/h"
    )
    with pytest.raises(ValueError, match="PLATFORM_WEBHOOK_SECRET is required"):
        PhaseSettings(_env_file=None)
    monkeypatch.setenv("PLATFORM_WEBHOOK_SECRET", "s3cret")
    settings = PhaseSettings(_env_file=None)
    assert settings.platform_webhook_urls == {
        Platform.CRM: "https://crm.example/hook",
        Platform.ALPHASITE: "http://a/h",
    }
    assert "s3cret" not in repr(settings)
    monkeypatch.setenv("PLATFORM_WEBHOOK_URLS", '{"goeventcity": "https://gec.example/in"}')
    assert PhaseSettings(_env_file=None).platform_webhook_urls == {
        Platform.GOEVENTCITY: "https://gec.example/in"
    }
    monkeypatch.setenv("PLATFORM_WEBHOOK_URLS", "myspace=https://x")
    with pytest.raises(ValueError, match="myspace"):
        PhaseSettings(_env_file=None)


def test_a_replayed_delivery_is_refused() -> None:
    secret, body = b"s3cret", b'{"event": "business.upserted"}'
    stamp = 1_800_000_000
    header = sign(secret, stamp, body)
    assert verify_signature(secret, str(stamp), body, header, now=stamp + 10)
    # The same request captured and sent again ten minutes later, or from the future.
    assert not verify_signature(secret, str(stamp), body, header, now=stamp + 600)
    assert not verify_signature(secret, str(stamp), body, header, now=stamp - 600)
    # A fresh timestamp with the old signature does not pass either.
    assert not verify_signature(secret, str(stamp + 600), body, header, now=stamp + 600)
    assert not verify_signature(secret, "soon", body, header, now=stamp)
