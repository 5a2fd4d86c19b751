"""Field mask -> SKU (every SKU, exact masks, mixed masks) and the dated price list."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from rollout.places.pricing import (
    DEFAULT_PRICE_LIST,
    EmptyFieldMaskError,
    Endpoint,
    UnknownFieldError,
    UnknownSkuError,
    free_monthly_cap,
    load_price_list,
    monthly_cost,
    price_list,
    request_cost,
    sku_for,
    skus_of,
)

TEXT, NEARBY, DETAILS = Endpoint.SEARCH_TEXT, Endpoint.SEARCH_NEARBY, Endpoint.GET_PLACE

# (endpoint, mask, SKU): every SKU a mask can reach, with exact and mixed masks.
CASES = [
    # Text Search
    (TEXT, "places.id", "Text Search Essentials IDs Only"),
    (TEXT, "places.id,nextPageToken", "Text Search Essentials IDs Only"),
    (
        TEXT,
        "places.attributions,places.name,places.movedPlace,places.movedPlaceId,nextPageToken",
        "Text Search Essentials IDs Only",
    ),
    (TEXT, "places.displayName", "Text Search Pro"),
    (TEXT, "places.id,places.displayName,nextPageToken", "Text Search Pro"),
    (
        TEXT,
        "places.id,places.displayName,places.formattedAddress,places.addressComponents,"
        "places.location,places.types,places.primaryType,places.businessStatus,"
        "places.googleMapsUri,nextPageToken",
        "Text Search Pro",
    ),
    (TEXT, "places.photos", "Text Search Pro"),  # Pro in search, IDs-only in Details
    (TEXT, "searchUri", "Text Search Pro"),
    (TEXT, "places.displayName.text", "Text Search Pro"),  # a sub-path bills as its field
    (TEXT, "places.websiteUri", "Text Search Enterprise"),
    (
        TEXT,
        "places.id,places.displayName,places.websiteUri,places.nationalPhoneNumber,nextPageToken",
        "Text Search Enterprise",
    ),
    (TEXT, "places.rating,places.userRatingCount", "Text Search Enterprise"),
    (TEXT, "places.regularOpeningHours", "Text Search Enterprise"),
    (TEXT, "places.reviews", "Text Search Enterprise + Atmosphere"),
    (
        TEXT,
        "places.id,places.websiteUri,places.servesBeer,nextPageToken",
        "Text Search Enterprise + Atmosphere",
    ),
    (TEXT, "routingSummaries", "Text Search Enterprise + Atmosphere"),
    (TEXT, "places.*", "Text Search Enterprise + Atmosphere"),
    (TEXT, "*", "Text Search Enterprise + Atmosphere"),
    # Nearby Search: no IDs-only tier
    (NEARBY, "places.id", "Nearby Search Pro"),
    (NEARBY, "places.name,places.attributions,places.movedPlaceId", "Nearby Search Pro"),
    (NEARBY, "places.id,places.displayName,places.location,places.types", "Nearby Search Pro"),
    (NEARBY, "places.nationalPhoneNumber", "Nearby Search Enterprise"),
    (NEARBY, "places.id,places.displayName,places.websiteUri", "Nearby Search Enterprise"),
    (NEARBY, "places.takeout", "Nearby Search Enterprise + Atmosphere"),
    (
        NEARBY,
        "places.id,places.rating,places.editorialSummary",
        "Nearby Search Enterprise + Atmosphere",
    ),
    # Place Details: no prefix
    (DETAILS, "id", "Place Details Essentials IDs Only"),
    (DETAILS, "id,name,photos,attributions", "Place Details Essentials IDs Only"),
    (DETAILS, "moved_place,moved_place_id", "Place Details Essentials IDs Only"),  # snake_case
    (DETAILS, "formattedAddress", "Place Details Essentials"),
    (DETAILS, "id,formattedAddress,location,types,addressComponents", "Place Details Essentials"),
    (DETAILS, "displayName", "Place Details Pro"),  # Pro in Details, unlike location
    (DETAILS, "id,location,businessStatus,googleMapsUri", "Place Details Pro"),
    (DETAILS, "id,displayName,websiteUri", "Place Details Enterprise"),
    (DETAILS, "national_phone_number", "Place Details Enterprise"),
    (DETAILS, "id,reviews,websiteUri", "Place Details Enterprise + Atmosphere"),
    (DETAILS, "*", "Place Details Enterprise + Atmosphere"),
]


@pytest.mark.parametrize(("endpoint", "mask", "sku"), CASES)
def test_sku_for_mask(endpoint: Endpoint, mask: str, sku: str) -> None:
    assert sku_for(endpoint, mask) == sku
    assert sku_for(endpoint.value, mask.split(",")) == sku  # the string name and a list work too


def test_every_priced_sku_is_reachable_by_a_tested_mask() -> None:
    tested = {sku for _, _, sku in CASES}
    # Place Details Photos bills the photo media endpoint, not a field mask.
    assert set(price_list().skus) - tested == {"Place Details Photos"}
    for endpoint in Endpoint:
        assert set(skus_of(endpoint)) <= tested


@pytest.mark.parametrize(
    ("endpoint", "mask"),
    [
        (TEXT, "places.foo"),
        (TEXT, "displayName"),  # search masks need the places. prefix
        (TEXT, "places.id,places.displayName,places.bogus"),
        (NEARBY, "nextPageToken"),  # Nearby has no pagination
        (NEARBY, "searchUri"),
        (DETAILS, "places.id"),  # Details masks have no prefix
        (DETAILS, "nextPageToken"),
        (DETAILS, "id,display-name"),
    ],
)
def test_unknown_fields_raise(endpoint: Endpoint, mask: str) -> None:
    with pytest.raises(UnknownFieldError) as caught:
        sku_for(endpoint, mask)
    assert caught.value.endpoint is endpoint
    assert caught.value.fields


@pytest.mark.parametrize("mask", ["", " , ,", []])
def test_empty_mask_raises(mask: str | list[str]) -> None:
    with pytest.raises(EmptyFieldMaskError):
        sku_for(TEXT, mask)


def test_spaces_are_stripped_unless_strict() -> None:
    # Google allows no spaces in a mask; the client strips them, the emulator refuses them.
    assert sku_for(TEXT, "places.id, places.displayName") == "Text Search Pro"
    with pytest.raises(UnknownFieldError):
        sku_for(TEXT, "places.id, places.displayName", strict=True)


@pytest.mark.parametrize(
    ("sku", "per_request", "free_cap"),
    [
        ("Text Search Essentials IDs Only", Decimal("0"), None),
        ("Text Search Pro", Decimal("0.032"), 5_000),
        ("Text Search Enterprise", Decimal("0.035"), 1_000),
        ("Text Search Enterprise + Atmosphere", Decimal("0.040"), 1_000),
        ("Nearby Search Pro", Decimal("0.032"), 5_000),
        ("Nearby Search Enterprise", Decimal("0.035"), 1_000),
        ("Nearby Search Enterprise + Atmosphere", Decimal("0.040"), 1_000),
        ("Place Details Essentials IDs Only", Decimal("0"), None),
        ("Place Details Essentials", Decimal("0.005"), 10_000),
        ("Place Details Pro", Decimal("0.017"), 5_000),
        ("Place Details Enterprise", Decimal("0.020"), 1_000),
        ("Place Details Enterprise + Atmosphere", Decimal("0.025"), 1_000),
        ("Place Details Photos", Decimal("0.007"), 1_000),
    ],
)
def test_request_cost_and_free_cap(sku: str, per_request: Decimal, free_cap: int | None) -> None:
    cost = request_cost(sku)
    assert isinstance(cost, Decimal)
    assert cost == per_request
    assert free_monthly_cap(sku) == free_cap


def test_unknown_sku_raises() -> None:
    with pytest.raises(UnknownSkuError):
        request_cost("Text Search Essentials")  # the seed's SKU that does not exist


@pytest.mark.parametrize(
    ("sku", "requests", "expected"),
    [
        ("Text Search Pro", 5_000, Decimal("0")),  # all inside the free cap
        ("Text Search Pro", 5_001, Decimal("0.032")),
        # 5,000 free, 95,000 at $32/1K, 100,000 at $25.60/1K
        ("Text Search Pro", 200_000, Decimal("5600")),
        # 1,000 free, then 99,000 at $20, 400,000 at $16, 500,000 at $12, 1 at $6 (per 1K)
        ("Place Details Enterprise", 1_000_001, Decimal("14380.006")),
        ("Text Search Essentials IDs Only", 3_000_000, Decimal("0")),
    ],
)
def test_monthly_cost_is_graduated(sku: str, requests: int, expected: Decimal) -> None:
    assert monthly_cost(sku, requests) == expected


def test_price_list_is_dated_data() -> None:
    plist = price_list()
    assert plist.price_list_date == dt.date(2025, 11, 21)
    assert DEFAULT_PRICE_LIST.name == f"pricing_{plist.price_list_date.isoformat()}.json"
    assert plist.currency == "USD"


def test_inconsistent_price_list_is_refused(tmp_path: Path) -> None:
    data = json.loads(DEFAULT_PRICE_LIST.read_text())
    del data["skus"]["Text Search Pro"]
    broken = tmp_path / "pricing_broken.json"
    broken.write_text(json.dumps(data))
    with pytest.raises(ValidationError, match="Text Search Pro"):
        load_price_list(broken)

    data = json.loads(DEFAULT_PRICE_LIST.read_text())
    data["endpoints"]["searchText"]["tiers"][1]["place_fields"].append("id")  # in two tiers
    broken.write_text(json.dumps(data))
    with pytest.raises(ValidationError, match="two tiers"):
        load_price_list(broken)
