"""Typed Places API errors, mapped from Google's google.rpc.Status error bodies.

Classification keys on the HTTP status, the body's `status`, and the ErrorInfo `reason` and
`metadata` (docs/places.md, Errors), never on the English message, which Google rewords.
Every error says whether retrying the same request can help (`retryable`) and, when the
server said how long to wait, `retry_after` in seconds.

Per-minute versus per-day quota (both are 429 RESOURCE_EXHAUSTED with ErrorInfo reason
RATE_LIMIT_EXCEEDED) is told apart, in this order, by:
  1. `metadata.quota_unit`, the rate unit Google's quota errors carry ("1/min/{project}",
     "1/d/{project}");
  2. `metadata.quota_limit`, the limit's name ("SearchTextRequestPerMinutePerProject",
     "...PerDayPerProject");
  3. failing both, the message's "per day" (older bodies carry no metadata).
A 429 that none of these marks as per-day is treated as per-minute: retrying it with backoff
costs little, while treating a per-minute 429 as fatal loses the run (docs/places.md, Errors).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from enum import StrEnum
from typing import Any

from rollout.places.pricing import Endpoint

_MAX_MESSAGE = 500


class PermissionProblem(StrEnum):
    """Why the API refused the credentials or the project (PermissionDeniedError.problem)."""

    INVALID_KEY = "invalid_key"  # API_KEY_INVALID (Google answers 400 for it)
    API_DISABLED = "api_disabled"  # SERVICE_DISABLED: Places API (New) not enabled
    BILLING_DISABLED = "billing_disabled"  # BILLING_DISABLED
    KEY_RESTRICTED = "key_restricted"  # API_KEY_SERVICE_BLOCKED, API_KEY_*_BLOCKED
    OTHER = "other"  # e.g. a request without a key


class PlacesError(Exception):
    """Base of every error the Places client raises for a request that did not succeed."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        status: str | None = None,
        reason: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        endpoint: Endpoint | None = None,
        billed_sku: str | None = None,
        billed_cost: Decimal | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code  # HTTP status, None when no response arrived
        self.status = status  # google.rpc status word, e.g. RESOURCE_EXHAUSTED
        self.reason = reason  # ErrorInfo reason, e.g. RATE_LIMIT_EXCEEDED
        self.retryable = retryable
        self.retry_after = retry_after  # seconds, from Retry-After or RetryInfo
        self.endpoint = endpoint
        # Set when Google bills (or may bill) the request although it failed on our side:
        # a broken 200 body, or a request sent whose answer never came. Log it as billed.
        self.billed_sku = billed_sku
        self.billed_cost = billed_cost

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status_code={self.status_code!r}, status={self.status!r}, "
            f"reason={self.reason!r}, retryable={self.retryable!r}, "
            f"retry_after={self.retry_after!r}, message={self.message!r})"
        )


class QuotaExceededError(PlacesError):
    """429 RESOURCE_EXHAUSTED. Per-minute: retryable (wait >= 30 s or Retry-After).
    Per-day: not retryable; the run should stop until the quota resets."""

    def __init__(
        self,
        message: str,
        *,
        per_day: bool,
        quota_limit: str | None = None,
        quota_metric: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, retryable=not per_day, **kwargs)
        self.per_day = per_day
        self.quota_limit = quota_limit
        self.quota_metric = quota_metric


class InvalidRequestError(PlacesError):
    """400 INVALID_ARGUMENT: the request itself is wrong; retrying it cannot help."""


class PermissionDeniedError(PlacesError):
    """The key or the project is refused: invalid key, API not enabled, billing off, key
    restricted. `problem` says which. Never retryable: an operator must act."""

    def __init__(self, message: str, *, problem: PermissionProblem, **kwargs: Any) -> None:
        super().__init__(message, retryable=False, **kwargs)
        self.problem = problem

    @property
    def invalid_key(self) -> bool:
        return self.problem is PermissionProblem.INVALID_KEY

    @property
    def api_disabled(self) -> bool:
        return self.problem is PermissionProblem.API_DISABLED


class NotFoundError(PlacesError):
    """404 NOT_FOUND: e.g. an obsolete place id in Place Details."""


class ServerError(PlacesError):
    """5xx: Google's side failed; retry with backoff (>= 1 s)."""


class PlacesTimeoutError(PlacesError):
    """No complete answer within the client's timeout.

    When the request was sent and its answer did not arrive in time (a read timeout), Google
    may well have answered, and billed, it: `billed_sku` / `billed_cost` are then set and the
    request is logged as billed, so the usage log is never below the bill. A timeout before
    the request was sent (connecting, or waiting for a pooled connection) leaves them unset."""


class PlacesConnectionError(PlacesError):
    """The connection failed or broke before a response (refused, reset, protocol error)."""


class MalformedResponseError(PlacesError):
    """A 200 whose body is not the JSON the API documents (truncated, not JSON, wrong shape).

    Google bills a request it answered successfully, even if the body was then lost on the
    way, so `billed_sku` / `billed_cost` say what this response cost: log them like a success.
    """

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, retryable=True, **kwargs)


# --------------------------------------------------------------------------------------
# Mapping responses to errors
# --------------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")  # google.protobuf.Duration JSON: "41s"


def _retry_after_header(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP-date (RFC 9110 section 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max((when - dt.datetime.now(dt.UTC)).total_seconds(), 0.0)


def _details(error: Mapping[str, Any], suffix: str) -> list[Mapping[str, Any]]:
    details = error.get("details")
    if not isinstance(details, list):
        return []
    return [
        d for d in details if isinstance(d, Mapping) and str(d.get("@type", "")).endswith(suffix)
    ]


def _is_per_day(metadata: Mapping[str, Any], message: str) -> bool:
    unit = str(metadata.get("quota_unit") or "")
    if "/d/" in unit or unit.endswith("/d"):
        return True
    if "/min/" in unit or unit.endswith("/min"):
        return False
    limit = str(metadata.get("quota_limit") or "").lower()
    if "perday" in limit or "per day" in limit:
        return True
    if "perminute" in limit or "per minute" in limit:
        return False
    return "per day" in message.lower()


_PROBLEMS = {
    "API_KEY_INVALID": PermissionProblem.INVALID_KEY,
    "SERVICE_DISABLED": PermissionProblem.API_DISABLED,
    "BILLING_DISABLED": PermissionProblem.BILLING_DISABLED,
    "API_KEY_SERVICE_BLOCKED": PermissionProblem.KEY_RESTRICTED,
    "API_KEY_HTTP_REFERRER_BLOCKED": PermissionProblem.KEY_RESTRICTED,
    "API_KEY_IP_ADDRESS_BLOCKED": PermissionProblem.KEY_RESTRICTED,
    "API_KEY_ANDROID_APP_BLOCKED": PermissionProblem.KEY_RESTRICTED,
    "API_KEY_IOS_APP_BLOCKED": PermissionProblem.KEY_RESTRICTED,
}


def error_from_response(
    endpoint: Endpoint,
    status_code: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    redact: Callable[[str], str] = lambda text: text,
) -> PlacesError:
    """The typed error for a non-200 response. `redact` scrubs secrets from any text that
    ends up in the error (the API key must never appear in an exception)."""
    error: Mapping[str, Any] = {}
    try:
        parsed = json.loads(body)
        if isinstance(parsed, Mapping) and isinstance(parsed.get("error"), Mapping):
            error = parsed["error"]
    except (ValueError, UnicodeDecodeError):
        pass
    status = str(error["status"]) if error.get("status") else None
    google_message = redact(str(error.get("message") or body[:200].decode("utf-8", "replace")))
    infos = _details(error, "google.rpc.ErrorInfo")
    reason = str(infos[0]["reason"]) if infos and infos[0].get("reason") else None
    raw_metadata = infos[0].get("metadata") if infos else None
    metadata: Mapping[str, Any] = raw_metadata if isinstance(raw_metadata, Mapping) else {}

    retry_after = _retry_after_header(headers.get("retry-after"))
    if retry_after is None:
        for info in _details(error, "google.rpc.RetryInfo"):
            match = _DURATION.match(str(info.get("retryDelay", "")))
            if match:
                retry_after = float(match.group(1))

    text = f"Places {endpoint.value}: HTTP {status_code}"
    text += f" {status}" if status else ""
    text += f" ({reason})" if reason else ""
    text = redact(f"{text}: {google_message}"[:_MAX_MESSAGE])
    common: dict[str, Any] = {
        "status_code": status_code,
        "status": status,
        "reason": reason,
        "retry_after": retry_after,
        "endpoint": endpoint,
    }

    if status_code == 429 or status == "RESOURCE_EXHAUSTED":
        limit = metadata.get("quota_limit")
        metric = metadata.get("quota_metric")
        return QuotaExceededError(
            text,
            per_day=_is_per_day(metadata, google_message),
            quota_limit=str(limit) if limit else None,
            quota_metric=str(metric) if metric else None,
            **common,
        )
    if reason in _PROBLEMS or status_code in (401, 403):
        problem = _PROBLEMS.get(reason or "", PermissionProblem.OTHER)
        return PermissionDeniedError(text, problem=problem, **common)
    if status_code == 400:
        return InvalidRequestError(text, **common)
    if status_code == 404:
        return NotFoundError(text, **common)
    if status_code == 408:
        return PlacesTimeoutError(text, retryable=True, **common)
    if status_code >= 500:
        return ServerError(text, retryable=True, **common)
    return PlacesError(text, retryable=False, **common)
