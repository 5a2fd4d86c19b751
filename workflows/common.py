"""Helpers shared by the workflows (deterministic)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Coroutine, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.types import MethodAsyncSingleParam
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from rollout.contract import (
        PLACES_NON_RETRYABLE,
        RECORD_NON_RETRYABLE,
        places_task_queue,
        rollout_state_code,
    )
    from rollout.payloads import RetrySpec
    from rollout.places.pricing import Endpoint

P = TypeVar("P")
R = TypeVar("R")
# An activity method of one of the activities/ classes, taking one payload.
Activity = MethodAsyncSingleParam[Any, P, R]
Job = Callable[[], Coroutine[Any, Any, None]]

# One Places request: the client's own timeout is 10 s; the operator's throttle comes on top.
PLACES_TIMEOUT = timedelta(seconds=30)

# Bookkeeping activities are short database writes: retry them quickly and for long
# (a database restart must not fail a rollout), except for input errors.
RECORD_TIMEOUT = timedelta(seconds=30)
# Planning a big city's purchases is CPU work on every id it sighted (New York: about 20 s
# on a busy 2-core machine): longer than a write, and retried from scratch when cut off.
PLANNING_TIMEOUT = timedelta(minutes=5)
# ... and it heartbeats meanwhile: a worker killed under it is noticed in this time.
PLANNING_HEARTBEAT = timedelta(seconds=30)
RECORD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=list(RECORD_NON_RETRYABLE),
)


async def record(
    activity: Activity[P, R],
    arg: P,
    *,
    summary: str,
    start_to_close: timedelta = RECORD_TIMEOUT,
    heartbeat: timedelta | None = None,
) -> R:
    """Run a bookkeeping activity on the workflow's own task queue (`heartbeat`: the
    activity heartbeats, so a worker that dies under it is noticed in that time rather than
    at `start_to_close`)."""
    return await workflow.execute_activity_method(
        activity,
        arg,
        start_to_close_timeout=start_to_close,
        heartbeat_timeout=heartbeat,
        retry_policy=RECORD_RETRY,
        summary=summary[:200],
    )


def retry_policy(spec: RetrySpec, non_retryable: Sequence[str]) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=spec.initial_s),
        backoff_coefficient=spec.backoff,
        maximum_interval=timedelta(seconds=spec.maximum_s),
        maximum_attempts=spec.attempts,
        non_retryable_error_types=list(non_retryable),
    )


def should_continue_as_new(limit: int | None) -> bool:
    """Time to hand over to a fresh run: the server suggests it, or the history reached
    `limit` events (a test hook that makes continue-as-new happen in small runs)."""
    info = workflow.info()
    if info.is_continue_as_new_suggested():
        return True
    return limit is not None and info.get_current_history_length() >= limit


def rollout_priority(state_code: str | None) -> Priority:
    """The Priority of a state's rollout: its state code as the fairness key, so the states
    rolled out at once share each Places method's quota evenly (the places queues dispatch
    fairly between keys); everything a rollout starts inherits it."""
    return Priority(fairness_key=state_code or None)


def places_priority() -> Priority:
    """This workflow's own Priority, with its rollout's state code as the fairness key when
    it has none: a rollout started before the fairness key existed, or by a client that
    did not set one, still shares the quota by state."""
    own = workflow.info().priority
    if own.fairness_key:
        return own
    state = rollout_state_code(workflow.info().workflow_id)
    return dataclasses.replace(own, fairness_key=state) if state else own


async def places_request(
    activity: Activity[P, R],
    arg: P,
    *,
    method: Endpoint | None,
    retry: RetrySpec,
    throttle_ms: int,
    summary: str,
) -> R:
    """One Places request as one activity on the rate-limited queue of its API `method`
    (None: not known, the shared `rollout-places`); the activity waits `throttle_ms` before
    its request, so its timeout includes it."""
    return await workflow.execute_activity_method(
        activity,
        arg,
        task_queue=places_task_queue(method),
        start_to_close_timeout=PLACES_TIMEOUT + timedelta(milliseconds=throttle_ms),
        # On cancel, wait for the attempt to end, so its billed request is logged before
        # the community's cost is totted up.
        cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        retry_policy=retry_policy(retry, PLACES_NON_RETRYABLE),
        summary=summary,
        priority=places_priority(),
    )


async def run_pool(
    more: Callable[[], bool], take: Job, *, at_once: int, continue_as_new_after: int | None
) -> bool:
    """Run the jobs `take` hands out while `more()`, `at_once` at a time, until there are no
    more and none is running. A failed job fails the pool (and cancels the others). True
    when it stopped early because the history is long enough to continue-as-new."""
    # A list, in start order: a set of tasks iterates in an order that can differ between
    # a run and its replay, and the order of results and cancellations must not.
    pending: list[asyncio.Task[None]] = []
    draining = False
    try:
        while True:
            while not draining and len(pending) < max(at_once, 1) and more():
                pending.append(asyncio.create_task(take()))
            if not pending:
                break
            done, _ = await workflow.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            finished = [task for task in pending if task in done]
            pending = [task for task in pending if task not in done]
            for task in finished:
                task.result()
            if not draining and should_continue_as_new(continue_as_new_after):
                draining = True  # let running jobs end, then hand over the rest
    except BaseException:
        for other in pending:
            other.cancel()
        raise
    return draining and more()
