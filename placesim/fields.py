"""Field masks and the Place JSON of the emulator: which SKU a mask bills (with the
emulator's own SKU table, placesim.skus), and what a masked answer holds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from placesim import rpc
from placesim.sites import listing_draw
from placesim.skus import (
    FieldMaskError,
    Method,
    SkuTable,
    UnknownFieldError,
    camel_case,
    split_field_mask,
)
from placesim.world import Business


@dataclass(frozen=True)
class Mask:
    sku: str
    place_paths: tuple[tuple[str, ...], ...]  # ("*",) means every field
    response_fields: frozenset[str]


def parse_mask(method: Method, raw: str | None, skus: SkuTable) -> Mask:
    """Validate the mask like the API (400 if missing or unknown) and price it."""
    if raw is None or not raw.strip():
        raise rpc.missing_field_mask()
    try:
        paths = split_field_mask(raw)
        sku = skus.sku_for(method, paths)
    except UnknownFieldError as exc:
        raise rpc.unknown_fields(list(exc.paths)) from None
    except FieldMaskError:
        raise rpc.missing_field_mask() from None
    place_paths: list[tuple[str, ...]] = []
    response: set[str] = set()
    for path in paths:
        segments = tuple(camel_case(s) for s in path.split("."))
        if path == "*":
            place_paths.append(("*",))
            response.add("*")
        elif method is Method.GET_PLACE:
            place_paths.append(segments)
        elif segments[0] == "places":
            place_paths.append(segments[1:] or ("*",))
        else:
            response.add(segments[0])
    return Mask(sku, tuple(place_paths), frozenset(response))


def _copy(src: dict[str, Any], dst: dict[str, Any], path: tuple[str, ...]) -> None:
    key, rest = path[0], path[1:]
    if key == "*":
        for name in src:
            _copy(src, dst, (name, *rest))
        return
    if key not in src:
        return  # Google omits fields it has no data for
    value = src[key]
    if rest and isinstance(value, dict):
        _copy(value, dst.setdefault(key, {}), rest)
    else:
        dst[key] = value


def project(place: dict[str, Any], mask: Mask) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in mask.place_paths:
        _copy(place, out, path)
    return out


def place_json(b: Business, base_url: str) -> dict[str, Any]:
    """Every field the emulator knows for a business, as the API spells it. Pure service-area
    businesses have no address or location, as Google's."""
    data: dict[str, Any] = {
        "name": f"places/{b.place_id}",
        "id": b.place_id,
        "types": list(b.types),
        "primaryType": b.primary_type,
        "primaryTypeDisplayName": {"text": b.category.display_name, "languageCode": "en-US"},
        "displayName": {"text": b.name, "languageCode": "en"},
        "nationalPhoneNumber": b.national_phone,
        "internationalPhoneNumber": b.international_phone,
        "businessStatus": b.business_status,
        "googleMapsUri": f"https://maps.google.com/?cid={b.maps_cid}",
    }
    if b.timezone:
        data["timeZone"] = {"id": b.timezone}
    if b.pure_service_area:
        data["pureServiceAreaBusiness"] = True
    else:
        number, route = b.street_address.split(" ", 1)
        data["formattedAddress"] = b.formatted_address
        data["shortFormattedAddress"] = f"{b.street_address}, {b.locality}"
        data["location"] = {"latitude": b.latitude, "longitude": b.longitude}
        data["addressComponents"] = [
            {"longText": number, "shortText": number, "types": ["street_number"]},
            {"longText": route, "shortText": route, "types": ["route"]},
            {"longText": b.locality, "shortText": b.locality, "types": ["locality", "political"]},
            {
                "longText": b.state_code,
                "shortText": b.state_code,
                "types": ["administrative_area_level_1", "political"],
            },
            {"longText": "United States", "shortText": "US", "types": ["country", "political"]},
            {"longText": b.postal_code, "shortText": b.postal_code, "types": ["postal_code"]},
        ]
        data["postalAddress"] = {
            "regionCode": "US",
            "languageCode": "en-US",
            "postalCode": b.postal_code,
            "administrativeArea": b.state_code,
            "locality": b.locality,
            "addressLines": [b.street_address],
        }
    if b.rating is not None:
        data["rating"] = b.rating
        data["userRatingCount"] = b.user_rating_count
    website = b.website_uri(base_url)
    if website is not None:
        data["websiteUri"] = website
    data.update(_hours_and_prices(b))
    return data


_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_PRICED = {"restaurant", "cafe", "bar", "bakery", "hair_salon", "beauty_salon", "barber_shop"}
_PRICE_LEVELS = (
    "PRICE_LEVEL_INEXPENSIVE",
    "PRICE_LEVEL_MODERATE",
    "PRICE_LEVEL_MODERATE",
    "PRICE_LEVEL_EXPENSIVE",
)


def _clock(hour: int) -> str:
    return f"{(hour - 1) % 12 + 1}:00\u202f{'AM' if hour < 12 else 'PM'}"


def _hours_and_prices(b: Business) -> dict[str, Any]:
    """Opening hours for about three businesses in four, and a price level (and range) for
    most of the kinds Google prices: drawn from the place id, so every answer agrees."""
    draw = listing_draw(b.place_id)
    out: dict[str, Any] = {}
    if draw.has_hours:
        opens, closes = draw.opens, draw.closes
        open_days = range(7) if draw.open_sundays else range(1, 7)  # Google's days: 0 Sunday
        periods = [
            {
                "open": {"day": day, "hour": opens, "minute": 0},
                "close": {"day": day, "hour": closes, "minute": 0},
            }
            for day in open_days
        ]
        descriptions = [
            f"{_DAYS[day]}: {_clock(opens)} \u2013 {_clock(closes)}"
            if day in open_days
            else f"{_DAYS[day]}: Closed"
            for day in (*range(1, 7), 0)
        ]
        out["regularOpeningHours"] = {"periods": periods, "weekdayDescriptions": descriptions}
    if b.primary_type in _PRICED and draw.has_price:
        level = draw.price_index(len(_PRICE_LEVELS))
        out["priceLevel"] = _PRICE_LEVELS[level]
        low = 10 * (level + 1)
        out["priceRange"] = {
            "startPrice": {"currencyCode": "USD", "units": str(low)},
            "endPrice": {"currencyCode": "USD", "units": str(low * 2)},
        }
    return out
