"""The outbox relay: delivers the rows that are due, independently of phase 6.

A row is due when it is pending or failed, its backoff (`next_attempt_at`) has passed and
no sender holds it. A batch is claimed in one statement (FOR UPDATE SKIP LOCKED, then a
lease), so relays running at once, and phase 6, take disjoint rows; each row is posted once
per batch and its outcome sets its next backoff. Rows of platforms without a webhook URL
are left to the platforms to pull.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from rollout.db.models import PlatformOutbox
from rollout.phases.seeding.webhooks import (
    CLAIM_COLUMNS,
    LEASE,
    Backoff,
    Claim,
    DeliveryCounts,
    Outcome,
    WebhookSender,
    claims,
    record_outcomes,
    unclaimed,
)


@dataclass(slots=True)
class BatchCounts:
    claimed: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    # One of the batch's errors, for the log (a batch during an outage has hundreds).
    sample_error: str | None = None


async def claim_due(session: AsyncSession, platforms: list[str], limit: int) -> list[Claim]:
    """Up to `limit` due rows of `platforms`, oldest backoff first, held for LEASE."""
    t = PlatformOutbox
    due = (
        select(t.id)
        .where(
            t.status.in_(("pending", "failed")),
            t.platform.in_(platforms),
            or_(t.next_attempt_at.is_(None), t.next_attempt_at <= func.now()),
            unclaimed(),
        )
        .order_by(t.next_attempt_at.asc().nulls_first(), t.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = await session.execute(
        update(t)
        .where(t.id.in_(due.scalar_subquery()))
        .values(claimed_until=func.now() + LEASE)
        .returning(*CLAIM_COLUMNS)
        .execution_options(synchronize_session=False)
    )
    return sorted(claims(rows.all()), key=lambda c: c.id)


async def deliver_due(
    sessions: async_sessionmaker[AsyncSession],
    sender: WebhookSender,
    *,
    limit: int,
    backoff: Backoff,
) -> BatchCounts:
    """Claim one batch of due rows, post each once, record the outcomes."""
    settings = sender.settings
    platforms = sorted(p.value for p in settings.platform_webhook_urls)
    if not platforms:
        return BatchCounts()
    async with sessions.begin() as session:
        batch = await claim_due(session, platforms, limit)
    gate = asyncio.Semaphore(settings.platform_webhook_concurrency)

    async def one(claim: Claim) -> Outcome:
        url = sender.url(claim.platform)
        assert url is not None  # only configured platforms are claimed
        async with gate:
            error, permanent, _ = await sender.post(claim, url)
        return Outcome(claim, 1, error, permanent)

    outcomes = await asyncio.gather(*(one(c) for c in batch))
    counts = DeliveryCounts()
    async with sessions.begin() as session:
        await record_outcomes(
            session,
            outcomes,
            max_attempts=settings.platform_webhook_max_attempts,
            backoff=backoff,
            counts=counts,
            log_each=False,
        )
    return BatchCounts(
        claimed=len(batch),
        delivered=counts.delivered,
        retrying=counts.still_pending,
        failed=counts.failed,
        sample_error=next((o.error for o in outcomes if o.error is not None), None),
    )
