"""The emulated world: businesses per US community, generated lazily from a seed.

Density: one business per RESIDENTS_PER_BUSINESS (40) residents, at least 15 and at most
5,000 per community. (The US has about 8 million employer establishments for 335 million
people, one per ~40; the floor gives hamlets a main street; the cap bounds memory for the
largest cities, which still hold far more than the 60 results one search can return.)

Each business is placed around its community's point inside the community's region radius
(`rollout.communities.region_radius_m`), denser near the centre: the distance from the centre
is R * u**0.8 for uniform u, so the areal density falls off as r**-0.75. Everything about
business `index` of community `id` comes from a random generator seeded with (seed, id,
index): the same seed gives the same world, in any order of generation, in any process.

Communities are generated on first use and kept in an LRU cache bounded by the number of
businesses it holds (`cache_businesses`), so a statewide run stays memory-light.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
import random
import re
import struct
import sys
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

from placesim import catalog
from placesim.geo import Area, Disc, bounding_box, box_grown, destination, disc_intersects
from placesim.sites import SiteKind, choose_site_kind, private_website
from rollout.communities import (
    MAX_RADIUS_M,
    CommunityRecord,
    load_communities,
    region_radius_m,
)
from rollout.states import STATE_NAMES

log = logging.getLogger(__name__)

RESIDENTS_PER_BUSINESS = 40
MIN_BUSINESSES = 15
MAX_BUSINESSES = 5_000
CENTRE_EXPONENT = 0.8  # < 1 puts more businesses near the centre than a uniform disc
CLOSED_PERMANENTLY_SHARE = 0.03
CLOSED_TEMPORARILY_SHARE = 0.02
NO_RATING_SHARE = 0.06
DEFAULT_CACHE_BUSINESSES = 50_000  # about 800 bytes each: ~40 MB

_CATEGORY_WEIGHTS = [c.weight for c in catalog.CATEGORIES]
_CUMULATIVE = [sum(_CATEGORY_WEIGHTS[: i + 1]) for i in range(len(_CATEGORY_WEIGHTS))]


def business_count(population: int) -> int:
    return min(max(population // RESIDENTS_PER_BUSINESS, MIN_BUSINESSES), MAX_BUSINESSES)


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "site"


@dataclass(frozen=True, slots=True)
class Business:
    place_id: str
    community_id: int
    index: int
    name: str
    category: catalog.Category
    latitude: float  # the true position, even for service-area businesses (never shown)
    longitude: float
    street_address: str
    locality: str
    state_code: str
    postal_code: str
    area_code: int
    phone_line: str  # "555-0142"
    rating: float | None
    user_rating_count: int | None
    business_status: str
    pure_service_area: bool
    site_kind: SiteKind | None  # None: no website
    slug: str | None  # hosted site path segment (None without a hosted site)
    private_url: str | None  # websiteUri when it points at a private address
    maps_cid: int
    timezone: str | None

    @property
    def primary_type(self) -> str:
        return self.category.primary_type

    @property
    def types(self) -> tuple[str, ...]:
        return self.category.types

    @property
    def national_phone(self) -> str:
        return f"({self.area_code}) {self.phone_line}"

    @property
    def international_phone(self) -> str:
        return f"+1 {self.area_code}-{self.phone_line}"

    @property
    def formatted_address(self) -> str:
        return f"{self.street_address}, {self.locality}, {self.state_code} {self.postal_code}, USA"

    def website_uri(self, base_url: str) -> str | None:
        if self.private_url is not None:
            return self.private_url
        if self.slug is None:
            return None
        return f"{base_url}/sites/{self.slug}/"


class PlaceIdCodec:
    """Place ids that look like Google's ("ChIJ" + 23 url-safe base64 characters) and encode
    (community id, index) under a seed-keyed MAC, so Place Details can find a business without
    an index of every id, and an id from another seed is simply not found."""

    def __init__(self, seed: int) -> None:
        self._key = hashlib.sha256(f"placesim-place-ids:{seed}".encode()).digest()

    def _mask(self, tag: bytes) -> bytes:
        return hmac.new(self._key, b"mask" + tag, hashlib.sha256).digest()[:6]

    def encode(self, community_id: int, index: int) -> str:
        payload = struct.pack(">IH", community_id, index)
        tag = hmac.new(self._key, payload, hashlib.sha256).digest()[:11]
        hidden = bytes(a ^ b for a, b in zip(payload, self._mask(tag), strict=True))
        return "ChIJ" + base64.urlsafe_b64encode(tag + hidden).decode().rstrip("=")

    def decode(self, place_id: str) -> tuple[int, int] | None:
        if not place_id.startswith("ChIJ") or len(place_id) != 27:
            return None
        try:
            raw = base64.urlsafe_b64decode(place_id[4:] + "=")
        except ValueError:
            return None
        if len(raw) != 17:
            return None
        tag, hidden = raw[:11], raw[11:]
        payload = bytes(a ^ b for a, b in zip(hidden, self._mask(tag), strict=True))
        expected = hmac.new(self._key, payload, hashlib.sha256).digest()[:11]
        if not hmac.compare_digest(tag, expected):
            return None
        community_id, index = struct.unpack(">IH", payload)
        return community_id, index


@dataclass
class CommunityWorld:
    community: CommunityRecord
    radius_m: int
    businesses: list[Business]
    # The words of each name, for text matching; small interned tuples, not sets, because a
    # frozenset costs 200+ bytes each and names have two to four words.
    name_tokens: list[tuple[str, ...]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.name_tokens = [
            tuple(sys.intern(word) for word in catalog.tokens(b.name)) for b in self.businesses
        ]


class World:
    """All communities (loaded once) and their businesses (generated on demand)."""

    def __init__(
        self,
        seed: int,
        *,
        communities: list[CommunityRecord] | None = None,
        cache_businesses: int = DEFAULT_CACHE_BUSINESSES,
    ) -> None:
        self.seed = seed
        self.ids = PlaceIdCodec(seed)
        self.communities = {c.id: c for c in (communities or load_communities())}
        self.cache_businesses = cache_businesses
        self._cache: OrderedDict[int, CommunityWorld] = OrderedDict()
        self._cached_businesses = 0
        self.generated = 0  # communities generated so far (cache misses), for stats
        # 1-degree grid of community points for area lookups.
        self._grid: dict[tuple[int, int], list[CommunityRecord]] = {}
        for record in self.communities.values():
            cell = (math.floor(record.latitude), math.floor(record.longitude))
            self._grid.setdefault(cell, []).append(record)
        self._by_name: dict[str, list[CommunityRecord]] = {}
        for record in self.communities.values():
            self._by_name.setdefault(_norm(record.name), []).append(record)

    # -- lookups -------------------------------------------------------------------------

    def region(self, community: CommunityRecord) -> Disc:
        return Disc(community.latitude, community.longitude, region_radius_m(community.population))

    def communities_in(self, area: Area) -> list[CommunityRecord]:
        """Communities whose region overlaps `area`, in id order."""
        box = box_grown(bounding_box(area), MAX_RADIUS_M)
        found: list[CommunityRecord] = []
        for west, east in box.lng_ranges():
            for lat in range(math.floor(box.south), math.floor(box.north) + 1):
                for lng in range(math.floor(west), math.floor(east) + 1):
                    for record in self._grid.get((lat, lng), ()):
                        if disc_intersects(area, self.region(record)):
                            found.append(record)
        return sorted(set(found), key=lambda r: r.id)

    def find_community(self, name: str, state: str | None) -> CommunityRecord | None:
        """A community by name ("Dover") and optional state ("DE" or "Delaware"); without
        a state, the most populous of that name."""
        matches = self._by_name.get(_norm(name), [])
        if state is not None:
            code = _state_code(state)
            if code is None:
                return None
            matches = [m for m in matches if m.state_code == code]
        return max(matches, key=lambda m: (m.population, -m.id), default=None)

    def community_world(self, community_id: int) -> CommunityWorld | None:
        cached = self._cache.get(community_id)
        if cached is not None:
            self._cache.move_to_end(community_id)
            return cached
        record = self.communities.get(community_id)
        if record is None:
            return None
        world = CommunityWorld(
            record, region_radius_m(record.population), list(self._generate(record))
        )
        self.generated += 1
        self._cache[community_id] = world
        self._cached_businesses += len(world.businesses)
        while self._cached_businesses > self.cache_businesses and len(self._cache) > 1:
            _, evicted = self._cache.popitem(last=False)
            self._cached_businesses -= len(evicted.businesses)
        return world

    def business(self, place_id: str) -> Business | None:
        decoded = self.ids.decode(place_id)
        if decoded is None:
            return None
        world = self.community_world(decoded[0])
        if world is None or decoded[1] >= len(world.businesses):
            return None
        return world.businesses[decoded[1]]

    def business_by_slug(self, slug: str) -> Business | None:
        """The business a hosted-site slug (<name>-<community id>-<index>) belongs to."""
        parts = slug.rsplit("-", 2)
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            return None
        world = self.community_world(int(parts[1]))
        if world is None or int(parts[2]) >= len(world.businesses):
            return None
        found = world.businesses[int(parts[2])]
        return found if found.slug == slug else None

    def businesses_in(self, area: Area) -> Iterator[tuple[Business, tuple[str, ...]]]:
        """Every business whose true position is inside `area`, with its name's tokens."""
        for record in self.communities_in(area):
            world = self.community_world(record.id)
            assert world is not None
            for business, words in zip(world.businesses, world.name_tokens, strict=True):
                if area.contains(business.latitude, business.longitude):
                    yield business, words

    @property
    def cached_communities(self) -> int:
        return len(self._cache)

    # -- generation ----------------------------------------------------------------------

    def _generate(self, record: CommunityRecord) -> Iterator[Business]:
        radius = region_radius_m(record.population)
        # Seeded generators (not secrets): the world must be reproducible from the seed.
        town = random.Random(f"placesim:{self.seed}:{record.id}")  # noqa: S311
        area_code = town.randrange(201, 990)
        if area_code % 100 == 11:  # N11 codes are service numbers, not area codes
            area_code += 1
        zip_base = town.randrange(10_000, 99_000)
        for index in range(business_count(record.population)):
            yield self._business(record, index, radius, area_code, zip_base)

    def _business(
        self, record: CommunityRecord, index: int, radius: int, area_code: int, zip_base: int
    ) -> Business:
        rng = random.Random(f"placesim:{self.seed}:{record.id}:{index}")  # noqa: S311
        category = catalog.CATEGORIES[_bisect(_CUMULATIVE, rng.random() * _CUMULATIVE[-1])]
        distance = radius * rng.random() ** CENTRE_EXPONENT
        lat, lng = destination(
            record.latitude, record.longitude, rng.uniform(0, 2 * math.pi), distance
        )
        name = _name(rng, category, record.name)
        street = f"{rng.randrange(1, 9900)} {rng.choice(catalog.STREETS)} "
        street += rng.choice(catalog.STREET_SUFFIXES)
        roll = rng.random()
        status = (
            "CLOSED_PERMANENTLY"
            if roll < CLOSED_PERMANENTLY_SHARE
            else "CLOSED_TEMPORARILY"
            if roll < CLOSED_PERMANENTLY_SHARE + CLOSED_TEMPORARILY_SHARE
            else "OPERATIONAL"
        )
        if rng.random() < NO_RATING_SHARE:
            rating, count = None, None
        else:
            rating = round(min(5.0, max(1.0, rng.gauss(4.3, 0.5))), 1)
            count = 1 + int(rng.lognormvariate(3.5, 1.2))
        sab = rng.random() < category.sab_share
        has_site = rng.random() < category.website_share
        kind = choose_site_kind(rng.random()) if has_site else None
        private = private_website(rng.random()) if kind is SiteKind.PRIVATE_URI else None
        slug = None
        if kind is not None and kind is not SiteKind.PRIVATE_URI:
            prefix = "nobots-" if kind is SiteKind.ROBOTS_DISALLOW else ""
            slug = f"{prefix}{slugify(name)}-{record.id}-{index}"
        return Business(
            place_id=self.ids.encode(record.id, index),
            community_id=record.id,
            index=index,
            name=name,
            category=category,
            latitude=round(lat, 7),
            longitude=round(lng, 7),
            street_address=street,
            locality=record.name,
            state_code=record.state_code,
            postal_code=f"{zip_base + rng.randrange(0, 20):05d}",
            area_code=area_code,
            phone_line=f"555-{rng.randrange(0, 10_000):04d}",
            rating=rating,
            user_rating_count=count,
            business_status=status,
            pure_service_area=sab,
            site_kind=kind,
            slug=slug,
            private_url=private,
            maps_cid=rng.getrandbits(63),
            timezone=record.timezone,
        )


def _bisect(cumulative: list[float], value: float) -> int:
    lo, hi = 0, len(cumulative) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cumulative[mid] <= value:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _name(rng: random.Random, category: catalog.Category, town: str) -> str:
    pattern = rng.choice(category.patterns)
    surname, surname2 = rng.sample(catalog.SURNAMES, 2)
    return pattern.format(
        surname=surname,
        surname2=surname2,
        town=town,
        adj=rng.choice(catalog.ADJECTIVES),
        noun=rng.choice(category.nouns),
    )


def _norm(name: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", name.lower()))


_STATE_BY_NAME = {_norm(name): code for code, name in STATE_NAMES.items()}


def _state_code(text: str) -> str | None:
    cleaned = _norm(text)
    if cleaned.upper() in STATE_NAMES:
        return cleaned.upper()
    return _STATE_BY_NAME.get(cleaned)
