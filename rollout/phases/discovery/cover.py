"""Which probed pages to buy: a greedy weighted set cover (phase 1, `cover` strategy).

Exploring a community with the IDs-only field mask costs nothing (Text Search Essentials IDs
Only is free), so the whole quadtree is walked first and every probed page's place ids are
kept. Each id then has to be bought once with the listing fields. Buying the first k pages of
a probed search costs k paid pages (a page token only comes with the page before it); one id
alone costs a Place Details request. The cheapest purchase list is a weighted set cover
(NP-hard); the greedy one picks, again and again, the search extension that adds the most
new ids per page, which is within a log factor of the optimum and, on the emulator's worlds,
about half the cost of paying every leaf as it is walked (bench/discovery_coverage.py).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True)
class ProbedSearch:
    key: str  # SearchTask.key of the probe
    pages: Sequence[Sequence[str]]  # place ids of each page, in page order


@dataclass(frozen=True)
class Purchase:
    key: str
    pages: int  # buy pages 1..pages of the search


@dataclass(frozen=True)
class CoverPlan:
    searches: list[Purchase]  # in the order chosen (most new ids per page first)
    details: list[str]  # ids no page is worth buying for: one Place Details each
    sighted: int  # distinct ids over all probed pages
    cost_usd: Decimal = field(default=Decimal(0))  # list price of the plan

    @property
    def pages(self) -> int:
        return sum(p.pages for p in self.searches)


def plan_cover(
    searches: Sequence[ProbedSearch],
    *,
    page_cost: Decimal,
    details_cost: Decimal,
    exclude: frozenset[str] = frozenset(),
) -> CoverPlan:
    """The purchases that fetch every sighted id (but those in `exclude`) at least once.

    Deterministic: ties go to the smaller key, so a retried activity plans the same list.
    A search extension is bought only while its pages cost less than the Place Details
    requests of the ids they add.
    """
    by_key = {s.key: [list(page) for page in s.pages] for s in searches}
    universe = {i for pages in by_key.values() for page in pages for i in page} - exclude
    covered: set[str] = set(exclude)
    bought: dict[str, int] = {}
    order: list[str] = []
    worth = details_cost / page_cost if page_cost else Decimal("Infinity")

    def best(key: str) -> tuple[float, int]:
        """Most new ids per page over the extensions of `key`, and its page count."""
        pages = by_key[key]
        have = bought.get(key, 0)
        new: set[str] = set()
        top, top_k = 0.0, 0
        for k in range(have + 1, len(pages) + 1):
            new.update(i for i in pages[k - 1] if i not in covered)
            ratio = len(new) / (k - have)
            if ratio > top:
                top, top_k = ratio, k
        return top, top_k

    heap = [(-best(key)[0], key) for key in sorted(by_key)]
    heapq.heapify(heap)
    while heap and len(covered & universe) < len(universe):
        _, key = heapq.heappop(heap)
        ratio, k = best(key)  # the stale entry's ratio can only have dropped
        if heap and (-ratio, key) > heap[0]:
            heapq.heappush(heap, (-ratio, key))
            continue
        if ratio == 0 or Decimal(ratio) * worth <= 1:
            break  # the best page adds too few ids: Place Details are cheaper from here
        for page in by_key[key][bought.get(key, 0) : k]:
            covered.update(page)
        if key not in bought:
            order.append(key)
        bought[key] = k
        heapq.heappush(heap, (-best(key)[0], key))

    details = sorted(universe - covered)
    purchases = [Purchase(key, bought[key]) for key in order]
    cost = page_cost * sum(bought.values()) + details_cost * len(details)
    return CoverPlan(searches=purchases, details=details, sighted=len(universe), cost_usd=cost)
