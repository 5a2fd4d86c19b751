"""What a rollout will cost before anything is spent: requests and list price by SKU.

A model, not a measurement: it needs no database and makes no request. For each community
it assumes about one business per RESIDENTS_PER_BUSINESS residents (US establishments with
employees are roughly one per 40 people), and that each category or catch-all query matches
a share of them:
- a dense category or query matching m businesses costs ceil(m / 20) paid pages (at least
  one) while m <= 60; beyond the 60-result cap the quadtree takes over: about m / 45 leaf
  cells (cells fill about three quarters of the cap) at up to 3 paid pages each, plus the
  free IDs-only probes of the cells above them (4/3 as many cells, 3 pages each);
- a sparse category costs one Nearby Search (plus the dense treatment when it would return
  20 or more);
- the stream model counts every match once per search that matches it, but knows no
  overlap between searches (a business found by its category and a catch-all query is
  paid twice by stream: bench/discovery_coverage.py measured 3.1-3.5 paid sightings per
  unique business in cities), so it underestimates stream in cities;
- with the cover strategy (the default) every search above is walked with free probes
  only, sparse categories too, and the purchase list buys the businesses the searches match
  (together, capped at all of them) at COVER_IDS_PER_PAGE per paid page, plus one Place
  Details for COVER_DETAILS_SHARE of them (both measured on the emulator's worlds by
  bench/discovery_coverage.py);
- a search box takes in every matching business inside it, the neighbours' too: the
  businesses of communities outside the estimate whose centre lies in a searched box are
  bought as well (once; within the estimate a place a neighbour bought is not bought again,
  DISCOVERY_FRESH_DAYS);
- enrichment costs no Places request: phase 1's pages carry the enrichment fields (same
  SKU), and phase 4 enriches from the businesses' own websites. With
  DISCOVERY_ATMOSPHERE=true every paid page and Place Details bills at its Atmosphere SKU.
Prices come from the dated price list (rollout/places/pricing.py), at the first paid tier;
`after_free_caps` applies the monthly free caps and volume tiers as if the rollout were the
billing account's only use of the SKU that month.

Calibrated on the emulator (bench/estimate_calibration.py, seed 1, default category lists)
after the planner's Lagrangian cover (rollout/phases/discovery/cover.py): Delaware (56
communities) billed $24.68 for 10,292 businesses, Little Rock, AR alone (pop. 202,591)
$17.47 for 7,598; the estimate is within 3% of both (target 15%). The paid page fill
(COVER_IDS_PER_PAGE, 15.5 ids) and the Place Details share (0.3% of the ids) are what the
planner measured there.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from rollout.communities import CommunityRecord, region_radius_m
from rollout.phases.discovery.payloads import DiscoveryStrategy
from rollout.phases.discovery.planning import (
    PROBE_MASK,
    TEXT_SEARCH_CAP,
    DiscoverySettings,
    bounding_box,
)
from rollout.places.pricing import (
    Endpoint,
    free_monthly_cap,
    monthly_cost,
    request_cost,
    sku_for,
)
from rollout.retention import REFRESH_AFTER_DAYS

RESIDENTS_PER_BUSINESS = 40
DENSE_SHARE = 0.03  # of a community's businesses matched by one dense category or query
SPARSE_SHARE = 0.006  # ... by one sparse category
LEAF_FILL = 45  # results in an average quadtree leaf (the cap is 60)
PAGE = 20
COVER_IDS_PER_PAGE = 15.5
COVER_DETAILS_SHARE = 0.003


@dataclass(frozen=True)
class SkuEstimate:
    sku: str
    requests: int
    cost_usd: Decimal
    free_monthly_cap: int | None

    @property
    def after_free_caps(self) -> Decimal:
        """The SKU's cost in a month with nothing else billed to it: the free cap first,
        then the volume tiers."""
        return monthly_cost(self.sku, self.requests)


@dataclass(frozen=True)
class Estimate:
    communities: int
    businesses: int
    skus: list[SkuEstimate]
    # PLACES_CONTENT_POLICY=refresh: every business's Google content re-fetched with one Place
    # Details before it is 30 days old (rollout/retention.py), a month's worth, list price.
    refresh_requests_per_month: int = 0
    refresh_sku: str = ""

    @property
    def refresh_monthly_usd(self) -> Decimal:
        if not self.refresh_requests_per_month:
            return Decimal(0)
        return request_cost(self.refresh_sku) * self.refresh_requests_per_month

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.skus)

    @property
    def cost_usd(self) -> Decimal:
        return sum((s.cost_usd for s in self.skus), Decimal(0))

    @property
    def after_free_caps(self) -> Decimal:
        return sum((s.after_free_caps for s in self.skus), Decimal(0))


def _text_requests(matches: float) -> tuple[int, int]:
    """(paid pages, free probe pages) for one dense search of `matches` results (stream)."""
    if matches <= TEXT_SEARCH_CAP:
        return max(1, math.ceil(matches / PAGE)), 0
    paid = 3 + math.ceil(matches / LEAF_FILL) * 3  # the saturated root is paid, then every leaf
    return paid, _probe_pages(matches) - 3  # every cell below the root is probed


def _probe_pages(matches: float) -> int:
    """Free probe pages of one search of `matches` results walked to its leaves (cover:
    the root too; about 4/3 as many cells as leaves above them, 3 pages each)."""
    if matches <= TEXT_SEARCH_CAP:
        return max(1, math.ceil(matches / PAGE))
    leaves = math.ceil(matches / LEAF_FILL)
    return 3 + math.ceil(leaves * 4 / 3) * 3


def _businesses(record: CommunityRecord) -> float:
    return max(record.population / RESIDENTS_PER_BUSINESS, 15)


def neighbours_in_boxes(
    communities: Sequence[CommunityRecord], everywhere: Sequence[CommunityRecord]
) -> list[CommunityRecord]:
    """Communities not being rolled out whose centre lies in the search box of one that
    is: a search returns every matching business in its box, so their businesses are bought
    too (once: a rollout does not buy a place again that a neighbour bought)."""
    grid: dict[tuple[int, int], list[CommunityRecord]] = defaultdict(list)
    for record in everywhere:
        grid[(math.floor(record.latitude), math.floor(record.longitude))].append(record)
    inside = {r.id for r in communities}
    found: dict[int, CommunityRecord] = {}
    for record in communities:
        box = bounding_box(record.latitude, record.longitude, region_radius_m(record.population))
        for lat in range(math.floor(box.south), math.floor(box.north) + 1):
            for lng in range(math.floor(box.west), math.floor(box.east) + 1):
                for other in grid.get((lat, lng), ()):
                    if other.id in inside or other.id in found:
                        continue
                    if box.south <= other.latitude <= box.north and (
                        box.west <= other.longitude <= box.east
                    ):
                        found[other.id] = other
    return list(found.values())


def estimate(
    communities: Sequence[CommunityRecord],
    settings: DiscoverySettings,
    *,
    everywhere: Sequence[CommunityRecord] = (),
) -> Estimate:
    """`everywhere`: every community there is (load_communities()), to count the
    neighbours' businesses the searches' boxes take in; without it, none are counted."""
    text_sku = sku_for(Endpoint.SEARCH_TEXT, settings.search_mask)
    probe_sku = sku_for(Endpoint.SEARCH_TEXT, PROBE_MASK)
    nearby_sku = sku_for(Endpoint.SEARCH_NEARBY, settings.search_mask.replace(",nextPageToken", ""))
    requests: dict[str, int] = defaultdict(int)
    businesses = 0
    dense = len(settings.dense_categories) + len(settings.text_queries)
    cover = settings.strategy is DiscoveryStrategy.COVER
    details_sku = sku_for(Endpoint.GET_PLACE, settings.details_mask)
    matched_share = min(1.0, dense * DENSE_SHARE + len(settings.sparse_categories) * SPARSE_SHARE)
    neighbours = neighbours_in_boxes(communities, everywhere) if everywhere else []
    extra = sum(_businesses(n) for n in neighbours)
    for community in communities:
        found = _businesses(community)
        businesses += round(found)
        if cover:
            requests[probe_sku] += dense * _probe_pages(found * DENSE_SHARE)
            requests[probe_sku] += len(settings.sparse_categories) * _probe_pages(
                found * SPARSE_SHARE
            )
            matched = found * matched_share
            requests[text_sku] += math.ceil(matched / COVER_IDS_PER_PAGE)
            requests[details_sku] += round(matched * COVER_DETAILS_SHARE)
            continue
        paid, probes = _text_requests(found * DENSE_SHARE)
        requests[text_sku] += dense * paid
        requests[probe_sku] += dense * probes
        sparse_matches = found * SPARSE_SHARE
        requests[nearby_sku] += len(settings.sparse_categories)
        if sparse_matches >= PAGE:
            paid, probes = _text_requests(sparse_matches)
            requests[text_sku] += len(settings.sparse_categories) * paid
            requests[probe_sku] += len(settings.sparse_categories) * probes
    if cover and extra:
        # The neighbours' businesses in the boxes: probed with the searches above (no
        # more probes), bought like the communities' own.
        matched = extra * matched_share
        requests[text_sku] += math.ceil(matched / COVER_IDS_PER_PAGE)
        requests[details_sku] += round(matched * COVER_DETAILS_SHARE)
        businesses += round(extra)
    skus = [
        SkuEstimate(
            sku=sku,
            requests=n,
            cost_usd=request_cost(sku) * n,
            free_monthly_cap=free_monthly_cap(sku),
        )
        for sku, n in sorted(requests.items())
        if n
    ]
    # A refresh every REFRESH_AFTER_DAYS days keeps content under the 30-day limit.
    refreshes = math.ceil(businesses * 30 / REFRESH_AFTER_DAYS)
    return Estimate(
        communities=len(communities),
        businesses=businesses,
        skus=skus,
        refresh_requests_per_month=refreshes,
        refresh_sku=details_sku,
    )
