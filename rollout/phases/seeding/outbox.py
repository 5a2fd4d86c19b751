"""Phase 6: cross-platform seeding through a transactional outbox.

One platform_outbox row per (platform, entity type, entity id):
- DowntownGuide: a business listing per business;
- GoEventCity: an event source per news source that publishes events (iCal, event pages);
- AlphaSite: a business page per business;
- CRM: a contact per business that can be contacted (a phone or a website).

Rows are upserted: a payload that has not changed leaves its row alone (delivered stays
delivered), a changed payload makes the row pending again under the next `version`. A
business is seeded by its home community (`businesses.community_id`, the first to find it):
a place in the overlap of two towns' regions would otherwise be re-sent back and forth with
alternating payloads. A business that closed or whose Google listing was purged is not
built here: its rows get tombstones instead (events.py).

Delivery (signed webhooks) is in webhooks.py; the relay that retries it later in relay.py.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Boolean, ColumnElement, and_, func, literal_column, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from rollout.db.models import (
    Business,
    CollectionMethod,
    Community,
    CommunityRollout,
    NewsSource,
    PlatformOutbox,
    WebsiteScan,
)
from rollout.retention import listing_held
from rollout.status import Platform

UPSERT_CHUNK = 500
UPSERT = "upsert"
TOMBSTONE = "tombstone"


@dataclass(frozen=True, slots=True)
class OutboxItem:
    platform: Platform
    entity_type: str
    entity_id: int
    payload: dict[str, Any]
    event: str = UPSERT


@dataclass(slots=True)
class SeedCounts:
    outbox_rows: int = 0
    outbox_created: int = 0
    outbox_changed: int = 0
    per_platform: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Upserted:
    """A row the upsert wrote: new (`inserted`) or with a changed payload."""

    inserted: bool
    event: str


def live() -> ColumnElement[bool]:
    """A business the platforms should show: not closed, and its Google listing held."""
    return and_(Business.closed_reason.is_(None), listing_held())


# --------------------------------------------------------------------------------------
# Building the payloads
# --------------------------------------------------------------------------------------


def _hours(enrichment: dict[str, Any] | None) -> list[str] | None:
    hours = (enrichment or {}).get("regularOpeningHours") or {}
    descriptions = hours.get("weekdayDescriptions") if isinstance(hours, dict) else None
    return [str(d) for d in descriptions] if isinstance(descriptions, list) else None


def _own_site(b: Business) -> dict[str, Any] | None:
    """What the business publishes on its own website, plain values (phase 4)."""
    fields = (b.website_profile or {}).get("fields") or {}
    keep = ("email", "telephone", "description", "logo", "same_as", "opening_hours", "price_range")
    out = {k: fields[k]["value"] for k in keep if isinstance(fields.get(k), dict)}
    return out or None


def _business_core(b: Business, community: dict[str, Any], flags: list[str]) -> dict[str, Any]:
    return {
        "place_id": b.place_id,
        "name": b.name,
        "address": b.formatted_address,
        "location": (
            {"latitude": b.latitude, "longitude": b.longitude}
            if b.latitude is not None and b.longitude is not None
            else None
        ),
        "category": b.primary_type,
        "types": list(b.types or []),
        "phone": b.national_phone_number,
        "website": b.website_uri,
        "business_status": b.business_status,
        "community": community,
        "verification_flags": flags,
    }


def community_ref(community: Community) -> dict[str, Any]:
    return {"id": community.id, "name": community.name, "state_code": community.state_code}


def business_items(
    b: Business, community: dict[str, Any], flags: Sequence[str]
) -> list[OutboxItem]:
    """One business's listing, page and (when it can be contacted) CRM contact."""
    core = _business_core(b, community, list(flags))
    items = [
        OutboxItem(
            Platform.DOWNTOWNGUIDE,
            "business",
            b.id,
            {
                "schema": "downtownguide.listing/1",
                **core,
                "google_maps_uri": b.google_maps_uri,
                "rating": float(b.rating) if b.rating is not None else None,
                "user_rating_count": b.user_rating_count,
            },
        ),
        OutboxItem(
            Platform.ALPHASITE,
            "business",
            b.id,
            {
                "schema": "alphasite.business_page/1",
                **core,
                "hours": _hours(b.enrichment),
                "own_site": _own_site(b),
            },
        ),
    ]
    if b.national_phone_number or b.website_uri:
        items.append(
            OutboxItem(
                Platform.CRM,
                "business",
                b.id,
                {
                    "schema": "crm.contact/1",
                    "place_id": b.place_id,
                    "company_name": b.name,
                    "phone": b.national_phone_number,
                    "website": b.website_uri,
                    "email": (_own_site(b) or {}).get("email"),
                    "address": b.formatted_address,
                    "category": b.primary_type,
                    "community": community,
                    "source": "statewide-rollout",
                },
            )
        )
    return items


async def event_source_items(
    session: AsyncSession,
    which: ColumnElement[bool],
    communities: Mapping[int, dict[str, Any]],
) -> list[OutboxItem]:
    """Event sources of the businesses `which` selects (a condition on Business, whose
    home community must be in `communities`): news sources with a calendar, or an HTML
    method on an events page."""
    rows = await session.execute(
        select(
            NewsSource.id,
            NewsSource.name,
            NewsSource.homepage_url,
            Business.place_id,
            Business.community_id,
            CollectionMethod.method,
            CollectionMethod.url,
            WebsiteScan.found,
        )
        .join(Business, Business.id == NewsSource.business_id)
        .join(
            CollectionMethod,
            and_(CollectionMethod.news_source_id == NewsSource.id, CollectionMethod.is_active),
        )
        .outerjoin(WebsiteScan, WebsiteScan.business_id == Business.id)
        .where(which, NewsSource.is_active)
        .order_by(NewsSource.id, CollectionMethod.method, CollectionMethod.url)
    )
    sources: dict[int, dict[str, Any]] = {}
    for source_id, name, homepage, place_id, community_id, method, url, found in rows:
        if community_id not in communities:
            continue
        event_pages = {p.get("url") for p in (found or {}).get("event_pages") or []}
        if method == "ical":
            bucket = "calendars"
        elif method == "html" and url in event_pages:
            bucket = "event_pages"
        else:
            continue
        source = sources.setdefault(
            source_id,
            {
                "schema": "goeventcity.event_source/1",
                "news_source_id": source_id,
                "place_id": place_id,
                "name": name,
                "homepage": homepage,
                "community": communities[community_id],
                "calendars": [],
                "event_pages": [],
            },
        )
        source[bucket].append(url)
    return [
        OutboxItem(Platform.GOEVENTCITY, "news_source", source_id, payload)
        for source_id, payload in sources.items()
    ]


async def verification_flags(
    session: AsyncSession, community_rollout_id: int
) -> dict[str, list[str]]:
    """Phase 5's flags per business id (as a string) of one community rollout."""
    report = await session.scalar(
        select(CommunityRollout.verification_report).where(
            CommunityRollout.id == community_rollout_id
        )
    )
    flags: dict[str, list[str]] = (report or {}).get("flags") or {}
    return flags


async def build_outbox(
    session: AsyncSession, community_id: int, community_rollout_id: int
) -> list[OutboxItem]:
    community = await session.get(Community, community_id)
    if community is None:
        raise ValueError(f"no community {community_id}")
    where = community_ref(community)
    flags = await verification_flags(session, community_rollout_id)
    home = and_(Business.community_id == community_id, live())
    businesses = (await session.scalars(select(Business).where(home).order_by(Business.id))).all()
    items: list[OutboxItem] = []
    for b in businesses:
        items += business_items(b, where, flags.get(str(b.id), []))
    items += await event_source_items(session, home, {community_id: where})
    return items


async def retired_businesses(session: AsyncSession, community_id: int) -> list[int]:
    """The community's businesses phase 6 no longer builds (closed, or purged)."""
    rows = await session.scalars(
        select(Business.id)
        .where(Business.community_id == community_id, ~live())
        .order_by(Business.id)
    )
    return list(rows)


# --------------------------------------------------------------------------------------
# Writing the rows
# --------------------------------------------------------------------------------------


async def upsert_items(
    session: AsyncSession, rows: Sequence[tuple[OutboxItem, int | None]]
) -> list[Upserted]:
    """Upsert (item, community rollout id) pairs: a new row is inserted pending at version
    1, a changed payload makes its row pending again at the next version, an unchanged one
    is left alone. Returns the rows written. A None rollout id keeps the row's own."""
    written: list[Upserted] = []
    t = PlatformOutbox
    for start in range(0, len(rows), UPSERT_CHUNK):
        chunk = rows[start : start + UPSERT_CHUNK]
        stmt = insert(t).values(
            [
                {
                    "platform": i.platform.value,
                    "entity_type": i.entity_type,
                    "entity_id": i.entity_id,
                    "community_rollout_id": cr_id,
                    "payload": i.payload,
                    "event": i.event,
                    "status": "pending",
                }
                for i, cr_id in chunk
            ]
        )
        changed = t.payload.is_distinct_from(stmt.excluded.payload)
        upserted = await session.execute(
            stmt.on_conflict_do_update(
                index_elements=[t.platform, t.entity_type, t.entity_id],
                set_={
                    "payload": stmt.excluded.payload,
                    "event": stmt.excluded.event,
                    "version": t.version + 1,
                    "community_rollout_id": func.coalesce(
                        stmt.excluded.community_rollout_id, t.community_rollout_id
                    ),
                    "status": "pending",
                    "attempts": 0,
                    "last_error": None,
                    "delivered_at": None,
                    "next_attempt_at": None,
                    "updated_at": func.now(),
                },
                # An unchanged payload leaves the row (and its delivery state) alone.
                where=changed,
            ).returning(literal_column("xmax = 0", Boolean).label("inserted"), t.event)
        )
        written += [Upserted(bool(inserted), event) for inserted, event in upserted.all()]
    return written


async def upsert_outbox(
    session: AsyncSession, items: Sequence[OutboxItem], community_rollout_id: int
) -> SeedCounts:
    counts = SeedCounts(outbox_rows=len(items))
    for item in items:
        counts.per_platform[item.platform.value] = (
            counts.per_platform.get(item.platform.value, 0) + 1
        )
    for row in await upsert_items(session, [(i, community_rollout_id) for i in items]):
        if row.inserted:
            counts.outbox_created += 1
        else:
            counts.outbox_changed += 1
    return counts


async def outbox_status_counts(
    session: AsyncSession, items: Sequence[OutboxItem]
) -> dict[str, int]:
    """Rows of these items by delivery status."""
    keys: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i in items:
        keys[(i.platform.value, i.entity_type)].append(i.entity_id)
    counts = {"pending": 0, "delivered": 0, "failed": 0}
    for (platform, entity_type), ids in keys.items():
        rows = await session.execute(
            select(PlatformOutbox.status, func.count())
            .where(
                PlatformOutbox.platform == platform,
                PlatformOutbox.entity_type == entity_type,
                PlatformOutbox.entity_id.in_(ids),
            )
            .group_by(PlatformOutbox.status)
        )
        for status, n in rows:
            counts[status] = counts.get(status, 0) + int(n)
    return counts
