"""Places API errors in Temporal's terms: the one mapping every Places activity raises."""

from __future__ import annotations

from datetime import timedelta

from temporalio.exceptions import ApplicationError

from rollout.contract import ErrorType
from rollout.places.errors import PermissionDeniedError, PlacesError, QuotaExceededError

# Google asks clients to wait at least 30 s after a per-minute quota error.
MIN_QUOTA_RETRY = timedelta(seconds=30)


def to_temporal_error(error: PlacesError) -> ApplicationError:
    """Rollout-wide problems (bad key, API disabled, daily quota gone) stop at once and
    pause the rollout; transient errors retry after the delay the API asked for (at least
    30 s after a per-minute 429); request errors fail without retry."""
    if isinstance(error, QuotaExceededError) and error.per_day:
        return ApplicationError(
            "daily quota exhausted", type=ErrorType.PLACES_DAILY_QUOTA, non_retryable=True
        )
    if isinstance(error, PermissionDeniedError):
        return ApplicationError(error.message, type=ErrorType.PLACES_ACCESS, non_retryable=True)
    if not error.retryable:
        return ApplicationError(error.message, type=type(error).__name__, non_retryable=True)
    delay = timedelta(seconds=error.retry_after) if error.retry_after is not None else None
    if isinstance(error, QuotaExceededError):
        delay = max(delay or MIN_QUOTA_RETRY, MIN_QUOTA_RETRY)
    return ApplicationError(error.message, type=type(error).__name__, next_retry_delay=delay)
