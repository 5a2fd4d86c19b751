"""CommunityRolloutWorkflow's error handling on the time-skipping test server: phase retries
(their real intervals, skipped), Places quota delays, and rollout-wide Places problems that
pause the state rollout. The real workflows run against the fakes in tests/workflows/fakes.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.places_errors import to_temporal_error
from rollout.contract import ErrorType
from rollout.pacific import next_pacific_midnight
from rollout.payloads import RetrySpec
from rollout.places.errors import (
    PermissionDeniedError,
    PermissionProblem,
    QuotaExceededError,
    ServerError,
)
from rollout.status import CommunityStatus, RolloutStatus
from tests.workflows.fakes import (
    NEWS_SOURCES,
    PLACES_SEARCH,
    SCAN_WEBSITES,
    SERVICES,
    VERIFY,
    Call,
    FakeRolloutDb,
    intervals,
    until,
)
from tests.workflows.fast_harness import FastRollout
from workflows.state_rollout import StateRolloutWorkflow

# Test-server seconds an attempt may start after its retry timer fired (processing only).
SLACK_S = 5.0


@pytest.mark.parametrize(
    ("phase_retry", "expected_gaps"),
    [
        # The default: 3 attempts, 60 s then 300 s apart (the Laravel job's intent).
        (None, [60.0, 300.0]),
        # The rollout's own policy reaches the phases: 10 s doubling, capped at 15 s.
        (RetrySpec(initial_s=10, backoff=2, maximum_s=15, attempts=4), [10.0, 15.0, 15.0]),
    ],
    ids=["default", "from-the-rollout-input"],
)
async def test_a_phase_is_retried_by_its_policy_then_fails_the_community(
    ts_env: WorkflowEnvironment, phase_retry: RetrySpec | None, expected_gaps: list[float]
) -> None:
    db = FakeRolloutDb("OR", clock=ts_env.get_current_time, communities=3)
    broken = db.community_ids[1]

    async def scanner_crashes(call: Call) -> None:
        if call.community_id == broken:
            raise ApplicationError("the scanner crashed", type="ScannerCrashed")

    db.on(SCAN_WEBSITES, scanner_crashes)
    settings = {} if phase_retry is None else {"phase_retry": phase_retry}
    async with FastRollout.running(ts_env, db) as rollout:
        await rollout.start(batch_size=1, **settings)
        summary = await rollout.result()
        doc = await rollout.progress()

    attempts = db.calls_to(SCAN_WEBSITES, broken)
    assert [a.attempt for a in attempts] == list(range(1, len(expected_gaps) + 2))
    for gap, expected in zip(intervals(attempts), expected_gaps, strict=True):
        assert expected <= gap < expected + SLACK_S
    (failure,) = [f for f in db.finish_inputs if f.community_id == broken]
    assert failure.status is CommunityStatus.FAILED
    assert failure.failed_phase == 2
    assert failure.error is not None
    assert "ScannerCrashed" in failure.error
    assert db.calls_to(NEWS_SOURCES, broken) == []  # no later phase ran
    # The rollout went on with the others.
    assert sorted(db.begun()) == db.community_ids
    assert (summary.status, summary.completed, summary.failed) == (RolloutStatus.COMPLETED, 2, 1)
    assert (doc.rollout.completed_communities, doc.rollout.failed_communities) == (2, 1)


async def test_a_per_minute_quota_error_waits_at_least_30_seconds(
    ts_env: WorkflowEnvironment,
) -> None:
    db = FakeRolloutDb("ID", clock=ts_env.get_current_time, communities=3)
    quota, flaky, _ = db.community_ids

    async def first_request_fails(call: Call) -> None:
        if call.attempt > 1:
            return
        # Through the activities' own mapping: Google said 5 s, the mapping asks for 30 s.
        if call.community_id == quota:
            raise to_temporal_error(
                QuotaExceededError("per-minute quota exceeded", per_day=False, retry_after=5)
            )
        if call.community_id == flaky:
            raise to_temporal_error(ServerError("backend error", retryable=True))

    db.on(PLACES_SEARCH, first_request_fails)
    async with FastRollout.running(ts_env, db) as rollout:
        await rollout.start(batch_size=1)
        summary = await rollout.result()

    (quota_gap,) = intervals(db.calls_to(PLACES_SEARCH, quota))
    assert 30 <= quota_gap < 30 + SLACK_S
    # A plain transient error waits only the places retry policy's first interval (2 s).
    (flaky_gap,) = intervals(db.calls_to(PLACES_SEARCH, flaky))
    assert 2 <= flaky_gap < 2 + SLACK_S
    assert (summary.completed, summary.failed) == (3, 0)


@pytest.mark.parametrize(
    ("activity_name", "error", "reason"),
    [
        (
            PLACES_SEARCH,
            to_temporal_error(
                PermissionDeniedError("API key not valid", problem=PermissionProblem.INVALID_KEY)
            ),
            "Places: API key not valid",
        ),
        (
            PLACES_SEARCH,
            to_temporal_error(QuotaExceededError("daily limit", per_day=True)),
            "Places: daily quota exhausted",
        ),
        (
            VERIFY,
            ApplicationError("API disabled", type=ErrorType.PLACES_ACCESS, non_retryable=True),
            "Places: API disabled",
        ),
    ],
    ids=["invalid-key-in-phase-1", "daily-quota-in-phase-1", "api-disabled-in-phase-5"],
)
async def test_a_places_access_error_pauses_the_rollout_until_resumed(
    ts_env: WorkflowEnvironment, activity_name: str, error: ApplicationError, reason: str
) -> None:
    db = FakeRolloutDb("NM", clock=ts_env.get_current_time, communities=3)
    first, blocked, last = db.community_ids
    refused: list[Call] = []

    async def refuse_once(call: Call) -> None:
        if call.community_id == blocked and not refused:
            refused.append(call)
            raise error

    db.on(activity_name, refuse_once)
    async with FastRollout.running(ts_env, db) as rollout:
        handle = await rollout.start(batch_size=1)
        doc = await rollout.wait_progress(
            lambda d: d.rollout.status is RolloutStatus.PAUSED, "the automatic pause"
        )
        assert doc.paused_reason == reason
        assert doc.in_flight == []
        assert doc.rollout.completed_communities == 1
        # The community went back to the queue, in front of the one never started.
        assert (doc.status_breakdown.paused, doc.status_breakdown.queued) == (2, 0)
        assert db.finishes(blocked) == [CommunityStatus.PAUSED.value]
        assert db.begun() == [first, blocked]
        await until(lambda: bool(db.status_changes), "the pause to be recorded")
        assert [(c.status, c.paused_reason) for c in db.status_changes] == [
            (RolloutStatus.PAUSED, reason)
        ]
        assert len(db.calls_to(activity_name, blocked)) == 1  # not retried

        await handle.signal(StateRolloutWorkflow.resume)
        summary = await rollout.result()

    assert db.begun() == [first, blocked, blocked, last]
    assert db.finishes(blocked) == [CommunityStatus.PAUSED.value, CommunityStatus.COMPLETED.value]
    assert (summary.status, summary.completed, summary.failed) == (RolloutStatus.COMPLETED, 3, 0)


async def test_an_outage_pauses_the_rollout_and_it_resumes_by_itself(
    ts_env: WorkflowEnvironment,
) -> None:
    """Postgres out for longer than phase 2's retries: the community is not failed but goes
    back to the queue, the rollout pauses with the reason, probes the services every
    minute, and resumes by itself once they answer; nothing fails."""
    db = FakeRolloutDb("OR", clock=ts_env.get_current_time, communities=3)
    first, hit, last = db.community_ids
    outage = "Postgres unreachable: connection refused"
    db.outage = outage

    async def postgres_out(call: Call) -> None:
        if call.community_id == hit and db.outage is not None:
            raise ApplicationError(outage, type=ErrorType.DATABASE_UNAVAILABLE)

    async def back_at_the_third_probe(call: Call) -> None:
        if len(db.calls_to(SERVICES)) >= 3:
            db.outage = None  # this probe already answers that all is well

    db.on(SCAN_WEBSITES, postgres_out)
    db.on(SERVICES, back_at_the_third_probe)
    async with FastRollout.running(ts_env, db) as rollout:
        await rollout.start(batch_size=1)
        summary = await rollout.result()

    assert (summary.completed, summary.failed) == (3, 0)
    assert db.finishes(hit) == [CommunityStatus.PAUSED.value, CommunityStatus.COMPLETED.value]
    assert len(db.calls_to(SCAN_WEBSITES, hit)) == 3 + 1  # the phase's retries, then again
    statuses = [(c.status, c.paused_reason or "") for c in db.status_changes]
    assert statuses[0][0] is RolloutStatus.PAUSED
    assert statuses[0][1].startswith(outage + " (phase 2")
    assert statuses[1] == (RolloutStatus.IN_PROGRESS, "")
    probes = db.calls_to(SERVICES)
    assert len(probes) == 3  # two found Postgres still out, the third found it back
    assert all(60 <= gap < 60 + SLACK_S for gap in intervals(probes))
    assert db.begun() == [first, hit, hit, last]


async def test_a_daily_quota_pause_ends_at_midnight_pacific(ts_env: WorkflowEnvironment) -> None:
    db = FakeRolloutDb("WA", clock=ts_env.get_current_time, communities=2)
    blocked = db.community_ids[1]
    refused: list[Call] = []

    async def quota_gone_once(call: Call) -> None:
        if call.community_id == blocked and not refused:
            refused.append(call)
            raise to_temporal_error(QuotaExceededError("daily limit", per_day=True))

    db.on(PLACES_SEARCH, quota_gone_once)
    async with FastRollout.running(ts_env, db) as rollout:
        await rollout.start(batch_size=1)
        summary = await rollout.result()

    assert (summary.completed, summary.failed) == (2, 0)
    (paused_at,) = [c.at for c in refused]
    again = [c.at for c in db.calls_to(PLACES_SEARCH, blocked)][-1]
    midnight = next_pacific_midnight(paused_at)
    assert midnight <= again < midnight + timedelta(minutes=5)
    assert db.calls_to(SERVICES) == []  # a quota is waited out, not probed
