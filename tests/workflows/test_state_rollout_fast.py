"""StateRolloutWorkflow on the time-skipping test server, with fake activities.

The real workflows run in-process; every activity is a fake from tests/workflows/fakes.py.
A test holds communities inside phase 2 to control how long they take, and waits on the
fakes' records or the `progress` query (real-time deadlines, the test clock standing still)
before asserting. Waits of minutes (grace period, busy child ids, retries) are skipped.

A child terminated from outside is tested on the real dev server instead
(tests/workflows/test_rollout_live.py): this test server never tells the parent that a child
was terminated.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from decimal import Decimal

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from rollout.contract import ErrorType, community_workflow_id
from rollout.payloads import (
    MAX_BATCH_SIZE,
    BatchSizeInput,
    PauseInput,
    ResumeInput,
)
from rollout.status import CommunityStatus, RolloutStatus
from tests.workflows.fakes import (
    BEGIN,
    BUSINESSES_PER_COMMUNITY,
    FINALIZE,
    FINISH,
    INITIATE,
    NEWS_SOURCES_PER_COMMUNITY,
    PLACES_SEARCH,
    SCAN_WEBSITES,
    WAIT_S,
    Call,
    FakeRolloutDb,
    until,
)
from tests.workflows.fast_harness import FastRollout
from workflows.state_rollout import (
    CANCEL_GRACE,
    CHILD_ID_BUSY_TRIES,
    CHILD_ID_BUSY_WAIT,
    StateRolloutWorkflow,
)


def held(db: FakeRolloutDb) -> set[int]:
    return set(db.waiting_in(SCAN_WEBSITES))


async def test_an_invalid_start_input_fails_before_anything_is_recorded(
    ts_env: WorkflowEnvironment,
) -> None:
    db = FakeRolloutDb("XX", clock=ts_env.get_current_time)
    async with FastRollout.running(ts_env, db) as rollout:
        await rollout.start(batch_size=0)
        with pytest.raises(WorkflowFailureError) as failure:
            await rollout.result()

    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == ErrorType.INVALID_ROLLOUT_INPUT
    assert "unknown state code 'XX'" in cause.message
    assert "batch_size 0 is outside" in cause.message
    assert db.calls == []


async def test_sliding_window_refills_a_freed_slot_at_once(ts_env: WorkflowEnvironment) -> None:
    db = FakeRolloutDb("DE", clock=ts_env.get_current_time, communities=5)
    db.hold(SCAN_WEBSITES, *db.community_ids)
    priority = [104, 105]
    async with FastRollout.running(ts_env, db) as rollout:
        await rollout.start(batch_size=2, priority_communities=priority)
        await until(lambda: len(held(db)) == 2, "the first window")
        order = db.ids_by_position()
        assert order == [104, 105, 101, 102, 103]  # the fake database ranks priority first
        assert held(db) == set(order[:2])
        doc = await rollout.progress()
        assert [c.community_id for c in doc.in_flight] == order[:2]
        assert (doc.status_breakdown.processing, doc.status_breakdown.queued) == (2, 3)

        # The first child ends while the second is still held: its slot is refilled at
        # once, not when the whole window has finished.
        db.release(SCAN_WEBSITES, order[0])
        await until(lambda: order[2] in held(db), "the freed slot to be refilled")
        assert held(db) == {order[1], order[2]}
        doc = await rollout.progress()
        assert [c.community_id for c in doc.in_flight] == [order[1], order[2]]
        assert doc.rollout.completed_communities == 1

        db.release(SCAN_WEBSITES, order[2])
        await until(lambda: order[3] in held(db), "the next refill")
        assert held(db) == {order[1], order[3]}
        db.release_all()
        summary = await rollout.result()
        doc = await rollout.progress()
        started = await rollout.children_started()

    assert started == order  # in position order, each once
    assert sorted(db.begun()) == sorted(order)
    assert db.peak_running == 2
    assert (summary.status, summary.completed, summary.failed) == (RolloutStatus.COMPLETED, 5, 0)
    assert doc.rollout.status is RolloutStatus.COMPLETED
    assert doc.rollout.completed_communities == 5
    assert doc.progress_percentage == 100.0
    assert doc.total_businesses == 5 * BUSINESSES_PER_COMMUNITY
    assert doc.total_news_sources == 5 * NEWS_SOURCES_PER_COMMUNITY
    assert doc.total_cost == summary.cost_usd == 5 * db.cost_per_community


async def test_pause_lets_running_children_finish_and_resume_starts_the_rest(
    ts_env: WorkflowEnvironment,
) -> None:
    db = FakeRolloutDb("RI", clock=ts_env.get_current_time, communities=4)
    order = db.community_ids
    db.hold(SCAN_WEBSITES, *order[:2])
    async with FastRollout.running(ts_env, db) as rollout:
        handle = await rollout.start(batch_size=2)
        await until(lambda: held(db) == set(order[:2]), "the first window")

        await handle.signal(StateRolloutWorkflow.pause, PauseInput(reason="maintenance window"))
        doc = await rollout.wait_progress(
            lambda d: d.rollout.status is RolloutStatus.PAUSED, "the pause"
        )
        assert doc.paused_reason == "maintenance window"
        assert len(doc.in_flight) == 2

        # The two in flight finish; nothing new starts while paused.
        db.release_all()
        doc = await rollout.wait_progress(
            lambda d: d.rollout.completed_communities == 2 and not d.in_flight,
            "the running children to finish",
        )
        assert doc.rollout.status is RolloutStatus.PAUSED
        assert (doc.status_breakdown.paused, doc.status_breakdown.queued) == (2, 0)
        assert sorted(db.begun()) == order[:2]
        await until(lambda: bool(db.status_changes), "the pause to be recorded")
        assert [(c.status, c.paused_reason) for c in db.status_changes] == [
            (RolloutStatus.PAUSED, "maintenance window")
        ]

        await handle.signal(StateRolloutWorkflow.resume)
        summary = await rollout.result()
        started = await rollout.children_started()

    assert started == order
    assert sorted(db.begun()) == order
    assert summary.completed == 4
    assert [c.status for c in db.status_changes] == [
        RolloutStatus.PAUSED,
        RolloutStatus.IN_PROGRESS,
    ]


async def test_cancel_cancels_the_children_in_flight(ts_env: WorkflowEnvironment) -> None:
    db = FakeRolloutDb("CT", clock=ts_env.get_current_time, communities=4)
    order = db.community_ids
    # One child inside phase 1 (a Places request of its discovery child workflow), one
    # inside phase 2 (an activity of its own). The held fakes heartbeat, so they hear of
    # the cancel at once (the real Places activity does not: its request ends first).
    db.hold(PLACES_SEARCH, order[0])
    db.hold(SCAN_WEBSITES, order[1])
    async with FastRollout.running(ts_env, db) as rollout:
        handle = await rollout.start(batch_size=2)
        await until(
            lambda: db.waiting_in(PLACES_SEARCH) == [order[0]] and held(db) == {order[1]},
            "the first window",
        )
        cancelled_at = await rollout.now()
        await handle.signal(StateRolloutWorkflow.cancel)
        # Without time skipping: a rollout that sat out its grace period would time out.
        summary = await rollout.result(skip_time=False)
        doc = await rollout.progress()

    # Both running attempts saw the cancel; their children recorded it and reported.
    assert {(c.activity, c.community_id) for c in db.cancelled} == {
        (PLACES_SEARCH, order[0]),
        (SCAN_WEBSITES, order[1]),
    }
    assert all(db.finishes(c) == ["cancelled"] for c in order[:2])
    assert sorted(db.begun()) == order[:2]
    assert summary.status is RolloutStatus.CANCELLED
    # Two cancelled by their children, two never started (cancelled by finalize_rollout).
    assert (summary.completed, summary.cancelled) == (0, 4)
    assert doc.rollout.status is RolloutStatus.CANCELLED
    assert doc.rollout.cancelled_communities == 4
    assert doc.in_flight == []
    # Every child acknowledged: the rollout did not sit out its grace period.
    (finalize,) = db.calls_to(FINALIZE)
    assert finalize.detail == "cancelled"
    assert finalize.at - cancelled_at < CANCEL_GRACE


async def test_cancel_gives_up_on_a_silent_child_after_the_grace_period(
    ts_env: WorkflowEnvironment,
) -> None:
    db = FakeRolloutDb("VT", clock=ts_env.get_current_time, communities=2)
    silent = db.community_ids[0]
    db.hold(SCAN_WEBSITES, silent)

    async def database_down(call: Call) -> None:
        # The cancelled child cannot record its end, so its report never comes: the
        # bookkeeping activity retries (1 s .. 30 s apart) for as long as the child lives.
        if call.detail == CommunityStatus.CANCELLED.value:
            raise ApplicationError("database unavailable")

    db.on(FINISH, database_down)
    async with FastRollout.running(ts_env, db) as rollout:
        handle = await rollout.start(batch_size=1)
        await until(lambda: held(db) == {silent}, "the child to run")
        cancelled_at = await rollout.now()
        await handle.signal(StateRolloutWorkflow.cancel)
        started = time.monotonic()
        summary = await rollout.result()
        real_seconds = time.monotonic() - started
        doc = await rollout.progress()

    (finalize,) = db.calls_to(FINALIZE)
    assert finalize.detail == "cancelled"
    assert finalize.at - cancelled_at >= CANCEL_GRACE  # skipped, not waited
    assert real_seconds < 15
    assert len(db.calls_to(FINISH, silent)) > 3  # the child kept trying to record its end
    assert summary.status is RolloutStatus.CANCELLED
    assert (summary.completed, summary.cancelled) == (0, 1)  # the one never started
    assert [c.community_id for c in doc.in_flight] == [silent]  # never reported


async def test_set_batch_size_widens_the_window_and_ignores_out_of_range_values(
    ts_env: WorkflowEnvironment,
) -> None:
    db = FakeRolloutDb("NH", clock=ts_env.get_current_time, communities=5)
    order = db.community_ids
    db.hold(SCAN_WEBSITES, *order)
    async with FastRollout.running(ts_env, db) as rollout:
        handle = await rollout.start(batch_size=1)
        await until(lambda: held(db) == {order[0]}, "the first child")

        await handle.signal(StateRolloutWorkflow.set_batch_size, BatchSizeInput(batch_size=0))
        await handle.signal(
            StateRolloutWorkflow.set_batch_size, BatchSizeInput(batch_size=MAX_BATCH_SIZE + 1)
        )
        await rollout.signals_handled(2)
        doc = await rollout.progress()
        assert doc.rollout.batch_size == 1
        assert [c.community_id for c in doc.in_flight] == order[:1]

        await handle.signal(StateRolloutWorkflow.set_batch_size, BatchSizeInput(batch_size=3))
        await until(lambda: held(db) == set(order[:3]), "a window of three")
        doc = await rollout.progress()
        assert doc.rollout.batch_size == 3
        assert [c.community_id for c in doc.in_flight] == order[:3]
        assert sorted(db.begun()) == order[:3]

        db.release_all()
        summary = await rollout.result()

    assert summary.completed == 5
    assert db.peak_running == 3


async def test_continue_as_new_carries_the_rollout_over(ts_env: WorkflowEnvironment) -> None:
    db = FakeRolloutDb("ME", clock=ts_env.get_current_time, communities=6)
    async with FastRollout.running(ts_env, db) as rollout:
        await rollout.start(batch_size=2, continue_as_new_after_events=40)
        summary = await rollout.result()
        doc = await rollout.progress()
        runs = await rollout.run_ids()

    assert len(runs) > 1
    state_runs = {c.workflow_run_id for c in db.calls if c.workflow_id == rollout.workflow_id}
    assert len(state_runs) > 1
    assert state_runs <= set(runs)
    # Every community exactly once, whichever run started it or heard its report.
    assert Counter(db.begun()) == dict.fromkeys(db.community_ids, 1)
    assert all(db.finishes(c) == ["completed"] for c in db.community_ids)
    assert len(db.calls_to(INITIATE)) == 1
    assert (summary.status, summary.completed) == (RolloutStatus.COMPLETED, 6)
    # The last run's totals are the whole rollout's, not its own share.
    (initiate,) = db.calls_to(INITIATE)
    assert doc.rollout.started_at == initiate.at
    assert doc.rollout.completed_communities == 6
    assert doc.total_businesses == 6 * BUSINESSES_PER_COMMUNITY
    assert doc.total_news_sources == 6 * NEWS_SOURCES_PER_COMMUNITY
    assert doc.total_cost == 6 * db.cost_per_community


async def test_a_child_id_held_elsewhere_is_retried_then_recorded_failed(
    ts_env: WorkflowEnvironment,
) -> None:
    db = FakeRolloutDb("WY", clock=ts_env.get_current_time, communities=3)
    busy = db.community_ids[1]
    async with FastRollout.running(ts_env, db) as rollout:
        # A run of an earlier rollout still holds the child's id (until the teardown).
        busy_id = community_workflow_id("WY", busy)
        await rollout.hold_id(busy_id)
        await rollout.start(batch_size=2)
        summary = await rollout.result()
        events = await rollout.events()

    failed_starts = [
        e
        for e in events
        if e.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED
        and e.start_child_workflow_execution_failed_event_attributes.workflow_id == busy_id
    ]
    assert len(failed_starts) == CHILD_ID_BUSY_TRIES
    gaps = [
        b.event_time.ToDatetime() - a.event_time.ToDatetime()
        for a, b in itertools.pairwise(failed_starts)
    ]
    assert all(gap >= CHILD_ID_BUSY_WAIT for gap in gaps)
    # The state workflow itself recorded the community as failed.
    (finish,) = db.calls_to(FINISH, busy)
    assert finish.workflow_id == rollout.workflow_id
    (recorded,) = [f for f in db.finish_inputs if f.community_id == busy]
    assert recorded.status is CommunityStatus.FAILED
    assert recorded.error is not None
    assert "could not start" in recorded.error
    # The rest of the rollout went on.
    assert busy not in db.begun()
    assert sorted(db.begun()) == [c for c in db.community_ids if c != busy]
    assert (summary.status, summary.completed, summary.failed) == (RolloutStatus.COMPLETED, 2, 1)


async def test_a_busy_child_id_does_not_hold_up_the_free_slots(
    ts_env: WorkflowEnvironment,
) -> None:
    db = FakeRolloutDb("WI", clock=ts_env.get_current_time, communities=3)
    first, busy, third = db.community_ids
    async with FastRollout.running(ts_env, db) as rollout:
        await rollout.hold_id(community_workflow_id("WI", busy))
        await rollout.start(batch_size=2)
        await rollout.result()

    # Once the first community is done, two slots are free: the third community need not
    # wait until the busy one is given up.
    (first_done,) = [c.at for c in db.calls_to(FINISH, first)]
    (third_begun,) = [c.at for c in db.calls_to(BEGIN, third)]
    (busy_given_up,) = [c.at for c in db.calls_to(FINISH, busy)]
    assert first_done < busy_given_up
    assert third_begun < busy_given_up


async def test_the_busy_child_id_limit_holds_across_continue_as_new(
    ts_env: WorkflowEnvironment,
) -> None:
    db = FakeRolloutDb("WV", clock=ts_env.get_current_time, communities=2)
    busy = db.community_ids[1]
    async with FastRollout.running(ts_env, db) as rollout:
        await rollout.hold_id(community_workflow_id("WV", busy))
        # About ten events per try: a run holds fewer than CHILD_ID_BUSY_TRIES tries.
        await rollout.start(batch_size=2, continue_as_new_after_events=100)
        # Three times what the tries take (test-server time, skipped), then look.
        await asyncio.wait_for(ts_env.sleep(CHILD_ID_BUSY_WAIT * CHILD_ID_BUSY_TRIES * 3), WAIT_S)
        runs = await rollout.run_ids()
        failed_starts = [
            e
            for run_id in runs
            for e in await rollout.events(run_id)
            if e.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED
        ]

    assert len(runs) > 1
    assert db.finishes(busy) == [CommunityStatus.FAILED.value]
    assert len(failed_starts) == CHILD_ID_BUSY_TRIES


async def test_communities_paused_together_resume_in_position_order(
    ts_env: WorkflowEnvironment,
) -> None:
    db = FakeRolloutDb("NE", clock=ts_env.get_current_time, communities=4)
    order = db.community_ids
    refused: set[int] = set()

    async def key_revoked(call: Call) -> None:
        if call.community_id in order[:2] and call.community_id not in refused:
            refused.add(call.community_id)
            raise ApplicationError(
                "API key not valid", type=ErrorType.PLACES_ACCESS, non_retryable=True
            )

    db.on(PLACES_SEARCH, key_revoked)
    # The second community's request fails only after the first one's report.
    db.hold(PLACES_SEARCH, order[1])
    async with FastRollout.running(ts_env, db) as rollout:
        handle = await rollout.start(batch_size=2)
        await until(lambda: db.finishes(order[0]) == ["paused"], "the first pause")
        db.release(PLACES_SEARCH, order[1])
        await rollout.wait_progress(lambda d: not d.in_flight, "both communities back")
        await handle.signal(StateRolloutWorkflow.resume)
        summary = await rollout.result()
        started = await rollout.children_started()

    assert summary.completed == 4
    assert started == [*order[:2], *order]


async def test_budget_pauses_before_overspending_and_resume_raises_it(
    ts_env: WorkflowEnvironment,
) -> None:
    db = FakeRolloutDb(
        "MT", clock=ts_env.get_current_time, communities=4, cost_per_community=Decimal("12")
    )
    order = db.community_ids
    async with FastRollout.running(ts_env, db) as rollout:
        handle = await rollout.start(
            batch_size=1, budget_usd=Decimal("30"), default_community_cost_usd=Decimal("10")
        )
        # $10 estimated for the first, then $12 each as measured: $24 spent, and a third
        # community would pass $30.
        doc = await rollout.wait_progress(
            lambda d: d.rollout.status is RolloutStatus.PAUSED, "the budget pause"
        )
        assert doc.paused_reason is not None
        assert doc.paused_reason.startswith("budget:")
        assert doc.rollout.completed_communities == 2
        assert doc.total_cost == Decimal("24.00")
        assert doc.in_flight == []
        assert db.begun() == order[:2]
        await until(lambda: bool(db.status_changes), "the pause to be recorded")
        assert [(c.status, c.paused_reason) for c in db.status_changes] == [
            (RolloutStatus.PAUSED, doc.paused_reason)
        ]

        await handle.signal(StateRolloutWorkflow.resume, ResumeInput(budget_usd=Decimal("100")))
        summary = await rollout.result()
        doc = await rollout.progress()

    assert db.begun() == order
    assert (summary.status, summary.completed) == (RolloutStatus.COMPLETED, 4)
    assert summary.cost_usd == Decimal("48")
    assert doc.rollout.budget_usd == Decimal("100")
