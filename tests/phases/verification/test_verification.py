"""Phase 5 (verification) on real Postgres: findings, flags, thresholds, idempotency."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.verification import VerificationActivities
from rollout.communities import load_communities
from rollout.db.models import (
    Business,
    CommunityRollout,
    CommunityRolloutPhase,
    WebsiteScan,
)
from rollout.phase_settings import PhaseSettings
from rollout.phases.verification.report import (
    BusinessFacts,
    find_duplicates,
    names_similar,
    normalise_address,
    normalise_name,
)
from tests.support.phase_fixtures import Seeded, add_business, seed_rollout


def settings(**overrides: Any) -> PhaseSettings:
    values: dict[str, Any] = {"verify_expected_categories": ["restaurant", "cafe", "florist"]}
    values.update(overrides)
    return PhaseSettings(**values)


def test_normalisation_and_similarity() -> None:
    assert normalise_name("Joe's Diner, LLC") == normalise_name("The JOES diner")
    assert normalise_name("Café Olé & Co.") == "cafe ole and"
    assert normalise_address("12 Main Street, Suite 4, Dover, DE 19901, USA") == (
        normalise_address("12 MAIN ST., STE 4, Dover, DE 19901")
    )
    assert names_similar("corner cafe", "the corner cafe bakery")
    assert not names_similar("corner cafe", "main street books")


def _facts(i: int, name: str, lat: float, lng: float, address: str = "") -> BusinessFacts:
    return BusinessFacts(
        i, name, address, lat, lng, "cafe", ("cafe",), "OPERATIONAL", None, False, None
    )


def test_duplicates_group_transitively_and_ignore_distant_namesakes() -> None:
    metre = 1 / 111_320
    groups = find_duplicates(
        [
            _facts(1, "Corner Cafe", 39.0, -75.0),
            _facts(2, "Corner Café", 39.0 + 20 * metre, -75.0),
            _facts(3, "The Corner Cafe", 39.0 + 45 * metre, -75.0),  # 25 m from #2
            _facts(4, "Corner Cafe", 39.0 + 400 * metre, -75.0),  # a namesake far away
            _facts(5, "Bookshop", 39.0 + 5 * metre, -75.0),  # close, different name
        ],
        30.0,
    )
    assert groups == [
        {"canonical": 1, "business_ids": [1, 2, 3], "reasons": ["similar_name_within_30m"]}
    ]


async def _seed_findings(seeded: Seeded) -> dict[str, int]:
    ids = {
        "joes": await add_business(
            seeded, "p-joes", "Joe's Diner", address="12 Main Street, Dover, DE 19901, USA"
        ),
        "joes-dup": await add_business(
            seeded,
            "p-joes2",
            "Joes Diner LLC",
            address="12 Main St., Dover, DE 19901",
            offset_m=(300, 0),  # far apart, but the same name and address
        ),
        "cafe": await add_business(
            seeded,
            "p-cafe",
            "Corner Cafe",
            address="40 Loockerman St, Dover",
            offset_m=(1000, 0),
            primary_type="cafe",
        ),
        "cafe-dup": await add_business(
            seeded,
            "p-cafe2",
            "Corner Café",
            address="42 Loockerman Street, Dover",
            offset_m=(1020, 0),
            primary_type="cafe",
        ),
        "far": await add_business(seeded, "p-far", "Far Away Shop", offset_m=(20_000, 0)),
        "closed": await add_business(
            seeded, "p-closed", "Old Mill", offset_m=(0, 500), business_status="CLOSED_PERMANENTLY"
        ),
        "no-address": await add_business(seeded, "p-noaddr", "Nowhere", address=None),
        "no-location": await add_business(seeded, "p-noloc", "Ghost", located=False),
        "site-ok": await add_business(
            seeded, "p-ok", "Good Site", website="http://ok.example/", offset_m=(0, 900)
        ),
        "site-down": await add_business(
            seeded, "p-down", "Bad Site", website="http://down.example/", offset_m=(0, 1300)
        ),
    }
    async with seeded.sessions.begin() as session:
        await session.execute(
            insert(WebsiteScan),
            [
                {"business_id": ids["site-ok"], "url": "http://ok.example/", "status": "ok"},
                {
                    "business_id": ids["site-down"],
                    "url": "http://down.example/",
                    "status": "timeout",
                },
            ],
        )
    return ids


async def _report(seeded: Seeded, cr_id: int | None = None) -> dict[str, Any]:
    async with seeded.sessions() as session:
        cr = await session.get(CommunityRollout, cr_id or seeded.community_rollout_id)
        assert cr is not None
        assert cr.verification_report is not None
        return cr.verification_report


async def test_phase5_reports_flags_and_is_idempotent(engine: AsyncEngine) -> None:
    seeded = await seed_rollout(engine)
    ids = await _seed_findings(seeded)
    acts = VerificationActivities(seeded.sessions, settings())
    env = ActivityEnvironment()
    first = await env.run(acts.verify, seeded.phase_input())
    report_one = await _report(seeded)
    second = await env.run(acts.verify, seeded.phase_input())
    report_two = await _report(seeded)

    assert first.counts == second.counts
    assert {k: v for k, v in report_one.items() if k != "generated_at"} == {
        k: v for k, v in report_two.items() if k != "generated_at"
    }
    report = report_two
    assert report["passed"] is True
    assert report["businesses"] == len(ids)
    groups = {tuple(g["business_ids"]): g["reasons"] for g in report["duplicates"]["group_list"]}
    assert groups == {
        (ids["joes"], ids["joes-dup"]): ["same_name_and_address"],
        (ids["cafe"], ids["cafe-dup"]): ["similar_name_within_30m"],
    }
    assert report["outside_region"]["business_ids"] == [ids["far"]]
    assert report["closed"]["closed_permanently"] == [ids["closed"]]
    assert report["missing_fields"]["formatted_address"]["business_ids"] == [ids["no-address"]]
    assert report["missing_fields"]["location"]["business_ids"] == [ids["no-location"]]
    assert report["categories"]["empty"] == ["florist"]
    assert report["websites"] | {"by_status": None} == {
        "with_website": 2,
        "scanned": 2,
        "unreachable": 1,
        "blocked": 0,
        "robots_disallowed": 0,
        "by_status": None,
    }
    assert report["rates"]["unreachable_website_rate"] == 0.5
    flags = report["flags"]
    assert flags[str(ids["joes-dup"])] == [f"duplicate_of:{ids['joes']}"]
    assert flags[str(ids["far"])] == ["outside_region"]
    assert flags[str(ids["site-down"])] == ["website_unreachable"]
    assert str(ids["joes"]) not in flags  # the canonical one is not flagged

    # Flag, never delete: every business is still there, unchanged.
    async with seeded.sessions() as session:
        remaining = (await session.scalars(select(Business.id))).all()
    assert sorted(remaining) == sorted(ids.values())
    async with seeded.sessions() as session:
        phase = (await session.scalars(select(CommunityRolloutPhase))).one()
    assert (phase.phase, phase.status, phase.attempts) == (5, "completed", 2)


async def test_phase5_thresholds_fail_the_phase_with_the_report_stored(
    engine: AsyncEngine,
) -> None:
    seeded = await seed_rollout(engine)
    await _seed_findings(seeded)
    env = ActivityEnvironment()
    strict = VerificationActivities(
        seeded.sessions, settings(verify_max_unreachable_rate=0.25, verify_min_businesses=20)
    )
    with pytest.raises(ApplicationError) as failed:
        await env.run(strict.verify, seeded.phase_input())
    assert failed.value.type == "PhaseThresholdFailed"
    assert failed.value.non_retryable
    assert "10 businesses found, at least 20 required" in failed.value.message
    assert "unreachable_website_rate 50.00% is above the maximum 25.00%" in failed.value.message
    report = await _report(seeded)
    assert report["passed"] is False
    assert len(report["failures"]) == 2

    # A community where discovery found nothing fails with the default thresholds.
    wilmington = next(r for r in load_communities("DE") if r.name == "Wilmington")
    async with seeded.sessions.begin() as session:
        empty = CommunityRollout(
            state_rollout_id=seeded.rollout_id, community_id=wilmington.id, position=2
        )
        session.add(empty)
        await session.flush()
        empty_id = empty.id
    with pytest.raises(ApplicationError, match="0 businesses found"):
        await env.run(
            VerificationActivities(seeded.sessions, settings()).verify,
            seeded.phase_input(community_rollout_id=empty_id, community_id=wilmington.id),
        )
    assert (await _report(seeded, empty_id))["businesses"] == 0
    async with seeded.sessions() as session:
        statuses = (
            await session.execute(
                select(CommunityRolloutPhase.community_rollout_id, CommunityRolloutPhase.status)
            )
        ).all()
    assert sorted(tuple(s) for s in statuses) == sorted(
        [(seeded.community_rollout_id, "failed"), (empty_id, "failed")]
    )
