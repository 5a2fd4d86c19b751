"""Helpers shared by the workflows (deterministic)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from rollout.dto import RetrySpec

T = TypeVar("T")

# Bookkeeping activities are short database writes: retry them quickly and for long
# (a database restart must not fail a rollout), except for input errors.
RECORD_TIMEOUT = timedelta(seconds=30)
RECORD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=["RolloutInputError", "ActiveRolloutExists"],
)


async def record(name: str, arg: object, result_type: type[T], *, summary: str) -> T:
    """Run a bookkeeping activity on the workflow's own task queue."""
    result: T = await workflow.execute_activity(
        name,
        arg,
        result_type=result_type,
        start_to_close_timeout=RECORD_TIMEOUT,
        retry_policy=RECORD_RETRY,
        summary=summary[:200],
    )
    return result


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
