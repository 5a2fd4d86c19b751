"""Small spherical geometry for the emulator: distances, circles, viewports.

Distances are great-circle (haversine) on a 6,371 km sphere; boxes are lat/lng rectangles,
with a low longitude above the high one meaning the box crosses the antimeridian, as in the
Places API's Viewport.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EARTH_RADIUS_M = 6_371_000.0
M_PER_DEG_LAT = math.pi * EARTH_RADIUS_M / 180


def distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def destination(lat: float, lng: float, bearing_rad: float, dist_m: float) -> tuple[float, float]:
    """The point `dist_m` from (lat, lng) along `bearing_rad` (clockwise from north)."""
    p1, l1, d = math.radians(lat), math.radians(lng), dist_m / EARTH_RADIUS_M
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(bearing_rad))
    l2 = l1 + math.atan2(
        math.sin(bearing_rad) * math.sin(d) * math.cos(p1),
        math.cos(d) - math.sin(p1) * math.sin(p2),
    )
    return math.degrees(p2), (math.degrees(l2) + 540) % 360 - 180


@dataclass(frozen=True, slots=True)
class Box:
    """A lat/lng rectangle (south, west, north, east); west > east crosses the antimeridian."""

    south: float
    west: float
    north: float
    east: float

    def contains(self, lat: float, lng: float) -> bool:
        if not self.south <= lat <= self.north:
            return False
        if self.west <= self.east:
            return self.west <= lng <= self.east
        return lng >= self.west or lng <= self.east

    @property
    def center(self) -> tuple[float, float]:
        east = self.east if self.west <= self.east else self.east + 360
        lng = (self.west + east) / 2
        return (self.south + self.north) / 2, (lng + 540) % 360 - 180

    def lng_ranges(self) -> list[tuple[float, float]]:
        """Longitude intervals of the box, split at the antimeridian."""
        if self.west <= self.east:
            return [(self.west, self.east)]
        return [(self.west, 180.0), (-180.0, self.east)]


@dataclass(frozen=True, slots=True)
class Disc:
    lat: float
    lng: float
    radius_m: float

    def contains(self, lat: float, lng: float) -> bool:
        return distance_m(self.lat, self.lng, lat, lng) <= self.radius_m

    @property
    def center(self) -> tuple[float, float]:
        return self.lat, self.lng

    def bounding_box(self) -> Box:
        dlat = self.radius_m / M_PER_DEG_LAT
        coslat = max(math.cos(math.radians(self.lat)), 0.01)
        dlng = min(dlat / coslat, 180.0)
        west, east = self.lng - dlng, self.lng + dlng
        if dlng >= 180:
            west, east = -180.0, 180.0
        return Box(
            max(self.lat - dlat, -90.0),
            (west + 540) % 360 - 180 if west < -180 else west,
            min(self.lat + dlat, 90.0),
            (east + 540) % 360 - 180 if east > 180 else east,
        )

    def grown(self, extra_m: float) -> Disc:
        return Disc(self.lat, self.lng, self.radius_m + extra_m)


Area = Box | Disc


def bounding_box(area: Area) -> Box:
    return area if isinstance(area, Box) else area.bounding_box()


def box_grown(box: Box, extra_m: float) -> Box:
    """The box widened by `extra_m` on every side (for candidate lookups, not containment)."""
    dlat = extra_m / M_PER_DEG_LAT
    worst_lat = max(abs(box.south), abs(box.north))
    dlng = dlat / max(math.cos(math.radians(min(worst_lat + dlat, 89.0))), 0.01)
    if box.west <= box.east and box.east - box.west + 2 * dlng >= 360:
        return Box(max(box.south - dlat, -90), -180.0, min(box.north + dlat, 90), 180.0)
    west = (box.west - dlng + 540) % 360 - 180
    east = (box.east + dlng + 540) % 360 - 180
    return Box(max(box.south - dlat, -90), west, min(box.north + dlat, 90), east)


def disc_intersects(area: Area, disc: Disc) -> bool:
    """Whether `disc` overlaps `area` (exact for discs, exact enough for boxes at city scale:
    the distance to the box's nearest point is measured on the sphere)."""
    if isinstance(area, Disc):
        return distance_m(area.lat, area.lng, disc.lat, disc.lng) <= area.radius_m + disc.radius_m
    if area.contains(disc.lat, disc.lng):
        return True
    near_lat = min(max(disc.lat, area.south), area.north)
    candidates = [area.west, area.east]
    best = min(distance_m(disc.lat, disc.lng, near_lat, lng) for lng in candidates)
    for west, east in area.lng_ranges():
        if west <= disc.lng <= east:
            best = min(best, distance_m(disc.lat, disc.lng, near_lat, disc.lng))
    return best <= disc.radius_m
