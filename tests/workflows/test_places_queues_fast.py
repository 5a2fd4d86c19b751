"""Where a rollout's Places requests go: each on the task queue of its API method (whose
rate limit is that method's quota), with the rollout's state code as the fairness key."""

from __future__ import annotations

from temporalio.testing import WorkflowEnvironment

from rollout.contract import (
    PLACES_GET_PLACE_TASK_QUEUE,
    PLACES_SEARCH_NEARBY_TASK_QUEUE,
    PLACES_SEARCH_TEXT_TASK_QUEUE,
    PLACES_TASK_QUEUE,
    places_task_queue,
    rollout_state_code,
)
from rollout.places.pricing import Endpoint
from tests.workflows.fakes import PLACES_ENRICH, PLACES_SEARCH, FakeRolloutDb
from tests.workflows.fast_harness import FastRollout
from workflows.discovery import purchase_method


async def test_each_places_request_runs_on_its_methods_queue_with_the_state_as_fairness_key(
    ts_env: WorkflowEnvironment,
) -> None:
    db = FakeRolloutDb("VT", clock=ts_env.get_current_time, communities=2)
    async with FastRollout.running(ts_env, db) as rollout:
        await rollout.start(batch_size=2)
        await rollout.result()

    searches = db.calls_to(PLACES_SEARCH)  # the fake plans one Nearby Search per community
    details = db.calls_to(PLACES_ENRICH)  # and phase 4 one Place Details
    assert len(searches) == len(details) == 2
    assert {c.task_queue for c in searches} == {PLACES_SEARCH_NEARBY_TASK_QUEUE}
    assert {c.task_queue for c in details} == {PLACES_GET_PLACE_TASK_QUEUE}
    assert {c.fairness_key for c in searches + details} == {"VT"}


def test_a_purchase_lines_method_follows_from_its_number() -> None:
    # The purchase list numbers its searches first, then its Place Details.
    assert [purchase_method(seq, searches=2) for seq in range(4)] == [
        Endpoint.SEARCH_TEXT,
        Endpoint.SEARCH_TEXT,
        Endpoint.GET_PLACE,
        Endpoint.GET_PLACE,
    ]
    assert places_task_queue(Endpoint.SEARCH_TEXT) == PLACES_SEARCH_TEXT_TASK_QUEUE
    # A carry from before the split does not say which lines are searches: the old queue.
    assert places_task_queue(None) == PLACES_TASK_QUEUE


def test_the_fairness_key_comes_from_the_rollouts_workflow_id() -> None:
    assert rollout_state_code("state-rollout-TX") == "TX"
    assert rollout_state_code("state-rollout-TX/community-4699066/discovery") == "TX"
    assert rollout_state_code("places-retention-run-2026-11-30T03:00:00Z") is None
