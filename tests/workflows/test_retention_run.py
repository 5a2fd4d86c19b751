"""PlacesRetentionWorkflow on the real stack (Postgres, the Temporal dev server, a worker
process, the Places emulator), with the clock moved by ageing the rows: a run under
`refresh` refreshes content 25-30 days old (billed and logged exactly as the emulator
bills), purges what is past 30 days, re-checks year-old place ids for free, and closes the
places Google says are gone or moved; a run that would pass its budget pauses until
resumed with a higher one."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from activities.retention import RetentionCounts, RetentionResume, RetentionRun
from rollout.contract import ROLLOUT_TASK_QUEUE
from tests.support.rollout_harness import (
    RolloutEnv,
    emulator,  # noqa: F401 - fixture
    rollout_env,  # noqa: F401 - fixture
)
from worker import WORKFLOWS, sandbox_runner
from workflows.retention import REQUESTS_AT_ONCE, PlacesRetentionWorkflow

pytestmark = pytest.mark.integration


async def dover_places(env: RolloutEnv, count: int) -> list[dict[str, Any]]:
    """`count` of the emulator's open Dover businesses with an address (a refresh of a
    closed one closes it; a service-area one has no address)."""
    dover = await env.scalar(
        "SELECT id FROM communities WHERE state_code = 'DE' AND name = 'Dover'"
    )
    world = env.emulator.get("/sim/world", community_id=dover)
    found = [
        b
        for b in world["businesses"]
        if b["formatted_address"] and b["business_status"] == "OPERATIONAL"
    ]
    assert len(found) >= count
    return found[:count]


async def add_business(
    env: RolloutEnv, place: dict[str, Any], age_days: int, *, profile: bool = False
) -> int:
    """A Dover business whose Google content was fetched `age_days` ago, as a stale copy
    (an old name), so a refresh shows."""
    business_id: int = await env.write(
        """
        INSERT INTO businesses (place_id, community_id, name, formatted_address, latitude,
                                longitude, types, enrichment, enriched_at, website_profile,
                                website_profile_at, places_fetched_at, first_seen_at)
        SELECT :place_id, id, 'Old name', :address, 39.16, -75.52, '{bakery}',
               '{"internationalPhoneNumber": "+1 302-555-0100"}',
               now() - make_interval(days => :age),
               CASE WHEN :profile THEN
                   '{"fields": {"telephone": {"value": "+1 302 555 0199", "source": "json-ld"}}}'
                   ::jsonb END,
               CASE WHEN :profile THEN now() END,
               now() - make_interval(days => :age), now() - make_interval(days => :age)
        FROM communities WHERE state_code = 'DE' AND name = 'Dover'
        RETURNING id
        """,
        place_id=place["place_id"],
        address=place["formatted_address"],
        age=age_days,
        profile=profile,
    )
    return business_id


async def start_run(
    env: RolloutEnv, run: RetentionRun | None = None
) -> WorkflowHandle[Any, RetentionCounts]:
    return await env.client.start_workflow(
        PlacesRetentionWorkflow.run,
        run or RetentionRun(),
        id=f"places-retention-test-{uuid.uuid4().hex[:8]}",
        task_queue=ROLLOUT_TASK_QUEUE,
    )


async def usage(env: RolloutEnv) -> tuple[int, Decimal]:
    row = (
        await env.rows(
            "SELECT count(*), coalesce(sum(cost), 0) FROM rollout_api_usage "
            "WHERE endpoint IN ('place_details_refresh', 'place_id_check')"
        )
    )[0]
    return int(row[0]), Decimal(row[1])


def bill(env: RolloutEnv) -> tuple[int, Decimal]:
    """The emulator's bill: every answer it made (the tests make no other request)."""
    stats = env.emulator.get("/sim/billing")
    return int(stats["total_requests"]), Decimal(stats["total_cost"])


async def test_refresh_purge_recheck_and_closures(rollout_env: RolloutEnv) -> None:  # noqa: F811
    env = rollout_env
    env.stop_worker(signal.SIGTERM)
    env.start_worker(PLACES_CONTENT_POLICY="refresh")
    places = await dover_places(env, 7)
    refreshed = await add_business(env, places[0], 27)
    expired = await add_business(env, places[1], 31, profile=True)
    moved = await add_business(env, places[2], 27)
    gone = await add_business(env, places[3], 27)
    ancient = await add_business(env, places[4], 400)
    ancient_gone = await add_business(env, places[5], 400)
    fresh = await add_business(env, places[6], 3)
    # Seeded to one platform earlier: each business's row there, delivered at version 1.
    for business_id in (refreshed, moved, gone, expired):
        await env.write(
            """
            INSERT INTO platform_outbox (platform, entity_type, entity_id, payload, status,
                                         event, version)
            VALUES ('downtownguide', 'business', :id, '{"name": "Old name"}', 'delivered',
                    'upsert', 1)
            RETURNING id
            """,
            id=business_id,
        )
    moved_to = "ChIJ" + "x" * 23
    env.emulator.post(
        "/sim/config",
        {
            "gone_places": [places[3]["place_id"], places[5]["place_id"]],
            "moved_places": {places[2]["place_id"]: moved_to},
        },
    )

    run = await start_run(env)
    counts = await asyncio.wait_for(run.result(), timeout=120)

    assert counts.policy == "refresh"
    assert counts.purged == 3  # the 31- and the two 400-day-old contents
    assert counts.refreshed == 1
    assert counts.moved == 1
    assert counts.not_found == 2  # one on its refresh, one on its id's re-check
    assert counts.confirmed == 1
    assert counts.failed == 0
    rows = {
        r.id: r
        for r in await env.rows(
            "SELECT id, place_id, name, latitude, places_fetched_at > now() - interval '1 hour'"
            " AS just_fetched, places_purged_at, place_id_checked_at, closed_reason,"
            " moved_to_place_id, website_profile, enrichment FROM businesses"
        )
    }
    assert rows[refreshed].name == places[0]["name"]
    assert rows[refreshed].just_fetched
    assert rows[refreshed].closed_reason is None
    assert rows[expired].name is None
    assert rows[expired].latitude is None
    assert rows[expired].enrichment is None
    assert rows[expired].website_profile is not None  # the business's own, kept
    assert rows[moved].closed_reason == "moved"
    assert rows[moved].moved_to_place_id == moved_to
    assert rows[gone].closed_reason == "not_found"
    assert rows[ancient].place_id_checked_at is not None
    assert rows[ancient].closed_reason is None
    assert rows[ancient].name is None  # purged: 400 days old
    assert rows[ancient_gone].closed_reason == "not_found"
    assert rows[fresh].name == "Old name"
    assert rows[fresh].place_id_checked_at is None

    # The platform hears of each: a tombstone for the moved (naming where to), the gone
    # and the purged, an update for the refreshed; pending at version 2 for the relay.
    events = {
        r.entity_id: r
        for r in await env.rows(
            "SELECT entity_id, event, version, status, payload FROM platform_outbox"
            " WHERE platform = 'downtownguide'"
        )
    }
    assert {k: (e.event, e.version, e.status) for k, e in events.items()} == {
        refreshed: ("upsert", 2, "pending"),
        moved: ("tombstone", 2, "pending"),
        gone: ("tombstone", 2, "pending"),
        expired: ("tombstone", 2, "pending"),
    }
    assert events[refreshed].payload["name"] == places[0]["name"]
    assert events[moved].payload["reason"] == "moved"
    assert events[moved].payload["moved_to_place_id"] == moved_to
    assert events[gone].payload["reason"] == "not_found"
    assert events[expired].payload["reason"] == "purged"
    assert "name" not in events[expired].payload

    # Every request the emulator answered is in the usage log, at the emulator's price:
    # two refreshes (the gone place's answered 404, not billed) and one free id check.
    logged = await usage(env)
    assert logged == bill(env)
    assert logged[0] == 3
    assert logged[1] == counts.cost_usd

    # A second run finds nothing left to do: nothing is bought twice.
    again = await asyncio.wait_for((await start_run(env)).result(), timeout=120)
    assert (again.purged, again.requests, again.cost_usd) == (0, 0, Decimal(0))
    assert await usage(env) == logged


async def test_a_run_pauses_on_its_budget_until_resumed(rollout_env: RolloutEnv) -> None:  # noqa: F811
    env = rollout_env
    env.stop_worker(signal.SIGTERM)
    # Room for one refresh (a Place Details Enterprise is $0.02), not two.
    env.start_worker(PLACES_CONTENT_POLICY="refresh", RETENTION_BUDGET_USD="0.03")
    for place in await dover_places(env, 3):
        await add_business(env, place, 27)

    run = await start_run(env)
    deadline = time.monotonic() + 60
    while (progress := await run.query(PlacesRetentionWorkflow.progress))["paused"] != "true":
        assert time.monotonic() < deadline, f"the run did not pause: {progress}"
        await asyncio.sleep(0.3)
    assert progress["refreshed"] == "1"
    assert progress["stage"] == "refresh"

    await run.signal(PlacesRetentionWorkflow.resume, RetentionResume(budget_usd=Decimal(1)))
    counts = await asyncio.wait_for(run.result(), timeout=120)
    assert counts.refreshed == 3
    assert counts.unfinished == 0
    assert await usage(env) == bill(env)

    # The run's history (requests, a pause, a resume) replays against today's code;
    # RECORD_HISTORIES=1 keeps it for tests/workflows/test_replay.py.
    history = await run.fetch_history()
    await Replayer(
        workflows=WORKFLOWS,
        data_converter=pydantic_data_converter,
        workflow_runner=sandbox_runner(),
    ).replay_workflow(history)
    if os.environ.get("RECORD_HISTORIES") == "1":
        path = Path(__file__).parent / "histories" / "PlacesRetentionWorkflow__refresh-paused.json"
        path.write_text(json.dumps({"workflow_id": run.id, "history": history.to_json_dict()}))


async def test_a_long_run_continues_as_new_without_losing_count(rollout_env: RolloutEnv) -> None:  # noqa: F811
    """Tiny histories (40 events) hand over in the middle of a page of refreshes: every
    business is dealt with once, the counts add up across the runs, nothing is bought
    twice."""
    env = rollout_env
    env.stop_worker(signal.SIGTERM)
    env.start_worker(PLACES_CONTENT_POLICY="refresh")
    # More refreshes than run at once, so a run hands over with some still to start.
    places = await dover_places(env, REQUESTS_AT_ONCE + 14)
    for place in places[: REQUESTS_AT_ONCE + 10]:
        await add_business(env, place, 27)
    for place in places[REQUESTS_AT_ONCE + 10 :]:
        await add_business(env, place, 35)

    run = await start_run(env, RetentionRun(continue_as_new_after_events=40))
    counts = await asyncio.wait_for(run.result(), timeout=180)
    refreshes = REQUESTS_AT_ONCE + 10
    assert (counts.refreshed, counts.purged, counts.failed) == (refreshes, 4, 0)
    assert counts.requests == refreshes
    first = env.client.get_workflow_handle(run.id, run_id=run.first_execution_run_id)
    assert (await first.describe()).status is WorkflowExecutionStatus.CONTINUED_AS_NEW
    last = await env.client.get_workflow_handle(run.id).describe()
    assert last.run_id != run.first_execution_run_id
    assert await usage(env) == bill(env) == (refreshes, counts.cost_usd)
