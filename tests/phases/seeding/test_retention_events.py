"""The retention run tells the outbox (worker.py wires sync_business_events into it): on
the real stack (a worker process, Postgres, the Temporal dev server), a purged business's
platform rows become tombstones that carry none of Google's content, and a business whose
content is still fresh keeps its rows as they were."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from activities.retention import RetentionCounts, RetentionRun
from rollout.contract import ROLLOUT_TASK_QUEUE
from tests.support.rollout_harness import (
    RolloutEnv,
    emulator,  # noqa: F401 - fixture
    rollout_env,  # noqa: F401 - fixture
)
from workflows.retention import PlacesRetentionWorkflow

pytestmark = pytest.mark.integration


async def seeded_business(env: RolloutEnv, place_id: str, name: str, age_days: int) -> int:
    """A Dover business fetched `age_days` ago, with the listing and page phase 6 sent."""
    business_id: int = await env.write(
        """
        INSERT INTO businesses (place_id, community_id, name, formatted_address, latitude,
                                longitude, types, places_fetched_at, first_seen_at)
        SELECT :place_id, id, :name, '1 Loockerman St, Dover, DE', 39.16, -75.52, '{bakery}',
               now() - make_interval(days => :age), now() - make_interval(days => :age)
        FROM communities WHERE state_code = 'DE' AND name = 'Dover'
        RETURNING id
        """,
        place_id=place_id,
        name=name,
        age=age_days,
    )
    for platform in ("downtownguide", "alphasite"):
        payload = {
            "schema": f"{platform}.listing/1",
            "place_id": place_id,
            "name": name,
            "address": "1 Loockerman St, Dover, DE",
            "location": {"latitude": 39.16, "longitude": -75.52},
        }
        await env.write(
            "INSERT INTO platform_outbox (platform, entity_type, entity_id, payload, status) "
            "VALUES (:platform, 'business', :id, CAST(:payload AS jsonb), 'delivered') "
            "RETURNING id",
            platform=platform,
            id=business_id,
            payload=json.dumps(payload),
        )
    return business_id


async def test_a_purge_sends_tombstones_without_google_content(
    rollout_env: RolloutEnv,  # noqa: F811
) -> None:
    env = rollout_env
    expired = await seeded_business(env, "ChIJ-events-40", "Old Bakery", 40)
    fresh = await seeded_business(env, "ChIJ-events-10", "New Bakery", 10)
    handle = await env.client.start_workflow(
        PlacesRetentionWorkflow.run,
        RetentionRun(),
        id=f"places-retention-events-{uuid.uuid4().hex[:8]}",
        task_queue=ROLLOUT_TASK_QUEUE,
    )
    counts: RetentionCounts = await asyncio.wait_for(handle.result(), timeout=120)
    assert counts.purged == 1

    rows = await env.rows(
        "SELECT entity_id, platform, event, version, status, payload FROM platform_outbox"
    )
    assert len(rows) == 4
    for row in rows:
        if row.entity_id == fresh:
            assert (row.event, row.version, row.status) == ("upsert", 1, "delivered")
            assert row.payload["name"] == "New Bakery"
            continue
        assert row.entity_id == expired
        assert (row.event, row.version, row.status) == ("tombstone", 2, "pending")
        assert row.payload == {
            "schema": f"{row.platform}.tombstone/1",
            "event": "tombstone",
            "place_id": "ChIJ-events-40",
            "reason": "purged",
            "moved_to_place_id": None,
        }
