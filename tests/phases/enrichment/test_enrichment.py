"""Phase 4 (Pro enrichment) against the Places emulator on real Postgres.

The emulator bills every answered request by the SKU of its field mask with the project's
own pricing, so its bill is the check that our usage log is exact, also across a failure
and a retry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.billing import BillingLog
from activities.enrichment import EnrichmentActivities
from rollout.db.models import Business, CommunityRolloutPhase, RolloutApiUsage
from rollout.db.usage_spool import UsageSpool
from rollout.payloads import PhaseInput, PhaseResult
from rollout.phase_settings import PhaseSettings
from rollout.phases.enrichment.payloads import EnrichmentFinish, EnrichRequest, EnrichTargetsRequest
from rollout.places.client import PlacesClient
from tests.support.phase_fixtures import Seeded, add_business, seed_rollout

if TYPE_CHECKING:
    from tests.support.places_fixtures import Sim

pytest_plugins = ["tests.support.places_fixtures"]

SKU = "Place Details Enterprise"
PRICE = Decimal("0.02")  # $20 per 1,000


@contextlib.asynccontextmanager
async def activities(
    seeded: Seeded,
    sim: Sim,
    key: str = "test-key",
    *,
    spool: Path | None = None,
    client_timeout_s: float = 5.0,
) -> AsyncIterator[EnrichmentActivities]:
    settings = PhaseSettings(enrichment_fresh_days=30, phase_heartbeat_s=0.2)
    billing = BillingLog(seeded.sessions, UsageSpool(spool or Path("/nonexistent/spool")))
    async with PlacesClient(sim.base_url, SecretStr(key), timeout=client_timeout_s) as client:
        yield EnrichmentActivities(seeded.sessions, client, settings, billing)


async def run_phase4(
    acts: EnrichmentActivities, env: ActivityEnvironment, phase: PhaseInput, page_size: int = 3
) -> PhaseResult:
    """Phase 4 activity by activity, as CommunityEnrichmentWorkflow runs it (that workflow
    is exercised on a real Temporal server in test_rollout_workflows.py)."""
    after, fresh, outcomes = 0, 0, Counter[str]()
    while True:
        page = await env.run(
            acts.targets,
            EnrichTargetsRequest(
                community_rollout_id=phase.community_rollout_id,
                community_id=phase.community_id,
                after_business_id=after,
                limit=page_size,
            ),
        )
        fresh += page.fresh or 0
        for business_id in page.business_ids:
            request = EnrichRequest(
                community_rollout_id=phase.community_rollout_id, business_id=business_id
            )
            outcomes[(await env.run(acts.places_enrich, request)).outcome] += 1
        if len(page.business_ids) < page_size:
            break
        after = page.business_ids[-1]
    finish = EnrichmentFinish(
        phase=phase,
        enriched=outcomes["enriched"],
        fresh=fresh + outcomes["fresh"],
        not_found=outcomes["not_found"],
    )
    return await env.run(acts.finish, finish)


async def seed_from_truth(seeded: Seeded, sim: Sim) -> dict[str, Any]:
    """Six businesses with websites (one of them fresh, one stale), one without, one whose
    place id the API no longer knows."""
    truth = sim.community(seeded.community_id)["businesses"]
    with_site = [b for b in truth if b["website_uri"]][:6]
    without = next(b for b in truth if not b["website_uri"])
    now = dt.datetime.now(dt.UTC)
    ids: dict[str, Any] = {"targets": [], "truth": {}}
    for i, b in enumerate(with_site):
        enriched_at = None
        if i == 4:
            enriched_at = now - dt.timedelta(days=2)  # fresh: not paid for again
        elif i == 5:
            enriched_at = now - dt.timedelta(days=40)  # stale: enriched again
        business_id = await add_business(
            seeded, b["place_id"], b["name"], website=b["website_uri"], enriched_at=enriched_at
        )
        ids["truth"][business_id] = b
        if i != 4:
            ids["targets"].append(business_id)
        else:
            ids["fresh"] = business_id
    ids["without"] = await add_business(seeded, without["place_id"], without["name"])
    ids["unknown"] = await add_business(
        seeded, "ChIJnotAPlaceAnyMore0000", "Gone", website="http://gone.example/"
    )
    return ids


async def usage(seeded: Seeded) -> tuple[int, Decimal, set[str]]:
    async with seeded.sessions() as session:
        rows = (await session.execute(select(RolloutApiUsage))).scalars().all()
    return len(rows), sum((r.cost for r in rows), Decimal(0)), {r.sku for r in rows}


async def test_phase4_enriches_bills_exactly_and_skips_fresh(engine: AsyncEngine, sim: Sim) -> None:
    seeded = await seed_rollout(engine)
    ids = await seed_from_truth(seeded, sim)
    env = ActivityEnvironment()
    async with activities(seeded, sim) as acts:
        first = await run_phase4(acts, env, seeded.phase_input())
        billed_first = sim.billing()
        second = await run_phase4(acts, env, seeded.phase_input())

    targets = len(ids["targets"])
    assert first.counts == {
        "businesses_enriched": targets,
        "enrichment_fresh_skipped": 1,
        "enrichment_not_found": 1,
        "site_profiles": 0,  # no website was scanned here
    }
    assert first.cost_usd == PRICE * targets
    # The second run pays for nothing: everything is fresh now.
    assert second.counts["businesses_enriched"] == 0
    assert second.counts["enrichment_fresh_skipped"] == targets + 1
    assert second.cost_usd == first.cost_usd
    billed = sim.billing()
    # Only the obsolete place id is asked again (a 404 is not billed).
    assert (billed["skus"], billed["total_cost"]) == (
        billed_first["skus"],
        billed_first["total_cost"],
    )
    assert billed["skus"] == {SKU: {"requests": targets, "cost": str(PRICE * targets)}}
    count, cost, skus = await usage(seeded)
    assert (count, cost, skus) == (targets, Decimal(billed["total_cost"]), {SKU})

    async with seeded.sessions() as session:
        rows = {b.id: b for b in (await session.scalars(select(Business))).all()}
    for business_id in ids["targets"]:
        row = rows[business_id]
        truth = ids["truth"][business_id]
        assert row.enriched_at is not None
        assert row.enrichment is not None
        assert row.enrichment["id"] == truth["place_id"]
        # The raw answer is kept, with the fields the typed Place model does not carry.
        assert row.enrichment.get("internationalPhoneNumber") == truth["international_phone_number"]
        assert row.national_phone_number == truth["national_phone_number"]
    assert rows[ids["fresh"]].enrichment is None
    assert rows[ids["without"]].enriched_at is None
    async with seeded.sessions() as session:
        status = await session.scalar(
            select(CommunityRolloutPhase.status).where(CommunityRolloutPhase.phase == 4)
        )
    assert status == "completed"


async def test_places_enrich_retry_pays_only_for_what_was_not_stored(
    engine: AsyncEngine, sim: Sim
) -> None:
    seeded = await seed_rollout(engine)
    ids = await seed_from_truth(seeded, sim)
    first, third = ids["targets"][0], ids["targets"][2]
    where = ids["truth"][third]["location"]
    sim.configure(fail_near=[{"lat": where["latitude"], "lng": where["longitude"], "radius_m": 1}])
    env = ActivityEnvironment()

    def request(business_id: int) -> EnrichRequest:
        return EnrichRequest(
            community_rollout_id=seeded.community_rollout_id, business_id=business_id
        )

    async with activities(seeded, sim) as acts:
        assert (await env.run(acts.places_enrich, request(first))).outcome == "enriched"
        with pytest.raises(ApplicationError) as failed:
            await env.run(acts.places_enrich, request(third))
        assert failed.value.type == "ServerError"
        assert not failed.value.non_retryable
        sim.configure(fail_near=[])
        # Attempt 2 of each: the stored one is fresh (no request), the failed one is made.
        env.info = dataclasses.replace(env.info, attempt=2)
        assert (await env.run(acts.places_enrich, request(first))).outcome == "fresh"
        retried = await env.run(acts.places_enrich, request(third))
    assert (retried.outcome, retried.cost_usd) == ("enriched", PRICE)
    billed = sim.billing()
    count, cost, _ = await usage(seeded)
    assert count == billed["total_requests"] == 2
    assert cost == Decimal(billed["total_cost"]) == PRICE * 2


@pytest.mark.parametrize(
    ("config", "key", "error_type", "retryable"),
    [
        ({"disabled": True}, "test-key", "PlacesAccessError", False),
        ({}, "invalid", "PlacesAccessError", False),
        ({"qpd": 1}, "test-key", "PlacesDailyQuotaError", False),
        ({"qpm": 1}, "test-key", "QuotaExceededError", True),
    ],
)
async def test_phase4_maps_places_errors(
    engine: AsyncEngine,
    sim: Sim,
    config: dict[str, Any],
    key: str,
    error_type: str,
    retryable: bool,
) -> None:
    seeded = await seed_rollout(engine)
    await seed_from_truth(seeded, sim)
    sim.configure(**config)
    with pytest.raises(ApplicationError) as failed:
        async with activities(seeded, sim, key) as acts:
            await run_phase4(acts, ActivityEnvironment(), seeded.phase_input())
    assert failed.value.type == error_type
    assert failed.value.non_retryable is not retryable
    if retryable:
        assert failed.value.next_retry_delay is not None
        assert failed.value.next_retry_delay >= dt.timedelta(seconds=30)
    # Whatever was answered before the error is logged, and only that.
    count, _, _ = await usage(seeded)
    assert count == sim.billing()["total_requests"]


async def test_broken_and_lost_details_are_logged_as_billed(engine: AsyncEngine, sim: Sim) -> None:
    seeded = await seed_rollout(engine)
    ids = await seed_from_truth(seeded, sim)
    env = ActivityEnvironment()
    request = EnrichRequest(
        community_rollout_id=seeded.community_rollout_id, business_id=ids["targets"][0]
    )
    async with activities(seeded, sim, client_timeout_s=0.5) as acts:
        sim.configure(malformed_rate=1.0)
        with pytest.raises(ApplicationError):
            await env.run(acts.places_enrich, request)
        sim.configure(malformed_rate=0.0, timeout_rate=1.0, hang_s=3.0)
        env.info = dataclasses.replace(env.info, attempt=2)
        with pytest.raises(ApplicationError):
            await env.run(acts.places_enrich, request)
    async with seeded.sessions() as session:
        rows = (await session.scalars(select(RolloutApiUsage))).all()
    assert sorted((r.outcome, r.http_status, r.cost) for r in rows) == [
        ("malformed", 200, PRICE),
        ("timeout", None, PRICE),
    ]
    billed = sim.billing()
    assert billed["total_requests"] == 2
    assert Decimal(billed["total_cost"]) == PRICE * 2
