"""Validation of searchText / searchNearby bodies, with Google's INVALID_ARGUMENT answers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from placesim import catalog, rpc
from placesim.geo import Area, Box, Disc

MAX_PAGE_SIZE = 20
MAX_RADIUS_M = 50_000.0
MAX_TYPES = 50


def check_body_fields(body: dict[str, Any], allowed: frozenset[str]) -> None:
    for name in body:
        if name not in allowed:
            raise rpc.invalid_argument(
                f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
            )


def parse_number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise rpc.invalid_argument(f"Invalid value at '{what}': expected a number.")
    return float(value)


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise rpc.invalid_argument(f"Invalid value at '{what}': expected an integer.")
    return value


def _latlng(value: object, what: str) -> tuple[float, float]:
    if not isinstance(value, dict):
        raise rpc.invalid_argument(f"Invalid value at '{what}': expected a LatLng.")
    lat = parse_number(value.get("latitude", 0), f"{what}.latitude")
    lng = parse_number(value.get("longitude", 0), f"{what}.longitude")
    if not -90 <= lat <= 90 or not -180 <= lng <= 180:
        raise rpc.invalid_argument(f"Invalid {what}: latitude/longitude out of range.")
    return lat, lng


def _circle(value: object, what: str) -> Disc:
    if not isinstance(value, dict):
        raise rpc.invalid_argument(f"Invalid value at '{what}': expected a Circle.")
    lat, lng = _latlng(value.get("center"), f"{what}.center")
    radius = parse_number(value.get("radius", 0), f"{what}.radius")
    if not 0 < radius <= MAX_RADIUS_M:
        raise rpc.invalid_argument(f"Invalid {what}.radius. Must be > 0.0 and <= 50000.0.")
    return Disc(lat, lng, radius)


def _rectangle(value: object, what: str) -> Box:
    if not isinstance(value, dict):
        raise rpc.invalid_argument(f"Invalid value at '{what}': expected a Viewport.")
    south, west = _latlng(value.get("low"), f"{what}.low")
    north, east = _latlng(value.get("high"), f"{what}.high")
    if south > north:
        raise rpc.invalid_argument(f"Invalid {what}: low.latitude exceeds high.latitude.")
    return Box(south, west, north, east)


def parse_area(value: object, what: str, *, circle: bool, rectangle: bool) -> Area | None:
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) != 1:
        raise rpc.invalid_argument(f"Invalid {what}: set exactly one of circle or rectangle.")
    if "circle" in value and circle:
        return _circle(value["circle"], f"{what}.circle")
    if "rectangle" in value and rectangle:
        return _rectangle(value["rectangle"], f"{what}.rectangle")
    allowed = " or ".join(k for k, ok in (("circle", circle), ("rectangle", rectangle)) if ok)
    raise rpc.invalid_argument(f"Invalid {what}: only {allowed} is supported.")


def parse_types(value: object, what: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise rpc.invalid_argument(f"Invalid value at '{what}': expected a list of strings.")
    if len(value) > MAX_TYPES:
        raise rpc.invalid_argument(f"Too many types in {what}: at most {MAX_TYPES}.")
    check_types(value)
    return frozenset(value)


def check_types(names: Iterable[str]) -> None:
    bad = [n for n in names if n not in catalog.TABLE_A]
    if bad:
        raise rpc.invalid_argument(f"Unsupported types: {', '.join(bad)}.")


def parse_size(value: object, what: str) -> int:
    """pageSize / maxResultCount: unset or 0 means 20; negative is an error."""
    if value is None:
        return MAX_PAGE_SIZE
    size = _int(value, what)
    if size < 0:
        raise rpc.invalid_argument(f"Invalid {what}: must be non-negative.")
    return MAX_PAGE_SIZE if size == 0 else size
