"""Phase 1 planning: which searches cover a community, and how to split a saturated one.

Strategy (see docs/places.md, Coverage):
- dense categories: Text Search with `includedType`, restricted to the region's bounding
  rectangle, paged to the end;
- sparse categories: one Nearby Search on the region circle; a saturated answer (20 results)
  escalates to the dense treatment for that type;
- catch-all text queries, treated like dense categories;
- a Text Search that comes back saturated (60 results, the API's cap) is split into four
  rectangles (a quadtree), down to a minimum cell size;
- below the root, a cell is first probed with the free IDs-only field mask; only cells that
  turn out not to be saturated (leaves) are searched again with the paid mask, so no money
  is spent on results that the cell's children will find anyway.
"""

from __future__ import annotations

import math

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rollout.phases.discovery.payloads import (
    Box,
    CoverageRules,
    DiscoveryStrategy,
    SearchKind,
    SearchTask,
)

TEXT_SEARCH_CAP = 60  # results across all pages of one Text Search
PAGE_SIZE = 20  # results per page (Text Search) and per Nearby Search
METRES_PER_DEGREE_LAT = 111_320.0

# Table A types a local directory needs (docs/places.md, Coverage; from Google's
# place-types list). An includedType outside Table A fails the whole request with
# INVALID_ARGUMENT, so configured categories are checked against this list at start-up.
TABLE_A_TYPES: frozenset[str] = frozenset(
    """
    restaurant cafe coffee_shop bar pub wine_bar bakery deli diner sandwich_shop
    pizza_restaurant fast_food_restaurant ice_cream_shop donut_shop meal_takeaway meal_delivery
    bar_and_grill steak_house mexican_restaurant chinese_restaurant italian_restaurant
    dentist dental_clinic doctor hospital pharmacy drugstore chiropractor physiotherapist
    medical_lab massage spa sauna skin_care_clinic wellness_center yoga_studio tanning_studio
    lawyer plumber electrician roofing_contractor painter locksmith moving_company
    insurance_agency real_estate_agency hair_care hair_salon barber_shop beauty_salon beautician
    nail_salon makeup_artist body_art_service laundry tailor florist funeral_home cemetery
    veterinary_care child_care_agency catering_service storage travel_agency tour_agency
    consultant courier_service telecommunications_service_provider
    accounting bank atm
    car_repair car_dealer car_wash car_rental gas_station electric_vehicle_charging_station
    parking auto_parts_store
    grocery_store supermarket convenience_store market butcher_shop hardware_store
    home_improvement_store home_goods_store furniture_store electronics_store cell_phone_store
    clothing_store shoe_store jewelry_store gift_shop book_store pet_store bicycle_store
    sporting_goods_store liquor_store department_store discount_store warehouse_store
    wholesaler shopping_mall store
    gym fitness_center golf_course sports_club sports_complex swimming_pool ice_skating_rink
    church mosque synagogue hindu_temple
    school preschool primary_school secondary_school university library
    hotel motel inn bed_and_breakfast extended_stay_hotel campground rv_park
    post_office city_hall courthouse fire_station police local_government_office
    community_center event_venue wedding_venue banquet_hall movie_theater bowling_alley
    night_club museum art_gallery park amusement_center
    """.split()  # noqa: SIM905 - one readable block, as in Google's list
)

DEFAULT_DENSE = [
    "restaurant", "cafe", "bar", "bakery", "grocery_store", "convenience_store", "hair_salon",
    "beauty_salon", "barber_shop", "dentist", "doctor", "pharmacy", "car_repair", "gas_station",
    "lawyer", "insurance_agency", "real_estate_agency", "bank", "church", "gym",
    "clothing_store", "hardware_store", "hotel", "school",
]  # fmt: skip
DEFAULT_SPARSE = [
    "plumber", "electrician", "roofing_contractor", "florist", "funeral_home",
    "veterinary_care", "book_store", "library", "museum", "post_office", "city_hall",
    "fire_station", "police", "community_center", "event_venue", "movie_theater",
    "art_gallery", "child_care_agency", "accounting", "locksmith", "pet_store",
    "jewelry_store", "furniture_store", "golf_course", "car_dealer", "motel", "chiropractor",
]  # fmt: skip
DEFAULT_TEXT_QUERIES = ["local business", "shop", "services"]

# What phase 1 stores: listing fields plus website and phone (phase 2 scans websites).
# websiteUri/nationalPhoneNumber/rating make it the Enterprise SKU (docs/places.md, Field masks).
LISTING_FIELDS = (
    "id", "displayName", "formattedAddress", "location", "types", "primaryType",
    "businessStatus", "googleMapsUri", "pureServiceAreaBusiness", "websiteUri",
    "nationalPhoneNumber", "rating", "userRatingCount",
)  # fmt: skip
# What the platform keeps beyond the listing, from the SKUs phase 1 already pays for (Pro
# and Enterprise): a request is billed once at the highest SKU in its mask however many of
# that SKU's fields it asks for (docs/places.md, Billing), so these cost nothing more
# and no later phase buys them again.
ENRICHMENT_FIELDS = (
    "addressComponents", "internationalPhoneNumber", "regularOpeningHours", "priceLevel",
    "priceRange",
)  # fmt: skip
# Google's Atmosphere fields make every page dearer (Enterprise + Atmosphere: $40 instead of
# $35 per 1,000 Text Search pages): only with DISCOVERY_ATMOSPHERE=true.
ATMOSPHERE_FIELDS = (
    "editorialSummary", "paymentOptions", "parkingOptions", "outdoorSeating", "takeout",
    "delivery", "dineIn", "reservable", "goodForChildren", "allowsDogs", "restroom",
)  # fmt: skip


def place_fields(*, atmosphere: bool = False) -> tuple[str, ...]:
    """Every Place field phase 1 buys."""
    return LISTING_FIELDS + ENRICHMENT_FIELDS + (ATMOSPHERE_FIELDS if atmosphere else ())


def search_mask(*, atmosphere: bool = False) -> str:
    """A paid search page: Text Search Enterprise (+ Atmosphere when asked)."""
    fields = (f"places.{f}" for f in place_fields(atmosphere=atmosphere))
    return ",".join([*fields, "nextPageToken"])


def details_mask(*, atmosphere: bool = False) -> str:
    """Place Details for one id the cover left over: the same fields as a page."""
    return ",".join(place_fields(atmosphere=atmosphere))


SEARCH_MASK = search_mask()
PROBE_MASK = "places.id,nextPageToken"  # Text Search Essentials (IDs Only): free
DETAILS_MASK = details_mask()


class DiscoverySettings(BaseSettings):
    """Category lists and coverage knobs (env: DISCOVERY_DENSE_CATEGORIES='["cafe",...]')."""

    model_config = SettingsConfigDict(env_prefix="DISCOVERY_", env_file=".env", extra="ignore")

    dense_categories: list[str] = Field(default_factory=lambda: list(DEFAULT_DENSE))
    sparse_categories: list[str] = Field(default_factory=lambda: list(DEFAULT_SPARSE))
    text_queries: list[str] = Field(default_factory=lambda: list(DEFAULT_TEXT_QUERIES))
    # Smallest cell a saturated search is split into (degrees of latitude, ~550 m).
    min_cell_deg: float = Field(default=0.005, gt=0)
    # Probe below-root cells with the free IDs-only mask before paying for them (stream).
    probe_cells: bool = True
    strategy: DiscoveryStrategy = DiscoveryStrategy.COVER
    # cover strategy: include pure service-area businesses (no storefront) in the searches.
    include_service_area: bool = True
    # cover strategy: a sighted place whose listing was fetched within this many days (by a
    # neighbouring community's overlapping searches, or an earlier run) is linked to the
    # community without buying it again; 0 buys everything sighted. The free probes still
    # find every place, so only known places are spared. (Google lets lat/lng be cached for
    # 30 days, docs/places.md, Storage terms; ENRICHMENT_FRESH_DAYS is the same idea.)
    fresh_days: int = Field(default=30, ge=0)
    # Buy Google's Atmosphere fields too (editorial summary, payment and parking options,
    # ...): every paid page then bills at the Enterprise + Atmosphere SKU.
    atmosphere: bool = False

    @property
    def search_mask(self) -> str:
        return search_mask(atmosphere=self.atmosphere)

    @property
    def details_mask(self) -> str:
        return details_mask(atmosphere=self.atmosphere)

    @property
    def rules(self) -> CoverageRules:
        return CoverageRules(
            min_cell_deg=self.min_cell_deg, probe_cells=self.probe_cells, strategy=self.strategy
        )

    @field_validator("dense_categories", "sparse_categories")
    @classmethod
    def _table_a(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - TABLE_A_TYPES)
        if unknown:
            raise ValueError(f"not Places Table A types: {', '.join(unknown)}")
        return list(dict.fromkeys(value))


def bounding_box(lat: float, lng: float, radius_m: float) -> Box:
    dlat = radius_m / METRES_PER_DEGREE_LAT
    dlng = radius_m / (METRES_PER_DEGREE_LAT * max(math.cos(math.radians(lat)), 0.01))
    return Box(south=lat - dlat, west=lng - dlng, north=lat + dlat, east=lng + dlng)


def category_query(category: str) -> str:
    return category.replace("_", " ")


def plan(settings: DiscoverySettings, lat: float, lng: float, radius_m: float) -> list[SearchTask]:
    """The root searches of a community's primary region."""
    box = bounding_box(lat, lng, radius_m)
    if settings.strategy is DiscoveryStrategy.COVER:
        # Everything is explored free first, so sparse categories are Text Searches too
        # (a Nearby Search has no free IDs-only SKU).
        categories = dict.fromkeys(settings.dense_categories + settings.sparse_categories)
        return [
            SearchTask(
                kind=SearchKind.TEXT,
                label=label,
                text_query=category_query(label) if included_type else label,
                included_type=included_type,
                box=box,
                probe=True,
                service_area=settings.include_service_area,
            )
            for label, included_type in [(c, c) for c in categories]
            + [(q, None) for q in settings.text_queries]
        ]
    tasks = [
        SearchTask(
            kind=SearchKind.TEXT,
            label=c,
            text_query=category_query(c),
            included_type=c,
            box=box,
        )
        for c in settings.dense_categories
    ]
    tasks += [
        SearchTask(
            kind=SearchKind.NEARBY,
            label=c,
            included_type=c,
            center_lat=lat,
            center_lng=lng,
            radius_m=min(radius_m, 50_000),
        )
        for c in settings.sparse_categories
    ]
    tasks += [
        SearchTask(kind=SearchKind.TEXT, label=q, text_query=q, box=box)
        for q in settings.text_queries
    ]
    return tasks


def explore_follow_ups(
    task: SearchTask, result_count: int, rules: CoverageRules
) -> list[SearchTask]:
    """cover strategy: the cells a probed search splits into (all probed, nothing paid)."""
    assert task.box is not None
    if result_count < TEXT_SEARCH_CAP or task.box.height_deg / 2 < rules.min_cell_deg:
        return []
    return [
        task.model_copy(update={"box": child, "depth": task.depth + 1, "probe": True})
        for child in task.box.split()
    ]


def follow_ups(
    task: SearchTask, result_count: int, rules: CoverageRules, *, root_box: Box
) -> list[SearchTask]:
    """What to search next after `task` returned `result_count` results in all."""
    if task.kind is SearchKind.NEARBY:
        if result_count < PAGE_SIZE:
            return []
        # Saturated Nearby: cover the type with a Text Search quadtree instead.
        return [
            SearchTask(
                kind=SearchKind.TEXT,
                label=task.label,
                text_query=category_query(task.label),
                included_type=task.included_type,
                box=root_box,
            )
        ]
    assert task.box is not None
    saturated = result_count >= TEXT_SEARCH_CAP
    if not saturated:
        # A probed leaf: now fetch its fields (paid). A paid search is final.
        return [task.model_copy(update={"probe": False})] if task.probe else []
    if task.box.height_deg / 2 < rules.min_cell_deg:
        # Saturated at the floor: take what a paid search gives (Google shows no more).
        return [task.model_copy(update={"probe": False})] if task.probe else []
    return [
        task.model_copy(update={"box": child, "depth": task.depth + 1, "probe": rules.probe_cells})
        for child in task.box.split()
    ]
