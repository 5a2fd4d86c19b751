"""Phase 5: data-quality verification of a community's businesses.

Checks (each flags, none deletes or changes a business):
- probable duplicates: the same normalised name and address, or the same or a similar name
  within VERIFY_DUPLICATE_DISTANCE_M (30 m); grouped, the lowest id is the canonical one;
- businesses outside the community's primary region (farther from its centre than its radius);
- closed businesses (temporarily or permanently);
- missing required fields (VERIFY_REQUIRED_FIELDS; a pure service-area business needs no
  address);
- categories with no business at all (phase 1's categories unless configured);
- the unreachable-website rate among the scanned websites.

The report (stored on community_rollouts.verification_report) has exact counts, the
flags per business id, and the thresholds that were applied. Thresholds that fail the phase:
fewer than VERIFY_MIN_BUSINESSES businesses, or a duplicate, outside-region or unreachable
rate above its maximum.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rollout.db.community_scope import community_business_ids
from rollout.db.models import Business, CommunityRegion, Region, WebsiteScan
from rollout.phase_settings import PhaseSettings
from rollout.phases.discovery.planning import DEFAULT_DENSE, DEFAULT_SPARSE, DiscoverySettings
from rollout.phases.website_scan.errors import UNREACHABLE_STATUSES, ScanStatus

REPORT_VERSION = 1
EARTH_RADIUS_M = 6_371_008.8
CLOSED_STATUSES = ("CLOSED_TEMPORARILY", "CLOSED_PERMANENTLY")

_NAME_NOISE = frozenset(
    {"the", "inc", "llc", "ltd", "co", "corp", "corporation", "company", "incorporated", "pllc"}
)
_ADDRESS_WORDS = {
    "street": "st",
    "avenue": "ave",
    "road": "rd",
    "boulevard": "blvd",
    "drive": "dr",
    "lane": "ln",
    "court": "ct",
    "place": "pl",
    "highway": "hwy",
    "parkway": "pkwy",
    "suite": "ste",
    "north": "n",
    "south": "s",
    "east": "e",
    "west": "w",
    "usa": "",
    "us": "",
    "united": "",
    "states": "",
}
_NON_WORD = re.compile(r"[^a-z0-9 ]+")


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    return _NON_WORD.sub(" ", text.replace("&", " and ").replace("'", ""))


def normalise_name(name: str | None) -> str:
    if not name:
        return ""
    return " ".join(w for w in _fold(name).split() if w not in _NAME_NOISE)


def normalise_address(address: str | None) -> str:
    if not address:
        return ""
    words = (_ADDRESS_WORDS.get(w, w) for w in _fold(address).split())
    return " ".join(w for w in words if w)


def names_similar(a: str, b: str) -> bool:
    """Normalised names that are equal, contain one another, or share most words."""
    if not a or not b:
        return False
    if a == b or a in b or b in a:
        return True
    wa, wb = set(a.split()), set(b.split())
    return len(wa & wb) / len(wa | wb) >= 0.6


def distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True, slots=True)
class BusinessFacts:
    id: int
    name: str | None
    formatted_address: str | None
    latitude: float | None
    longitude: float | None
    primary_type: str | None
    types: tuple[str, ...]
    business_status: str | None
    website_uri: str | None
    pure_service_area: bool
    scan_status: str | None


@dataclass(frozen=True, slots=True)
class RegionFacts:
    latitude: float
    longitude: float
    radius_m: float


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def find_duplicates(businesses: Sequence[BusinessFacts], within_m: float) -> list[dict[str, Any]]:
    """Groups of probable duplicates, each {canonical, business_ids, reasons}."""
    groups = _UnionFind()
    reasons: dict[tuple[int, int], set[str]] = defaultdict(set)
    names = {b.id: normalise_name(b.name) for b in businesses}

    def pair(a: int, b: int, reason: str) -> None:
        groups.union(a, b)
        reasons[(min(a, b), max(a, b))].add(reason)

    by_key: dict[tuple[str, str], list[int]] = defaultdict(list)
    for b in businesses:
        address = normalise_address(b.formatted_address)
        if names[b.id] and address:
            by_key[(names[b.id], address)].append(b.id)
    for same in by_key.values():
        for other in same[1:]:
            pair(same[0], other, "same_name_and_address")

    # Spatial hash: cells of `within_m`, so a close pair is in the same or a neighbour cell.
    points = [
        (b.id, b.latitude, b.longitude)
        for b in businesses
        if b.latitude is not None and b.longitude is not None
    ]
    cell_deg = within_m / 111_320
    cells: dict[tuple[int, int], list[tuple[int, float, float]]] = defaultdict(list)
    for point in points:
        cells[(int(point[1] // cell_deg), int(point[2] // cell_deg))].append(point)
    for business_id, lat, lng in points:
        cy, cx = int(lat // cell_deg), int(lng // cell_deg)
        # A degree of longitude shrinks with latitude: look further sideways.
        span = max(1, math.ceil(1 / max(math.cos(math.radians(lat)), 0.01)))
        for dy in (-1, 0, 1):
            for dx in range(-span, span + 1):
                for other_id, other_lat, other_lng in cells.get((cy + dy, cx + dx), ()):
                    if other_id <= business_id:
                        continue
                    if names_similar(names[business_id], names[other_id]) and (
                        distance_m(lat, lng, other_lat, other_lng) <= within_m
                    ):
                        pair(business_id, other_id, f"similar_name_within_{within_m:g}m")

    members: dict[int, list[int]] = defaultdict(list)
    for business_id in groups.parent:
        members[groups.find(business_id)].append(business_id)
    why: dict[int, set[str]] = defaultdict(set)
    for (a, _), rs in reasons.items():
        why[groups.find(a)] |= rs
    return [
        {"canonical": root, "business_ids": sorted(ids), "reasons": sorted(why[root])}
        for root, ids in sorted(members.items())
        if len(ids) > 1
    ]


def _missing(b: BusinessFacts, required: Iterable[str]) -> list[str]:
    present = {
        "name": bool((b.name or "").strip()),
        # A pure service-area business has no address or location by design (Google omits
        # both).
        "formatted_address": b.pure_service_area or bool((b.formatted_address or "").strip()),
        "location": b.pure_service_area or (b.latitude is not None and b.longitude is not None),
        "primary_type": bool(b.primary_type or b.types),
        "website_uri": bool((b.website_uri or "").strip()),
    }
    return [field for field in required if not present.get(field, True)]


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def build_report(
    businesses: Sequence[BusinessFacts],
    region: RegionFacts | None,
    settings: PhaseSettings,
    expected_categories: Sequence[str],
) -> dict[str, Any]:
    total = len(businesses)
    flags: dict[int, list[str]] = defaultdict(list)

    duplicates = find_duplicates(businesses, settings.verify_duplicate_distance_m)
    redundant = 0
    for group in duplicates:
        for business_id in group["business_ids"]:
            if business_id != group["canonical"]:
                redundant += 1
                flags[business_id].append(f"duplicate_of:{group['canonical']}")

    outside: list[int] = []
    if region is not None:
        for b in businesses:
            if b.latitude is None or b.longitude is None:
                continue
            d = distance_m(region.latitude, region.longitude, b.latitude, b.longitude)
            if d > region.radius_m:
                outside.append(b.id)
                flags[b.id].append("outside_region")

    closed: dict[str, list[int]] = {s.lower(): [] for s in CLOSED_STATUSES}
    for b in businesses:
        if b.business_status is not None and b.business_status in CLOSED_STATUSES:
            closed[b.business_status.lower()].append(b.id)
            flags[b.id].append(b.business_status.lower())

    missing: dict[str, list[int]] = {f: [] for f in settings.verify_required_fields}
    for b in businesses:
        for field in _missing(b, settings.verify_required_fields):
            missing[field].append(b.id)
            flags[b.id].append(f"missing:{field}")

    category_counts: dict[str, int] = {c: 0 for c in expected_categories}
    for b in businesses:
        kinds = {*b.types, *([b.primary_type] if b.primary_type else [])}
        for category in kinds & category_counts.keys():
            category_counts[category] += 1
    empty_categories = sorted(c for c, n in category_counts.items() if n == 0)

    with_site = [b for b in businesses if (b.website_uri or "").strip()]
    scanned = [b for b in with_site if b.scan_status is not None]
    by_status: dict[str, int] = defaultdict(int)
    for b in scanned:
        assert b.scan_status is not None
        by_status[b.scan_status] += 1
    unreachable = sum(n for s, n in by_status.items() if s in UNREACHABLE_STATUSES)
    for b in scanned:
        if b.scan_status in UNREACHABLE_STATUSES:
            flags[b.id].append("website_unreachable")

    rates = {
        "duplicate_rate": _rate(redundant, total),
        "outside_region_rate": _rate(len(outside), total),
        "unreachable_website_rate": _rate(unreachable, len(scanned)),
    }
    failures = []
    if total < settings.verify_min_businesses:
        failures.append(
            f"{total} businesses found, at least {settings.verify_min_businesses} required"
        )
    for rate, limit in (
        ("duplicate_rate", settings.verify_max_duplicate_rate),
        ("outside_region_rate", settings.verify_max_outside_region_rate),
        ("unreachable_website_rate", settings.verify_max_unreachable_rate),
    ):
        if rates[rate] > limit:
            failures.append(f"{rate} {rates[rate]:.2%} is above the maximum {limit:.2%}")

    return {
        "version": REPORT_VERSION,
        "passed": not failures,
        "failures": failures,
        "businesses": total,
        "rates": rates,
        "duplicates": {
            "groups": len(duplicates),
            "redundant_businesses": redundant,
            "group_list": duplicates,
        },
        "outside_region": {"count": len(outside), "business_ids": outside},
        "closed": {"count": sum(len(v) for v in closed.values()), **closed},
        "missing_fields": {
            f: {"count": len(ids), "business_ids": ids} for f, ids in missing.items()
        },
        "categories": {"expected": len(category_counts), "empty": empty_categories},
        "websites": {
            "with_website": len(with_site),
            "scanned": len(scanned),
            "unreachable": unreachable,
            "blocked": by_status.get(ScanStatus.BLOCKED.value, 0),
            "robots_disallowed": by_status.get(ScanStatus.ROBOTS_DISALLOWED.value, 0),
            "by_status": dict(sorted(by_status.items())),
        },
        "flags": {str(k): v for k, v in sorted(flags.items())},
        "thresholds": {
            "min_businesses": settings.verify_min_businesses,
            "max_duplicate_rate": settings.verify_max_duplicate_rate,
            "max_outside_region_rate": settings.verify_max_outside_region_rate,
            "max_unreachable_website_rate": settings.verify_max_unreachable_rate,
            "duplicate_distance_m": settings.verify_duplicate_distance_m,
            "required_fields": list(settings.verify_required_fields),
        },
    }


async def load_facts(
    session: AsyncSession, community_id: int
) -> tuple[list[BusinessFacts], RegionFacts | None]:
    rows = await session.execute(
        select(
            Business.id,
            Business.name,
            Business.formatted_address,
            Business.latitude,
            Business.longitude,
            Business.primary_type,
            Business.types,
            Business.business_status,
            Business.website_uri,
            Business.pure_service_area_business,
            WebsiteScan.status,
        )
        .outerjoin(WebsiteScan, WebsiteScan.business_id == Business.id)
        .where(Business.id.in_(community_business_ids(community_id)))
        .order_by(Business.id)
    )
    facts = [
        BusinessFacts(
            id=r[0],
            name=r[1],
            formatted_address=r[2],
            latitude=r[3],
            longitude=r[4],
            primary_type=r[5],
            types=tuple(r[6] or ()),
            business_status=r[7],
            website_uri=r[8],
            pure_service_area=bool(r[9]),
            scan_status=r[10],
        )
        for r in rows
    ]
    region = await session.scalar(
        select(Region)
        .join(CommunityRegion, CommunityRegion.region_id == Region.id)
        .where(CommunityRegion.community_id == community_id, CommunityRegion.is_primary)
    )
    region_facts = (
        RegionFacts(region.center_latitude, region.center_longitude, region.radius_m)
        if region is not None
        else None
    )
    return facts, region_facts


def expected_categories(settings: PhaseSettings, discovery: DiscoverySettings | None) -> list[str]:
    """VERIFY_EXPECTED_CATEGORIES, or else the categories phase 1 searches (its default
    lists when `discovery` is None)."""
    if settings.verify_expected_categories:
        return list(settings.verify_expected_categories)
    if discovery is None:
        return list(dict.fromkeys([*DEFAULT_DENSE, *DEFAULT_SPARSE]))
    return list(dict.fromkeys([*discovery.dense_categories, *discovery.sparse_categories]))
