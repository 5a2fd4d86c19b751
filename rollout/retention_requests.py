"""The retention run's Places requests: a refresh of a business's Google content before it
expires, and the free re-check of an old place id (rollout/retention.py decides who is due).

Each is one Place Details for one business, made by an activity on the rate-limited Places
queue. What the answer says about the place is applied here:

- the answer is the same place, open or closed for a while: a refresh stores its content
  (every listing column, so a field Google dropped is dropped here too) and stamps
  `places_fetched_at`; a re-check stamps `place_id_checked_at`;
- the place closed for good (`businessStatus` CLOSED_PERMANENTLY): `closed_reason`
  `closed_permanently`; with `movedPlaceId`, `moved` and `moved_to_place_id`;
- the id answers NOT_FOUND (obsolete): `not_found`;
- the answer carries another id and no `movedPlaceId` (Google re-keyed the place): the
  business follows it, unless another business already holds that id, in which case this
  one is marked `moved` to it.

A closed business is not refreshed or re-checked again, and its platforms get a tombstone
(rollout/phases/seeding/events.py). Requests, their timing and billing are the activity's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from rollout.db.businesses import place_columns
from rollout.db.models import Business
from rollout.phases.discovery.planning import details_mask
from rollout.places.models import BusinessStatus, Place
from rollout.retention import (
    PLACE_ID_CHECK_MASK,
    PlacesContentPolicy,
    due_recheck,
    due_refresh,
)

RetentionRequestKind = Literal["refresh", "recheck"]

# Usage-log endpoints of the run's requests (no community rollout: the run is the state's).
REFRESH_ENDPOINT = "place_details_refresh"
RECHECK_ENDPOINT = "place_id_check"
# `movedPlaceId` is an IDs-only field: free in any Place Details SKU, and what says where a
# closed place went.
MOVED_FIELD = "movedPlaceId"


def refresh_mask(*, atmosphere: bool = False) -> str:
    """The fields phase 1 keeps, bought again, plus where a closed place moved."""
    return f"{details_mask(atmosphere=atmosphere)},{MOVED_FIELD}"


def recheck_mask() -> str:
    return f"{PLACE_ID_CHECK_MASK},{MOVED_FIELD}"


class RequestOutcome(StrEnum):
    REFRESHED = "refreshed"  # content stored again
    CONFIRMED = "confirmed"  # the id still names the place
    FOLLOWED = "followed"  # Google answered with a new id; the business took it
    CLOSED = "closed"  # closed for good
    MOVED = "moved"  # closed, moved to another id
    NOT_FOUND = "not_found"  # an obsolete id
    CURRENT = "current"  # nothing due any more (an earlier attempt did it)


@dataclass(frozen=True, slots=True)
class RetentionTarget:
    business_id: int
    place_id: str


def _due(
    kind: RetentionRequestKind, policy: PlacesContentPolicy, as_of: dt.datetime
) -> ColumnElement[bool]:
    return due_refresh(policy, as_of) if kind == "refresh" else due_recheck(policy, as_of)


async def due_page(
    session: AsyncSession,
    kind: RetentionRequestKind,
    policy: PlacesContentPolicy,
    as_of: dt.datetime,
    *,
    after_business_id: int,
    limit: int,
) -> list[int]:
    """The next `limit` business ids above `after_business_id`, in id order, due a request
    of `kind` at `as_of`."""
    rows = await session.scalars(
        select(Business.id)
        .where(_due(kind, policy, as_of), Business.id > after_business_id)
        .order_by(Business.id)
        .limit(limit)
    )
    return list(rows)


async def due_target(
    session: AsyncSession,
    kind: RetentionRequestKind,
    policy: PlacesContentPolicy,
    as_of: dt.datetime,
    business_id: int,
) -> RetentionTarget | None:
    """The business to request, or None when it is not due any more: a retry after the
    answer was stored buys nothing."""
    row = (
        await session.execute(
            select(Business.id, Business.place_id).where(
                Business.id == business_id, _due(kind, policy, as_of)
            )
        )
    ).first()
    return RetentionTarget(row.id, row.place_id) if row else None


def _closure(place: Place) -> tuple[str, str | None] | None:
    if place.business_status is not BusinessStatus.CLOSED_PERMANENTLY:
        return None
    if place.moved_place_id:
        return "moved", place.moved_place_id.removeprefix("places/")
    return "closed_permanently", None


def _closed_values(reason: str, moved_to: str | None) -> dict[str, Any]:
    return {
        "closed_at": func.now(),
        "closed_reason": reason,
        "moved_to_place_id": moved_to,
        "updated_at": func.now(),
    }


async def _follow(
    session: AsyncSession, target: RetentionTarget, new_id: str
) -> tuple[RequestOutcome, dict[str, Any]]:
    """Google answered `target` with another id and no `movedPlaceId`: take the new id, or,
    when another business holds it already, mark this one moved to it."""
    taken = await session.scalar(
        select(Business.id).where(Business.place_id == new_id, Business.id != target.business_id)
    )
    if taken is not None:
        return RequestOutcome.MOVED, _closed_values("moved", new_id)
    return RequestOutcome.FOLLOWED, {"place_id": new_id, "updated_at": func.now()}


async def store_refresh(
    session: AsyncSession, target: RetentionTarget, place: Place, raw: dict[str, Any] | None
) -> RequestOutcome:
    """Store a refresh's answer: every listing column (a field the answer lacks is
    cleared, as Google no longer has it), the enrichment, and what it says of the place."""
    listing = place_columns(place)
    listing["types"] = listing["types"] or []
    enrichment = raw if raw is not None and raw.get("id") == place.id else None
    values: dict[str, Any] = {
        **listing,
        "enrichment": enrichment or place.model_dump(mode="json", by_alias=True, exclude_none=True),
        "enriched_at": func.now(),
        "places_fetched_at": func.now(),
        "place_id_checked_at": func.now(),
        "updated_at": func.now(),
    }
    outcome = RequestOutcome.REFRESHED
    closure = _closure(place)
    if closure is not None:
        outcome = RequestOutcome.MOVED if closure[0] == "moved" else RequestOutcome.CLOSED
        values.update(_closed_values(*closure))
    elif place.id != target.place_id:
        outcome, follow = await _follow(session, target, place.id)
        values.update(follow)
    await session.execute(
        update(Business).where(Business.id == target.business_id).values(**values)
    )
    return outcome


async def store_recheck(
    session: AsyncSession, target: RetentionTarget, place: Place | None
) -> RequestOutcome:
    """Apply an IDs-only check's answer (None: the id answered NOT_FOUND)."""
    values: dict[str, Any] = {"place_id_checked_at": func.now(), "updated_at": func.now()}
    if place is None:
        outcome = RequestOutcome.NOT_FOUND
        values.update(_closed_values("not_found", None))
    elif place.moved_place_id:
        outcome = RequestOutcome.MOVED
        values.update(_closed_values("moved", place.moved_place_id.removeprefix("places/")))
    elif place.id != target.place_id:
        outcome, follow = await _follow(session, target, place.id)
        values.update(follow)
    else:
        outcome = RequestOutcome.CONFIRMED
    await session.execute(
        update(Business).where(Business.id == target.business_id).values(**values)
    )
    return outcome


async def store_not_found(session: AsyncSession, target: RetentionTarget) -> RequestOutcome:
    """A refresh whose id answered NOT_FOUND: the place is gone from Google."""
    await session.execute(
        update(Business)
        .where(Business.id == target.business_id, and_(Business.closed_at.is_(None)))
        .values(**_closed_values("not_found", None))
    )
    return RequestOutcome.NOT_FOUND
