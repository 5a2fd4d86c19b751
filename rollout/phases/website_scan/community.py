"""Scan every business website of a community and record one website_scans row each.

Resumable: rows are committed in small batches, and `ScanProgress.after_id` is a watermark
below which every business is done and committed. The activity heartbeats the progress and,
on a retry, passes the last heartbeat's watermark back; businesses already scanned for this
community rollout are skipped as well, so neither a retry nor a second run rescans a site.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from rollout.db.community_scope import community_business_ids
from rollout.db.models import Business, WebsiteScan
from rollout.phase_settings import PhaseSettings
from rollout.phases.resume import Watermark
from rollout.phases.website_scan.errors import (
    UNREACHABLE_STATUSES,
    ScanStatus,
    clean_json,
    clean_text,
)
from rollout.phases.website_scan.fetcher import WebFetcher
from rollout.phases.website_scan.scanner import ScanOutcome, scan_site

log = logging.getLogger(__name__)

FLUSH_ROWS = 25  # rows per transaction; also flushed every SCAN_HEARTBEAT_S


@dataclass(frozen=True, slots=True)
class ScanTarget:
    business_id: int
    website: str


@dataclass(slots=True)
class ScanProgress:
    after_id: int = 0  # every target business with id <= after_id is scanned and committed
    scanned: int = 0  # rows committed by this attempt
    total: int = 0  # targets of this attempt

    def details(self) -> dict[str, int]:
        return {"after_id": self.after_id, "scanned": self.scanned, "total": self.total}


async def load_scan_targets(
    session: AsyncSession, community_id: int, community_rollout_id: int, after_id: int
) -> list[ScanTarget]:
    already = select(WebsiteScan.business_id).where(
        WebsiteScan.community_rollout_id == community_rollout_id
    )
    rows = await session.execute(
        select(Business.id, Business.website_uri)
        .where(
            Business.id.in_(community_business_ids(community_id)),
            Business.id > after_id,
            Business.website_uri.is_not(None),
            func.length(func.trim(Business.website_uri)) > 0,
            Business.id.not_in(already),
        )
        .order_by(Business.id)
    )
    return [ScanTarget(business_id, website or "") for business_id, website in rows]


async def save_outcomes(
    session: AsyncSession,
    community_rollout_id: int,
    outcomes: Sequence[tuple[int, ScanOutcome]],
) -> None:
    if not outcomes:
        return
    stmt = insert(WebsiteScan)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[WebsiteScan.business_id],
            set_={
                "community_rollout_id": stmt.excluded.community_rollout_id,
                "url": stmt.excluded.url,
                "final_url": stmt.excluded.final_url,
                "status": stmt.excluded.status,
                "http_status": stmt.excluded.http_status,
                "found": stmt.excluded.found,
                "error": stmt.excluded.error,
                "scanned_at": func.now(),
                "updated_at": func.now(),
            },
        ),
        [
            {
                "business_id": business_id,
                "community_rollout_id": community_rollout_id,
                "url": clean_text(o.url),
                "final_url": clean_text(o.final_url) if o.final_url else None,
                "status": o.status.value,
                "http_status": o.http_status,
                "found": clean_json(o.found),
                "error": clean_text(o.error) if o.error else None,
            }
            # In business id order: two communities saving businesses they share lock the
            # rows in one order, instead of deadlocking on each other's.
            for business_id, o in sorted(outcomes, key=lambda outcome: outcome[0])
        ],
    )


async def scan_counts(
    session: AsyncSession, community_id: int, community_rollout_id: int
) -> dict[str, int]:
    """Counts over this community rollout's scans (all attempts, exact on re-runs)."""
    rows = await session.execute(
        select(WebsiteScan.status, WebsiteScan.found).where(
            WebsiteScan.community_rollout_id == community_rollout_id,
            WebsiteScan.business_id.in_(community_business_ids(community_id)),
        )
    )
    counts = {
        "websites_scanned": 0,
        "websites_reachable": 0,
        "websites_publishing": 0,
        "websites_unreachable": 0,
        "websites_blocked": 0,
        "websites_robots_disallowed": 0,
    }
    for status, found in rows:
        counts["websites_scanned"] += 1
        if status in (ScanStatus.OK, ScanStatus.TOO_LARGE):
            counts["websites_reachable"] += 1
        if status in UNREACHABLE_STATUSES:
            counts["websites_unreachable"] += 1
        if status == ScanStatus.BLOCKED:
            counts["websites_blocked"] += 1
        if status == ScanStatus.ROBOTS_DISALLOWED:
            counts["websites_robots_disallowed"] += 1
        if any((found or {}).get(k) for k in ("feeds", "ical", "event_pages", "news_pages")):
            counts["websites_publishing"] += 1
    return counts


async def scan_community(
    sessions: async_sessionmaker[AsyncSession],
    fetcher: WebFetcher,
    settings: PhaseSettings,
    *,
    community_id: int,
    community_rollout_id: int,
    progress: ScanProgress,
    finalize: Callable[[AsyncSession], Awaitable[None]] | None = None,
) -> None:
    """Scan the community's websites above `progress.after_id`, updating `progress`.

    `finalize` runs in the transaction of the last batch of rows, so the phase can record
    its completion atomically with its final writes."""
    async with sessions() as session:
        targets = await load_scan_targets(
            session, community_id, community_rollout_id, progress.after_id
        )
    progress.total = len(targets)
    if not targets:
        if finalize is not None:
            async with sessions.begin() as session:
                await finalize(session)
        return
    watermark = Watermark([t.business_id for t in targets], progress.after_id)
    pending: list[tuple[int, ScanOutcome]] = []
    lock = asyncio.Lock()
    last_flush = time.monotonic()
    queue = iter(targets)

    async def flush(final: bool = False) -> None:
        nonlocal last_flush
        async with lock:
            batch = pending[:]
            del pending[:]
            last_flush = time.monotonic()
            if not batch and not (final and finalize):
                return
            async with sessions.begin() as session:
                await save_outcomes(session, community_rollout_id, batch)
                if final and finalize is not None:
                    await finalize(session)
            progress.after_id = watermark.done(business_id for business_id, _ in batch)
            progress.scanned += len(batch)

    async def worker() -> None:
        # One shared iterator: next() never awaits, so workers cannot take the same target.
        for target in queue:
            async with fetcher.sites:
                outcome = await scan_site(
                    fetcher,
                    target.website,
                    feed_paths=settings.scan_feed_paths,
                    deadline_s=settings.scan_site_deadline_s,
                )
            pending.append((target.business_id, outcome))
            if (
                len(pending) >= FLUSH_ROWS
                or time.monotonic() - last_flush >= settings.phase_heartbeat_s
            ):
                await flush()

    workers = min(settings.scan_max_concurrency, len(targets))
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(worker())
    except BaseExceptionGroup as group_error:
        # Surface the first real error (e.g. the database went away), not the group.
        raise group_error.exceptions[0] from None
    await flush(final=True)
