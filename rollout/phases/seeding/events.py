"""Update and tombstone events for businesses that changed after phase 6 seeded them.

The retention run calls `sync_business_events` with the businesses it touched. For each
business that already has outbox rows (one never seeded needs no event):
- closed (`closed_reason` set: closed for good, its id not found, or moved): every row of
  it becomes a tombstone naming the reason (and the new place id of a move);
- its Google listing purged (not held): every row becomes a tombstone with reason
  `purged`, which carries nothing of Google's content but the place id, so the purge
  reaches the payloads kept in the outbox too;
- otherwise its payloads are rebuilt as phase 6 builds them, and a changed one is an
  update event.
A row's payload that would not change is left alone, so a tombstone is sent once and a
second call changes nothing. Each written row is pending at its next version for the relay.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from rollout.db.models import Business, Community, NewsSource, PlatformOutbox
from rollout.phases.seeding.outbox import (
    TOMBSTONE,
    OutboxItem,
    business_items,
    community_ref,
    event_source_items,
    upsert_items,
    verification_flags,
)
from rollout.retention import listing_held
from rollout.status import Platform

# businesses.closed_reason -> the tombstone's reason
CLOSED_REASONS = {"closed_permanently": "closed", "not_found": "not_found", "moved": "moved"}
PURGED = "purged"
CHUNK = 500


@dataclass(slots=True)
class EventCounts:
    """Outbox rows by what a sync did to them: an update event, a tombstone event, or
    nothing (its payload was already the one it would get)."""

    updates: int = 0
    tombstones: int = 0
    unchanged: int = 0


@dataclass(frozen=True, slots=True)
class _Row:
    platform: str
    entity_type: str
    entity_id: int
    business_id: int
    community_rollout_id: int | None


def tombstone(platform: str, place_id: str, reason: str, moved_to: str | None) -> dict[str, Any]:
    return {
        "schema": f"{platform}.tombstone/1",
        "event": TOMBSTONE,
        "place_id": place_id,
        "reason": reason,
        "moved_to_place_id": moved_to if reason == "moved" else None,
    }


async def _rows(session: AsyncSession, business_ids: Sequence[int]) -> list[_Row]:
    """The outbox rows of these businesses: their own, and their news sources'."""
    t = PlatformOutbox
    owner = case(
        (t.entity_type == "business", t.entity_id),
        else_=select(NewsSource.business_id)
        .where(NewsSource.id == t.entity_id)
        .correlate(t)
        .scalar_subquery(),
    )
    rows = await session.execute(
        select(t.platform, t.entity_type, t.entity_id, owner, t.community_rollout_id)
        .where(
            or_(
                and_(t.entity_type == "business", t.entity_id.in_(business_ids)),
                and_(
                    t.entity_type == "news_source",
                    t.entity_id.in_(
                        select(NewsSource.id).where(NewsSource.business_id.in_(business_ids))
                    ),
                ),
            )
        )
        .order_by(t.id)
    )
    return [_Row(*row) for row in rows]


async def sync_business_events(session: AsyncSession, business_ids: Sequence[int]) -> EventCounts:
    """Bring the outbox rows of these businesses in step with them (see the module's
    docstring); idempotent. Runs in the caller's transaction."""
    counts = EventCounts()
    ids = sorted(set(business_ids))
    for start in range(0, len(ids), CHUNK):
        await _sync_chunk(session, ids[start : start + CHUNK], counts)
    return counts


async def _sync_chunk(session: AsyncSession, ids: list[int], counts: EventCounts) -> None:
    rows = await _rows(session, ids)
    if not rows:
        return
    by_business: dict[int, list[_Row]] = defaultdict(list)
    for row in rows:
        by_business[row.business_id].append(row)
    found = await session.execute(
        select(Business, listing_held().label("held"), Community)
        .outerjoin(Community, Community.id == Business.community_id)
        .where(Business.id.in_(list(by_business)))
    )
    writes: list[tuple[OutboxItem, int | None]] = []
    live: list[tuple[Business, Community, int | None]] = []
    for business, held, community in found:
        own = by_business[business.id]
        if business.closed_reason is not None or not held:
            reason = CLOSED_REASONS.get(business.closed_reason or "", PURGED)
            for row in own:
                payload = tombstone(
                    row.platform, business.place_id, reason, business.moved_to_place_id
                )
                item = OutboxItem(
                    Platform(row.platform), row.entity_type, row.entity_id, payload, TOMBSTONE
                )
                writes.append((item, None))
        elif community is None:
            # No home community to seed it (phase 6 would not build it either).
            counts.unchanged += len(own)
        else:
            # The rollout that seeded it last: its verification flags are in the payload.
            seeded_by = max((r.community_rollout_id or 0 for r in own), default=0) or None
            live.append((business, community, seeded_by))
    writes += await _rebuilt(session, live)
    written = await upsert_items(session, writes)
    counts.tombstones += sum(1 for w in written if w.event == TOMBSTONE)
    counts.updates += sum(1 for w in written if w.event != TOMBSTONE)
    counts.unchanged += len(writes) - len(written)


async def _rebuilt(
    session: AsyncSession, live: list[tuple[Business, Community, int | None]]
) -> list[tuple[OutboxItem, int | None]]:
    """Phase 6's payloads of these businesses, each with the rollout that seeded it."""
    if not live:
        return []
    flags_of: dict[int, dict[str, list[str]]] = {}
    for _, _, cr_id in live:
        if cr_id is not None and cr_id not in flags_of:
            flags_of[cr_id] = await verification_flags(session, cr_id)
    out: list[tuple[OutboxItem, int | None]] = []
    seeded_by: dict[int | None, int | None] = {}
    communities: dict[int, dict[str, Any]] = {}
    for business, community, cr_id in live:
        where = community_ref(community)
        communities[community.id] = where
        seeded_by[business.id] = cr_id
        flags = flags_of.get(cr_id, {}) if cr_id is not None else {}
        built = business_items(business, where, flags.get(str(business.id), []))
        out += [(item, cr_id) for item in built]
    sources = await event_source_items(
        session, Business.id.in_([b.id for b, _, _ in live]), communities
    )
    owners = dict(
        (
            await session.execute(
                select(NewsSource.id, NewsSource.business_id).where(
                    NewsSource.id.in_([s.entity_id for s in sources])
                )
            )
        ).all()
    )
    out += [(s, seeded_by.get(owners.get(s.entity_id, 0))) for s in sources]
    return out
