"""Businesses found by Places: bulk upsert by place id, region links, unique counts."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from rollout.db.models import Business, BusinessRegion, CommunityRegion, Region
from rollout.places.models import Place

# Google-sourced columns refreshed on every sighting (volatile content, see Business).
_REFRESHED = (
    "name", "formatted_address", "latitude", "longitude", "primary_type", "types",
    "business_status", "website_uri", "national_phone_number", "google_maps_uri",
    "pure_service_area_business", "rating", "user_rating_count",
)  # fmt: skip


def _row(place: Place, community_id: int) -> dict[str, object]:
    return {
        "place_id": place.id,
        "community_id": community_id,
        "name": place.display_name,
        "formatted_address": place.formatted_address,
        "latitude": place.location.latitude if place.location else None,
        "longitude": place.location.longitude if place.location else None,
        "primary_type": place.primary_type,
        "types": list(place.types or ()),
        "business_status": place.business_status.value if place.business_status else None,
        "website_uri": place.website_uri,
        "national_phone_number": place.national_phone_number,
        "google_maps_uri": place.google_maps_uri,
        "pure_service_area_business": place.pure_service_area_business,
        "rating": Decimal(str(round(place.rating, 1))) if place.rating is not None else None,
        "user_rating_count": place.user_rating_count,
        "places_fetched_at": func.now(),
    }


async def upsert_places(
    session: AsyncSession, places: Sequence[Place], *, community_id: int, region_id: int
) -> int:
    """Insert or refresh `places` by place id in one statement, and link them to the region.

    Returns how many of them the region did not have yet. The first community to find a
    business keeps it (community_id is set on insert only); re-sightings refresh the
    Google fields, last_seen_at and places_fetched_at.
    """
    unique = {p.id: p for p in places}  # a page never repeats an id, but be safe
    if not unique:
        return 0
    stmt = insert(Business).values([_row(p, community_id) for p in unique.values()])
    rows = await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Business.place_id],
            set_={
                **{c: stmt.excluded[c] for c in _REFRESHED},
                "last_seen_at": func.now(),
                "places_fetched_at": func.now(),
                "updated_at": func.now(),
            },
        ).returning(Business.id)
    )
    ids = [business_id for (business_id,) in rows]
    linked = await session.execute(
        insert(BusinessRegion)
        .values([{"business_id": b, "region_id": region_id} for b in ids])
        .on_conflict_do_nothing()
        .returning(BusinessRegion.business_id)
    )
    return len(linked.all())


async def primary_region(session: AsyncSession, community_id: int) -> Region | None:
    return await session.scalar(
        select(Region)
        .join(CommunityRegion, CommunityRegion.region_id == Region.id)
        .where(CommunityRegion.community_id == community_id, CommunityRegion.is_primary)
    )


async def region_counts(session: AsyncSession, region_id: int) -> tuple[int, int]:
    """(unique businesses, those with a website) linked to a region: each business counts
    once however many categories or cells found it."""
    total, with_site = (
        await session.execute(
            select(
                func.count(),
                func.count().filter(Business.website_uri.is_not(None)),
            )
            .select_from(BusinessRegion)
            .join(Business, Business.id == BusinessRegion.business_id)
            .where(BusinessRegion.region_id == region_id)
        )
    ).one()
    return int(total), int(with_site)
