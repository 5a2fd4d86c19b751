"""Businesses found by Places: bulk upsert by place id, region links, unique counts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from rollout.db.models import Business, BusinessRegion, CommunityRegion, Region
from rollout.places.models import Place

# Google-sourced columns refreshed on every sighting (volatile content, see Business).
_REFRESHED = (
    "name", "formatted_address", "latitude", "longitude", "primary_type", "types",
    "business_status", "website_uri", "national_phone_number", "google_maps_uri",
    "pure_service_area_business", "rating", "user_rating_count",
)  # fmt: skip


def place_columns(place: Place) -> dict[str, Any]:
    """The business columns a Places answer fills: the one Place-to-columns mapping, used
    by phase 1's upsert and phase 4's enrichment. A field the answer lacks maps to None."""
    return {
        "name": place.display_name,
        "formatted_address": place.formatted_address,
        "latitude": place.location.latitude if place.location else None,
        "longitude": place.location.longitude if place.location else None,
        "primary_type": place.primary_type,
        "types": list(place.types) if place.types is not None else None,
        "business_status": place.business_status.value if place.business_status else None,
        "website_uri": place.website_uri,
        "national_phone_number": place.national_phone_number,
        "google_maps_uri": place.google_maps_uri,
        "pure_service_area_business": place.pure_service_area_business,
        "rating": Decimal(str(round(place.rating, 1))) if place.rating is not None else None,
        "user_rating_count": place.user_rating_count,
    }


def _row(place: Place, community_id: int) -> dict[str, object]:
    row = place_columns(place)
    row["types"] = row["types"] or []
    return {
        "place_id": place.id,
        "community_id": community_id,
        **row,
        "places_fetched_at": func.now(),
    }


# One statement of constant text for any number of places: the rows travel as one array per
# column and are unnested by Postgres, so SQLAlchemy compiles it once and asyncpg prepares it
# once per connection (a multi-row VALUES list is compiled anew for every page, which costs
# more CPU than the database spends writing; bench/upsert_writes.py). The region links go in
# the same statement. `types` travels as one comma-joined string per place (Postgres arrays
# are rectangular, so an array of arrays cannot carry lists of different lengths); Places type
# names never contain commas. It is written as common table expressions (`input`,
# `upserted`, and `linked`: the region links it added), so phase 1 can write a page's places
# in the same statement as the page's other rows (rollout/db/page_writes.py). Column names
# are this module's constants; every value is bound.
UPSERT_CTES = f"""
    input AS (
        SELECT * FROM unnest(
            CAST(:place_id AS text[]), CAST(:name AS text[]), CAST(:formatted_address AS text[]),
            CAST(:latitude AS float8[]), CAST(:longitude AS float8[]),
            CAST(:primary_type AS text[]), CAST(:types AS text[]),
            CAST(:business_status AS text[]), CAST(:website_uri AS text[]),
            CAST(:national_phone_number AS text[]), CAST(:google_maps_uri AS text[]),
            CAST(:pure_service_area_business AS boolean[]), CAST(:rating AS numeric[]),
            CAST(:user_rating_count AS integer[]), CAST(:enrichment AS text[])
        ) AS u(place_id, name, formatted_address, latitude, longitude, primary_type, types,
               business_status, website_uri, national_phone_number, google_maps_uri,
               pure_service_area_business, rating, user_rating_count, enrichment)
    ),
    upserted AS (
        INSERT INTO businesses (place_id, community_id, {", ".join(_REFRESHED)},
                                enrichment, enriched_at, places_fetched_at)
        SELECT place_id, :community_id, name, formatted_address, latitude, longitude,
               primary_type, string_to_array(types, ','), business_status, website_uri,
               national_phone_number, google_maps_uri, pure_service_area_business, rating,
               user_rating_count, CAST(enrichment AS jsonb),
               CASE WHEN enrichment IS NULL THEN NULL ELSE now() END, now()
        FROM input
        ON CONFLICT (place_id) DO UPDATE SET
            {", ".join(f"{c} = excluded.{c}" for c in _REFRESHED)},
            enrichment = coalesce(excluded.enrichment, businesses.enrichment),
            enriched_at = coalesce(excluded.enriched_at, businesses.enriched_at),
            last_seen_at = now(), places_fetched_at = now(), updated_at = now()
        RETURNING id
    ),
    linked AS (
        INSERT INTO business_region (business_id, region_id)
        SELECT id, :region_id FROM upserted
        ON CONFLICT DO NOTHING
        RETURNING business_id
    )
"""
_UPSERT = text(f"WITH {UPSERT_CTES} SELECT count(*) FROM linked")


def upsert_parameters(
    places: Sequence[Place], *, community_id: int, region_id: int, enriched: bool = False
) -> dict[str, object]:
    """The bound values of UPSERT_CTES for `places` (each id once)."""
    unique = list({p.id: p for p in places}.values())  # a page never repeats an id
    columns = [place_columns(p) for p in unique]
    params: dict[str, object] = {c: [row[c] for row in columns] for c in _REFRESHED if c != "types"}
    params["place_id"] = [p.id for p in unique]
    params["types"] = [",".join(p.types or ()) for p in unique]
    params["enrichment"] = [json.dumps(p.enrichment()) if enriched else None for p in unique]
    params["community_id"] = community_id
    params["region_id"] = region_id
    return params


async def upsert_places(
    session: AsyncSession,
    places: Sequence[Place],
    *,
    community_id: int,
    region_id: int,
    enriched: bool = False,
) -> int:
    """Insert or refresh `places` by place id in one statement, and link them to the region.

    Returns how many of them the region did not have yet. The first community to find a
    business keeps it (community_id is set on insert only); re-sightings refresh the
    Google fields, last_seen_at and places_fetched_at. `enriched`: the answer was bought
    with the enrichment fields, so `enrichment` is replaced by what it carried (even
    nothing: Google has no hours for that place) and `enriched_at` stamped.
    """
    if not places:
        return 0
    params = upsert_parameters(
        places, community_id=community_id, region_id=region_id, enriched=enriched
    )
    return int((await session.execute(_UPSERT, params)).scalar_one())


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
