"""The Places emulator as a real HTTP server in a child process, driven by PlacesClient:
pagination and the 60 cap, page tokens, location and type filters, quotas, key checks,
billing reconciliation, faults, determinism, the world model and the hosted websites."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import subprocess
import sys
import time
import urllib.robotparser
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr

from placesim.geo import distance_m
from placesim.search import BIAS_MARGIN_M, parse_text_query
from placesim.server import truth
from placesim.sites import HUGE_PAGE_BYTES, SiteKind
from placesim.world import MAX_BUSINESSES, MIN_BUSINESSES, World, business_count
from rollout.communities import CommunityRecord, load_communities
from rollout.places import (
    Circle,
    InvalidRequestError,
    LatLng,
    MalformedResponseError,
    NotFoundError,
    PermissionDeniedError,
    PlacesClient,
    PlacesTimeoutError,
    QuotaExceededError,
    Rectangle,
    SearchPage,
    ServerError,
)
from tests.support.placesim_support import SIM_KEY, SIM_SEED, Sim

pytest_plugins = ["tests.support.places_fixtures"]

DOVER = 4142290  # Dover, DE: 39,403 people
WILMINGTON = 4145381  # Wilmington, DE: 70,898 people
DOVER_LAT, DOVER_LNG = 39.15817, -75.52437
IDS = "places.id,nextPageToken"
LISTING = (
    "places.id,places.displayName,places.formattedAddress,places.location,places.types,"
    "places.primaryType,places.businessStatus,places.pureServiceAreaBusiness,nextPageToken"
)
CONTACT = LISTING + ",places.websiteUri,places.nationalPhoneNumber"


@pytest_asyncio.fixture
async def places(sim: Sim) -> AsyncIterator[PlacesClient]:
    async with PlacesClient(sim.base_url, SecretStr(SIM_KEY), timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def communities() -> list[CommunityRecord]:
    return load_communities()


async def all_pages(places: PlacesClient, query: str, mask: str, **kwargs: Any) -> list[SearchPage]:
    pages: list[SearchPage] = []
    token: str | None = None
    while True:
        page = await places.search_text(query, mask, page_token=token, **kwargs)
        pages.append(page)
        token = page.next_page_token
        if token is None:
            return pages


def in_dover_region(sim: Sim) -> list[dict[str, Any]]:
    """Ground truth of what "... in Dover, DE" searches: every business inside Dover's region,
    whichever community it belongs to (neighbouring regions overlap)."""
    radius = sim.community(DOVER)["community"]["radius_m"]
    businesses: list[dict[str, Any]] = sim.get(
        "/sim/world", lat=DOVER_LAT, lng=DOVER_LNG, radius_m=radius
    )["businesses"]
    return businesses


def box(lat: float, lng: float, half_lat: float, half_lng: float) -> Rectangle:
    return Rectangle(
        low=LatLng(latitude=lat - half_lat, longitude=lng - half_lng),
        high=LatLng(latitude=lat + half_lat, longitude=lng + half_lng),
    )


def inside(rect: Rectangle, lat: float, lng: float) -> bool:
    return (
        rect.low.latitude <= lat <= rect.high.latitude
        and rect.low.longitude <= lng <= rect.high.longitude
    )


# --------------------------------------------------------------------------------------
# Text Search: pagination, tokens, filters
# --------------------------------------------------------------------------------------


async def test_pagination_runs_to_the_end_and_stops_at_60(sim: Sim, places: PlacesClient) -> None:
    restaurants = [
        b
        for b in in_dover_region(sim)
        if "restaurant" in b["types"] and not b["pure_service_area_business"]
    ]
    assert len(restaurants) > 60  # so the cap, not the world, ends the search

    pages = await all_pages(places, "restaurants in Dover, DE", LISTING)
    assert [p.result_count for p in pages] == [20, 20, 20]
    ids = [p.id for page in pages for p in page.places]
    assert len(set(ids)) == 60
    assert all(p.types is not None and "restaurant" in p.types for pg in pages for p in pg.places)

    small = await all_pages(places, "restaurants in Dover, DE", IDS, page_size=7)
    assert [p.result_count for p in small] == [7] * 8 + [4]
    assert [p.id for page in small for p in page.places] == ids  # same order, other page size


async def test_page_token_is_bound_to_the_request(places: PlacesClient) -> None:
    first = await places.search_text("restaurants in Dover, DE", IDS)
    assert first.next_page_token is not None
    # A different page size is allowed (Google exempts pageSize, pageToken, maxResultCount).
    second = await places.search_text(
        "restaurants in Dover, DE", IDS, page_size=5, page_token=first.next_page_token
    )
    assert second.result_count == 5
    assert not {p.id for p in second.places} & {p.id for p in first.places}
    for changed in (
        {"text_query": "bars in Dover, DE"},
        {"included_type": "restaurant"},
        {"rank_preference": "DISTANCE"},
    ):
        arguments: dict[str, Any] = {"text_query": "restaurants in Dover, DE", "field_mask": IDS}
        with pytest.raises(InvalidRequestError) as caught:
            await places.search_text(**(arguments | changed), page_token=first.next_page_token)
        assert caught.value.status == "INVALID_ARGUMENT"
        assert caught.value.retryable is False
    with pytest.raises(InvalidRequestError):
        await places.search_text("restaurants in Dover, DE", IDS, page_token="bm90LWEtdG9rZW4")


async def test_location_restriction_is_strict_and_complete(sim: Sim, places: PlacesClient) -> None:
    rect = box(DOVER_LAT, DOVER_LNG, 0.012, 0.015)
    world = sim.get("/sim/world", lat=DOVER_LAT, lng=DOVER_LNG, radius_m=3_000)["businesses"]
    expected = {
        b["place_id"]
        for b in world
        if "restaurant" in b["types"]
        and not b["pure_service_area_business"]
        and inside(rect, b["location"]["latitude"], b["location"]["longitude"])
    }
    assert 5 < len(expected) < 60

    pages = await all_pages(places, "restaurant", LISTING, location_restriction=rect)
    found = [p for page in pages for p in page.places]
    assert {p.id for p in found} == expected  # all of them, and only those inside
    for place in found:
        assert place.location is not None
        assert inside(rect, place.location.latitude, place.location.longitude)


async def test_location_bias_prefers_the_area_but_is_not_strict(places: PlacesClient) -> None:
    bias = Circle(center=LatLng(latitude=DOVER_LAT, longitude=DOVER_LNG), radius_m=1_000)
    pages = await all_pages(places, "restaurant", LISTING, location_bias=bias)
    found = [p for page in pages for p in page.places]
    distances = [
        distance_m(DOVER_LAT, DOVER_LNG, p.location.latitude, p.location.longitude)
        for p in found
        if p.location is not None
    ]
    assert len(found) == 60
    assert max(distances) > 1_000  # results beyond the bias circle...
    first_outside = next(i for i, d in enumerate(distances) if d > 1_000)
    assert all(d > 1_000 for d in distances[first_outside:])  # ...rank after those inside
    assert max(distances) <= 1_000 + BIAS_MARGIN_M + 1  # but still near it


async def test_included_type_filters_strictly_or_ranks_first(
    sim: Sim, places: PlacesClient
) -> None:
    pizza = [b for b in in_dover_region(sim) if b["primary_type"] == "pizza_restaurant"]
    assert 0 < len(pizza) < 60
    strict = await all_pages(
        places,
        "restaurants in Dover, DE",
        LISTING,
        included_type="pizza_restaurant",
        strict_type_filtering=True,
    )
    strict_places = [p for page in strict for p in page.places]
    assert strict_places
    assert all(p.primary_type == "pizza_restaurant" for p in strict_places)
    assert {p.id for p in strict_places} == {b["place_id"] for b in pizza}

    loose = await all_pages(
        places, "restaurants in Dover, DE", LISTING, included_type="pizza_restaurant"
    )
    kinds = [p.primary_type == "pizza_restaurant" for page in loose for p in page.places]
    assert kinds[: len(strict_places)] == [True] * len(strict_places)  # the type ranks first
    assert not any(kinds[len(strict_places) :])
    assert len(kinds) > len(strict_places)  # but other restaurants still come

    with pytest.raises(InvalidRequestError, match="Unsupported types"):
        await places.search_text("food", IDS, included_type="point_of_interest")  # Table B


async def test_pure_service_area_businesses_only_when_asked(sim: Sim, places: PlacesClient) -> None:
    sab_plumbers = [
        b
        for b in in_dover_region(sim)
        if b["primary_type"] == "plumber" and b["pure_service_area_business"]
    ]
    assert sab_plumbers
    assert all(b["location"] and b["formatted_address"] is None for b in sab_plumbers)

    default = await all_pages(places, "plumber in Dover, DE", LISTING)
    assert not any(p.pure_service_area_business for pg in default for p in pg.places)

    with_sab = await all_pages(
        places, "plumber in Dover, DE", LISTING, include_pure_service_area_businesses=True
    )
    sab = [p for pg in with_sab for p in pg.places if p.pure_service_area_business]
    assert {p.id for p in sab} == {b["place_id"] for b in sab_plumbers}
    assert all(p.location is None and p.formatted_address is None for p in sab)


async def test_nearby_search_stays_inside_its_circle(sim: Sim, places: PlacesClient) -> None:
    radius = 2_500.0
    world = sim.get("/sim/world", lat=DOVER_LAT, lng=DOVER_LNG, radius_m=radius)["businesses"]
    churches = {b["place_id"] for b in world if "church" in b["types"]}
    assert churches
    page = await places.search_nearby(
        LISTING.replace(",nextPageToken", ""),
        location_restriction=Circle(
            center=LatLng(latitude=DOVER_LAT, longitude=DOVER_LNG), radius_m=radius
        ),
        included_types=["church"],
        rank_preference="DISTANCE",
    )
    assert page.next_page_token is None
    assert page.sku == "Nearby Search Pro"
    assert page.result_count == min(20, len(churches))
    assert {p.id for p in page.places} <= churches
    distances = []
    for place in page.places:
        assert place.location is not None
        distances.append(
            distance_m(DOVER_LAT, DOVER_LNG, place.location.latitude, place.location.longitude)
        )
    assert max(distances) <= radius
    assert distances == sorted(distances)


# --------------------------------------------------------------------------------------
# Raw protocol: masks, keys, only the requested fields
# --------------------------------------------------------------------------------------


def test_field_mask_and_key_rules_over_raw_http(sim: Sim) -> None:
    url = f"{sim.base_url}/v1/places:searchText"
    body = {"textQuery": "restaurants in Dover, DE", "pageSize": 3}
    with httpx.Client(timeout=10) as http:
        missing = http.post(url, json=body, headers={"X-Goog-Api-Key": SIM_KEY})
        assert missing.status_code == 400
        assert missing.json()["error"]["status"] == "INVALID_ARGUMENT"
        assert "FieldMask is a required parameter" in missing.json()["error"]["message"]

        unknown = http.post(
            url, json=body, headers={"X-Goog-Api-Key": SIM_KEY, "X-Goog-FieldMask": "places.nope"}
        )
        assert unknown.status_code == 400
        assert "places.nope" in unknown.json()["error"]["message"]

        no_key = http.post(url, json=body, headers={"X-Goog-FieldMask": "places.id"})
        assert no_key.status_code == 403
        assert no_key.json()["error"]["status"] == "PERMISSION_DENIED"

        # key= and fields= as query parameters; only the requested fields come back.
        only_names = http.post(
            url, json=body, params={"key": SIM_KEY, "fields": "places.displayName"}
        )
        assert only_names.status_code == 200
        assert [set(p) for p in only_names.json()["places"]] == [{"displayName"}] * 3
        assert "nextPageToken" not in only_names.json()  # not in the mask, so not sent

        unknown_body = http.post(
            url,
            json=body | {"radius_m": 5},
            headers={"X-Goog-Api-Key": SIM_KEY, "X-Goog-FieldMask": "places.id"},
        )
        assert unknown_body.status_code == 400
        assert 'Unknown name "radius_m"' in unknown_body.json()["error"]["message"]


async def test_place_details_by_id(sim: Sim, places: PlacesClient) -> None:
    business = next(
        b
        for b in sim.community(DOVER)["businesses"]
        if b["website_uri"] and not b["pure_service_area_business"]
    )
    result = await places.get_place(business["place_id"], "displayName,websiteUri,location")
    assert result.sku == "Place Details Enterprise"
    assert result.place.id == business["place_id"]
    assert result.place.display_name == business["name"]
    assert result.place.website_uri == business["website_uri"]
    assert result.place.formatted_address is None  # not asked for
    assert result.place.location is not None
    assert result.place.location.latitude == business["location"]["latitude"]

    with pytest.raises(NotFoundError) as caught:
        # Well-formed, but not an id of this world.
        await places.get_place("ChIJAAAAAAAAAAAAAAAAAAAAAAA", "id")
    assert caught.value.status == "NOT_FOUND"
    assert caught.value.retryable is False


# --------------------------------------------------------------------------------------
# Quotas and access
# --------------------------------------------------------------------------------------


async def test_per_minute_quota_429_then_recovery(sim: Sim, places: PlacesClient) -> None:
    sim.configure(qpm=3, quota_window_s=2.0)
    for _ in range(3):
        await places.search_text("plumber in Dover, DE", IDS)
    with pytest.raises(QuotaExceededError) as caught:
        await places.search_text("plumber in Dover, DE", IDS)
    error = caught.value
    assert error.status_code == 429
    assert error.per_day is False
    assert error.retryable is True
    assert error.quota_limit == "SearchTextRequestPerMinutePerProject"
    assert error.retry_after is not None
    assert 0 < error.retry_after <= 2
    # Quotas are per method: Nearby Search still has its own.
    await places.search_nearby(
        "places.id",
        location_restriction=Circle(
            center=LatLng(latitude=DOVER_LAT, longitude=DOVER_LNG), radius_m=500
        ),
    )
    await asyncio.sleep(error.retry_after)
    page = await places.search_text("plumber in Dover, DE", IDS)
    assert page.http_status == 200
    bill = sim.billing()
    assert bill["rate_limited"]["searchText"] == {"per_minute": 1, "per_day": 0}
    assert bill["requests"]["searchText"] == 5


async def test_per_day_quota_is_not_retryable(sim: Sim, places: PlacesClient) -> None:
    sim.configure(qpd=2)
    await places.search_text("plumber in Dover, DE", IDS)
    await places.search_text("plumber in Dover, DE", IDS)
    with pytest.raises(QuotaExceededError) as caught:
        await places.search_text("plumber in Dover, DE", IDS)
    assert caught.value.per_day is True
    assert caught.value.retryable is False
    assert caught.value.quota_limit == "SearchTextRequestPerDayPerProject"
    assert sim.billing()["rate_limited"]["searchText"]["per_day"] == 1
    sim.post("/sim/reset")  # clears the counters, keeps the config
    await places.search_text("plumber in Dover, DE", IDS)


async def test_invalid_key_and_disabled_api_are_permission_errors(sim: Sim) -> None:
    async with PlacesClient(sim.base_url, SecretStr("invalid")) as bad:
        with pytest.raises(PermissionDeniedError) as caught:
            await bad.search_text("plumber", IDS)
    assert caught.value.invalid_key
    assert caught.value.status_code == 400  # Google answers a bad key with 400 API_KEY_INVALID
    assert caught.value.retryable is False

    sim.configure(api_key="the-one-key")
    async with PlacesClient(sim.base_url, SecretStr(SIM_KEY)) as other:
        with pytest.raises(PermissionDeniedError) as caught:
            await other.get_place("ChIJAAAAAAAAAAAAAAAAAAAAAAA", "id")
    assert caught.value.invalid_key
    async with PlacesClient(sim.base_url, SecretStr("the-one-key")) as right:
        assert (await right.search_text("plumber in Dover, DE", IDS)).http_status == 200

    sim.configure(api_key=None, disabled=True)
    async with PlacesClient(sim.base_url, SecretStr(SIM_KEY)) as places:
        with pytest.raises(PermissionDeniedError) as caught:
            await places.search_text("plumber", IDS)
    assert caught.value.api_disabled
    assert caught.value.status_code == 403
    assert caught.value.reason == "SERVICE_DISABLED"
    assert sim.billing()["total_requests"] == 1  # only the one success was billed


# --------------------------------------------------------------------------------------
# Billing
# --------------------------------------------------------------------------------------


async def test_billing_by_sku_reconciles_with_the_client(sim: Sim, places: PlacesClient) -> None:
    logged: Counter[str] = Counter()
    cost: dict[str, Decimal] = {}

    def log(sku: str, amount: Decimal) -> None:
        logged[sku] += 1
        cost[sku] = cost.get(sku, Decimal(0)) + amount

    circle = Circle(center=LatLng(latitude=DOVER_LAT, longitude=DOVER_LNG), radius_m=1_500)
    for mask in (IDS, LISTING, CONTACT, CONTACT + ",places.reviews"):
        for page in await all_pages(places, "restaurants in Dover, DE", mask):
            log(page.sku, page.cost)
    for mask in ("places.id", "places.id,places.websiteUri", "places.id,places.takeout"):
        page = await places.search_nearby(mask, location_restriction=circle)
        log(page.sku, page.cost)
        place_ids = [p.id for p in page.places]
    for mask in ("id", "id,location", "id,displayName", "id,websiteUri", "id,reviews"):
        for place_id in place_ids[:2]:
            details = await places.get_place(place_id, mask)
            log(details.sku, details.cost)
    with pytest.raises(InvalidRequestError):  # refused requests are not billed
        await places.search_text("restaurants in Dover, DE", IDS, page_token="bogus")

    bill = sim.billing()
    assert {sku: entry["requests"] for sku, entry in bill["skus"].items()} == dict(logged)
    assert {sku: Decimal(entry["cost"]) for sku, entry in bill["skus"].items()} == cost
    assert Decimal(bill["total_cost"]) == sum(cost.values())
    assert len(logged) == 12  # every SKU a mask can reach
    assert logged["Text Search Essentials IDs Only"] == 3
    assert cost["Text Search Essentials IDs Only"] == 0


# --------------------------------------------------------------------------------------
# Faults, latency, concurrency
# --------------------------------------------------------------------------------------


async def test_injected_faults(sim: Sim, places: PlacesClient) -> None:
    sim.configure(error_rate=1.0)
    statuses = set()
    for _ in range(6):
        with pytest.raises(ServerError) as caught:
            await places.search_text("plumber in Dover, DE", IDS)
        assert caught.value.retryable
        statuses.add(caught.value.status_code)
    assert statuses <= {500, 503}

    sim.configure(error_rate=0.0, malformed_rate=1.0)
    with pytest.raises(MalformedResponseError) as malformed:
        await places.search_text("plumber in Dover, DE", LISTING)
    assert malformed.value.billed_sku == "Text Search Pro"

    sim.configure(malformed_rate=0.0, timeout_rate=1.0, hang_s=5.0)
    async with PlacesClient(sim.base_url, SecretStr(SIM_KEY), timeout=0.3) as impatient:
        started = time.monotonic()
        with pytest.raises(PlacesTimeoutError) as timeout:
            await impatient.search_text("plumber in Dover, DE", LISTING)
        assert time.monotonic() - started < 2
    assert timeout.value.retryable
    # Sent and never answered: the client says it may be billed, at the mask's SKU.
    assert timeout.value.billed_sku == "Text Search Pro"

    sim.configure(timeout_rate=0.0, latency_ms=250.0)
    started = time.monotonic()
    await places.search_text("plumber in Dover, DE", IDS)
    assert time.monotonic() - started >= 0.25

    bill = sim.billing()
    assert bill["faults"] == {"error": 6, "malformed": 1, "timeout": 1}
    # The truncated answer and the one that never arrived were billed: the server made both.
    assert bill["skus"]["Text Search Pro"]["requests"] == 2


async def test_fault_sequence_is_deterministic(sim: Sim, places: PlacesClient) -> None:
    sim.configure(error_rate=0.5)

    async def outcomes() -> list[int]:
        seen = []
        for _ in range(16):
            try:
                seen.append((await places.search_text("plumber in Dover, DE", IDS)).http_status)
            except ServerError as error:
                seen.append(error.status_code or 0)
        return seen

    first = await outcomes()
    sim.post("/sim/reset")
    assert await outcomes() == first
    assert 200 in first
    assert set(first) - {200}
    assert set(first) <= {200, 500, 503}


async def test_fail_near_zone(sim: Sim, places: PlacesClient) -> None:
    sim.configure(fail_near=[{"lat": DOVER_LAT, "lng": DOVER_LNG, "radius_m": 300}])
    with pytest.raises(ServerError):
        await places.search_text("restaurants in Dover, DE", IDS)
    far = box(39.74595, -75.54659, 0.01, 0.01)  # Wilmington, 65 km north
    assert (await places.search_text("restaurant", IDS, location_restriction=far)).places
    sim.configure(fail_near=[{"lat": DOVER_LAT, "lng": DOVER_LNG, "radius_m": 300, "status": 400}])
    with pytest.raises(InvalidRequestError):
        await places.search_text("restaurants in Dover, DE", IDS)


async def test_concurrent_keep_alive_connections(sim: Sim, places: PlacesClient) -> None:
    sim.configure(latency_ms=150.0)
    ids = [b["place_id"] for b in sim.community(DOVER)["businesses"][:30]]
    started = time.monotonic()
    results = await asyncio.gather(*(places.get_place(i, "id") for i in ids))
    assert time.monotonic() - started < 1.5  # 30 x 150 ms, served side by side
    assert [r.place.id for r in results] == ids

    sim.configure(latency_ms=0.0)
    before = sim.billing()["http"]
    for place_id in ids[:20]:
        await places.get_place(place_id, "id")
    after = sim.billing()["http"]
    # 20 requests on the client's kept-alive connections: the only new connection is the
    # one this stats read came on.
    assert after["requests"] - before["requests"] == 21
    assert after["connections_accepted"] - before["connections_accepted"] == 1


def test_sim_config_is_validated(sim: Sim) -> None:
    for bad in ({"error_rate": 2}, {"nope": 1}, {"error_rate": 0.6, "timeout_rate": 0.6}):
        response = httpx.post(f"{sim.base_url}/sim/config", json=bad, timeout=10)
        assert response.status_code == 400
    assert sim.get("/sim/config")["error_rate"] == 0.0


def test_cli_refuses_bad_flags_in_one_line(sim: Sim) -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "placesim", "--port", "0", "--error-rate", "2"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: --error-rate:")
    assert len(bad.stderr.strip().splitlines()) == 1
    assert bad.stdout == ""


# --------------------------------------------------------------------------------------
# The world
# --------------------------------------------------------------------------------------


def test_world_is_deterministic_across_processes(
    sim: Sim, communities: list[CommunityRecord]
) -> None:
    served = sim.community(DOVER)
    here = World(SIM_SEED, communities=communities)
    dover = here.community_world(DOVER)
    assert dover is not None
    expected = [json.loads(json.dumps(truth(b, sim.base_url))) for b in dover.businesses]
    assert served["businesses"] == expected  # another process, another hash seed: same world

    # Generation order and cache eviction do not matter.
    tiny_cache = World(SIM_SEED, communities=communities, cache_businesses=50)
    assert tiny_cache.community_world(WILMINGTON) is not None
    again = tiny_cache.community_world(DOVER)
    assert again is not None
    assert tiny_cache.cached_communities == 1
    assert again.businesses == dover.businesses
    assert tiny_cache.business(dover.businesses[17].place_id) == dover.businesses[17]

    other = World(SIM_SEED + 1, communities=communities).community_world(DOVER)
    assert other is not None
    assert not {b.place_id for b in other.businesses} & {b.place_id for b in dover.businesses}
    assert [b.name for b in other.businesses] != [b.name for b in dover.businesses]
    assert here.business(other.businesses[0].place_id) is None  # ids are per seed


@pytest.mark.parametrize(
    ("query", "words", "place"),
    [
        ("restaurants in Dover, DE", ("restaurant",), ("Dover", "DE")),
        ("Plumbers near Dover DE", ("plumber",), ("Dover", "DE")),
        ("bars in Dover, Delaware", ("bar",), ("Dover", "DE")),
        ("car repair in Narnia", ("car", "repair", "narnia"), None),  # unknown place: words
        ("the best hardware stores", ("hardware", "store"), None),
    ],
)
def test_text_query_parsing(
    communities: list[CommunityRecord],
    query: str,
    words: tuple[str, ...],
    place: tuple[str, str] | None,
) -> None:
    parsed = parse_text_query(World(SIM_SEED, communities=communities), query)
    assert parsed.words == words
    found = (parsed.place.name, parsed.place.state_code) if parsed.place else None
    assert found == place


def test_world_model(sim: Sim) -> None:
    assert business_count(39_403) == 985  # one per 40 residents
    assert business_count(500) == MIN_BUSINESSES
    assert business_count(8_000_000) == MAX_BUSINESSES

    community = sim.community(WILMINGTON)
    businesses = community["businesses"]
    assert len(businesses) == business_count(70_898)
    radius = community["community"]["radius_m"]
    distances = [
        distance_m(
            community["community"]["latitude"],
            community["community"]["longitude"],
            b["location"]["latitude"],
            b["location"]["longitude"],
        )
        for b in businesses
    ]
    assert max(distances) <= radius + 1
    # Denser near the centre: the inner half of the radius (a quarter of the area) holds
    # well over a quarter of the businesses.
    assert sum(d < radius / 2 for d in distances) / len(distances) > 0.35

    share = sum(b["website_uri"] is not None for b in businesses) / len(businesses)
    assert 0.55 <= share <= 0.68
    statuses = Counter(b["business_status"] for b in businesses)
    assert 0.01 < statuses["CLOSED_PERMANENTLY"] / len(businesses) < 0.06
    assert 0.005 < statuses["CLOSED_TEMPORARILY"] / len(businesses) < 0.05
    assert 0.01 < sum(b["pure_service_area_business"] for b in businesses) / len(businesses) < 0.06
    types = Counter(b["primary_type"] for b in businesses)
    assert len(types) > 40
    assert types["restaurant"] > types["museum"]
    for b in businesses:
        assert b["place_id"].startswith("ChIJ")
        assert len(b["place_id"]) == 27
    assert len({b["place_id"] for b in businesses}) == len(businesses)
    kinds = {b["site_kind"] for b in businesses if b["site_kind"]}
    assert kinds == {k.value for k in SiteKind}


# --------------------------------------------------------------------------------------
# Hosted websites
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sites(placesim: Sim) -> dict[SiteKind, dict[str, Any]]:
    """One Wilmington business per site kind."""
    found: dict[SiteKind, dict[str, Any]] = {}
    for b in placesim.community(WILMINGTON)["businesses"]:
        if b["site_kind"] and SiteKind(b["site_kind"]) not in found:
            found[SiteKind(b["site_kind"])] = b
    return found


@pytest.fixture
def web(sim: Sim) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, follow_redirects=False) as client:
        yield client


def test_sites_serve_feeds(sites: dict[SiteKind, dict[str, Any]], web: httpx.Client) -> None:
    rss = sites[SiteKind.RSS]
    home = web.get(rss["website_uri"])
    assert home.status_code == 200
    feed_url = rss["site"]["feeds"][0]["url"]
    assert 'type="application/rss+xml" title="' in home.text
    assert f'href="{feed_url}"' in home.text
    feed = web.get(feed_url)
    assert feed.headers["content-type"].startswith("application/rss+xml")
    channel = ET.fromstring(feed.content)  # noqa: S314 - our own emulator's feed
    assert channel.tag == "rss"
    assert channel.attrib["version"] == "2.0"
    assert len(channel.findall("./channel/item")) == 5

    atom = sites[SiteKind.ATOM]
    atom_url = atom["site"]["feeds"][0]["url"]
    assert f'href="{atom_url}"' in web.get(atom["website_uri"]).text
    atom_feed = ET.fromstring(web.get(atom_url).content)  # noqa: S314
    assert atom_feed.tag == "{http://www.w3.org/2005/Atom}feed"
    assert len(atom_feed.findall("{http://www.w3.org/2005/Atom}entry")) == 5

    ical = sites[SiteKind.ICAL]
    calendar_url = ical["site"]["calendars"][0]["url"]
    assert 'type="text/calendar"' in web.get(ical["website_uri"]).text
    calendar = web.get(calendar_url)
    assert calendar.headers["content-type"].startswith("text/calendar")
    assert calendar.text.startswith("BEGIN:VCALENDAR\r\n")
    assert calendar.text.count("BEGIN:VEVENT") == 3

    for kind in (SiteKind.NEWS, SiteKind.BLOG):
        news_url = sites[kind]["site"]["news_pages"][0]
        assert f'href="{news_url}"' in web.get(sites[kind]["website_uri"]).text
        assert web.get(news_url).text.count("<article>") == 5

    full = sites[SiteKind.FULL]["site"]
    assert (len(full["feeds"]), len(full["calendars"]), len(full["news_pages"])) == (1, 1, 1)
    plain = sites[SiteKind.PLAIN]
    assert plain["site"]["feeds"] == []
    assert "application/rss+xml" not in web.get(plain["website_uri"]).text


def test_robots_txt_disallows_some_sites(
    sim: Sim, sites: dict[SiteKind, dict[str, Any]], web: httpx.Client
) -> None:
    robots = urllib.robotparser.RobotFileParser()
    robots.parse(web.get(f"{sim.base_url}/robots.txt").text.splitlines())
    blocked = sites[SiteKind.ROBOTS_DISALLOW]
    assert blocked["site"]["robots_disallowed"] is True
    assert not robots.can_fetch("rollout-scanner", blocked["website_uri"])
    assert robots.can_fetch("rollout-scanner", sites[SiteKind.RSS]["website_uri"])
    own = web.get(blocked["website_uri"] + "robots.txt").text
    assert "Disallow: /" in own


def test_bad_sites(sim: Sim, sites: dict[SiteKind, dict[str, Any]], web: httpx.Client) -> None:
    started = time.monotonic()
    assert web.get(sites[SiteKind.SLOW]["website_uri"]).status_code == 200
    assert time.monotonic() - started >= 0.5  # site_slow_s of the test config

    assert web.get(sites[SiteKind.BROKEN_500]["website_uri"]).status_code == 500
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        web.get(sites[SiteKind.BROKEN_RESET]["website_uri"])
    invalid = web.get(sites[SiteKind.INVALID_HTML]["website_uri"])
    assert invalid.status_code == 200
    with pytest.raises(UnicodeDecodeError):
        invalid.content.decode("utf-8")

    huge = web.get(sites[SiteKind.HUGE]["website_uri"])
    assert len(huge.content) >= HUGE_PAGE_BYTES

    with httpx.Client(timeout=10, follow_redirects=True, max_redirects=10) as follow:
        chain = sites[SiteKind.REDIRECT_CHAIN]
        final = follow.get(chain["website_uri"])
        assert [r.status_code for r in final.history] == [301, 302, 307, 308]
        assert final.status_code == 200
        assert f'href="{chain["site"]["feeds"][0]["url"]}"' in final.text
        with pytest.raises(httpx.TooManyRedirects):
            follow.get(sites[SiteKind.REDIRECT_LOOP]["website_uri"])

    # Private targets: read the Location header, never follow it.
    private = web.get(sites[SiteKind.REDIRECT_PRIVATE]["website_uri"])
    assert private.status_code == 302
    target = urlsplit(private.headers["location"]).hostname
    assert target is not None
    assert ipaddress.ip_address(target).is_private
    listed = urlsplit(sites[SiteKind.PRIVATE_URI]["website_uri"]).hostname
    assert listed is not None
    assert ipaddress.ip_address(listed).is_private


# --------------------------------------------------------------------------------------
# The key against a real server
# --------------------------------------------------------------------------------------


async def test_key_stays_out_of_logs_with_a_real_server(
    sim: Sim, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sim.configure(api_key=SIM_KEY + "-rotated")
    async with PlacesClient(sim.base_url, SecretStr(SIM_KEY)) as places:
        with pytest.raises(PermissionDeniedError) as caught:
            await places.search_text("plumber in Dover, DE", IDS)
    assert "DEBUG" in caplog.text  # the client and httpx did log
    assert SIM_KEY not in caplog.text
    assert SIM_KEY not in repr(caught.value)
