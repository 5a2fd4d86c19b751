"""The pre-spend estimate: its arithmetic on known inputs, and the starter command."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

from rollout.communities import CommunityRecord, load_communities
from rollout.discovery import DiscoverySettings
from rollout.estimate import estimate
from rollout.places.pricing import request_cost
from tests.conftest import PROJECT_ROOT

MASK = "id,displayName,websiteUri"


def town(population: int) -> CommunityRecord:
    return CommunityRecord(1, "Town", "DE", 39.0, -75.5, population, None)


def test_a_small_town_costs_one_page_per_search() -> None:
    settings = DiscoverySettings(
        dense_categories=["cafe", "bank"], sparse_categories=["florist"], text_queries=["shop"]
    )
    result = estimate([town(2_000)], settings, skip_enrichment=True)
    by_sku = {s.sku: s.requests for s in result.skus}
    # 50 businesses: 3 dense searches of one page each, one Nearby, no probes, no details.
    assert by_sku == {"Text Search Enterprise": 3, "Nearby Search Enterprise": 1}
    assert result.cost_usd == 4 * request_cost("Text Search Enterprise")


def test_a_big_city_splits_probes_and_enriches() -> None:
    settings = DiscoverySettings(dense_categories=["cafe"], sparse_categories=[], text_queries=[])
    result = estimate([town(2_000_000)], settings, enrichment_mask=MASK)
    by_sku = {s.sku: s.requests for s in result.skus}
    # 50,000 businesses, 1,500 cafes: over the 60 cap, so leaves (34) and free probes.
    assert by_sku["Text Search Enterprise"] == 3 + 34 * 3
    assert by_sku["Text Search Essentials IDs Only"] == 46 * 3
    assert by_sku["Place Details Enterprise"] == 30_000
    assert next(s for s in result.skus if s.sku.endswith("IDs Only")).cost_usd == Decimal(0)


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
