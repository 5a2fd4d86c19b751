"""The Places API (New) semantics of the emulator: Text Search, Nearby Search, Place Details
(request validation is in `validation`, field masks and the Place JSON in `fields`).

Text query matching is simple and deterministic: the query is split into lower-case singular
words; a trailing "in <town>[, <state>]" or "near ..." names a community, whose region becomes
the search area (overriding a location bias, as Google does). Every other word (stopwords
aside) must be found in the business's category vocabulary (type name, display name,
keywords) or in its name; words such as "business" or "shop" match anything. Ranking is
relevance (category match, name match, prominence from rating and rating count) or distance.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from placesim import catalog, rpc
from placesim.geo import Area, Disc, box_grown, distance_m
from placesim.tokens import PageTokens
from placesim.validation import (
    MAX_PAGE_SIZE,
    check_body_fields,
    check_types,
    parse_area,
    parse_number,
    parse_size,
    parse_types,
)
from placesim.world import Business, World
from rollout.communities import CommunityRecord

# Called with the area a request searches before it is searched; raises rpc.ApiError to fail
# the request (the server's fail_near zones).
Guard = Callable[[Area], None]

MAX_TEXT_RESULTS = 60
BIAS_MARGIN_M = 2_000.0  # a bias still returns places a little outside it, ranked lower


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


TEXT_BODY_FIELDS = _words(
    """textQuery includedType strictTypeFiltering includePureServiceAreaBusinesses
    includeFutureOpeningBusinesses locationBias locationRestriction pageSize pageToken
    maxResultCount rankPreference languageCode regionCode minRating openNow priceLevels evOptions
    routingParameters searchAlongRouteParameters"""
)
NEARBY_BODY_FIELDS = _words(
    """includedTypes excludedTypes includedPrimaryTypes excludedPrimaryTypes maxResultCount
    locationRestriction rankPreference languageCode regionCode routingParameters"""
)


# --------------------------------------------------------------------------------------
# Text Search
# --------------------------------------------------------------------------------------

_PLACE_PHRASE = re.compile(
    r"^(?P<what>.*?)\s+(?:in|near)\s+(?P<where>[^,]+?)(?:,\s*(?P<state>.+))?$"
)


@dataclass(frozen=True)
class TextQuery:
    words: tuple[str, ...]
    place: CommunityRecord | None


def parse_text_query(world: World, query: str) -> TextQuery:
    text = " ".join(query.split())
    place = None
    match = _PLACE_PHRASE.match(text)
    if match:
        where, state = match.group("where").strip(), match.group("state")
        tries = [(where, state.strip() if state else None)]
        if state is None:  # "Dover DE", "Albany New York": the state may follow a space
            words = where.split()
            tries += [(" ".join(words[:-n]), " ".join(words[-n:])) for n in (1, 2)]
        for town, state_name in tries:
            place = world.find_community(town, state_name) if town else None
            if place is not None:
                text = match.group("what")
                break
    words = tuple(w for w in catalog.tokens(text) if w not in catalog.STOPWORDS)
    return TextQuery(words, place)


def _relevance(b: Business, name_words: tuple[str, ...], words: tuple[str, ...]) -> float | None:
    """None when the business does not match; higher is more relevant."""
    if not words:
        return None
    vocabulary = b.category.vocabulary
    for word in words:
        if word not in vocabulary and word not in name_words and word not in catalog.CATCH_ALL:
            return None
    score = 0.0
    if all(w in vocabulary or w in catalog.CATCH_ALL for w in words):
        score += 3.0
    if any(w in name_words for w in words):
        score += 2.0
    return score + _prominence(b)


def _prominence(b: Business) -> float:
    if b.rating is None or b.user_rating_count is None:
        return 0.0
    return b.rating * math.log10(b.user_rating_count + 1) / 10


def text_search(
    world: World, body: dict[str, Any], tokens: PageTokens, guard: Guard | None = None
) -> tuple[list[Business], str | None]:
    """The page of businesses a searchText body asks for, and the next page's token."""
    check_body_fields(body, TEXT_BODY_FIELDS)
    query = body.get("textQuery")
    if not isinstance(query, str) or not query.strip():
        raise rpc.invalid_argument("Missing or empty 'textQuery'.")
    included_type = body.get("includedType")
    if included_type is not None:
        if not isinstance(included_type, str):
            raise rpc.invalid_argument("Invalid value at 'includedType': expected a string.")
        check_types([included_type])
    strict = body.get("strictTypeFiltering") is True
    include_sab = body.get("includePureServiceAreaBusinesses") is True
    bias = parse_area(body.get("locationBias"), "location_bias", circle=True, rectangle=True)
    restriction = parse_area(
        body.get("locationRestriction"), "location_restriction", circle=False, rectangle=True
    )
    if bias is not None and restriction is not None:
        raise rpc.invalid_argument("Only one of location_bias and location_restriction may be set.")
    rank = body.get("rankPreference", "RELEVANCE")
    if rank not in ("RELEVANCE", "DISTANCE", "RANK_PREFERENCE_UNSPECIFIED"):
        raise rpc.invalid_argument(f"Invalid rank_preference: {rank}.")
    min_rating = body.get("minRating")
    if min_rating is not None:
        min_rating = parse_number(min_rating, "minRating")
    # maxResultCount is the deprecated name of pageSize, ignored when both are given.
    if body.get("pageSize") is None and body.get("maxResultCount") is not None:
        size = min(parse_size(body.get("maxResultCount"), "max_result_count"), MAX_PAGE_SIZE)
    else:
        size = min(parse_size(body.get("pageSize"), "page_size"), MAX_PAGE_SIZE)
    offset = 0
    token = body.get("pageToken")
    if token:
        if not isinstance(token, str):
            raise rpc.invalid_argument("Invalid value at 'pageToken': expected a string.")
        opened = tokens.open(token, body)
        if opened is None:
            raise rpc.invalid_argument(
                "Invalid page token: it is malformed, or the request's parameters differ from "
                "the request that returned it."
            )
        offset = opened

    parsed = parse_text_query(world, query)
    place_region = world.region(parsed.place) if parsed.place is not None else None
    search_area: Area | None
    inside_bias: Area | None = None
    if restriction is not None:
        search_area = restriction
    elif place_region is not None:
        search_area = place_region
    elif bias is not None:
        inside_bias = bias
        search_area = (
            bias.grown(max(bias.radius_m * 0.5, BIAS_MARGIN_M))
            if isinstance(bias, Disc)
            else box_grown(bias, BIAS_MARGIN_M)
        )
    else:
        search_area = None  # Google would bias by the caller's IP; the emulator has none
    if search_area is None:
        return [], None
    if guard is not None:
        guard(search_area)
    centre = search_area.center

    scored: list[tuple[float, float, str, Business]] = []
    for b, name_words in world.businesses_in(search_area):
        if b.pure_service_area and not include_sab:
            continue
        if place_region is not None and not place_region.contains(b.latitude, b.longitude):
            continue
        if included_type is not None and strict and included_type not in b.types:
            continue
        if min_rating is not None and (b.rating or 0.0) < min_rating:
            continue
        score = _relevance(b, name_words, parsed.words)
        if score is None:
            continue
        if included_type is not None and included_type in b.types:
            score += 5.0
        if inside_bias is not None and inside_bias.contains(b.latitude, b.longitude):
            score += 10.0
        dist = distance_m(centre[0], centre[1], b.latitude, b.longitude)
        scored.append((score, dist, b.place_id, b))
    if rank == "DISTANCE":
        scored.sort(key=lambda s: (s[1], s[2]))
    else:
        scored.sort(key=lambda s: (-s[0], s[1], s[2]))
    results = [s[3] for s in scored[:MAX_TEXT_RESULTS]]
    page = results[offset : offset + size]
    following = offset + size
    next_token = tokens.issue(body, following) if following < len(results) else None
    return page, next_token


# --------------------------------------------------------------------------------------
# Nearby Search
# --------------------------------------------------------------------------------------


def nearby_search(world: World, body: dict[str, Any], guard: Guard | None = None) -> list[Business]:
    check_body_fields(body, NEARBY_BODY_FIELDS)
    restriction = body.get("locationRestriction")
    if restriction is None:
        raise rpc.invalid_argument("location_restriction is required.")
    area = parse_area(restriction, "location_restriction", circle=True, rectangle=False)
    assert isinstance(area, Disc)
    included = parse_types(body.get("includedTypes"), "includedTypes")
    excluded = parse_types(body.get("excludedTypes"), "excludedTypes")
    included_primary = parse_types(body.get("includedPrimaryTypes"), "includedPrimaryTypes")
    excluded_primary = parse_types(body.get("excludedPrimaryTypes"), "excludedPrimaryTypes")
    if included & excluded or included_primary & excluded_primary:
        raise rpc.invalid_argument("A type cannot be both included and excluded.")
    count = parse_size(body.get("maxResultCount"), "max_result_count")
    if count > MAX_PAGE_SIZE:
        raise rpc.invalid_argument("Invalid max_result_count: must be between 1 and 20.")
    rank = body.get("rankPreference", "POPULARITY")
    if rank not in ("POPULARITY", "DISTANCE", "RANK_PREFERENCE_UNSPECIFIED"):
        raise rpc.invalid_argument(f"Invalid rank_preference: {rank}.")
    if guard is not None:
        guard(area)

    found: list[tuple[float, float, str, Business]] = []
    for b, _ in world.businesses_in(area):
        if b.pure_service_area:
            continue  # no location to be near
        types = set(b.types)
        if included and not included & types:
            continue
        if excluded & types:
            continue
        if included_primary and b.primary_type not in included_primary:
            continue
        if b.primary_type in excluded_primary:
            continue
        dist = distance_m(area.lat, area.lng, b.latitude, b.longitude)
        found.append((-_prominence(b), dist, b.place_id, b))
    if rank == "DISTANCE":
        found.sort(key=lambda f: (f[1], f[2]))
    else:
        found.sort(key=lambda f: (f[0], f[1], f[2]))
    return [f[3] for f in found[:count]]


# --------------------------------------------------------------------------------------
# Place Details
# --------------------------------------------------------------------------------------

_PLACE_ID = re.compile(r"^[A-Za-z0-9_-]{6,}$")


def get_place(world: World, place_id: str, guard: Guard | None = None) -> Business:
    if not _PLACE_ID.match(place_id):
        raise rpc.invalid_argument(f"Not a valid Place ID: {place_id}")
    business = world.business(place_id)
    if business is None:
        raise rpc.not_found(
            f"It looks like the place ID '{place_id}' is no longer valid. Refresh it with a "
            "Place Details request for its id."
        )
    if guard is not None:
        guard(Disc(business.latitude, business.longitude, 0.0))
    return business
