"""Google's storage terms kept: how old each business's Places content is, and what to do.

Google's terms for Places content (docs/places.md, Storage terms): the place id may be kept
indefinitely, and Google recommends re-checking ids older than 12 months (free: Place
Details Essentials IDs Only); latitude and longitude at most 30 consecutive days; the rest
may not be cached at all, which this project treats like the coordinates: 30 days. The
policy (`PLACES_CONTENT_POLICY`) decides what happens when that time is up:

- `purge` (the default): the content is cleared; the place id and the business's own
  website profile stay, so a later rollout finds and buys the business again.
- `refresh`: the content is bought again before it expires (Place Details with the fields
  phase 1 keeps, between REFRESH_AFTER_DAYS and CONTENT_DAYS old; rollout/
  retention_requests.py); what was not refreshed in time (a budget reached, Places down
  for days) is purged at CONTENT_DAYS like under `purge`. A business closed for good is
  not worth a request and is purged in its turn. Whether refreshed content may be kept
  this way is the owners' legal call, not the code's.
- `keep`: nothing is purged, only with `PLACES_CONTENT_POLICY_ACKNOWLEDGED=true`.

Where each stored value of a business comes from, and as of when (the view
`business_field_sources` lists them per business: field, source, detail, as_of):

- `place_id`: Google, kept indefinitely; as of its latest confirmation, the latest of
  `place_id_checked_at` (an IDs-only check), `places_fetched_at` (an answer carries it)
  and `first_seen_at`.
- `name`, `formatted_address`, `latitude`, `longitude`, `primary_type`, `types`,
  `business_status`, `website_uri`, `national_phone_number`, `google_maps_uri`,
  `pure_service_area_business`, `rating`, `user_rating_count` (GOOGLE_LISTING_COLUMNS):
  Google, a phase 1 page or a Place Details answer; as of `places_fetched_at`, cleared at
  `places_purged_at`.
- `enrichment` (the enrichment and Atmosphere fields as returned): Google, with the
  listing or from phase 4's Place Details; as of `enriched_at`.
- `website_profile`: the business's own home page, read in phase 2, each value with its
  `source` (`json-ld`, `microdata`, `meta`); as of `website_profile_at`. Not Google's
  content: kept whatever the policy.
- `community_id`, `first_seen_at`, `last_seen_at`, `created_at`, `updated_at`: the
  project's bookkeeping.

No column holds an operator's content today: an operator's correction would be a column
of its own, with its author and time, and is kept whatever the policy.

The age of a listing is `places_fetched_at` (`first_seen_at` when a row has none: the
oldest the content can be); the enrichment's is `enriched_at`, since a later page bought
without it keeps the earlier one. A listing is held while it was fetched after its last
purge. A business's state is its community's (a linked region's when the community is gone).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    false,
    func,
    literal_column,
    not_,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from rollout.db.models import Business, BusinessRegion, Community, NewsSource, Region
from rollout.phases.discovery.planning import details_mask
from rollout.places.pricing import Endpoint, request_cost, sku_for

PlacesContentPolicy = Literal["purge", "refresh", "keep"]

# Google's limits, and the margin a refresh leaves before the content expires (a refresh
# that fails or waits for quota still has five days to succeed before anything is purged).
CONTENT_DAYS = 30
REFRESH_AFTER_DAYS = 25
PLACE_ID_REFRESH_DAYS = 365
# A place id is re-checked for free by a Place Details request for the id alone.
PLACE_ID_CHECK_MASK = "id"
# Google's business status of a place that will not reopen: refreshing it buys nothing.
CLOSED_PERMANENTLY = "CLOSED_PERMANENTLY"

# The columns a Places answer fills, cleared together when the listing expires.
GOOGLE_LISTING_COLUMNS = (
    "name", "formatted_address", "latitude", "longitude", "primary_type", "types",
    "business_status", "website_uri", "national_phone_number", "google_maps_uri",
    "pure_service_area_business", "rating", "user_rating_count",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class StateRetention:
    """One state's businesses under the plan (`state_code` None: neither a community nor a
    region says which state)."""

    state_code: str | None
    held: int  # businesses holding Google content
    expiring: int  # ... of which some is older than CONTENT_DAYS at as_of
    purge: int
    refresh: int
    recheck: int  # place ids older than PLACE_ID_REFRESH_DAYS, not refreshed anyway
    refresh_cost_usd: Decimal


@dataclass(frozen=True, slots=True)
class RetentionPlan:
    """What a retention run at `as_of` does under `policy`, and what it costs at list price
    (Google's monthly free caps not applied)."""

    policy: PlacesContentPolicy
    as_of: dt.datetime
    refresh_sku: str
    refresh_request_usd: Decimal
    recheck_sku: str
    recheck_request_usd: Decimal
    states: tuple[StateRetention, ...]

    @property
    def held(self) -> int:
        return sum(s.held for s in self.states)

    @property
    def expiring(self) -> int:
        return sum(s.expiring for s in self.states)

    @property
    def purge(self) -> int:
        return sum(s.purge for s in self.states)

    @property
    def refresh(self) -> int:
        return sum(s.refresh for s in self.states)

    @property
    def recheck(self) -> int:
        return sum(s.recheck for s in self.states)

    @property
    def refresh_cost_usd(self) -> Decimal:
        return self.refresh * self.refresh_request_usd

    @property
    def recheck_cost_usd(self) -> Decimal:
        return self.recheck * self.recheck_request_usd


# --------------------------------------------------------------------------------------
# Ages and states, as SQL expressions over `businesses`
# --------------------------------------------------------------------------------------


def _aware(as_of: dt.datetime) -> dt.datetime:
    if as_of.tzinfo is None:
        # A naive time would be read in the database session's zone: ages off by hours.
        raise ValueError("as_of must carry a time zone")
    return as_of


def _listing_fetched() -> ColumnElement[Any]:
    return func.coalesce(Business.places_fetched_at, Business.first_seen_at)


def listing_held() -> ColumnElement[bool]:
    """The business holds its Google listing: never purged, or fetched again since (the
    outbox's builders and events read the same rule)."""
    return or_(Business.places_purged_at.is_(None), Business.places_purged_at < _listing_fetched())


def _enrichment_held() -> ColumnElement[bool]:
    # The JSON value null holds nothing either; jsonb_typeof of SQL NULL is NULL, not 'null'.
    return func.coalesce(func.jsonb_typeof(Business.enrichment), "null") != "null"


def _listing_older(as_of: dt.datetime, days: int) -> ColumnElement[bool]:
    return and_(listing_held(), _listing_fetched() < as_of - dt.timedelta(days=days))


def _enrichment_older(as_of: dt.datetime, days: int) -> ColumnElement[bool]:
    enriched = func.coalesce(Business.enriched_at, _listing_fetched())
    return and_(_enrichment_held(), enriched < as_of - dt.timedelta(days=days))


def _older(as_of: dt.datetime, days: int) -> ColumnElement[bool]:
    return or_(_listing_older(as_of, days), _enrichment_older(as_of, days))


def _refreshable() -> ColumnElement[bool]:
    # A place closed for good (as its listing says, or as a retention request found it)
    # has nothing worth buying again.
    return and_(
        Business.business_status.is_distinct_from(CLOSED_PERMANENTLY),
        Business.closed_at.is_(None),
    )


def due_refresh(policy: PlacesContentPolicy, as_of: dt.datetime) -> ColumnElement[bool]:
    if policy != "refresh":
        return false()
    # Between REFRESH_AFTER_DAYS and CONTENT_DAYS old: content past CONTENT_DAYS was not
    # refreshed in time and is purged, whatever the policy (bar `keep`).
    listing = and_(
        _listing_older(as_of, REFRESH_AFTER_DAYS), not_(_listing_older(as_of, CONTENT_DAYS))
    )
    enrichment = and_(
        _enrichment_older(as_of, REFRESH_AFTER_DAYS),
        not_(_enrichment_older(as_of, CONTENT_DAYS)),
    )
    return and_(_refreshable(), or_(listing, enrichment))


def _to_purge(policy: PlacesContentPolicy, as_of: dt.datetime) -> ColumnElement[bool]:
    return false() if policy == "keep" else _older(as_of, CONTENT_DAYS)


def due_recheck(policy: PlacesContentPolicy, as_of: dt.datetime) -> ColumnElement[bool]:
    # A fetch answers with the id, so it confirms it as an IDs-only check does; a refresh
    # due anyway confirms it too.
    confirmed = func.greatest(
        Business.place_id_checked_at, Business.places_fetched_at, Business.first_seen_at
    )
    return and_(
        confirmed < as_of - dt.timedelta(days=PLACE_ID_REFRESH_DAYS),
        Business.closed_at.is_(None),
        not_(due_refresh(policy, as_of)),
    )


def _state() -> ColumnElement[Any]:
    community_state = (
        select(Community.state_code)
        .where(Community.id == Business.community_id)
        .correlate(Business)
        .scalar_subquery()
    )
    region_state = (
        select(Region.state_code)
        .join(BusinessRegion, BusinessRegion.region_id == Region.id)
        .where(BusinessRegion.business_id == Business.id)
        .order_by(Region.state_code)
        .limit(1)
        .correlate(Business)
        .scalar_subquery()
    )
    return func.coalesce(community_state, region_state)


def _in_state(state: str | None) -> ColumnElement[bool]:
    return _state() == state if state else true()


# --------------------------------------------------------------------------------------
# Plan and purge
# --------------------------------------------------------------------------------------


async def retention_plan(
    session: AsyncSession,
    policy: PlacesContentPolicy,
    as_of: dt.datetime,
    *,
    state: str | None = None,
    refresh_mask: str | None = None,
) -> RetentionPlan:
    """What a retention run at `as_of` would purge, refresh and re-check, per state (only
    `state` when given). `refresh_mask`: the Place Details mask a refresh sends (default
    phase 1's, `details_mask()`; with DISCOVERY_ATMOSPHERE its Atmosphere variant), which
    prices each refresh."""
    as_of = _aware(as_of)
    refresh_sku = sku_for(Endpoint.GET_PLACE, refresh_mask or details_mask())
    recheck_sku = sku_for(Endpoint.GET_PLACE, PLACE_ID_CHECK_MASK)
    flags = (
        select(
            _state().label("state_code"),
            or_(listing_held(), _enrichment_held()).label("held"),
            _older(as_of, CONTENT_DAYS).label("expiring"),
            _to_purge(policy, as_of).label("purge"),
            due_refresh(policy, as_of).label("refresh"),
            due_recheck(policy, as_of).label("recheck"),
        )
        .where(_in_state(state))
        .subquery()
    )
    rows = await session.execute(
        select(
            flags.c.state_code,
            func.count().filter(flags.c.held),
            func.count().filter(flags.c.expiring),
            func.count().filter(flags.c.purge),
            func.count().filter(flags.c.refresh),
            func.count().filter(flags.c.recheck),
        )
        .group_by(flags.c.state_code)
        .order_by(flags.c.state_code.nulls_last())
    )
    per_refresh = request_cost(refresh_sku)
    states = tuple(
        StateRetention(
            state_code=code,
            held=int(held),
            expiring=int(expiring),
            purge=int(purge),
            refresh=int(refresh),
            recheck=int(recheck),
            refresh_cost_usd=int(refresh) * per_refresh,
        )
        for code, held, expiring, purge, refresh, recheck in rows
    )
    return RetentionPlan(
        policy=policy,
        as_of=as_of,
        refresh_sku=refresh_sku,
        refresh_request_usd=per_refresh,
        recheck_sku=recheck_sku,
        recheck_request_usd=request_cost(recheck_sku),
        states=states,
    )


def _purge_statement(as_of: dt.datetime, where: ColumnElement[bool]) -> Any:
    listing = _listing_older(as_of, CONTENT_DAYS)
    enrichment = _enrichment_older(as_of, CONTENT_DAYS)
    cleared: dict[str, Any] = {
        column: case((listing, null()), else_=getattr(Business, column))
        for column in GOOGLE_LISTING_COLUMNS
        if column != "types"
    }
    cleared["types"] = case((listing, literal_column("'{}'::text[]")), else_=Business.types)
    return (
        update(Business)
        .where(or_(listing, enrichment), where)
        .values(
            **cleared,
            enrichment=case((enrichment, null()), else_=Business.enrichment),
            enriched_at=case((enrichment, null()), else_=Business.enriched_at),
            places_purged_at=case((listing, func.now()), else_=Business.places_purged_at),
            updated_at=func.now(),
        )
        .execution_options(synchronize_session=False)
    )


async def _rename_news_sources(session: AsyncSession, as_of: dt.datetime, where: Any) -> None:
    """A news source named after its business's Google listing is renamed, before the
    listing is purged, after what the business's own site says it is called, else its
    site's host: the name would otherwise be a copy of Google's content kept past the
    listing itself."""
    own_name = Business.website_profile["fields"]["name"]["value"].astext
    host = func.substring(NewsSource.homepage_url, r"^[A-Za-z]+://([^/:?#]+)")
    await session.execute(
        update(NewsSource)
        .where(
            NewsSource.business_id == Business.id,
            NewsSource.name == Business.name,
            _listing_older(as_of, CONTENT_DAYS),
            where,
        )
        .values(
            name=func.coalesce(
                func.nullif(func.trim(own_name), ""), host, func.concat("business ", Business.id)
            ),
            updated_at=func.now(),
        )
        .execution_options(synchronize_session=False)
    )


async def purge_expired_by_state(
    session: AsyncSession, as_of: dt.datetime, *, state: str | None = None
) -> dict[str | None, int]:
    """Clear, in one statement, the Google content older than CONTENT_DAYS at `as_of`: the
    listing columns (stamping `places_purged_at`) where the listing is that old, the
    enrichment (and `enriched_at`) where it is. The place id and the website profile stay.
    A purged value is not purged again, so a second run changes nothing. Returns how many
    businesses changed, per state. Whatever the policy: the caller decides whether to call
    it (never under `keep`)."""
    as_of = _aware(as_of)
    await _rename_news_sources(session, as_of, _in_state(state))
    result = await session.execute(_purge_statement(as_of, _in_state(state)).returning(_state()))
    counts: dict[str | None, int] = {}
    for (code,) in result:
        counts[code] = counts.get(code, 0) + 1
    return counts


@dataclass(frozen=True, slots=True)
class PurgedPage:
    """One page of a paged purge: the businesses it changed, how many per state, and where
    the next page starts (None: this was the last)."""

    business_ids: tuple[int, ...]
    next_after_id: int | None
    states: dict[str | None, int] = field(default_factory=dict)


async def purge_expired_page(
    session: AsyncSession,
    as_of: dt.datetime,
    *,
    after_business_id: int,
    limit: int,
    state: str | None = None,
) -> PurgedPage:
    """purge_expired_by_state over the next `limit` businesses with expired content above
    `after_business_id` (in id order; only `state`'s when given), locked against a
    concurrent run: short transactions on a large table, each business's purge committed
    with what it sends the platforms."""
    as_of = _aware(as_of)
    listing = _listing_older(as_of, CONTENT_DAYS)
    enrichment = _enrichment_older(as_of, CONTENT_DAYS)
    page = list(
        await session.scalars(
            select(Business.id)
            .where(or_(listing, enrichment), Business.id > after_business_id, _in_state(state))
            .order_by(Business.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if not page:
        return PurgedPage((), None)
    await _rename_news_sources(session, as_of, Business.id.in_(page))
    result = await session.execute(
        _purge_statement(as_of, Business.id.in_(page)).returning(Business.id, _state())
    )
    purged: list[int] = []
    states: dict[str | None, int] = {}
    for business_id, code in result:
        purged.append(business_id)
        states[code] = states.get(code, 0) + 1
    return PurgedPage(tuple(sorted(purged)), page[-1] if len(page) == limit else None, states)


async def purge_expired(
    session: AsyncSession, as_of: dt.datetime, *, state: str | None = None
) -> int:
    """purge_expired_by_state, counted: how many businesses changed."""
    return sum((await purge_expired_by_state(session, as_of, state=state)).values())
