"""The rollout's Postgres schema as typed SQLAlchemy 2 models.

Alembic migrations under rollout/migrations are the source of truth for the live schema;
`alembic check` (run in the tests) proves these models and the migrations agree.

Conventions:
- money is NUMERIC (Decimal in Python), never float;
- status columns are text with CHECK constraints naming the words of rollout/status.py, so
  adding a word is an ordinary migration rather than an ALTER TYPE;
- every table has created_at/updated_at in UTC.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from rollout.status import (
    ACTIVE_ROLLOUT_STATUSES,
    CommunityStatus,
    PhaseStatus,
    Platform,
    RolloutStatus,
)

# Deterministic constraint names keep autogenerate and downgrades stable.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _in(column: str, words: Any) -> str:
    return f"{column} IN ({', '.join(repr(str(w)) for w in words)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy's documented class attribute
        dt.datetime: DateTime(timezone=True),
        dict[str, Any]: JSONB,
    }


class TimestampMixin:
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


Money = Numeric(14, 6)


# --------------------------------------------------------------------------------------
# Communities and regions
# --------------------------------------------------------------------------------------


class Community(TimestampMixin, Base):
    """A US populated place. The id is the GeoNames id, so ids are stable across databases
    and re-seeds (they appear in workflow ids: state-rollout-TX/community-{id})."""

    __tablename__ = "communities"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(200))
    state_code: Mapped[str] = mapped_column(String(2), index=True)
    latitude: Mapped[float] = mapped_column(Double)
    longitude: Mapped[float] = mapped_column(Double)
    population: Mapped[int] = mapped_column(Integer)
    timezone: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(32), server_default="geonames")

    __table_args__ = (
        CheckConstraint("population >= 0", name="population_non_negative"),
        CheckConstraint("latitude BETWEEN -90 AND 90", name="latitude_range"),
        CheckConstraint("longitude BETWEEN -180 AND 180", name="longitude_range"),
    )


class Region(TimestampMixin, Base):
    """A search area: a centre and a radius. Each community has a primary region."""

    __tablename__ = "regions"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    slug: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    state_code: Mapped[str] = mapped_column(String(2), index=True)
    kind: Mapped[str] = mapped_column(String(32), server_default="community")
    center_latitude: Mapped[float] = mapped_column(Double)
    center_longitude: Mapped[float] = mapped_column(Double)
    radius_m: Mapped[int] = mapped_column(Integer)

    __table_args__ = (CheckConstraint("radius_m > 0", name="radius_positive"),)


class CommunityRegion(Base):
    __tablename__ = "community_region"

    community_id: Mapped[int] = mapped_column(
        ForeignKey("communities.id", ondelete="CASCADE"), primary_key=True
    )
    region_id: Mapped[int] = mapped_column(
        ForeignKey("regions.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    is_primary: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))

    __table_args__ = (
        # One primary region per community.
        Index(
            "uq_community_region_primary",
            "community_id",
            unique=True,
            postgresql_where=text("is_primary"),
        ),
    )


# --------------------------------------------------------------------------------------
# Businesses (phase 1)
# --------------------------------------------------------------------------------------


class Business(TimestampMixin, Base):
    """A place found through the Places API, keyed by its place id.

    Google's terms allow storing the place id indefinitely; the other Google-sourced
    columns are volatile content stamped with places_fetched_at so they can be refreshed
    or purged by age (latitude/longitude may be cached for at most 30 days).
    """

    __tablename__ = "businesses"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    place_id: Mapped[str] = mapped_column(String(255), unique=True)
    community_id: Mapped[int | None] = mapped_column(
        ForeignKey("communities.id", ondelete="SET NULL"), index=True
    )
    name: Mapped[str | None] = mapped_column(Text)
    formatted_address: Mapped[str | None] = mapped_column(Text)
    latitude: Mapped[float | None] = mapped_column(Double)
    longitude: Mapped[float | None] = mapped_column(Double)
    primary_type: Mapped[str | None] = mapped_column(String(100), index=True)
    types: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    business_status: Mapped[str | None] = mapped_column(String(32))
    website_uri: Mapped[str | None] = mapped_column(Text)
    national_phone_number: Mapped[str | None] = mapped_column(String(64))
    google_maps_uri: Mapped[str | None] = mapped_column(Text)
    pure_service_area_business: Mapped[bool | None] = mapped_column(Boolean)
    rating: Mapped[Decimal | None] = mapped_column(Numeric(2, 1))
    user_rating_count: Mapped[int | None] = mapped_column(Integer)
    # Phase 4 (Pro enrichment): the richer Place Details fields, as returned.
    enrichment: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    enriched_at: Mapped[dt.datetime | None]
    # What the business publishes about itself on its own home page (schema.org data and
    # meta tags, each value with its source; read in phase 2 by
    # rollout/phases/enrichment/site_profile.py, copied here by phase 4's website.py):
    # the business's content, not Google's, kept whatever the Places retention policy.
    website_profile: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    website_profile_at: Mapped[dt.datetime | None]
    first_seen_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    last_seen_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    places_fetched_at: Mapped[dt.datetime | None]
    # When the Google listing was last cleared for being older than Google's storage terms
    # allow (rollout/retention.py); a later fetch (places_fetched_at after it) holds it again.
    places_purged_at: Mapped[dt.datetime | None]
    # When the place id was last confirmed by an IDs-only Place Details request (free):
    # Google recommends re-checking ids older than 12 months.
    place_id_checked_at: Mapped[dt.datetime | None]
    # What a retention run learned from Google (rollout/retention.py): the id answers
    # NOT_FOUND, the place closed for good, or it moved to `moved_to_place_id`. A closed
    # business is no longer refreshed and its platforms get a tombstone.
    closed_at: Mapped[dt.datetime | None]
    closed_reason: Mapped[str | None] = mapped_column(String(32))
    moved_to_place_id: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (
        CheckConstraint(
            "closed_reason IN ('not_found', 'closed_permanently', 'moved')",
            name="closed_reason_word",
        ),
        CheckConstraint("(closed_at IS NULL) = (closed_reason IS NULL)", name="closed_together"),
    )


class BusinessRegion(Base):
    __tablename__ = "business_region"

    business_id: Mapped[int] = mapped_column(
        ForeignKey("businesses.id", ondelete="CASCADE"), primary_key=True
    )
    region_id: Mapped[int] = mapped_column(
        ForeignKey("regions.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    first_seen_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


# --------------------------------------------------------------------------------------
# Rollouts
# --------------------------------------------------------------------------------------


class StateRollout(TimestampMixin, Base):
    __tablename__ = "state_rollouts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    state_code: Mapped[str] = mapped_column(String(2), index=True)
    state_name: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), server_default=RolloutStatus.PLANNED.value)
    workflow_id: Mapped[str] = mapped_column(String(255))
    # Run id of the workflow's first run: identifies this rollout across continue-as-new,
    # so a retried initiation finds its own row instead of creating a second one.
    workflow_run_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    total_communities: Mapped[int] = mapped_column(Integer, server_default="0")
    completed_communities: Mapped[int] = mapped_column(Integer, server_default="0")
    failed_communities: Mapped[int] = mapped_column(Integer, server_default="0")
    cancelled_communities: Mapped[int] = mapped_column(Integer, server_default="0")
    total_businesses: Mapped[int] = mapped_column(Integer, server_default="0")
    total_news_sources: Mapped[int] = mapped_column(Integer, server_default="0")
    total_cost: Mapped[Decimal] = mapped_column(Money, server_default="0")
    budget_usd: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    settings: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    paused_reason: Mapped[str | None] = mapped_column(Text)
    # Set when the rollout was closed outside its workflow (`starter.py reconcile`): why.
    closed_reason: Mapped[str | None] = mapped_column(Text)
    initiated_by: Mapped[str] = mapped_column(String(255), server_default="system")
    started_at: Mapped[dt.datetime | None]
    completed_at: Mapped[dt.datetime | None]

    __table_args__ = (
        CheckConstraint(_in("status", RolloutStatus), name="status_word"),
        CheckConstraint("budget_usd IS NULL OR budget_usd > 0", name="budget_positive"),
        # One active rollout per state, even under concurrent starts.
        Index(
            "uq_state_rollouts_active_state",
            "state_code",
            unique=True,
            postgresql_where=text(_in("status", ACTIVE_ROLLOUT_STATUSES)),
        ),
    )


class CommunityRollout(TimestampMixin, Base):
    __tablename__ = "community_rollouts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    state_rollout_id: Mapped[int] = mapped_column(
        ForeignKey("state_rollouts.id", ondelete="CASCADE")
    )
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), index=True)
    # Dispatch order within the rollout: priority communities first.
    position: Mapped[int] = mapped_column(Integer)
    is_priority: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    status: Mapped[str] = mapped_column(String(16), server_default=CommunityStatus.QUEUED.value)
    current_phase: Mapped[int | None] = mapped_column(SmallInteger)
    failed_phase: Mapped[int | None] = mapped_column(SmallInteger)
    error: Mapped[str | None] = mapped_column(Text)
    businesses_discovered: Mapped[int] = mapped_column(Integer, server_default="0")
    businesses_with_websites: Mapped[int] = mapped_column(Integer, server_default="0")
    news_sources_created: Mapped[int] = mapped_column(Integer, server_default="0")
    api_cost_estimate: Mapped[Decimal] = mapped_column(Money, server_default="0")
    verification_report: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    started_at: Mapped[dt.datetime | None]
    completed_at: Mapped[dt.datetime | None]

    __table_args__ = (
        UniqueConstraint("state_rollout_id", "community_id"),
        Index("ix_community_rollouts_rollout_status", "state_rollout_id", "status"),
        CheckConstraint(_in("status", CommunityStatus), name="status_word"),
        CheckConstraint("current_phase BETWEEN 1 AND 6", name="current_phase_range"),
    )


class CommunityRolloutPhase(Base):
    """Per-phase status, timestamps and error of a community rollout (one row per phase)."""

    __tablename__ = "community_rollout_phases"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    community_rollout_id: Mapped[int] = mapped_column(
        ForeignKey("community_rollouts.id", ondelete="CASCADE")
    )
    phase: Mapped[int] = mapped_column(SmallInteger)
    status: Mapped[str] = mapped_column(String(16), server_default=PhaseStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    started_at: Mapped[dt.datetime | None]
    completed_at: Mapped[dt.datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(server_default=func.now(), onupdate=func.now())

    __table_args__ = (
        UniqueConstraint("community_rollout_id", "phase"),
        CheckConstraint("phase BETWEEN 1 AND 6", name="phase_range"),
        CheckConstraint(_in("status", PhaseStatus), name="status_word"),
    )


class RolloutApiUsage(Base):
    """One row per billed request. request_key makes the log idempotent: an activity that
    retries after logging does not log the same billed response twice."""

    __tablename__ = "rollout_api_usage"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    request_key: Mapped[str] = mapped_column(String(255), unique=True)
    community_rollout_id: Mapped[int | None] = mapped_column(
        ForeignKey("community_rollouts.id", ondelete="SET NULL"), index=True
    )
    provider: Mapped[str] = mapped_column(String(32))
    endpoint: Mapped[str] = mapped_column(String(64))
    sku: Mapped[str] = mapped_column(String(64))
    request_count: Mapped[int] = mapped_column(Integer, server_default="1")
    cost: Mapped[Decimal] = mapped_column(Money)
    result_count: Mapped[int] = mapped_column(Integer, server_default="0")
    http_status: Mapped[int | None] = mapped_column(SmallInteger)
    # ok; malformed (a 200 whose body broke); timeout (sent, no answer in time: Google may
    # have billed it, so it is counted as billed and the log is never below the bill).
    outcome: Mapped[str] = mapped_column(String(16), server_default="ok")
    requested_at: Mapped[dt.datetime] = mapped_column(server_default=func.now(), index=True)

    __table_args__ = (
        CheckConstraint("cost >= 0", name="cost_non_negative"),
        CheckConstraint("request_count >= 1", name="request_count_positive"),
        CheckConstraint("outcome IN ('ok', 'malformed', 'timeout')", name="outcome_known"),
    )


class PlacesAnswer(Base):
    """A billed phase 1 answer, written with its usage-log row, so that a retry of the
    activity that bought it reuses it rather than buying it again. `places` holds the answer
    only until it is stored (then NULL: Google content is kept in one place, `businesses`);
    the row itself, with the page's outcome, lives until its community's phase 1 finishes."""

    __tablename__ = "places_answers"

    # The buying activity, the same across its attempts: workflow run id / activity id.
    request_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    community_rollout_id: Mapped[int] = mapped_column(
        ForeignKey("community_rollouts.id", ondelete="CASCADE"), index=True
    )
    sku: Mapped[str] = mapped_column(String(64))
    cost: Mapped[Decimal] = mapped_column(Money)
    places: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB(none_as_null=True))
    next_page_token: Mapped[str | None] = mapped_column(Text)
    result_count: Mapped[int] = mapped_column(Integer)
    # Set when the places are stored: the page's outcome, returned again by a retry.
    new_in_region: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class DiscoverySighting(Base):
    """The place ids of one page of a phase 1 search (`cover` strategy): free IDs-only probes,
    from which the purchase list is planned, and the paid pages bought after it (kept to
    check that every sighted id was fetched). Place ids may be stored indefinitely."""

    __tablename__ = "discovery_sightings"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # The discovery workflow's first run id: one exploration, across continue-as-new.
    run_key: Mapped[str] = mapped_column(String(64))
    community_rollout_id: Mapped[int] = mapped_column(
        ForeignKey("community_rollouts.id", ondelete="CASCADE"), index=True
    )
    task_key: Mapped[str] = mapped_column(Text)
    page_number: Mapped[int] = mapped_column(Integer)
    paid: Mapped[bool] = mapped_column(Boolean)
    task: Mapped[dict[str, Any]] = mapped_column(JSONB)  # the SearchTask, to buy it later
    place_ids: Mapped[list[str]] = mapped_column(ARRAY(Text))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())

    __table_args__ = (UniqueConstraint("run_key", "task_key", "page_number", "paid"),)


class DiscoveryPurchase(Base):
    """One line of a phase 1 purchase list: the first `pages` pages of a probed search, or
    one place's Place Details. `seq` is the workflow's handle on it (no ids in histories)."""

    __tablename__ = "discovery_purchases"

    run_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    community_rollout_id: Mapped[int] = mapped_column(
        ForeignKey("community_rollouts.id", ondelete="CASCADE"), index=True
    )
    # none_as_null: a details line has SQL NULL here, not the JSON value null.
    task: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    pages: Mapped[int] = mapped_column(Integer)
    place_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())

    __table_args__ = (
        CheckConstraint("(task IS NULL) <> (place_id IS NULL)", name="search_or_details"),
        CheckConstraint("pages >= 1", name="pages_positive"),
    )


# --------------------------------------------------------------------------------------
# Phases 2-3: website scans, news sources
# --------------------------------------------------------------------------------------


class WebsiteScan(TimestampMixin, Base):
    """The latest scan of a business's website (rescans update the row)."""

    __tablename__ = "website_scans"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    business_id: Mapped[int] = mapped_column(
        ForeignKey("businesses.id", ondelete="CASCADE"), unique=True
    )
    community_rollout_id: Mapped[int | None] = mapped_column(
        ForeignKey("community_rollouts.id", ondelete="SET NULL"), index=True
    )
    url: Mapped[str] = mapped_column(Text)
    final_url: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32))
    http_status: Mapped[int | None] = mapped_column(SmallInteger)
    found: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    error: Mapped[str | None] = mapped_column(Text)
    scanned_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class NewsSource(TimestampMixin, Base):
    __tablename__ = "news_sources"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    business_id: Mapped[int | None] = mapped_column(
        ForeignKey("businesses.id", ondelete="SET NULL"), unique=True
    )
    community_id: Mapped[int | None] = mapped_column(
        ForeignKey("communities.id", ondelete="SET NULL"), index=True
    )
    name: Mapped[str] = mapped_column(Text)
    homepage_url: Mapped[str | None] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))


class CollectionMethod(TimestampMixin, Base):
    __tablename__ = "collection_methods"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    news_source_id: Mapped[int] = mapped_column(ForeignKey("news_sources.id", ondelete="CASCADE"))
    method: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    item_count: Mapped[int] = mapped_column(Integer, server_default="0")
    last_checked_at: Mapped[dt.datetime | None]

    __table_args__ = (
        UniqueConstraint("news_source_id", "method", "url"),
        CheckConstraint("method IN ('rss', 'atom', 'ical', 'html')", name="method_word"),
    )


# --------------------------------------------------------------------------------------
# Phase 6: cross-platform seeding
# --------------------------------------------------------------------------------------


class PlatformOutbox(TimestampMixin, Base):
    """Transactional outbox for downstream platforms: one row per platform and entity."""

    __tablename__ = "platform_outbox"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[int] = mapped_column(BigInteger)
    community_rollout_id: Mapped[int | None] = mapped_column(
        ForeignKey("community_rollouts.id", ondelete="SET NULL"), index=True
    )
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[dt.datetime | None]
    # What the payload is: the entity as it stands (`upsert`) or its end (`tombstone`:
    # closed, moved, not found, or its Google content purged).
    event: Mapped[str] = mapped_column(String(16), server_default="upsert")
    # Raised by one each time the payload changes: receivers apply an entity's events in
    # version order, and "<id>.<version>" is the event id they de-duplicate on.
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    # Backoff: the relay leaves an undelivered row alone until then (NULL: due now).
    next_attempt_at: Mapped[dt.datetime | None]
    # A lease: a sender holds the row until then, so two senders do not post it at once.
    claimed_until: Mapped[dt.datetime | None]

    __table_args__ = (
        UniqueConstraint("platform", "entity_type", "entity_id"),
        Index("ix_platform_outbox_pending", "platform", "status"),
        Index(
            "ix_platform_outbox_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('pending', 'failed')"),
        ),
        CheckConstraint(_in("platform", Platform), name="platform_word"),
        CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status_word"),
        CheckConstraint("event IN ('upsert', 'tombstone')", name="event_word"),
    )
