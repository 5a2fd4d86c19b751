"""The cover strategy's purchase planner (rollout/phases/discovery/cover.py), on hand-made
probes."""

from __future__ import annotations

import itertools
import random
from decimal import Decimal

from rollout.phases.discovery.cover import ProbedSearch, Purchase, plan_cover
from rollout.phases.discovery.payloads import DiscoveryStrategy, SearchKind
from rollout.phases.discovery.planning import DETAILS_MASK, SEARCH_MASK, DiscoverySettings, plan
from rollout.places.pricing import Endpoint, request_cost, sku_for

PAGE = request_cost(sku_for(Endpoint.SEARCH_TEXT, SEARCH_MASK))
DETAILS = request_cost(sku_for(Endpoint.GET_PLACE, DETAILS_MASK))


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def test_the_prices_are_the_enterprise_skus() -> None:
    assert sku_for(Endpoint.SEARCH_TEXT, SEARCH_MASK) == "Text Search Enterprise"
    assert sku_for(Endpoint.GET_PLACE, DETAILS_MASK) == "Place Details Enterprise"
    assert Decimal("0.035") == PAGE
    assert Decimal("0.02") == DETAILS


def test_one_search_is_bought_to_its_last_useful_page() -> None:
    a = ids("a", 45)
    plan = plan_cover(
        [ProbedSearch("cafes", [a[:20], a[20:40], a[40:]])], page_cost=PAGE, details_cost=DETAILS
    )
    assert plan.searches == [Purchase("cafes", 3)]
    assert plan.details == []
    assert plan.sighted == 45
    assert plan.cost_usd == 3 * PAGE


def test_a_search_whose_ids_another_holds_is_not_bought() -> None:
    shared = ids("s", 20)
    plan = plan_cover(
        [
            ProbedSearch("restaurant", [shared]),
            ProbedSearch("local business", [shared, ids("x", 20)]),
        ],
        page_cost=PAGE,
        details_cost=DETAILS,
    )
    # Two full pages of "local business" hold everything; the restaurant page adds nothing.
    assert plan.searches == [Purchase("local business", 2)]
    assert plan.pages == 2


def test_pages_after_the_last_new_id_are_not_bought() -> None:
    a, b = ids("a", 40), ids("b", 20)
    plan = plan_cover(
        [ProbedSearch("wide", [a[:20], a[20:], b]), ProbedSearch("b-only", [b])],
        page_cost=PAGE,
        details_cost=DETAILS,
    )
    assert plan.pages == 3  # wide's 3 pages, or 2 of them and b-only: never 4
    assert plan.sighted == 60


def test_lone_ids_are_bought_by_place_details() -> None:
    # A page that adds one id costs $0.035 against $0.020 for its details.
    lone = ProbedSearch("florist", [["f1", *ids("c", 19)]])
    full = ProbedSearch("catch-all", [ids("c", 20)])
    plan = plan_cover([lone, full], page_cost=PAGE, details_cost=DETAILS)
    # One page and one id alone, whichever page it is (both cost the same).
    assert plan.pages == 1
    assert len(plan.details) == 1
    assert plan.cost_usd == PAGE + DETAILS

    two = ProbedSearch("florist", [["f1", "f2", *ids("c", 18)]])
    plan = plan_cover([two, full], page_cost=PAGE, details_cost=DETAILS)
    assert Purchase("florist", 1) in plan.searches  # 2 ids for $0.035 beat $0.040
    assert plan.details == []


def test_excluded_ids_are_neither_bought_nor_counted() -> None:
    plan = plan_cover(
        [ProbedSearch("x", [ids("a", 20)])],
        page_cost=PAGE,
        details_cost=DETAILS,
        exclude=frozenset(ids("a", 20)),
    )
    assert plan.searches == []
    assert plan.details == []
    assert plan.sighted == 0


def test_every_id_is_covered_and_the_plan_does_not_depend_on_input_order() -> None:
    rng = random.Random(5)
    universe = ids("p", 600)
    searches = []
    for n in range(60):
        chosen = rng.sample(universe, rng.randint(1, 60))
        searches.append(ProbedSearch(f"s{n}", [chosen[i : i + 20] for i in range(0, 60, 20)]))
    searches = [ProbedSearch(s.key, [p for p in s.pages if p]) for s in searches]
    plan = plan_cover(searches, page_cost=PAGE, details_cost=DETAILS)
    by_key = {s.key: s for s in searches}
    got = {i for p in plan.searches for page in by_key[p.key].pages[: p.pages] for i in page}
    sighted = {i for s in searches for page in s.pages for i in page}
    assert got | set(plan.details) == sighted
    assert not got & set(plan.details)
    assert plan.sighted == len(sighted)
    shuffled = list(searches)
    rng.shuffle(shuffled)
    assert plan_cover(shuffled, page_cost=PAGE, details_cost=DETAILS) == plan
    # Cheaper than buying every probed page.
    every = sum(len(s.pages) for s in searches) * PAGE
    assert plan.cost_usd < every


def quadtree_cell(leaves: int = 4) -> list[ProbedSearch]:
    """A saturated cell over `leaves` leaves of 25 places each: the cell's three full pages
    hold the 15 best of each leaf, which are also the heads of the leaves' own first pages."""
    searches = [ProbedSearch("cell", [])]
    heads: list[str] = []
    for n in range(leaves):
        leaf = ids(f"l{n}-", 25)
        heads += leaf[:15]
        searches.append(ProbedSearch(f"leaf{n}", [leaf[:20], leaf[20:]]))
    top = heads[:60]
    return [ProbedSearch("cell", [top[:20], top[20:40], top[40:]]), *searches[1:]]


def test_a_saturated_cell_is_not_bought_for_the_heads_of_its_leaves() -> None:
    # The plain greedy took the cell's three full pages first (20 new ids each), then still
    # had to buy both pages of every leaf for its tail: 11 pages for 100 places. The leaves
    # alone hold everything in 8.
    plan = plan_cover(quadtree_cell(), page_cost=PAGE, details_cost=DETAILS)
    assert plan.searches == [Purchase(f"leaf{n}", 2) for n in range(4)]
    assert plan.details == []
    assert plan.cost_usd == 8 * PAGE
    assert 8 * PAGE - Decimal("0.001") <= plan.bound_usd <= 8 * PAGE  # none is cheaper
    assert plan.sighted == 100


def test_searches_holding_the_same_ids_are_one_purchase() -> None:
    a = ids("a", 30)
    twins = [
        ProbedSearch("text:shop:cell", [a[:20], a[20:]]),
        # The same places, ranked a little differently within each page.
        ProbedSearch("text:local business:cell", [a[19::-1], a[:19:-1]]),
    ]
    plan = plan_cover(twins, page_cost=PAGE, details_cost=DETAILS)
    assert plan.searches == [Purchase("text:local business:cell", 2)]


def optimum(searches: list[ProbedSearch]) -> Decimal:
    """The cheapest plan, by trying every number of pages of every search."""
    sighted = {i for s in searches for page in s.pages for i in page}
    best = len(sighted) * DETAILS
    for counts in itertools.product(*(range(len(s.pages) + 1) for s in searches)):
        got = {i for s, k in zip(searches, counts, strict=True) for p in s.pages[:k] for i in p}
        best = min(best, sum(counts) * PAGE + len(sighted - got) * DETAILS)
    return best


def test_the_plan_is_at_or_near_the_optimum_on_small_worlds() -> None:
    costs: list[tuple[Decimal, Decimal]] = []
    for seed in range(120):
        rng = random.Random(seed)
        universe = ids("p", rng.randint(10, 40))
        searches = []
        for n in range(rng.randint(2, 5)):
            chosen = rng.sample(universe, min(len(universe), rng.randint(1, 60)))
            size = rng.randint(3, 20)  # pages under 20: ids already bought are left out
            pages = [chosen[i : i + size] for i in range(0, len(chosen), size)][:3]
            searches.append(ProbedSearch(f"s{n}", pages))
        plan = plan_cover(searches, page_cost=PAGE, details_cost=DETAILS)
        best = optimum(searches)
        assert plan.bound_usd <= best  # the relaxation's bound holds
        costs.append((plan.cost_usd, best))
    assert all(got >= best for got, best in costs)
    assert sum(got == best for got, best in costs) >= 0.95 * len(costs)
    assert max(got / best for got, best in costs) <= Decimal("1.05")


def test_the_cover_plan_probes_every_search_and_asks_for_service_area_businesses() -> None:
    settings = DiscoverySettings(
        dense_categories=["cafe"], sparse_categories=["plumber"], text_queries=["shop"]
    )
    tasks = plan(settings, 39.0, -75.5, 5_000)
    assert [t.label for t in tasks] == ["cafe", "plumber", "shop"]
    assert all(t.kind is SearchKind.TEXT and t.probe and t.service_area for t in tasks)
    assert tasks[1].included_type == "plumber"

    stream = plan(
        settings.model_copy(update={"strategy": DiscoveryStrategy.STREAM}), 39.0, -75.5, 5_000
    )
    assert [t.kind for t in stream] == [SearchKind.TEXT, SearchKind.NEARBY, SearchKind.TEXT]
    assert not any(t.probe or t.service_area for t in stream)
