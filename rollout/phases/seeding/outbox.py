"""Phase 6: cross-platform seeding through a transactional outbox, delivered by webhook.

One platform_outbox row per (platform, entity type, entity id):
- DowntownGuide: a business listing per business;
- GoEventCity: an event source per news source that publishes events (iCal, event pages);
- AlphaSite: a business page per business;
- CRM: a contact per business that can be contacted (a phone or a website).

Rows are upserted: a payload that has not changed leaves its row alone (delivered stays
delivered), a changed payload makes the row pending again. A business is seeded by its home
community (`businesses.community_id`, the first to find it): a place in the overlap of two
towns' regions would otherwise be re-sent back and forth with alternating payloads.

Where PLATFORM_WEBHOOK_URLS names a platform, its pending rows are POSTed as JSON, signed
with HMAC-SHA256 over "<timestamp>.<body>" (header X-Rollout-Signature: sha256=<hex>,
X-Rollout-Timestamp, and X-Rollout-Delivery: "<outbox id>.<payload hash>", the same for every
retry of one payload, for the receiver to de-duplicate).
Transient failures (network, 408, 425, 429, 5xx) are retried with backoff; a row still not
delivered stays pending for the next run (or for the platform to pull) until it has been
tried PLATFORM_WEBHOOK_MAX_ATTEMPTS times, then it is marked failed. Other 4xx answers fail
the row at once: sending the same body again cannot succeed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import Boolean, and_, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from rollout.db.models import (
    Business,
    CollectionMethod,
    Community,
    CommunityRollout,
    NewsSource,
    PlatformOutbox,
    WebsiteScan,
)
from rollout.phase_settings import PhaseSettings
from rollout.status import Platform

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Rollout-Signature"
TIMESTAMP_HEADER = "X-Rollout-Timestamp"
DELIVERY_HEADER = "X-Rollout-Delivery"
EVENT_HEADER = "X-Rollout-Event"
UPSERT_CHUNK = 500
TRANSIENT_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class OutboxItem:
    platform: Platform
    entity_type: str
    entity_id: int
    payload: dict[str, Any]


@dataclass(slots=True)
class SeedCounts:
    outbox_rows: int = 0
    outbox_created: int = 0
    outbox_changed: int = 0
    per_platform: dict[str, int] = field(default_factory=dict)


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


async def build_outbox(
    session: AsyncSession, community_id: int, community_rollout_id: int
) -> list[OutboxItem]:
    community = await session.get(Community, community_id)
    if community is None:
        raise ValueError(f"no community {community_id}")
    where = {"id": community.id, "name": community.name, "state_code": community.state_code}
    report = await session.scalar(
        select(CommunityRollout.verification_report).where(
            CommunityRollout.id == community_rollout_id
        )
    )
    flags: dict[str, list[str]] = (report or {}).get("flags") or {}

    businesses = (
        await session.scalars(
            select(Business).where(Business.community_id == community_id).order_by(Business.id)
        )
    ).all()
    items: list[OutboxItem] = []
    for b in businesses:
        core = _business_core(b, where, list(flags.get(str(b.id), [])))
        items.append(
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
            )
        )
        items.append(
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
            )
        )
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
                        "community": where,
                        "source": "statewide-rollout",
                    },
                )
            )

    # Event sources: news sources with a calendar, or an HTML method on an events page.
    rows = await session.execute(
        select(
            NewsSource.id,
            NewsSource.name,
            NewsSource.homepage_url,
            Business.place_id,
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
        .where(Business.community_id == community_id, NewsSource.is_active)
        .order_by(NewsSource.id, CollectionMethod.method, CollectionMethod.url)
    )
    sources: dict[int, dict[str, Any]] = {}
    for source_id, name, homepage, place_id, method, url, found in rows:
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
                "community": where,
                "calendars": [],
                "event_pages": [],
            },
        )
        source[bucket].append(url)
    items += [
        OutboxItem(Platform.GOEVENTCITY, "news_source", source_id, payload)
        for source_id, payload in sources.items()
    ]
    return items


async def upsert_outbox(
    session: AsyncSession, items: Sequence[OutboxItem], community_rollout_id: int
) -> SeedCounts:
    counts = SeedCounts(outbox_rows=len(items))
    for item in items:
        counts.per_platform[item.platform.value] = (
            counts.per_platform.get(item.platform.value, 0) + 1
        )
    t = PlatformOutbox
    for start in range(0, len(items), UPSERT_CHUNK):
        chunk = items[start : start + UPSERT_CHUNK]
        stmt = insert(t).values(
            [
                {
                    "platform": i.platform.value,
                    "entity_type": i.entity_type,
                    "entity_id": i.entity_id,
                    "community_rollout_id": community_rollout_id,
                    "payload": i.payload,
                    "status": "pending",
                }
                for i in chunk
            ]
        )
        changed = t.payload.is_distinct_from(stmt.excluded.payload)
        upserted = await session.execute(
            stmt.on_conflict_do_update(
                index_elements=[t.platform, t.entity_type, t.entity_id],
                set_={
                    "payload": stmt.excluded.payload,
                    "community_rollout_id": stmt.excluded.community_rollout_id,
                    "status": "pending",
                    "attempts": 0,
                    "last_error": None,
                    "delivered_at": None,
                    "updated_at": func.now(),
                },
                # An unchanged payload leaves the row (and its delivery state) alone.
                where=changed,
            ).returning(literal_column("xmax = 0", Boolean).label("inserted"))
        )
        inserted_flags: Sequence[bool] = upserted.scalars().all()
        for inserted in inserted_flags:
            if inserted:
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


# --------------------------------------------------------------------------------------
# Webhook delivery
# --------------------------------------------------------------------------------------


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


# How far a delivery's timestamp may be from the receiver's clock: a captured request
# replayed later is refused, while ordinary clock skew and network delay pass.
REPLAY_WINDOW_S = 300


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


@dataclass(slots=True)
class DeliveryCounts:
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    still_pending: int = 0


class WebhookDelivery:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        client: httpx.AsyncClient,
        settings: PhaseSettings,
        *,
        backoff_s: float = 1.0,
    ) -> None:
        self.sessions = sessions
        self.client = client
        self.settings = settings
        self.secret = settings.platform_webhook_secret.get_secret_value().encode()
        self.backoff_s = backoff_s

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
            pending: list[PlatformOutbox] = []
            for (platform, entity_type), ids in keys.items():
                pending += (
                    await session.scalars(
                        select(PlatformOutbox)
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

        async def one(row: PlatformOutbox) -> None:
            async with gate:
                await self._deliver_row(row, urls[Platform(row.platform)], counts)

        await asyncio.gather(*(one(row) for row in pending))
        return counts

    async def _deliver_row(self, row: PlatformOutbox, url: str, counts: DeliveryCounts) -> None:
        version = hashlib.sha256(
            json.dumps(row.payload, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()[:16]
        # Stable across retries of one payload, new for a changed one: receivers can drop
        # repeats by it without dropping updates.
        delivery_id = f"{row.id}.{version}"
        body = json.dumps(
            {
                "delivery_id": delivery_id,
                "platform": row.platform,
                "entity_type": row.entity_type,
                "entity_id": row.entity_id,
                "payload": row.payload,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        tries = 0
        error: str | None = None
        permanent = False
        for attempt in range(self.settings.platform_webhook_attempts_per_run):
            if attempt:
                counts.retried += 1
            tries += 1
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(self.secret, timestamp, body),
                TIMESTAMP_HEADER: str(timestamp),
                DELIVERY_HEADER: delivery_id,
                EVENT_HEADER: f"{row.entity_type}.upsert",
            }
            retry_after: float | None = None
            try:
                response = await self.client.post(
                    url,
                    content=body,
                    headers=headers,
                    timeout=self.settings.platform_webhook_timeout_s,
                )
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
            else:
                if 200 <= response.status_code < 300:
                    error = None
                    break
                error = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code < 500 and response.status_code not in TRANSIENT_STATUSES:
                    permanent = True
                    break
                retry_after = _retry_after(response.headers.get("retry-after"))
            if attempt + 1 < self.settings.platform_webhook_attempts_per_run:
                delay = self.backoff_s * 2**attempt
                await asyncio.sleep(min(max(delay, retry_after or 0.0), 30.0))
        async with self.sessions.begin() as session:
            attempts = row.attempts + tries
            if error is None:
                values: dict[str, Any] = {"status": "delivered", "delivered_at": func.now()}
                counts.delivered += 1
            elif permanent or attempts >= self.settings.platform_webhook_max_attempts:
                values = {"status": "failed"}
                counts.failed += 1
            else:
                values = {"status": "pending"}
                counts.still_pending += 1
            await session.execute(
                update(PlatformOutbox)
                .where(PlatformOutbox.id == row.id, PlatformOutbox.status == "pending")
                .values(
                    **values,
                    attempts=PlatformOutbox.attempts + tries,
                    last_error=error,
                    updated_at=func.now(),
                )
            )
        if error is not None:
            log.warning("delivery %s to %s: %s", row.id, row.platform, error)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value else None
    except ValueError:
        return None
