"""Signed webhooks: how an outbox row reaches a platform, for phase 6 and the relay.

A row is POSTed as JSON {"delivery_id", "platform", "entity_type", "entity_id", "event",
"version", "payload"}, signed with HMAC-SHA256 over "<timestamp>.<body>" (header
X-Rollout-Signature: sha256=<hex>, X-Rollout-Timestamp), with X-Rollout-Delivery: the
event id "<outbox id>.<version>", the same for every retry of one version, for the receiver
to apply each event once, and X-Rollout-Event: "<entity_type>.<event>".

A sender claims a row before posting it (a lease in `claimed_until`), so phase 6 and the
relay, or two relays, do not post it at once; a lease that outlives a crashed sender lapses.
Transient failures (network, 408, 425, 429, 5xx) leave the row pending until it has been
tried PLATFORM_WEBHOOK_MAX_ATTEMPTS times, then it is failed; other 4xx answers fail it at
once. Either way `next_attempt_at` backs it off exponentially, and the relay tries it again
when that time has come. An outcome is recorded only for the version that was posted: a
payload changed meanwhile stays pending for its own delivery.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import httpx
from sqlalchemy import (
    Boolean,
    ColumnElement,
    Interval,
    Table,
    bindparam,
    case,
    func,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from rollout.db.models import PlatformOutbox
from rollout.phase_settings import PhaseSettings
from rollout.phases.seeding.outbox import OutboxItem
from rollout.status import Platform

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Rollout-Signature"
TIMESTAMP_HEADER = "X-Rollout-Timestamp"
DELIVERY_HEADER = "X-Rollout-Delivery"
EVENT_HEADER = "X-Rollout-Event"
TRANSIENT_STATUSES = frozenset({408, 425, 429})

# How far a delivery's timestamp may be from the receiver's clock: a captured request
# replayed later is refused, while ordinary clock skew and network delay pass.
REPLAY_WINDOW_S = 300

# How long a sender holds a claimed row: longer than any batch of posts takes (each post
# is bounded by PLATFORM_WEBHOOK_TIMEOUT_S), short enough that a crashed sender's rows are
# soon taken up again.
LEASE = dt.timedelta(minutes=10)


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: bytes,
    timestamp: str,
    body: bytes,
    header: str,
    *,
    now: float | None = None,
    window_s: float = REPLAY_WINDOW_S,
) -> bool:
    """What a receiving platform does (used by the tests): the signature matches and the
    timestamp is within `window_s` seconds of `now` (the receiver's clock)."""
    try:
        stamp = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - stamp) > window_s:
        return False
    return hmac.compare_digest(sign(secret, stamp, body), header)


@dataclass(frozen=True, slots=True)
class Backoff:
    """The wait before an undelivered row is tried again: `initial_s` doubled for each
    attempt so far, at most `maximum_s`."""

    initial_s: float = 30.0
    maximum_s: float = 3600.0

    def after(self, attempts: int) -> dt.timedelta:
        exponent = min(max(attempts - 1, 0), 30)
        return dt.timedelta(seconds=min(self.initial_s * 2**exponent, self.maximum_s))


@dataclass(frozen=True, slots=True)
class Claim:
    """One outbox row as a sender claimed it."""

    id: int
    platform: str
    entity_type: str
    entity_id: int
    event: str
    version: int
    payload: dict[str, Any]
    attempts: int

    @property
    def event_id(self) -> str:
        # Stable across retries of one version, new for every change: receivers drop
        # repeats by it without dropping updates.
        return f"{self.id}.{self.version}"

    def body(self) -> bytes:
        return json.dumps(
            {
                "delivery_id": self.event_id,
                "platform": self.platform,
                "entity_type": self.entity_type,
                "entity_id": self.entity_id,
                "event": self.event,
                "version": self.version,
                "payload": self.payload,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()


CLAIM_COLUMNS = (
    PlatformOutbox.id,
    PlatformOutbox.platform,
    PlatformOutbox.entity_type,
    PlatformOutbox.entity_id,
    PlatformOutbox.event,
    PlatformOutbox.version,
    PlatformOutbox.payload,
    PlatformOutbox.attempts,
)


def claims(rows: Sequence[Any]) -> list[Claim]:
    return [Claim(*row) for row in rows]


def unclaimed() -> ColumnElement[bool]:
    return or_(PlatformOutbox.claimed_until.is_(None), PlatformOutbox.claimed_until < func.now())


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the posts of one claimed row came to."""

    claim: Claim
    tries: int
    error: str | None = None
    permanent: bool = False


@dataclass(slots=True)
class DeliveryCounts:
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    still_pending: int = 0


class WebhookSender:
    """Posts claimed rows to their platform's URL, signed."""

    def __init__(self, client: httpx.AsyncClient, settings: PhaseSettings) -> None:
        self.client = client
        self.settings = settings
        self.secret = settings.platform_webhook_secret.get_secret_value().encode()

    def url(self, platform: str) -> str | None:
        return self.settings.platform_webhook_urls.get(Platform(platform))

    async def post(self, claim: Claim, url: str) -> tuple[str | None, bool, float | None]:
        """One POST: (error or None, whether the error is permanent, Retry-After)."""
        body = claim.body()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.secret, timestamp, body),
            TIMESTAMP_HEADER: str(timestamp),
            DELIVERY_HEADER: claim.event_id,
            EVENT_HEADER: f"{claim.entity_type}.{claim.event}",
        }
        try:
            response = await self.client.post(
                url, content=body, headers=headers, timeout=self.settings.platform_webhook_timeout_s
            )
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:500], False, None
        if 200 <= response.status_code < 300:
            return None, False, None
        error = f"HTTP {response.status_code}: {response.text[:200]}"
        permanent = response.status_code < 500 and response.status_code not in TRANSIENT_STATUSES
        return error, permanent, _retry_after(response.headers.get("retry-after"))


def _retry_after(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value else None
    except ValueError:
        return None


async def record_outcomes(
    session: AsyncSession,
    outcomes: Sequence[Outcome],
    *,
    max_attempts: int,
    backoff: Backoff,
    counts: DeliveryCounts,
    log_each: bool = True,
) -> None:
    """Write the outcomes of posted rows and release their claims. An outcome counts only
    for the version that was posted (a row changed meanwhile is pending at a newer one).
    `log_each`: a warning per row not delivered (a caller of large batches sums them up)."""
    if not outcomes:
        return
    table = cast(Table, PlatformOutbox.__table__)
    params: list[dict[str, Any]] = []
    for o in outcomes:
        attempts = o.claim.attempts + o.tries
        if o.error is None:
            status, delay = "delivered", None
            counts.delivered += 1
        elif o.permanent or attempts >= max_attempts:
            status, delay = "failed", backoff.after(attempts)
            counts.failed += 1
        else:
            status, delay = "pending", backoff.after(attempts)
            counts.still_pending += 1
        params.append(
            {
                "b_id": o.claim.id,
                "b_version": o.claim.version,
                "b_status": status,
                "b_tries": o.tries,
                "b_error": o.error,
                "b_delivered": o.error is None,
                "b_delay": delay,
            }
        )
    now = func.now()
    await session.execute(
        update(table)
        .where(table.c.id == bindparam("b_id"), table.c.version == bindparam("b_version"))
        .values(
            status=bindparam("b_status"),
            attempts=table.c.attempts + bindparam("b_tries"),
            last_error=bindparam("b_error"),
            delivered_at=case((bindparam("b_delivered", type_=Boolean()), now), else_=null()),
            next_attempt_at=now + bindparam("b_delay", type_=Interval()),
            claimed_until=None,
            updated_at=now,
        ),
        params,
    )
    # Rows whose payload changed while they were posted: only the claim is released.
    await session.execute(
        update(PlatformOutbox)
        .where(
            PlatformOutbox.id.in_([o.claim.id for o in outcomes]),
            PlatformOutbox.claimed_until.is_not(None),
        )
        .values(claimed_until=None)
    )
    for o in outcomes if log_each else ():
        if o.error is not None:
            log.warning("delivery %s to %s: %s", o.claim.event_id, o.claim.platform, o.error)


class WebhookDelivery:
    """Phase 6's own delivery (the fast path): the pending rows of the items it just wrote,
    each claimed, tried up to PLATFORM_WEBHOOK_ATTEMPTS_PER_RUN times with short waits,
    and its outcome recorded."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        client: httpx.AsyncClient,
        settings: PhaseSettings,
        *,
        backoff_s: float = 1.0,
        retry_backoff: Backoff | None = None,
    ) -> None:
        self.sessions = sessions
        self.sender = WebhookSender(client, settings)
        self.settings = settings
        self.backoff_s = backoff_s
        self.retry_backoff = retry_backoff or Backoff()

    async def deliver(
        self, items: Sequence[OutboxItem], counts: DeliveryCounts | None = None
    ) -> DeliveryCounts:
        """POST every pending row of `items` whose platform has a webhook URL; `counts`
        (updated as rows are done) lets a caller report progress meanwhile."""
        counts = counts if counts is not None else DeliveryCounts()
        urls = self.settings.platform_webhook_urls
        keys: dict[tuple[Platform, str], list[int]] = defaultdict(list)
        for i in items:
            if i.platform in urls:
                keys[(i.platform, i.entity_type)].append(i.entity_id)
        if not keys:
            return counts
        async with self.sessions() as session:
            pending: list[int] = []
            for (platform, entity_type), ids in keys.items():
                pending += (
                    await session.scalars(
                        select(PlatformOutbox.id)
                        .where(
                            PlatformOutbox.platform == platform.value,
                            PlatformOutbox.entity_type == entity_type,
                            PlatformOutbox.entity_id.in_(ids),
                            PlatformOutbox.status == "pending",
                        )
                        .order_by(PlatformOutbox.id)
                    )
                ).all()
        gate = asyncio.Semaphore(self.settings.platform_webhook_concurrency)

        async def one(row_id: int) -> None:
            async with gate:
                await self._deliver_row(row_id, counts)

        await asyncio.gather(*(one(row_id) for row_id in pending))
        return counts

    async def _claim(self, row_id: int) -> Claim | None:
        """The row, held for this sender; None when another sender holds it or it is no
        longer pending."""
        async with self.sessions.begin() as session:
            rows = await session.execute(
                update(PlatformOutbox)
                .where(
                    PlatformOutbox.id == row_id,
                    PlatformOutbox.status == "pending",
                    unclaimed(),
                )
                .values(claimed_until=func.now() + LEASE)
                .returning(*CLAIM_COLUMNS)
            )
            found = claims(rows.all())
        return found[0] if found else None

    async def _deliver_row(self, row_id: int, counts: DeliveryCounts) -> None:
        claim = await self._claim(row_id)
        if claim is None:
            return
        url = self.sender.url(claim.platform)
        assert url is not None  # only rows of configured platforms are listed
        tries = 0
        error: str | None = None
        permanent = False
        for attempt in range(self.settings.platform_webhook_attempts_per_run):
            if attempt:
                counts.retried += 1
            tries += 1
            error, permanent, retry_after = await self.sender.post(claim, url)
            if error is None or permanent:
                break
            if attempt + 1 < self.settings.platform_webhook_attempts_per_run:
                delay = self.backoff_s * 2**attempt
                await asyncio.sleep(min(max(delay, retry_after or 0.0), 30.0))
        async with self.sessions.begin() as session:
            await record_outcomes(
                session,
                [Outcome(claim, tries, error, permanent)],
                max_attempts=self.settings.platform_webhook_max_attempts,
                backoff=self.retry_backoff,
                counts=counts,
            )
