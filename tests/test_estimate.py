"""The pre-spend estimate: its arithmetic on known inputs, and the starter command."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from decimal import Decimal

from rollout.communities import CommunityRecord, load_communities
from rollout.estimate import estimate
from rollout.phases.discovery.payloads import DiscoveryStrategy
from rollout.phases.discovery.planning import DiscoverySettings
from rollout.places.pricing import request_cost
from tests.conftest import PROJECT_ROOT


def town(population: int) -> CommunityRecord:
    return CommunityRecord(1, "Town", "DE", 39.0, -75.5, population, None)


def test_a_small_town_costs_one_page_per_search() -> None:
    settings = DiscoverySettings(
        dense_categories=["cafe", "bank"],
        sparse_categories=["florist"],
        text_queries=["shop"],
        strategy=DiscoveryStrategy.STREAM,
    )
    result = estimate([town(2_000)], settings)
    by_sku = {s.sku: s.requests for s in result.skus}
    # 50 businesses: 3 dense searches of one page each, one Nearby, no probes, no details.
    assert by_sku == {"Text Search Enterprise": 3, "Nearby Search Enterprise": 1}
    assert result.cost_usd == 4 * request_cost("Text Search Enterprise")


def test_a_big_city_splits_probes_and_buys_no_details_for_enrichment() -> None:
    settings = DiscoverySettings(
        dense_categories=["cafe"],
        sparse_categories=[],
        text_queries=[],
        strategy=DiscoveryStrategy.STREAM,
    )
    result = estimate([town(2_000_000)], settings)
    by_sku = {s.sku: s.requests for s in result.skus}
    # 50,000 businesses, 1,500 cafes: over the 60 cap, so leaves (34) and free probes.
    assert by_sku["Text Search Enterprise"] == 3 + 34 * 3
    assert by_sku["Text Search Essentials IDs Only"] == 46 * 3
    # Enrichment rides on the pages phase 1 buys: not one Place Details for it.
    assert "Place Details Enterprise" not in by_sku
    assert next(s for s in result.skus if s.sku.endswith("IDs Only")).cost_usd == Decimal(0)


def test_the_cover_strategy_probes_free_and_buys_each_match_about_once() -> None:
    settings = DiscoverySettings(
        dense_categories=["cafe", "bank"], sparse_categories=["florist"], text_queries=["shop"]
    )
    assert settings.strategy is DiscoveryStrategy.COVER
    result = estimate([town(2_000), town(400_000)], settings)
    by_sku = {s.sku: s.requests for s in result.skus}
    # Town: 50 businesses, 9.6% matched (3 x 3% + 0.6%): 5 ids, one paid page.
    # City: 10,000 businesses, 960 matched: 62 pages (15.5 ids each), 3 details (0.3%).
    assert by_sku["Text Search Enterprise"] == 1 + 62
    assert by_sku["Place Details Enterprise"] == 3
    assert "Nearby Search Enterprise" not in by_sku
    # Probes: the town's 4 searches one page each; the city's 3 dense searches of 300
    # matches (7 leaves: 3 + 10 x 3 pages) and a florist search of 60 (3 pages).
    assert by_sku["Text Search Essentials IDs Only"] == 4 + 3 * 33 + 3
    assert result.cost_usd == 63 * request_cost("Text Search Enterprise") + 3 * request_cost(
        "Place Details Enterprise"
    )


def test_estimate_command_prints_a_table_without_any_service() -> None:
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "starter.py"), "estimate", "DE"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Estimate for Delaware: 56 communities" in result.stdout
    assert "Text Search Enterprise" in result.stdout
    assert len(load_communities("DE")) == 56


def test_atmosphere_fields_are_priced_when_turned_on() -> None:
    plain = DiscoverySettings(dense_categories=["cafe"], sparse_categories=[], text_queries=[])
    rich = plain.model_copy(update={"atmosphere": True})
    cheap, dear = estimate([town(400_000)], plain), estimate([town(400_000)], rich)
    assert {s.sku for s in dear.skus} == {
        "Text Search Essentials IDs Only",
        "Text Search Enterprise + Atmosphere",
        "Place Details Enterprise + Atmosphere",
    }
    assert [s.requests for s in dear.skus] == [s.requests for s in cheap.skus]
    assert dear.cost_usd > cheap.cost_usd


def test_a_city_alone_buys_its_neighbours_in_its_box_and_a_state_buys_each_once() -> None:
    everywhere = load_communities()
    little_rock = [r for r in everywhere if r.id == 4119403]
    settings = DiscoverySettings()
    alone = estimate(little_rock, settings, everywhere=everywhere)
    blind = estimate(little_rock, settings)
    # Its box holds North Little Rock and the other suburbs: their businesses are bought.
    assert alone.businesses > blind.businesses * 1.3
    assert alone.cost_usd > blind.cost_usd
    # In a state's estimate its neighbours are communities of the state: counted once.
    state = load_communities("AR")
    whole = estimate(state, settings, everywhere=everywhere)
    assert whole.businesses < estimate(state, settings).businesses * 1.1


def test_estimate_with_free_caps_shows_the_price_after_them() -> None:
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "starter.py"), "estimate", "DE", "--free-caps"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    assert "after free caps" in result.stdout
    # Delaware fits in the monthly free caps of every SKU it uses.
    total = next(line for line in result.stdout.splitlines() if "total" in line)
    assert total.rstrip(" │").endswith("$0.00")


def test_the_monthly_refresh_cost_is_one_place_details_per_business_every_25_days() -> None:
    result = estimate([town(400_000)], DiscoverySettings())
    assert result.refresh_sku == "Place Details Enterprise"
    assert result.refresh_requests_per_month == math.ceil(result.businesses * 30 / 25)
    assert result.refresh_monthly_usd == (
        request_cost("Place Details Enterprise") * result.refresh_requests_per_month
    )
