"""End-to-end: StateRolloutWorkflow and CommunityRolloutWorkflow on a real Temporal dev
server, real Postgres, the Places emulator and `python worker.py` as a subprocess."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from devstack.embedded import temporal_cli as temporal_binary
from rollout.contract import community_workflow_id, state_workflow_id
from rollout.payloads import BatchSizeInput, PauseInput, PhaseInput, PhaseResult, ResumeInput
from rollout.phases.discovery.payloads import Box, DiscoveryInput
from rollout.phases.discovery.planning import bounding_box
from rollout.phases.enrichment.payloads import EnrichmentInput
from rollout.status import RolloutStatus
from tests.conftest import PROJECT_ROOT
from tests.support.rollout_harness import (
    API_KEY,
    FAST_PLACES_RETRY,
    RolloutEnv,
    emulator,  # noqa: F401 - fixture
    max_overlap,
    money,
    rollout_env,  # noqa: F401 - fixture
)
from worker import WORKFLOWS, sandbox_runner
from workflows.state_rollout import StateRolloutWorkflow

pytestmark = pytest.mark.integration
HISTORY_DIR = Path(__file__).parent / "histories"

TERMINAL = ("completed", "cancelled", "failed")


async def assert_counters_match_rows(env: RolloutEnv, rollout_id: int) -> None:
    """The state row's counters equal the community rows they count; costs equal the log."""
    row = (
        await env.rows(
            "SELECT completed_communities, failed_communities, total_businesses, "
            "total_news_sources, total_cost FROM state_rollouts WHERE id = :id",
            id=rollout_id,
        )
    )[0]
    counted = (
        await env.rows(
            "SELECT count(*) FILTER (WHERE status = 'completed'), "
            "count(*) FILTER (WHERE status = 'failed'), coalesce(sum(businesses_discovered), 0), "
            "coalesce(sum(news_sources_created), 0), coalesce(sum(api_cost_estimate), 0) "
            "FROM community_rollouts WHERE state_rollout_id = :id",
            id=rollout_id,
        )
    )[0]
    assert tuple(row[:4]) == tuple(counted[:4])
    assert money(row[4]) == money(counted[4])
    logged = await env.scalar(
        "SELECT coalesce(sum(u.cost), 0) FROM rollout_api_usage u "
        "JOIN community_rollouts c ON c.id = u.community_rollout_id "
        "WHERE c.state_rollout_id = :id",
        id=rollout_id,
    )
    assert money(counted[4]) == money(logged)


async def test_full_rollout_of_a_small_state(rollout_env: RolloutEnv) -> None:
    """All of Delaware, with the awkward parts on purpose: two priority communities, one
    community whose Places calls keep failing, and continue-as-new every ~150 events."""
    env = rollout_env
    smallest = await env.rows(
        "SELECT id FROM communities WHERE state_code = 'DE' ORDER BY population, id LIMIT 2"
    )
    priority = [smallest[0][0], smallest[1][0]]
    broken, lat, lng = await isolated_community(env, exclude=priority)
    env.emulator.post("/sim/config", {"fail_near": [{"lat": lat, "lng": lng, "radius_m": 100}]})
    try:
        handle = await env.start(
            "DE", batch_size=4, priority_communities=priority, continue_as_new_after_events=150
        )
        summary = await handle.result()
    finally:
        env.emulator.post("/sim/config", {"fail_near": []})

    # The broken community failed in phase 1 with its error; every other one completed.
    failures = await env.rows(
        "SELECT community_id, failed_phase, error FROM community_rollouts WHERE status = 'failed'"
    )
    assert [(c, phase) for c, phase, _ in failures] == [(broken, 1)]
    assert failures[0][2]
    assert summary.status is RolloutStatus.COMPLETED
    assert (summary.completed, summary.failed, summary.cancelled) == (55, 1, 0)
    statuses = Counter(s for (s,) in await env.rows("SELECT status FROM community_rollouts"))
    assert statuses == {"completed": 55, "failed": 1}
    phases = await env.rows(
        "SELECT phase, status, count(*) FROM community_rollout_phases GROUP BY phase, status"
    )
    assert {(p, s): n for p, s, n in phases} == {
        (1, "completed"): 55,
        (1, "failed"): 1,
        **{(p, "completed"): 55 for p in range(2, 7)},
    }
    await assert_counters_match_rows(env, summary.rollout_id)
    assert summary.businesses > 0
    assert summary.news_sources > 0

    # Priority first; never more than batch_size children at once.
    rows = await env.rows(
        "SELECT community_id, is_priority, started_at, completed_at "
        "FROM community_rollouts ORDER BY started_at"
    )
    assert {r[0] for r in rows[:2]} == set(priority)
    assert {r[0] for r in rows if r[1]} == set(priority)
    assert max_overlap([(r[2], r[3]) for r in rows]) <= 4

    # Continue-as-new happened, and lost or repeated nothing.
    runs = [w async for w in env.client.list_workflows(f"WorkflowId = '{state_workflow_id('DE')}'")]
    assert len(runs) > 2
    assert (
        await env.rows(
            "SELECT community_id FROM community_rollouts GROUP BY community_id HAVING count(*) > 1"
        )
        == []
    )
    assert await env.scalar("SELECT count(*) - count(DISTINCT place_id) FROM businesses") == 0
    # No bought answer outlives its community, the one failed in phase 1 included.
    assert await env.scalar("SELECT count(*) FROM places_answers") == 0

    # Enrichment came with phase 1's pages and from the businesses' own websites: phase 4
    # bought no Place Details, and businesses whose site publishes structured data carry it.
    assert (
        await env.scalar("SELECT count(*) FROM rollout_api_usage WHERE endpoint = 'place_details'")
        == 0
    )
    assert await env.scalar("SELECT count(*) FROM businesses WHERE enriched_at IS NULL") == 0
    profiled = await env.scalar(
        "SELECT count(*) FROM businesses WHERE website_profile->'fields' ? 'telephone'"
    )
    assert profiled > 0

    # Every billed request is logged once: the log equals the emulator's own bill.
    bill = env.emulator.get("/sim/billing")
    logged = await env.rows("SELECT sku, count(*), sum(cost) FROM rollout_api_usage GROUP BY sku")
    assert {sku: n for sku, n, _ in logged} == {
        sku: entry["requests"] for sku, entry in bill["skus"].items() if entry["requests"]
    }
    assert money(sum(c for _, _, c in logged)) == money(bill["total_cost"])

    # The cover strategy: everything explored free, then every sighted place bought once
    # (no sighted id is missing from businesses), and nothing bought twice in a community.
    skus = {sku for sku, _, _ in logged}
    assert "Text Search Essentials IDs Only" in skus
    assert not any(sku.startswith("Nearby") for sku in skus)  # sparse types probed too
    assert await env.scalar("SELECT count(DISTINCT community_rollout_id) FROM discovery_purchases")
    unbought = await env.scalar(
        "SELECT count(*) FROM (SELECT unnest(place_ids) FROM discovery_sightings WHERE NOT paid "
        "EXCEPT SELECT place_id FROM businesses) AS missing"
    )
    assert unbought == 0
    twice = await env.scalar(
        "SELECT count(*) FROM (SELECT run_key, unnest(place_ids) AS id FROM discovery_sightings "
        "WHERE paid GROUP BY 1, 2 HAVING count(*) > 1) AS dup"
    )
    bought = await env.scalar(
        "SELECT count(*) FROM (SELECT DISTINCT run_key, unnest(place_ids) "
        "FROM discovery_sightings WHERE paid) AS b"
    )
    assert twice < bought * 0.2  # overlap only where a full page beat Place Details

    # The progress document at the end.
    doc = await env.progress("DE")
    assert doc.rollout.status is RolloutStatus.COMPLETED
    assert doc.progress_percentage == 100.0
    assert doc.status_breakdown.completed == 55
    assert doc.status_breakdown.failed == 1
    assert doc.total_businesses == summary.businesses
    assert doc.estimated_remaining_cost == Decimal("0.00")

    # The search attributes are current.
    description = await handle.describe()
    assert description.typed_search_attributes.get(_key("RolloutStatus")) == "completed"
    assert description.typed_search_attributes.get(_key("RolloutStateCode")) == "DE"

    await replay_live_histories(env, handle.id)

    # The worker's Prometheus endpoint: the SDK's metrics and the project's own.
    async with httpx.AsyncClient(timeout=10) as http:
        scraped = (
            await http.get(f"http://127.0.0.1:{env.worker_env['METRICS_PORT']}/metrics")
        ).text
    # The names Temporal's SDK dashboard queries: durations in seconds, `_total` counters.
    assert "temporal_activity_execution_latency_seconds_bucket{" in scraped
    assert "temporal_activity_schedule_to_start_latency_seconds_bucket{" in scraped
    assert "temporal_workflow_completed_total{" in scraped
    assert "rollout_places_requests_total{" in scraped
    assert 'sku="Text Search Enterprise"' in scraped
    assert "rollout_communities_total{" in scraped
    assert 'status="completed"' in scraped
    assert "rollout_businesses_discovered_total" in scraped
    # Bucketed by price: a $0.035 page lands on its own bound.
    assert "rollout_places_cost_usd_bucket{" in scraped
    assert 'le="0.035"' in scraped


def _key(name: str) -> SearchAttributeKey[str]:
    return SearchAttributeKey.for_keyword(name)


async def isolated_community(env: RolloutEnv, exclude: list[int]) -> tuple[int, float, float]:
    """A DE community whose centre lies in no other community's search rectangle, so that
    failing every Places request near that centre breaks this community alone."""
    regions = await env.rows(
        "SELECT c.id, r.center_latitude, r.center_longitude, r.radius_m FROM communities c "
        "JOIN community_region cr ON cr.community_id = c.id AND cr.is_primary "
        "JOIN regions r ON r.id = cr.region_id WHERE c.state_code = 'DE' ORDER BY c.id"
    )
    for cid, lat, lng, _ in regions:
        if cid in exclude:
            continue
        box = bounding_box(lat, lng, 100)
        if not any(
            o != cid and _boxes_meet(box, bounding_box(olat, olng, radius))
            for o, olat, olng, radius in regions
        ):
            return int(cid), float(lat), float(lng)
    raise AssertionError("no isolated community in DE")


def _boxes_meet(a: Box, b: Box) -> bool:
    return a.south <= b.north and b.south <= a.north and a.west <= b.east and b.west <= a.east


async def replay_live_histories(env: RolloutEnv, parent_id: str) -> None:
    """Live-then-replay: the histories just made replay cleanly; with RECORD_HISTORIES=1
    they are also saved under tests/workflows/histories/ for test_replay.py."""
    community = await env.scalar(
        "SELECT community_id FROM community_rollouts ORDER BY businesses_discovered DESC LIMIT 1"
    )
    child = f"{parent_id}/community-{community}"
    runs = sorted(
        [w async for w in env.client.list_workflows(f"WorkflowId = '{parent_id}'")],
        key=lambda w: w.start_time,
    )
    targets = [
        ("StateRolloutWorkflow__first-run", parent_id, runs[0].run_id),
        ("StateRolloutWorkflow__last-run", parent_id, runs[-1].run_id),
        ("CommunityRolloutWorkflow__largest", child, None),
        ("CommunityDiscoveryWorkflow__largest", f"{child}/discovery", None),
        ("CommunityEnrichmentWorkflow__largest", f"{child}/enrichment", None),
    ]
    replayer = Replayer(
        workflows=WORKFLOWS,
        data_converter=pydantic_data_converter,
        workflow_runner=sandbox_runner(),
    )
    for name, workflow_id, run_id in targets:
        history = await env.client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        await replayer.replay_workflow(history)
        if os.environ.get("RECORD_HISTORIES") == "1":
            target = HISTORY_DIR / f"{name}.json"
            target.write_text(
                json.dumps({"workflow_id": workflow_id, "history": history.to_json_dict()})
            )


async def listed(env: RolloutEnv, query: str, *, within: float = 20) -> list[str]:
    """Workflow ids a visibility query lists, once it lists any (visibility is eventually
    consistent: a search attribute upserted just now may not be listed yet)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        ids = [w.id async for w in env.client.list_workflows(query)]
        if ids or asyncio.get_running_loop().time() > deadline:
            return ids
        await asyncio.sleep(0.5)


async def test_pause_resume_and_set_batch_size(rollout_env: RolloutEnv) -> None:
    env = rollout_env
    handle = await env.start("DE", batch_size=2)
    await env.wait_for("DE", lambda d: d.status_breakdown.completed >= 4, what="4 completed")

    await handle.signal(StateRolloutWorkflow.pause, PauseInput(reason="night"))
    doc = await env.wait_for(
        "DE",
        lambda d: d.rollout.status is RolloutStatus.PAUSED and not d.in_flight,
        what="paused and drained",
    )
    assert doc.paused_reason == "night"
    assert doc.status_breakdown.paused > 0
    started_before = await env.scalar(
        "SELECT count(*) FROM community_rollouts WHERE started_at IS NOT NULL"
    )
    # Queued rows are paused in the database; nothing new starts while paused.
    await asyncio.sleep(2)
    assert (
        await env.scalar("SELECT count(*) FROM community_rollouts WHERE started_at IS NOT NULL")
        == started_before
    )
    statuses = Counter(s for (s,) in await env.rows("SELECT status FROM community_rollouts"))
    assert statuses["queued"] == 0
    assert statuses["paused"] == 56 - started_before
    assert await env.scalar("SELECT status FROM state_rollouts") == "paused"
    assert state_workflow_id("DE") in await listed(env, "RolloutStatus = 'paused'")

    await handle.signal(StateRolloutWorkflow.set_batch_size, BatchSizeInput(batch_size=5))
    await handle.signal(StateRolloutWorkflow.resume, ResumeInput())
    doc = await env.wait_for(
        "DE", lambda d: d.status_breakdown.processing >= 3, what="the wider window in use"
    )
    assert doc.rollout.status is RolloutStatus.IN_PROGRESS
    assert doc.rollout.batch_size == 5
    assert doc.paused_reason is None
    assert await env.scalar("SELECT count(*) FROM community_rollouts WHERE status='paused'") == 0
    done_before = doc.status_breakdown.completed
    await env.wait_for(
        "DE", lambda d: d.status_breakdown.completed >= done_before + 3, what="progress"
    )
    await handle.signal(StateRolloutWorkflow.cancel)
    await handle.result()
    rows = await env.rows(
        "SELECT started_at, completed_at FROM community_rollouts WHERE started_at IS NOT NULL"
    )
    assert max_overlap([(r[0], r[1]) for r in rows]) <= 5


async def test_cancel_cancels_in_flight_and_marks_the_rest(rollout_env: RolloutEnv) -> None:
    env = rollout_env
    handle = await env.start("DE", batch_size=3)
    await env.wait_for("DE", lambda d: d.status_breakdown.completed >= 2, what="2 completed")
    # Slow Places down so the communities in flight are still at work when the cancel
    # lands (a small town otherwise finishes in a second or two).
    env.emulator.post("/sim/config", {"latency_ms": 1000})
    await env.wait_for("DE", lambda d: len(d.in_flight) == 3, what="a full window")
    await handle.signal(StateRolloutWorkflow.cancel)
    summary = await handle.result()
    assert summary.status is RolloutStatus.CANCELLED
    statuses = Counter(s for (s,) in await env.rows("SELECT status FROM community_rollouts"))
    # In-flight children were cancelled (not failed); the rest were never started.
    assert set(statuses) == {"completed", "cancelled"}
    assert statuses["completed"] + statuses["cancelled"] == 56
    in_flight_cancelled = await env.scalar(
        "SELECT count(*) FROM community_rollouts WHERE status = 'cancelled' "
        "AND started_at IS NOT NULL"
    )
    assert in_flight_cancelled > 0
    assert await env.scalar("SELECT status FROM state_rollouts") == "cancelled"
    await assert_counters_match_rows(env, summary.rollout_id)


async def test_second_start_of_a_running_state_is_rejected(rollout_env: RolloutEnv) -> None:
    env = rollout_env
    handle = await env.start("DE", batch_size=1)
    await handle.signal(StateRolloutWorkflow.pause, PauseInput(reason="hold"))
    from temporalio.exceptions import WorkflowAlreadyStartedError

    with pytest.raises(WorkflowAlreadyStartedError):
        await env.start("DE")
    await handle.signal(StateRolloutWorkflow.cancel)
    await handle.result()


async def test_invalid_key_pauses_the_rollout_and_resume_finishes_it(
    rollout_env: RolloutEnv,
) -> None:
    env = rollout_env
    handle = await env.start("DE", batch_size=2)
    await env.wait_for("DE", lambda d: d.status_breakdown.completed >= 2, what="2 completed")
    env.emulator.post("/sim/config", {"api_key": "rotated-key"})
    doc = await env.wait_for(
        "DE",
        lambda d: d.rollout.status is RolloutStatus.PAUSED and not d.in_flight,
        what="auto-pause, with the in-flight communities back in the queue",
    )
    assert doc.paused_reason is not None
    assert "Places" in doc.paused_reason
    assert "API_KEY_INVALID" in doc.paused_reason
    assert await env.scalar("SELECT count(*) FROM community_rollouts WHERE status='failed'") == 0
    # The workflow reports the pause first; its rows follow in the bookkeeping activity
    # that marks them (retried like any), so wait for the rows too.
    expected = 56 - doc.status_breakdown.completed
    deadline = time.monotonic() + 60
    while (
        paused_rows := await env.scalar(
            "SELECT count(*) FROM community_rollouts WHERE status = 'paused'"
        )
    ) != expected:
        assert time.monotonic() < deadline, f"{paused_rows} rows paused, not {expected}"
        await asyncio.sleep(0.3)
    env.emulator.post("/sim/config", {"api_key": API_KEY})
    await handle.signal(StateRolloutWorkflow.resume)
    done_before = doc.status_breakdown.completed
    await env.wait_for(
        "DE", lambda d: d.status_breakdown.completed >= done_before + 3, what="progress"
    )
    await handle.signal(StateRolloutWorkflow.cancel)
    summary = await handle.result()
    failed = await env.rows(
        "SELECT community_id, failed_phase, error FROM community_rollouts WHERE status = 'failed'"
    )
    assert failed == []
    assert summary.failed == 0


async def test_budget_pauses_before_overspending(rollout_env: RolloutEnv) -> None:
    env = rollout_env
    handle = await env.start(
        "DE", batch_size=1, budget_usd=Decimal("0.40"), default_community_cost_usd=Decimal("0.01")
    )
    doc = await env.wait_for(
        "DE", lambda d: d.rollout.status is RolloutStatus.PAUSED, what="budget pause"
    )
    assert doc.paused_reason is not None
    assert doc.paused_reason.startswith("budget")
    assert doc.status_breakdown.completed < 56
    await handle.signal(StateRolloutWorkflow.cancel)
    await handle.result()


async def test_worker_stopped_or_killed_mid_rollout_finishes_after_restart(
    rollout_env: RolloutEnv,
) -> None:
    """SIGTERM and SIGINT stop a worker gracefully (running activities get up to 30 s, exit
    0); SIGKILL stops it outright. Each time mid-rollout, and each time a new worker takes
    over and nothing is lost or done twice."""
    env = rollout_env
    handle = await env.start("DE", batch_size=6)
    done = 0
    for how in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
        done += 3
        await env.wait_for(
            "DE",
            lambda d, n=done: d.status_breakdown.completed >= n and d.status_breakdown.processing,
            what=f"{done} completed and some in flight",
        )
        if how is signal.SIGKILL:
            env.kill_worker()
        else:
            assert env.stop_worker(how) == 0
            log = env.workers_started[-1].log_path.read_text()
            assert "stopping: finishing running activities" in log
            assert "Traceback" not in log
        env.start_worker()
    summary = await handle.result()
    assert summary.completed == 56
    assert summary.failed == 0
    assert await env.scalar("SELECT count(*) - count(DISTINCT place_id) FROM businesses") == 0
    await assert_counters_match_rows(env, summary.rollout_id)
    description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.COMPLETED


async def test_invalid_input_fails_with_one_message(rollout_env: RolloutEnv) -> None:
    env = rollout_env
    handle = await env.start("DE", batch_size=0, throttle_ms=-5)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    message = str(failure.value.cause)
    assert "batch_size 0 is outside 1-200" in message
    assert "throttle_ms -5 is outside 0-10000" in message
    assert await env.scalar("SELECT count(*) FROM state_rollouts") == 0


async def test_priority_from_another_state_is_rejected(rollout_env: RolloutEnv) -> None:
    env = rollout_env
    ri = await env.scalar("SELECT id FROM communities WHERE state_code = 'RI' LIMIT 1")
    handle = await env.start("DE", priority_communities=[ri])
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    cause = failure.value.cause
    assert f"priority communities not in DE: {ri}" in str(cause.__cause__ or cause)
    assert await env.scalar("SELECT count(*) FROM state_rollouts") == 0


def temporal_cli(env: RolloutEnv, *args: str) -> str:
    """The README's `temporal` commands, run with the real binary against the test server."""
    result = subprocess.run(
        [temporal_binary(), *args, "--address", env.stack.temporal_address, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_operations_through_the_temporal_cli(rollout_env: RolloutEnv) -> None:
    env = rollout_env
    # Started the operator's way: the starter script (checks, summary for the Web UI).
    started = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(PROJECT_ROOT / "starter.py"), "start", "DE", "--batch-size", "2",
         "--throttle-ms", "0"],
        capture_output=True,
        text=True,
        env={**env.worker_env, "LOG_LEVEL": "WARNING"},
        timeout=120,
        check=False,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert "started state-rollout-DE" in started.stdout
    await env.wait_for("DE", lambda d: d.status_breakdown.completed >= 1, what="1 completed")

    # The Web UI finds it by its search attributes and shows its summary and live details.
    async with httpx.AsyncClient(base_url=env.stack.ui_url, timeout=10) as ui:
        found = (
            await ui.get(
                "/api/v1/namespaces/default/workflows",
                params={
                    "query": "RolloutStateCode='DE' AND WorkflowType='StateRolloutWorkflow' "
                    "AND ExecutionStatus='Running'"
                },
            )
        ).json()
        assert [e["execution"]["workflowId"] for e in found["executions"]] == ["state-rollout-DE"]
        described = (await ui.get("/api/v1/namespaces/default/workflows/state-rollout-DE")).json()
    summary = described["executionConfig"]["userMetadata"]["summary"]["data"]
    assert "Delaware rollout" in base64.b64decode(summary).decode()
    handle = env.client.get_workflow_handle("state-rollout-DE")
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert "Delaware rollout" in metadata.current_details
    assert "in flight" in metadata.current_details

    run = asyncio.to_thread
    await run(
        temporal_cli, env, "workflow", "signal", "-w", "state-rollout-DE",
        "--name", "pause", "--input", '{"reason":"night"}',
    )  # fmt: skip
    await env.wait_for("DE", lambda d: d.rollout.status is RolloutStatus.PAUSED, what="pause")

    queried = json.loads(
        await run(temporal_cli, env, "workflow", "query", "-w", "state-rollout-DE",
                  "--name", "progress")
    )  # fmt: skip
    document = queried["queryResult"][0]
    assert document["rollout"]["status"] == "paused"
    assert document["paused_reason"] == "night"
    assert set(document["status_breakdown"]) == {
        "queued", "processing", "completed", "failed", "paused", "cancelled"
    }  # fmt: skip

    # Visibility is eventually consistent: the search attribute the pause upserted can reach
    # the list a moment after the workflow itself (and its query) says paused.
    for _ in range(40):
        listed = await run(
            temporal_cli, env, "workflow", "list", "--query", "RolloutStatus='paused'"
        )
        if "state-rollout-DE" in listed:
            break
        await asyncio.sleep(0.5)
    assert "state-rollout-DE" in listed

    await run(temporal_cli, env, "workflow", "signal", "-w", "state-rollout-DE",
              "--name", "set_batch_size", "--input", '{"batch_size":3}')  # fmt: skip
    await run(temporal_cli, env, "workflow", "signal", "-w", "state-rollout-DE",
              "--name", "resume")  # fmt: skip
    doc = await env.wait_for(
        "DE", lambda d: d.rollout.status is RolloutStatus.IN_PROGRESS, what="resume"
    )
    assert doc.rollout.batch_size == 3

    await run(temporal_cli, env, "workflow", "signal", "-w", "state-rollout-DE",
              "--name", "cancel")  # fmt: skip
    handle = env.client.get_workflow_handle_for(StateRolloutWorkflow.run, "state-rollout-DE")
    summary = await handle.result()
    assert summary.status is RolloutStatus.CANCELLED
    listed = await run(
        temporal_cli, env, "workflow", "list", "--query",
        "RolloutStatus='cancelled' AND RolloutStateCode='DE'",
    )  # fmt: skip
    assert "state-rollout-DE" in listed


async def manual_phase(env: RolloutEnv, community: int) -> PhaseInput:
    """A state rollout row and a community rollout row for running one phase by hand."""
    rollout_id = await env.write(
        "INSERT INTO state_rollouts (state_code, state_name, workflow_id) "
        "VALUES ('DE', 'Delaware', 'manual') RETURNING id"
    )
    cr_id = await env.write(
        "INSERT INTO community_rollouts (state_rollout_id, community_id, position) "
        "VALUES (:r, :c, 1) RETURNING id",
        r=rollout_id,
        c=community,
    )
    return PhaseInput(
        rollout_id=rollout_id,
        community_rollout_id=cr_id,
        community_id=community,
        state_code="DE",
        throttle_ms=0,
    )


async def test_discovery_again_links_known_places_and_buys_only_when_told(
    rollout_env: RolloutEnv,
) -> None:
    """Phase 1 of one community, three times. The second run explores again (free) and
    finds only places fetched minutes ago: it links them and buys nothing
    (DISCOVERY_FRESH_DAYS). The third, on a worker with DISCOVERY_FRESH_DAYS=0, buys them
    all again. The same businesses every time, no duplicate, and every request in the log,
    equal to the emulator's bill."""
    env = rollout_env
    community = await env.scalar(
        "SELECT id FROM communities WHERE state_code = 'DE' ORDER BY population DESC LIMIT 1"
    )
    phase = await manual_phase(env, community)
    results = []
    snapshots = []
    for run in (1, 2, 3):
        if run == 3:
            env.stop_worker(signal.SIGTERM)
            env.start_worker(DISCOVERY_FRESH_DAYS="0")
        result = await env.client.execute_workflow(
            "CommunityDiscoveryWorkflow",
            DiscoveryInput(phase=phase, places_retry=FAST_PLACES_RETRY),
            id=f"discovery-again-{run}",
            task_queue="rollout",
            result_type=PhaseResult,
        )
        results.append(result)
        snapshots.append(sorted(p for (p,) in await env.rows("SELECT place_id FROM businesses")))
    assert snapshots[0] == snapshots[1] == snapshots[2]
    assert len(snapshots[0]) == len(set(snapshots[0])) > 0
    assert results[0].counts == results[1].counts == results[2].counts
    assert results[0].counts["businesses_discovered"] == len(snapshots[0])

    # Requests by run (the first part of a discovery request key is its workflow run).
    by_run = await env.rows(
        "SELECT split_part(request_key, '/', 1), sku, count(*), sum(cost) "
        "FROM rollout_api_usage GROUP BY 1, 2"
    )
    runs: dict[str, dict[str, int]] = {}
    for run_id, sku, count, _ in by_run:
        runs.setdefault(run_id, {})[sku] = count
    first, second, third = [
        runs[(await env.client.get_workflow_handle(f"discovery-again-{n}").describe()).run_id]
        for n in (1, 2, 3)
    ]
    probe = "Text Search Essentials IDs Only"
    assert first[probe] == second[probe] == third[probe] > 0  # the same free exploration
    assert second == {probe: first[probe]}  # and nothing bought
    assert third == first  # told to, it buys the same again
    # The phase's cost is the community's so far: the second run added nothing.
    assert results[1].cost_usd == results[0].cost_usd > 0
    assert results[2].cost_usd == 2 * results[0].cost_usd

    bill = env.emulator.get("/sim/billing")
    logged = await env.rows("SELECT sku, count(*), sum(cost) FROM rollout_api_usage GROUP BY sku")
    assert {sku: n for sku, n, _ in logged} == {
        sku: entry["requests"] for sku, entry in bill["skus"].items() if entry["requests"]
    }
    assert money(sum(c for _, _, c in logged)) == money(bill["total_cost"])


async def test_enrichment_workflow_continues_as_new_and_pays_each_place_once(
    rollout_env: RolloutEnv,
) -> None:
    """Phase 4 of one community as CommunityEnrichmentWorkflow: small listing pages and
    continue-as-new every ~40 events lose or repeat nothing; every business with a website
    is enriched by exactly one billed request; a second run finds them all fresh."""
    env = rollout_env
    community = await env.scalar(
        "SELECT id FROM communities WHERE state_code = 'DE' ORDER BY population DESC LIMIT 1"
    )
    phase = await manual_phase(env, community)
    cr_id = phase.community_rollout_id
    await env.client.execute_workflow(
        "CommunityDiscoveryWorkflow",
        DiscoveryInput(phase=phase, places_retry=FAST_PLACES_RETRY),
        id="enrichment-discovery",
        task_queue="rollout",
        result_type=PhaseResult,
    )
    with_site = await env.scalar(
        "SELECT count(*) FROM businesses b JOIN business_region br ON br.business_id = b.id "
        "JOIN community_region cr ON cr.region_id = br.region_id AND cr.community_id = :c "
        "WHERE length(trim(coalesce(b.website_uri, ''))) > 0",
        c=community,
    )
    assert with_site > 10
    # Phase 1's pages carried the enrichment fields: every business it bought is enriched.
    assert (
        await env.scalar(
            "SELECT count(*) FROM businesses WHERE enriched_at IS NULL OR enrichment IS NULL"
        )
        == 0
    )
    # Listings older than ENRICHMENT_FRESH_DAYS (bought before, or by an older version): phase
    # 4 refreshes them with Place Details, one billed request each.
    await env.write("UPDATE businesses SET enriched_at = now() - interval '40 days' RETURNING 1")
    details = "Place Details Enterprise"
    billed_before = env.emulator.get("/sim/billing")["skus"].get(details, {}).get("requests", 0)

    results = []
    for run in (1, 2):
        results.append(
            await env.client.execute_workflow(
                "CommunityEnrichmentWorkflow",
                EnrichmentInput(
                    phase=phase,
                    places_retry=FAST_PLACES_RETRY,
                    page_size=5,
                    streams=3,
                    continue_as_new_after_events=40,
                ),
                id=f"enrichment-{run}",
                task_queue="rollout",
                result_type=PhaseResult,
            )
        )
    first, second = results
    assert first.counts == {
        "businesses_enriched": with_site,
        "enrichment_fresh_skipped": 0,
        "enrichment_not_found": 0,
        "site_profiles": 0,  # no website scan ran here
    }
    assert second.counts["businesses_enriched"] == 0
    assert second.counts["enrichment_fresh_skipped"] == with_site
    runs = [w async for w in env.client.list_workflows("WorkflowId = 'enrichment-1'")]
    assert len(runs) > 2

    billed = env.emulator.get("/sim/billing")["skus"][details]["requests"] - billed_before
    logged = await env.scalar(
        "SELECT count(*) FROM rollout_api_usage WHERE endpoint = 'place_details' "
        "AND community_rollout_id = :cr",
        cr=cr_id,
    )
    assert billed == logged == with_site
    assert first.cost_usd == second.cost_usd == Decimal("0.02") * with_site
    assert await env.scalar(
        "SELECT count(*) FROM businesses WHERE enriched_at > now() - interval '1 day'"
    ) == (with_site)


async def test_a_terminated_child_fails_its_community_and_the_window_refills(
    rollout_env: RolloutEnv,
) -> None:
    """The reproduction from the field: batch size 1, its only child terminated from the
    `temporal` CLI. The state workflow notices, fails the community with the reason and
    starts the next one (it used to sit at "processing: 1" for ever)."""
    env = rollout_env
    handle = await env.start("DE", batch_size=1)
    doc = await env.wait_for("DE", lambda d: len(d.in_flight) == 1, what="one child running")
    victim = doc.in_flight[0]
    await env.client.get_workflow_handle(
        community_workflow_id("DE", victim.community_id)
    ).terminate("terminated by an operator")
    doc = await env.wait_for(
        "DE",
        lambda d: d.rollout.failed_communities == 1 and d.status_breakdown.completed >= 1,
        what="the terminated community failed and the next one done",
    )
    row = (
        await env.rows(
            "SELECT status, error FROM community_rollouts WHERE id = :i",
            i=victim.community_rollout_id,
        )
    )[0]
    assert tuple(row) == ("failed", "terminated")
    assert victim.community_id not in [c.community_id for c in doc.in_flight]
    await handle.signal(StateRolloutWorkflow.cancel)
    summary = await handle.result()
    assert summary.failed == 1


async def test_a_child_terminated_after_continue_as_new_is_noticed(
    rollout_env: RolloutEnv,
) -> None:
    """A child started by an earlier run of the state workflow has no handle in the current
    one: the periodic check (every carried_child_check_s) finds it closed."""
    env = rollout_env
    handle = await env.start(
        "DE", batch_size=1, continue_as_new_after_events=30, carried_child_check_s=1.0
    )
    victim = None
    deadline = asyncio.get_running_loop().time() + 120
    while victim is None:
        assert asyncio.get_running_loop().time() < deadline, "no child outlived its parent run"
        doc = await env.progress("DE")
        current_run = (
            await env.client.get_workflow_handle(state_workflow_id("DE")).describe()
        ).run_id
        for child in doc.in_flight:
            child_handle = env.client.get_workflow_handle(
                community_workflow_id("DE", child.community_id)
            )
            described = await child_handle.describe()
            if (
                described.status == WorkflowExecutionStatus.RUNNING
                and described.parent_run_id != current_run
            ):
                await child_handle.terminate("terminated by an operator")
                victim = child
                break
        else:
            await asyncio.sleep(0.2)
    await env.wait_for(
        "DE",
        lambda d: victim.community_id not in [c.community_id for c in d.in_flight],
        within=60,
        what="the carried child noticed",
    )
    row = (
        await env.rows(
            "SELECT status, error FROM community_rollouts WHERE id = :i",
            i=victim.community_rollout_id,
        )
    )[0]
    assert tuple(row) == ("failed", "terminated")
    await handle.signal(StateRolloutWorkflow.cancel)
    await handle.result()
