"""Which probed pages to buy: a weighted set cover (phase 1, `cover` strategy).

Exploring a community with the IDs-only field mask costs nothing (Text Search Essentials IDs
Only is free), so the whole quadtree is walked first and every probed page's place ids are
kept. Each id then has to be bought once with the listing fields. Buying the first k pages of
a probed search costs k paid pages (a page token only comes with the page before it); one id
alone costs a Place Details request. The cheapest purchase list is a weighted set cover
(NP-hard).

The plain greedy (again and again the search extension with the most new ids per page) goes
wrong on quadtrees: a saturated cell's three full pages look best, but its 60 ids are the
heads of the leaves below it, whose tails must be bought anyway, so those ids are paid twice
(Houston on the emulator: 1.40 paid sightings per id, $3.42 per 1,000 businesses). So the
planner prices the ids instead, by Lagrangian relaxation (Beasley's method for set covering):
each id gets a price, at most its Place Details; a search's first k pages are worth buying
when they cost less than the prices of the ids on them; subgradient steps raise the price of
ids nothing covers and lower the price of ids covered twice, which drives the prices toward
the dual of the linear relaxation, a lower bound on any plan's cost. Every few steps the
pages the prices favour are repaired into a full cover (the greedy for what they leave, then
redundant pages dropped, dearest first, and lone ids moved to Place Details), and the
cheapest cover found is the plan. On the emulator's worlds it lands within 0.1% of the
optimum an integer-programming solver finds (Houston $73.34 against $73.33, South Bend $8.70
against $8.695; bench/discovery_coverage.py), about two thirds of what the greedy paid.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from operator import mul


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
    searches: list[Purchase]  # in key order
    details: list[str]  # ids no page is worth buying for: one Place Details each
    sighted: int  # distinct ids over all probed pages
    cost_usd: Decimal = field(default=Decimal(0))  # list price of the plan
    # No plan over these probes costs less (the best relaxation), so cost_usd - bound_usd is
    # the most a better planner could save.
    bound_usd: Decimal = field(default=Decimal(0))

    @property
    def pages(self) -> int:
        return sum(p.pages for p in self.searches)


# Subgradient steps: Houston's prices settle within about 100 (the plan no longer changes
# after that); each costs one pass over the probed pages (about 15 ms there). WORK caps the
# steps times the probed sightings, so the largest city stays within the activity's time
# (New York: 57 steps, a plan 0.1% above the optimum of the linear relaxation).
STEPS = 100
WORK = 50_000_000
REPAIR_EVERY = 25  # steps between two repairs into a full cover
PATIENCE = 10  # steps without a better bound before the step size is halved
FIRST_STEP = 2.0


@dataclass
class _Instance:
    """The probed searches as integers: search n's pages, each a list of id numbers."""

    keys: list[str]  # sorted, so the plan does not depend on the input order
    pages: list[list[list[int]]]
    ids: list[str]


@dataclass(frozen=True)
class _Cover:
    pages: int
    bought: list[int]  # pages bought of each search
    details: list[int]  # ids bought alone


def _instance(searches: Sequence[ProbedSearch], exclude: frozenset[str]) -> _Instance:
    number: dict[str, int] = {}
    keys: list[str] = []
    pages: list[list[list[int]]] = []
    seen: set[tuple[frozenset[int], ...]] = set()
    for search in sorted(searches, key=lambda s: s.key):
        numbered = [
            [number.setdefault(i, len(number)) for i in page if i not in exclude]
            for page in search.pages
        ]
        while numbered and not numbered[-1]:
            numbered.pop()  # pages with nothing left to buy at the end are never worth it
        # Searches whose pages hold the same ids are the same purchase (a catch-all query
        # and its twin, "shop" and "local business", in cells below the cap): the first key
        # stands for all, which also spares a quarter of Houston's searches.
        same = tuple(frozenset(page) for page in numbered)
        if numbered and same not in seen:
            seen.add(same)
            keys.append(search.key)
            pages.append(numbered)
    ids = [""] * len(number)
    for place_id, n in number.items():
        ids[n] = place_id
    return _Instance(keys, pages, ids)


def _best_prefix(pages: list[list[int]], price: list[float], page_cost: float) -> tuple[int, float]:
    """How many first pages cost less than the prices of their ids (0: none), and by how
    much (the relaxation's term for the search, <= 0)."""
    run, lowest, best = 0.0, 0.0, 0
    for k, page in enumerate(pages, 1):
        run += page_cost - sum(map(price.__getitem__, page))
        if run < lowest:
            lowest, best = run, k
    return best, lowest


def _repair(inst: _Instance, price: list[float], page_cost: float, details_cost: float) -> _Cover:
    """A full cover from the pages `price` favours."""
    searches = range(len(inst.pages))
    bought = [_best_prefix(pages, price, page_cost)[0] for pages in inst.pages]
    count = [0] * len(inst.ids)  # purchases that fetch each id
    for n in searches:
        for page in inst.pages[n][: bought[n]]:
            for i in page:
                count[i] += 1

    # What the prices left uncovered: the extension with the most new ids per page while a
    # page beats the Place Details of the ids it adds.
    def extension(n: int) -> tuple[float, int]:
        pages, have = inst.pages[n], bought[n]
        new, top, top_k = 0, 0.0, 0
        for k in range(have + 1, len(pages) + 1):
            new += sum(1 for i in pages[k - 1] if not count[i])
            if new / (k - have) > top:
                top, top_k = new / (k - have), k
        return top, top_k

    heap = [(-extension(n)[0], n) for n in searches]
    heapq.heapify(heap)
    while heap:
        _, n = heapq.heappop(heap)
        ratio, k = extension(n)  # the stale entry's ratio can only have dropped
        if heap and (-ratio, n) > heap[0]:
            heapq.heappush(heap, (-ratio, n))
            continue
        if ratio * details_cost <= page_cost:
            break
        for page in inst.pages[n][bought[n] : k]:
            for i in page:
                count[i] += 1
        bought[n] = k
        heapq.heappush(heap, (-extension(n)[0], n))
    details = {i for i, c in enumerate(count) if not c}
    for i in details:
        count[i] = 1

    # Drop last pages whose ids all come with other purchases, the dearest for their ids'
    # prices first; then those whose only ids are cheaper as Place Details.
    def surplus(n: int) -> float:
        return page_cost - sum(map(price.__getitem__, inst.pages[n][bought[n] - 1]))

    for to_details in (False, True):
        queue = [(-surplus(n), n) for n in searches if bought[n]]
        heapq.heapify(queue)
        while queue:
            _, n = heapq.heappop(queue)
            page = inst.pages[n][bought[n] - 1]
            lone = [i for i in page if count[i] == 1]
            if lone and not (to_details and len(lone) * details_cost < page_cost):
                continue
            for i in page:
                count[i] -= 1
            for i in lone:
                count[i] = 1
                details.add(i)
            bought[n] -= 1
            if bought[n]:
                heapq.heappush(queue, (-surplus(n), n))
    return _Cover(sum(bought), bought, sorted(details))


class _Relaxation:
    """The Lagrangian relaxation at the current prices: each search's best prefix, and how
    many of the chosen pages fetch each id (updated only where a prefix changed)."""

    def __init__(self, inst: _Instance, price: list[float], page_cost: float) -> None:
        self.price, self.page_cost = price, page_cost
        self.flat: list[list[int]] = []  # every page of every search, in order
        self.first: list[int] = []  # the first page of each search in `flat`
        for pages in inst.pages:
            self.first.append(len(self.flat))
            self.flat += pages
        self.first.append(len(self.flat))
        self.chosen = [0] * len(inst.pages)
        self.fetched = [0] * len(inst.ids)

    def value(self) -> float:
        """The relaxation's value at the current prices (a lower bound on any cover's
        cost), choosing each search's best prefix afresh."""
        get = self.price.__getitem__
        reduced = [self.page_cost - sum(map(get, ids)) for ids in self.flat]
        total = sum(self.price)
        for n, had in enumerate(self.chosen):
            start, end = self.first[n], self.first[n + 1]
            run, lowest, k = 0.0, 0.0, 0
            for j in range(start, end):
                run += reduced[j]
                if run < lowest:
                    lowest, k = run, j - start + 1
            total += lowest
            if k != had:
                change = 1 if k > had else -1
                for f in range(start + min(k, had), start + max(k, had)):
                    for i in self.flat[f]:
                        self.fetched[i] += change
                self.chosen[n] = k
        return total


def plan_cover(
    searches: Sequence[ProbedSearch],
    *,
    page_cost: Decimal,
    details_cost: Decimal,
    exclude: frozenset[str] = frozenset(),
) -> CoverPlan:
    """The purchases that fetch every sighted id (but those in `exclude`) at least once.

    Deterministic: the searches are taken in key order and every step is a fixed sequence of
    float operations, so a retried activity plans the same list.
    """
    inst = _instance(searches, exclude)
    page, details = float(page_cost), float(details_cost)

    def cost(cover: _Cover) -> Decimal:
        return page_cost * cover.pages + details_cost * len(cover.details)

    # Start from each id's cheapest share of a page it is on (or its Place Details).
    price = [details] * len(inst.ids)
    for pages in inst.pages:
        for ids in pages:
            share = page / len(ids) if ids else page
            for i in ids:
                price[i] = min(price[i], share)
    best = _repair(inst, price, page, details)
    relaxation = _Relaxation(inst, price, page)
    bound, step, stale = float("-inf"), FIRST_STEP, 0
    sightings = sum(len(ids) for pages in inst.pages for ids in pages)
    steps = max(1, min(STEPS, WORK // max(sightings, 1)))
    for n in range(1, steps + 1):
        relaxed = relaxation.value()
        if relaxed > bound:
            bound, stale = relaxed, 0
        else:
            stale += 1
            if stale >= PATIENCE:
                step, stale = step / 2, 0
        # Raise the price of ids no chosen page fetches, lower it for ids fetched twice.
        fetched = relaxation.fetched
        moved = [i for i, f in enumerate(fetched) if f != 1]
        slopes = [1 - fetched[i] for i in moved]
        norm = sum(map(mul, slopes, slopes))
        last = not norm or n == steps  # no norm: these prices' pages fetch each id once
        if last or n % REPAIR_EVERY == 0:
            cover = _repair(inst, price, page, details)
            if cost(cover) < cost(best):
                best = cover
        gap = float(cost(best)) - relaxed
        if last or gap <= 0:
            break  # gap <= 0: no cover is cheaper than the best one
        move = step * gap / norm
        for i, g in zip(moved, slopes, strict=True):
            p = price[i] + move * g
            price[i] = 0.0 if p < 0.0 else details if p > details else p

    purchases = [Purchase(key, k) for key, k in zip(inst.keys, best.bought, strict=True) if k]
    return CoverPlan(
        searches=purchases,
        details=sorted(inst.ids[i] for i in best.details),
        sighted=len(inst.ids),
        cost_usd=cost(best),
        bound_usd=Decimal(max(bound, 0.0)).quantize(Decimal("0.0001"), ROUND_FLOOR),
    )
