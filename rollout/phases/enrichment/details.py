"""Phase 4's Place Details: refreshing the Google enrichment fields of businesses whose
enrichment is older than ENRICHMENT_FRESH_DAYS (phase 1's pages carry them when bought, so
a fresh rollout makes none of these requests; the business's own website is read in
rollout/phases/enrichment/website.py).

One Place Details per `places_enrich` activity on the rate-limited Place Details queue
(workflows/enrichment.py), so the quota holds for any number of workers, as phase 1's
requests do.

Billing discipline (docs/architecture.md, Rules of the house, Money: every billed response
logged exactly once): each successful Place Details answer is logged in its own transaction
right after it arrives, BEFORE its fields are stored, under a key that names the request
(unique per activity attempt). A failure after the log loses no billed request; a retry
makes a new request with a new key only if the enrichment was not stored, so nothing is
paid twice.

A business enriched within ENRICHMENT_FRESH_DAYS is not requested again at all (checked
again right before each request: a neighbouring community may have enriched it meanwhile).

Storage: the answer is kept as returned (`businesses.enrichment`) plus the typed columns it
refreshes, stamped `enriched_at` and `places_fetched_at`. Google's terms allow caching only
the place id indefinitely (docs/places.md, Storage terms); purging or refreshing the rest by
age is a retention decision left to the owners, which the timestamps make possible.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from rollout.db.businesses import place_columns
from rollout.db.community_scope import community_business_ids
from rollout.db.models import Business, RolloutApiUsage
from rollout.db.usage import BilledRequest, UsageOutcome
from rollout.places.errors import MalformedResponseError, NotFoundError, PlacesError
from rollout.places.models import DetailsResult, Place
from rollout.places.pricing import FieldMaskError

USAGE_ENDPOINT = "place_details"


class DetailsClient(Protocol):
    async def get_place(self, place_id: str, field_mask: str | Sequence[str]) -> DetailsResult: ...


@dataclass(frozen=True, slots=True)
class EnrichTarget:
    business_id: int
    place_id: str


def _with_site(community_id: int) -> tuple[ColumnElement[bool], ...]:
    return (
        Business.id.in_(community_business_ids(community_id)),
        Business.website_uri.is_not(None),
        func.length(func.trim(Business.website_uri)) > 0,
    )


def _stale(fresh_days: int) -> ColumnElement[bool]:
    cutoff = func.now() - dt.timedelta(days=fresh_days)
    return or_(Business.enriched_at.is_(None), Business.enriched_at < cutoff)


async def count_fresh(session: AsyncSession, community_id: int, fresh_days: int) -> int:
    """Businesses of the community with a website enriched within `fresh_days`."""
    fresh = await session.scalar(
        select(func.count()).where(*_with_site(community_id), ~_stale(fresh_days))
    )
    return int(fresh or 0)


async def target_page(
    session: AsyncSession, community_id: int, fresh_days: int, after_business_id: int, limit: int
) -> list[int]:
    """The next `limit` business ids (above `after_business_id`, in id order) with a
    website and not enriched within `fresh_days`."""
    rows = await session.scalars(
        select(Business.id)
        .where(*_with_site(community_id), _stale(fresh_days), Business.id > after_business_id)
        .order_by(Business.id)
        .limit(limit)
    )
    return list(rows)


async def stale_target(
    session: AsyncSession, business_id: int, fresh_days: int
) -> EnrichTarget | None:
    """The business to request, or None when it is fresh now (enriched by an earlier
    attempt, or by a neighbouring community since it was listed) or gone."""
    row = (
        await session.execute(
            select(Business.id, Business.place_id).where(
                Business.id == business_id, _stale(fresh_days)
            )
        )
    ).first()
    return EnrichTarget(row.id, row.place_id) if row else None


def enrichment_values(place: Place, answer: dict[str, Any] | None = None) -> dict[str, Any]:
    """The business columns an answer refreshes (only fields it actually carries).
    `answer` is the raw JSON when it was captured; otherwise the typed fields are kept."""
    stored = answer if answer is not None and answer.get("id") == place.id else None
    values: dict[str, Any] = {
        "enrichment": stored or place.model_dump(mode="json", by_alias=True, exclude_none=True),
        "enriched_at": func.now(),
        "places_fetched_at": func.now(),
        "updated_at": func.now(),
    }
    columns = place_columns(place)
    values.update({k: v for k, v in columns.items() if v is not None})
    return values


async def phase_cost(session: AsyncSession, community_rollout_id: int) -> Decimal:
    """What this community's Place Details requests cost, over every attempt."""
    cost = await session.scalar(
        select(func.coalesce(func.sum(RolloutApiUsage.cost), 0)).where(
            RolloutApiUsage.community_rollout_id == community_rollout_id,
            RolloutApiUsage.endpoint == USAGE_ENDPOINT,
        )
    )
    return Decimal(cost or 0)


class TargetOutcome(StrEnum):
    ENRICHED = "enriched"
    NOT_FOUND = "not_found"  # an obsolete place id: Google answers 404 and bills nothing
    INVALID = "invalid"  # not a place id at all: nothing was sent


async def enrich_target(
    sessions: async_sessionmaker[AsyncSession],
    client: DetailsClient,
    target: EnrichTarget,
    *,
    community_rollout_id: int,
    field_mask: str,
    request_key: str,
    record: Callable[[BilledRequest], Awaitable[None]],
) -> tuple[TargetOutcome, Decimal]:
    """One Place Details for one business: `record` what Google billed, then store the
    answer.

    Places errors propagate (the caller maps them to Temporal's retry semantics) except
    NOT_FOUND, which concerns one obsolete place id, not the run.
    """

    def billed(
        sku: str, cost: Decimal, count: int, status: int | None, outcome: UsageOutcome
    ) -> BilledRequest:
        return BilledRequest(
            request_key=request_key,
            community_rollout_id=community_rollout_id,
            endpoint=USAGE_ENDPOINT,
            sku=sku,
            cost=cost,
            result_count=count,
            http_status=status,
            outcome=outcome,
        )

    try:
        result = await client.get_place(target.place_id, field_mask)
    except NotFoundError:
        return TargetOutcome.NOT_FOUND, Decimal(0)
    except PlacesError as exc:
        # A broken 200 body, or a request sent whose answer never came: Google billed it,
        # or may have; log it, then fail (retryable) like any other transient error.
        if exc.billed_sku is not None and exc.billed_cost is not None:
            malformed = isinstance(exc, MalformedResponseError)
            outcome = UsageOutcome.MALFORMED if malformed else UsageOutcome.TIMEOUT
            await record(billed(exc.billed_sku, exc.billed_cost, 0, exc.status_code, outcome))
        raise
    except FieldMaskError:
        raise  # our configuration, not the place: fail the phase
    except ValueError:
        return TargetOutcome.INVALID, Decimal(0)
    await record(billed(result.sku, result.cost, 1, result.http_status, UsageOutcome.OK))
    async with sessions.begin() as session:
        await session.execute(
            update(Business)
            .where(Business.id == target.business_id)
            .values(**enrichment_values(result.place, result.raw))
        )
    return TargetOutcome.ENRICHED, result.cost
