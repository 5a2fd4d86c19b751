"""Benchmark: phase 1 coverage and cost on emulator worlds, ours against the Laravel strategy.

    .venv/bin/python bench/discovery_coverage.py [--communities 4055045,4926563,4699066]
        [--streams 4] [--seed 1] [--min-cell-deg D] [--strategies laravel,stream,cover]

What runs (loopback only): `placesim` as a real HTTP server on a free port (no per-minute or
per-day quota: the quota is bench/places_quota.py's subject), and the real
`rollout.places.client.PlacesClient` against it. For each community and strategy the
emulator's meter is reset, the strategy runs, and the bill is read back from /sim/billing.

Strategies (all with the same paid field mask,
`rollout.phases.discovery.planning.SEARCH_MASK`, Enterprise):
- laravel: one Text Search per dense category (includedType, the region's bounding box) of at
  most 3 pages (60 results), one Nearby Search per sparse category (the region circle), one
  Text Search per catch-all query (3 pages at most); no splitting, no escalation;
- stream (DISCOVERY_STRATEGY=stream): `rollout.phases.discovery.planning.plan` +
  `follow_ups`, walked as
  CommunityDiscoveryWorkflow walks its frontier (`--streams` searches at once, each paged to
  its end, one request at a time, then its follow-ups appended), with the masks of the
  `places_search_page` activity: PROBE_MASK (IDs only, free) for probe cells, SEARCH_MASK
  otherwise. Only paid pages count as found, as only they are stored by the activity;
- cover (the default): every search and cell walked with PROBE_MASK (free), then the
  purchase list of `rollout.phases.discovery.cover.plan_cover` bought: the first
  pages of probed searches
  with SEARCH_MASK and Place Details (DETAILS_MASK, Enterprise) for lone ids.

Ground truth: GET /sim/world?community_id=ID (the community's own businesses). Recall is
reported three ways:
- raw: found / all of the community's businesses;
- findable: pure service-area businesses left out: laravel and stream search without
  includePureServiceAreaBusinesses and cannot see them, cover (DISCOVERY_INCLUDE_SERVICE_AREA,
  default on) asks for them, and Google returns them without an address or location; closed
  businesses stay in (the API returns them);
- in-category (the fair comparison): findable businesses whose types intersect the configured
  dense + sparse categories.
Searches also return businesses of neighbouring communities inside the region's box: they are
real businesses the activity stores, so "$/1k unique" divides the cost by every unique place
id a paid page returned; "$/1k own" divides it by the community's own businesses found.
The last table splits each cost into the floor (every unique place once, in full pages) and
what the run pays above it: empty slots on paid pages, places fetched more than once, and
the Place Details premium over a page slot.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from placesim.process import PlacesimServer
from rollout.communities import CommunityRecord, load_communities, region_radius_m
from rollout.phases.discovery.cover import ProbedSearch, plan_cover
from rollout.phases.discovery.payloads import Box, DiscoveryStrategy, SearchKind, SearchTask
from rollout.phases.discovery.planning import (
    DETAILS_MASK,
    PAGE_SIZE,
    SEARCH_MASK,
    TEXT_SEARCH_CAP,
    DiscoverySettings,
    bounding_box,
    explore_follow_ups,
    follow_ups,
    plan,
)
from rollout.phases.discovery.requests import search_page
from rollout.places.client import PlacesClient
from rollout.places.models import SearchPage
from rollout.places.pricing import Endpoint, request_cost, sku_for
from rollout.settings import EMULATOR_API_KEY

# A ~5k town, a ~100k city, one of the largest (dense) cities in us_communities.csv.
DEFAULT_COMMUNITIES = (4055045, 4926563, 4699066)  # Childersburg AL, South Bend IN, Houston TX
LARAVEL_MAX_PAGES = 3


@dataclass
class Run:
    strategy: str
    requests: int = 0
    paid_requests: int = 0
    probe_requests: int = 0
    cost: Decimal = Decimal(0)  # summed from the client's per-request cost
    found: set[str] = field(default_factory=set)  # ids returned by paid pages
    paid_results: int = 0  # results of paid pages, duplicates included
    floor_saturated: int = 0  # searches still saturated at min_cell_deg
    max_depth: int = 0
    wall_s: float = 0.0
    billed_cost: Decimal = Decimal(0)
    billed_requests: int = 0
    # Paid pages and their results by the kind of search ("category" or "catch-all"), and
    # the paid pages of root searches that turned out saturated (their results are found
    # again, and paid again, by the cells below them).
    paid_by_group: Counter[str] = field(default_factory=Counter)
    results_by_group: Counter[str] = field(default_factory=Counter)
    saturated_root_pages: int = 0
    missed: int = 0  # cover: probed ids that no paid request returned (nor were known)
    planned: Decimal = Decimal(0)  # cover: the purchase plan's list price
    bound: Decimal = Decimal(0)  # cover: no plan of the same probes costs less
    sighted: set[str] = field(default_factory=set)  # cover: ids the free probes saw


def group(task: SearchTask) -> str:
    return "category" if task.included_type is not None else "catch-all"


def account(run: Run, task: SearchTask, page: SearchPage) -> None:
    run.requests += 1
    run.cost += page.cost
    if task.probe:
        run.probe_requests += 1
        return
    run.paid_requests += 1
    run.paid_results += page.result_count
    run.paid_by_group[group(task)] += 1
    run.results_by_group[group(task)] += page.result_count
    run.found.update(p.id for p in page.places)


async def run_laravel(
    places: PlacesClient, settings: DiscoverySettings, record: CommunityRecord, streams: int
) -> Run:
    """One search per category or query, no splitting: at most 3 pages of a Text Search."""
    run = Run("laravel")
    radius = region_radius_m(record.population)
    # The same roots as the stream strategy (paid, Nearby for sparse categories).
    settings = settings.model_copy(update={"strategy": DiscoveryStrategy.STREAM})
    tasks = plan(settings, record.latitude, record.longitude, radius)

    async def search(task: SearchTask) -> None:
        token: str | None = None
        for _ in range(LARAVEL_MAX_PAGES):
            page = await search_page(places, task, token)
            account(run, task, page)
            if task.kind is SearchKind.NEARBY or not page.next_page_token:
                return
            token = page.next_page_token

    queue = deque(tasks)

    async def worker() -> None:
        while queue:
            await search(queue.popleft())

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(streams)))
    run.wall_s = time.monotonic() - started
    return run


async def run_stream(
    places: PlacesClient, settings: DiscoverySettings, record: CommunityRecord, streams: int
) -> Run:
    """The `stream` strategy: CommunityDiscoveryWorkflow's frontier loop, without Temporal."""
    settings = settings.model_copy(update={"strategy": DiscoveryStrategy.STREAM})
    run = Run("stream")
    radius = region_radius_m(record.population)
    root_box: Box = bounding_box(record.latitude, record.longitude, radius)
    rules = settings.rules
    frontier: list[SearchTask] = list(plan(settings, record.latitude, record.longitude, radius))

    async def stream(task: SearchTask) -> None:
        total = 0
        paid_pages = 0
        token: str | None = None
        while True:
            page = await search_page(places, task, token)
            account(run, task, page)
            total += page.result_count
            paid_pages += 0 if task.probe else 1
            if task.kind is SearchKind.NEARBY or not page.next_page_token:
                break
            token = page.next_page_token
        run.max_depth = max(run.max_depth, task.depth)
        if task.kind is SearchKind.TEXT and task.depth == 0 and total >= TEXT_SEARCH_CAP:
            run.saturated_root_pages += paid_pages
        nexts = follow_ups(task, total, rules, root_box=root_box)
        leaf = task.kind is SearchKind.TEXT and nexts == [task.model_copy(update={"probe": False})]
        if leaf and task.probe and total >= TEXT_SEARCH_CAP:
            run.floor_saturated += 1
        frontier.extend(nexts)

    started = time.monotonic()
    await walk(frontier, stream, streams)
    run.wall_s = time.monotonic() - started
    return run


async def walk(
    frontier: list[SearchTask],
    stream: Callable[[SearchTask], Coroutine[Any, Any, None]],
    streams: int,
) -> None:
    """`streams` searches at once, in frontier order, as the workflow's pool."""
    pending: set[asyncio.Task[None]] = set()
    while frontier or pending:
        while frontier and len(pending) < streams:
            pending.add(asyncio.create_task(stream(frontier.pop(0))))
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for finished in done:
            finished.result()


async def run_cover(
    places: PlacesClient,
    settings: DiscoverySettings,
    record: CommunityRecord,
    streams: int,
    *,
    known: frozenset[str] = frozenset(),
) -> Run:
    """The `cover` strategy: every search walked with free probes (`plan`,
    `explore_follow_ups`), then the purchase list of
    `rollout.phases.discovery.cover.plan_cover` bought, as
    the workflow and its activities do (without Temporal and Postgres). `known` ids are
    left out of the purchases, as DISCOVERY_FRESH_DAYS leaves out places fetched lately."""
    settings = settings.model_copy(update={"strategy": DiscoveryStrategy.COVER})
    run = Run("cover")
    radius = region_radius_m(record.population)
    rules = settings.rules
    frontier = list(plan(settings, record.latitude, record.longitude, radius))
    probed: dict[str, tuple[SearchTask, list[list[str]]]] = {}

    async def explore(task: SearchTask) -> None:
        pages: list[list[str]] = []
        token: str | None = None
        while True:
            page = await search_page(places, task, token)
            account(run, task, page)
            pages.append([p.id for p in page.places])
            if not page.next_page_token:
                break
            token = page.next_page_token
        if any(pages):
            probed[task.key] = (task, pages)
        total = sum(map(len, pages))
        run.max_depth = max(run.max_depth, task.depth)
        nexts = explore_follow_ups(task, total, rules)
        if total >= TEXT_SEARCH_CAP and not nexts:
            run.floor_saturated += 1
        frontier.extend(nexts)

    started = time.monotonic()
    await walk(frontier, explore, streams)
    cover = plan_cover(
        [ProbedSearch(key, pages) for key, (_, pages) in probed.items()],
        page_cost=request_cost(sku_for(Endpoint.SEARCH_TEXT, SEARCH_MASK)),
        details_cost=request_cost(sku_for(Endpoint.GET_PLACE, DETAILS_MASK)),
        exclude=known,
    )
    run.planned, run.bound = cover.cost_usd, cover.bound_usd
    lines = deque(cover.searches)

    async def buyer() -> None:
        while lines:
            purchase = lines.popleft()
            task = probed[purchase.key][0].model_copy(update={"probe": False})
            token: str | None = None
            for _ in range(purchase.pages):
                page = await search_page(places, task, token)
                account(run, task, page)
                if not page.next_page_token:
                    break
                token = page.next_page_token

    await asyncio.gather(*(buyer() for _ in range(streams)))
    for place_id in cover.details:
        details = await places.get_place(place_id, DETAILS_MASK)
        run.requests += 1
        run.paid_requests += 1
        run.cost += details.cost
        run.paid_by_group["details"] += 1
        run.results_by_group["details"] += 1
        run.paid_results += 1
        run.found.add(place_id)
    run.sighted = {i for _, pages in probed.values() for p in pages for i in p}
    run.missed = len(run.sighted - run.found - known)
    run.wall_s = time.monotonic() - started
    return run


@dataclass
class Truth:
    name: str
    population: int
    radius_m: int
    all_ids: set[str]
    findable: set[str]  # not pure service-area
    in_category: set[str]  # findable, types intersect the configured categories
    sab: int
    closed: int


async def ground_truth(
    sim: httpx.AsyncClient, community_id: int, settings: DiscoverySettings
) -> Truth:
    response = await sim.get("/sim/world", params={"community_id": community_id})
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    categories = set(settings.dense_categories) | set(settings.sparse_categories)
    businesses: list[dict[str, Any]] = data["businesses"]
    findable = [b for b in businesses if not b["pure_service_area_business"]]
    return Truth(
        name=f"{data['community']['name']} {data['community']['state_code']}",
        population=int(data["community"]["population"]),
        radius_m=int(data["community"]["radius_m"]),
        all_ids={b["place_id"] for b in businesses},
        findable={b["place_id"] for b in findable},
        in_category={b["place_id"] for b in findable if categories & set(b["types"])},
        sab=len(businesses) - len(findable),
        closed=sum(1 for b in businesses if b["business_status"] != "OPERATIONAL"),
    )


async def billing(sim: httpx.AsyncClient) -> tuple[Decimal, int]:
    data = (await sim.get("/sim/billing")).json()
    return Decimal(data["total_cost"]), int(data["total_requests"])


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def per_1000(cost: Decimal, count: int) -> str:
    return f"${cost * 1000 / count:.2f}" if count else "-"


def settings_from(args: argparse.Namespace) -> DiscoverySettings:
    overrides: dict[str, Any] = {}
    if args.min_cell_deg is not None:
        overrides["min_cell_deg"] = args.min_cell_deg
    if args.text_queries is not None:
        overrides["text_queries"] = json.loads(args.text_queries)
    # Validated like the worker's settings (a what-if, never a silent change of defaults).
    return DiscoverySettings.model_validate({**DiscoverySettings().model_dump(), **overrides})


def results_table(seed: int) -> Table:
    table = Table(title=f"Phase 1 coverage and cost (placesim, seed {seed})")
    for column in (
        "community", "strategy", "requests", "paid", "probes", "cost (client)", "cost (/sim)",
        "unique", "own found", "recall raw", "recall findable", "recall in-cat",
        "$/1k unique", "$/1k own", "floor sat.", "depth", "wall s",
    ):  # fmt: skip
        table.add_column(
            column,
            justify="left" if column in ("community", "strategy") else "right",
            no_wrap=True,
        )
    return table


def breakdown_table() -> Table:
    table = Table(title="Where the paid requests go (SEARCH_MASK pages; probes are free)")
    for column in (
        "community", "strategy", "category pages", "category results", "catch-all pages",
        "catch-all results", "details", "page fill", "paid sightings / unique",
        "saturated-root pages", "floor $/1k (full pages, once)",
    ):  # fmt: skip
        table.add_column(
            column,
            justify="left" if column in ("community", "strategy") else "right",
            no_wrap=True,
        )
    return table


def money_table() -> Table:
    table = Table(title="Where the money goes: the cost split into what each part adds")
    for column in (
        "community", "strategy", "cost", "floor", "empty page slots", "overlap",
        "details premium",
    ):  # fmt: skip
        table.add_column(
            column,
            justify="left" if column in ("community", "strategy") else "right",
            no_wrap=True,
        )
    return table


@dataclass(frozen=True)
class MoneySplit:
    """A run's cost as the floor (every unique place once, at a full page's price per
    place) plus what each inefficiency adds: page slots paid but empty (the last page of a
    search is rarely full), places fetched more than once (overlap, at a page slot's price),
    and Place Details bought for lone places (their price above a page slot's)."""

    floor: Decimal
    empty: Decimal
    overlap: Decimal
    details: Decimal

    @classmethod
    def of(cls, run: Run, page_price: Decimal, details_price: Decimal) -> MoneySplit:
        slot = page_price / PAGE_SIZE
        details = run.paid_by_group["details"]
        pages = run.paid_requests - details
        sightings = run.paid_results  # details included, one each
        return cls(
            floor=slot * len(run.found),
            empty=slot * (PAGE_SIZE * pages - (sightings - details)),
            overlap=slot * (sightings - len(run.found)),
            details=(details_price - slot) * details,
        )


def share(part: Decimal, whole: Decimal) -> str:
    return f"${part:.2f} ({100 * part / whole:.0f}%)" if whole else "-"


async def bench(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    records = {r.id: r for r in load_communities()}
    wanted = [int(x) for x in args.communities.split(",")]
    strategies = args.strategies.split(",")
    console = Console(width=240)
    console.print(
        f"dense {len(settings.dense_categories)}, sparse {len(settings.sparse_categories)}, "
        f"queries {settings.text_queries}, min_cell_deg {settings.min_cell_deg}, "
        f"probe_cells {settings.probe_cells}, streams {args.streams}"
    )
    table = results_table(args.seed)
    costs = breakdown_table()
    money = money_table()
    truth_rows: list[str] = []
    page_price = request_cost(sku_for(Endpoint.SEARCH_TEXT, SEARCH_MASK))
    details_price = request_cost(sku_for(Endpoint.GET_PLACE, DETAILS_MASK))
    with tempfile.TemporaryDirectory(prefix="bench-coverage-") as tmp:
        extra = ["--qpd", "0", "--cache-businesses", str(args.cache_businesses)]
        with PlacesimServer(Path(tmp), seed=args.seed, qpm=0, extra_args=extra) as server:
            async with (
                httpx.AsyncClient(base_url=server.base_url, timeout=120) as sim,
                PlacesClient(server.base_url, SecretStr(EMULATOR_API_KEY), timeout=120) as places,
            ):
                for community_id in wanted:
                    record = records[community_id]
                    truth = await ground_truth(sim, community_id, settings)
                    truth_rows.append(
                        f"{truth.name} (id {community_id}): population {truth.population:,}, "
                        f"radius {truth.radius_m:,} m, {len(truth.all_ids):,} businesses, "
                        f"{truth.sab} pure service-area, {truth.closed} closed, "
                        f"{len(truth.findable):,} findable, "
                        f"{len(truth.in_category):,} findable in the configured categories"
                    )
                    for strategy in strategies:
                        (await sim.post("/sim/reset")).raise_for_status()
                        if strategy == "laravel":
                            run = await run_laravel(places, settings, record, args.streams)
                        else:
                            runner = run_cover if strategy == "cover" else run_stream
                            run = await runner(places, settings, record, args.streams)
                        run.billed_cost, run.billed_requests = await billing(sim)
                        own = run.found & truth.all_ids
                        ours = strategy != "laravel"
                        table.add_row(
                            truth.name,
                            run.strategy,
                            f"{run.requests:,}",
                            f"{run.paid_requests:,}",
                            f"{run.probe_requests:,}",
                            f"${run.cost:.2f}",
                            f"${run.billed_cost:.2f}"
                            + ("" if run.billed_cost == run.cost else " (!)"),
                            f"{len(run.found):,}",
                            f"{len(own):,}",
                            pct(len(own), len(truth.all_ids)),
                            pct(len(run.found & truth.findable), len(truth.findable)),
                            pct(len(run.found & truth.in_category), len(truth.in_category)),
                            per_1000(run.cost, len(run.found)),
                            per_1000(run.cost, len(own)),
                            str(run.floor_saturated) if ours else "-",
                            str(run.max_depth) if ours else "-",
                            f"{run.wall_s:.1f}",
                        )
                        unique = len(run.found)
                        floor = page_price * math.ceil(unique / PAGE_SIZE)
                        details = run.paid_by_group["details"]
                        pages = run.paid_requests - details
                        costs.add_row(
                            truth.name,
                            run.strategy,
                            f"{run.paid_by_group['category']:,}",
                            f"{run.results_by_group['category']:,}",
                            f"{run.paid_by_group['catch-all']:,}",
                            f"{run.results_by_group['catch-all']:,}",
                            f"{details:,}",
                            pct(run.paid_results - details, PAGE_SIZE * pages),
                            f"{run.paid_results / unique:.2f}" if unique else "-",
                            f"{run.saturated_root_pages:,}" if ours else "-",
                            per_1000(floor, unique),
                        )
                        split = MoneySplit.of(run, page_price, details_price)
                        money.add_row(
                            truth.name,
                            run.strategy,
                            f"${run.cost:.2f}",
                            share(split.floor, run.cost),
                            share(split.empty, run.cost),
                            share(split.overlap, run.cost),
                            share(split.details, run.cost),
                        )
                        console.print(
                            f"  done: {truth.name} {strategy}: {run.requests} requests, "
                            f"${run.cost:.2f} (client) / ${run.billed_cost:.2f} "
                            f"({run.billed_requests} billed requests, /sim/billing), "
                            f"{run.wall_s:.0f} s"
                            + (
                                f"; plan ${run.planned:.2f}, none of the probes under "
                                f"${run.bound:.2f}"
                                if strategy == "cover"
                                else ""
                            )
                        )
    console.print(table)
    console.print(costs)
    console.print(money)
    for row in truth_rows:
        console.print(row)
    console.print(
        "cost (client) sums PlacesClient's per-request list price; cost (/sim) is the "
        "emulator's bill (GET /sim/billing), (!) marking a disagreement. unique: distinct place "
        "ids on paid pages (neighbours' businesses in the box included); own found: those of "
        "the community itself. floor sat.: probed cells still saturated at min_cell_deg. "
        "page fill: results per search page slot (Place Details apart)."
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--communities",
        default=",".join(str(c) for c in DEFAULT_COMMUNITIES),
        help="GeoNames ids, comma-separated",
    )
    parser.add_argument("--strategies", default="laravel,stream,cover")
    parser.add_argument("--streams", type=int, default=4, help="searches at once, as the workflow")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--min-cell-deg", type=float, default=None, help="what-if override")
    parser.add_argument(
        "--text-queries", default=None, help="what-if override, JSON: '[\"local business\"]'"
    )
    parser.add_argument(
        "--cache-businesses", type=int, default=500_000, help="emulator's generated-world cache"
    )
    return asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
