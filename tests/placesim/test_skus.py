"""The emulator's own SKU table (placesim/data/skus.json, placesim.skus): it agrees with the
client's price list today, it prices masks as Google does, and, being independent of the
client's pricing code, it catches a pricing mistake in the client: a field moved to another
SKU in one table and not the other makes the usage log and the bill disagree."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from placesim.process import PlacesimServer
from placesim.skus import (
    DEFAULT_SKU_TABLE,
    EmptyFieldMaskError,
    Method,
    SkuTable,
    UnknownFieldError,
    default_sku_table,
    load_sku_table,
)
from rollout.places import PlacesClient
from rollout.places.pricing import PriceList, load_price_list
from tests.support.placesim_support import SIM_KEY, SIM_SEED, Sim

pytest_plugins = ["tests.support.places_fixtures"]

QUERY = "restaurants in Dover, DE"
IDS = "places.id,nextPageToken"
CONTACT = "places.id,places.displayName,places.formattedAddress,places.websiteUri,nextPageToken"

# (method, "place" or "response", field, SKU)
Row = tuple[str, str, str, str]
# SKU -> (requests, cost): what a usage log and a bill are compared on
Ledger = dict[str, tuple[int, Decimal]]


# --------------------------------------------------------------------------------------
# The two tables agree today
# --------------------------------------------------------------------------------------


def client_rows(prices: PriceList) -> set[Row]:
    rows: set[Row] = set()
    for endpoint, table in prices.endpoints.items():
        for tier in table.tiers:
            rows |= {(endpoint.value, "place", field, tier.sku) for field in tier.place_fields}
            rows |= {
                (endpoint.value, "response", field, tier.sku) for field in tier.response_fields
            }
    return rows


def emulator_rows(table: SkuTable) -> set[Row]:
    rows: set[Row] = set()
    for method, skus in table.methods.items():
        rows |= {(method.value, "place", f, sku) for f, sku in skus.place_fields.items()}
        rows |= {(method.value, "response", f, sku) for f, sku in skus.response_fields.items()}
    return rows


def test_emulator_table_agrees_with_the_client_price_list() -> None:
    """A transcription slip in either file shows here, row by row."""
    client = load_price_list()
    emulator = load_sku_table()

    assert emulator_rows(emulator) - client_rows(client) == set()
    assert client_rows(client) - emulator_rows(emulator) == set()
    for endpoint, table in client.endpoints.items():
        ours = emulator.methods[Method(endpoint.value)]
        assert ours.skus == tuple(tier.sku for tier in table.tiers), endpoint.value
        assert ours.place_field_prefix == table.place_field_prefix.rstrip("."), endpoint.value

    billed = {tier.sku for table in client.endpoints.values() for tier in table.tiers}
    first_paid_tier = {sku: client.skus[sku].per_1000[0] for sku in billed}
    assert emulator.usd_per_1000 == first_paid_tier


def test_table_states_its_sources_and_date() -> None:
    table = default_sku_table()
    assert str(table.as_of) == "2025-11-21"
    assert any("billing-and-pricing/pricing" in source for source in table.sources)
    for page in ("text-search", "nearby-search", "place-details"):
        assert any(f"web-service/{page}" in source for source in table.sources), page


# --------------------------------------------------------------------------------------
# Field mask -> SKU
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "mask", "sku"),
    [
        (Method.SEARCH_TEXT, IDS, "Text Search Essentials IDs Only"),
        (Method.SEARCH_TEXT, "places.id,places.displayName", "Text Search Pro"),
        (Method.SEARCH_TEXT, CONTACT, "Text Search Enterprise"),
        (Method.SEARCH_TEXT, "places.id,places.reviews", "Text Search Enterprise + Atmosphere"),
        (Method.SEARCH_TEXT, "*", "Text Search Enterprise + Atmosphere"),
        (Method.SEARCH_TEXT, "places.*", "Text Search Enterprise + Atmosphere"),
        (Method.SEARCH_TEXT, "places", "Text Search Enterprise + Atmosphere"),
        (Method.SEARCH_TEXT, "places.displayName.text", "Text Search Pro"),  # as its field
        (Method.SEARCH_TEXT, "places.moved_place_id", "Text Search Essentials IDs Only"),
        (Method.SEARCH_TEXT, "places.id,searchUri", "Text Search Pro"),  # a response field
        (Method.SEARCH_NEARBY, "places.id", "Nearby Search Pro"),  # no IDs-only SKU
        (Method.SEARCH_NEARBY, "places.id,places.websiteUri", "Nearby Search Enterprise"),
        (Method.SEARCH_NEARBY, "*", "Nearby Search Enterprise + Atmosphere"),
        (Method.GET_PLACE, "id,photos", "Place Details Essentials IDs Only"),
        (Method.GET_PLACE, "id,location", "Place Details Essentials"),
        (Method.GET_PLACE, "id,displayName.text", "Place Details Pro"),
        (Method.GET_PLACE, "id,regular_opening_hours", "Place Details Enterprise"),
        (Method.GET_PLACE, "*", "Place Details Enterprise + Atmosphere"),
    ],
)
def test_mask_bills_at_its_highest_sku(method: Method, mask: str, sku: str) -> None:
    assert default_sku_table().sku_for(method, mask) == sku


@pytest.mark.parametrize(
    ("method", "mask", "unknown"),
    [
        (Method.SEARCH_TEXT, "places.id,places.nope", ("places.nope",)),
        # The API takes no spaces: the path with one is unknown, not trimmed.
        (Method.SEARCH_TEXT, "places.id, places.displayName", (" places.displayName",)),
        (Method.SEARCH_TEXT, "places..id,places.id-x", ("places..id", "places.id-x")),
        (Method.SEARCH_NEARBY, IDS, ("nextPageToken",)),  # Nearby Search has no pages
        (Method.GET_PLACE, "places.id", ("places.id",)),  # Place Details has no prefix
        (Method.GET_PLACE, "id,nextPageToken", ("nextPageToken",)),
    ],
)
def test_unknown_fields_are_refused_by_name(
    method: Method, mask: str, unknown: tuple[str, ...]
) -> None:
    with pytest.raises(UnknownFieldError) as caught:
        default_sku_table().sku_for(method, mask)
    assert caught.value.paths == unknown
    assert caught.value.method is method


def test_empty_mask_is_refused() -> None:
    for mask in ("", ",,", ()):
        with pytest.raises(EmptyFieldMaskError):
            default_sku_table().sku_for(Method.SEARCH_TEXT, mask)


def test_request_cost_is_a_thousandth_of_the_first_paid_tier() -> None:
    table = default_sku_table()
    assert table.request_cost("Text Search Pro") == Decimal("0.032")
    assert table.request_cost("Place Details Enterprise") == Decimal("0.02")
    assert table.request_cost("Text Search Essentials IDs Only") == 0


def table_data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DEFAULT_SKU_TABLE.read_text())
    return data


def write_table(path: Path, change: Callable[[dict[str, Any]], None] | None = None) -> Path:
    data = table_data()
    if change is not None:
        change(data)
    path.write_text(json.dumps(data, indent=2))
    return path


def _sku_of_another_method(data: dict[str, Any]) -> None:
    data["methods"]["searchText"]["place_fields"]["websiteUri"] = "Place Details Enterprise"


def _sku_without_price(data: dict[str, Any]) -> None:
    del data["usd_per_1000"]["Text Search Pro"]


def _price_no_method_bills(data: dict[str, Any]) -> None:
    data["usd_per_1000"]["Text Search Pr0"] = "32.00"


def _method_missing(data: dict[str, Any]) -> None:
    del data["methods"]["getPlace"]


def _response_field_without_prefix(data: dict[str, Any]) -> None:
    data["methods"]["getPlace"]["response_fields"] = {"nextPageToken": "Place Details Pro"}


@pytest.mark.parametrize(
    "change",
    [
        _sku_of_another_method,
        _sku_without_price,
        _price_no_method_bills,
        _method_missing,
        _response_field_without_prefix,
    ],
)
def test_inconsistent_tables_are_refused(
    tmp_path: Path, change: Callable[[dict[str, Any]], None]
) -> None:
    with pytest.raises(ValidationError):
        load_sku_table(write_table(tmp_path / "skus.json", change))


# --------------------------------------------------------------------------------------
# Over HTTP: the server refuses and bills with its table
# --------------------------------------------------------------------------------------


def test_server_refuses_a_path_with_a_space_and_accepts_snake_case(sim: Sim) -> None:
    url = f"{sim.base_url}/v1/places:searchText"
    body = {"textQuery": QUERY, "pageSize": 2}
    with httpx.Client(timeout=10) as http:
        spaced = http.post(
            url,
            json=body,
            headers={"X-Goog-Api-Key": SIM_KEY, "X-Goog-FieldMask": "places.id, places.types"},
        )
        assert spaced.status_code == 400
        assert "' places.types'" in spaced.json()["error"]["message"]

        snake = http.post(
            url,
            json=body,
            headers={"X-Goog-Api-Key": SIM_KEY, "X-Goog-FieldMask": "places.display_name"},
        )
        assert snake.status_code == 200
        assert [set(place) for place in snake.json()["places"]] == [{"displayName"}] * 2
    assert {sku: e["requests"] for sku, e in sim.billing()["skus"].items()} == {
        "Text Search Pro": 1
    }


# --------------------------------------------------------------------------------------
# The referee: the usage log against the bill of an emulator with its own table
# --------------------------------------------------------------------------------------


def ledger(entries: Iterable[tuple[str, Decimal]]) -> Ledger:
    out: Ledger = {}
    for sku, cost in entries:
        requests, total = out.get(sku, (0, Decimal(0)))
        out[sku] = (requests + 1, total + cost)
    return out


async def usage_log_and_bill(table: Path, log_dir: Path) -> tuple[Ledger, Ledger]:
    """Three requests through the project's client against an emulator billing from `table`:
    what the usage log records (each result's SKU and cost), and the emulator's bill."""
    server = PlacesimServer(log_dir, seed=SIM_SEED, qpm=0, sku_table=table)
    await asyncio.to_thread(server.start)
    try:
        async with PlacesClient(server.base_url, SecretStr(SIM_KEY), timeout=10) as places:
            ids = await places.search_text(QUERY, IDS, page_size=5)
            contact = await places.search_text(QUERY, CONTACT, page_size=5)
            details = await places.get_place(ids.places[0].id, "id,displayName")
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.get(f"{server.base_url}/sim/billing")
            response.raise_for_status()
            bill = response.json()
    finally:
        await asyncio.to_thread(server.stop)
    logged = ledger((result.sku, result.cost) for result in (ids, contact, details))
    billed = {
        sku: (entry["requests"], Decimal(entry["cost"])) for sku, entry in bill["skus"].items()
    }
    assert Decimal(bill["total_cost"]) == sum((cost for _, cost in billed.values()), Decimal(0))
    return logged, billed


@pytest.mark.integration
async def test_usage_log_equals_the_bill_when_the_tables_agree(tmp_path: Path) -> None:
    table = write_table(tmp_path / "skus.json")
    logged, billed = await usage_log_and_bill(table, tmp_path)
    assert logged == billed
    assert set(billed) == {
        "Text Search Essentials IDs Only",
        "Text Search Enterprise",  # websiteUri
        "Place Details Pro",
    }


@pytest.mark.integration
async def test_a_field_moved_to_another_sku_in_one_table_breaks_the_reconciliation(
    tmp_path: Path,
) -> None:
    def move_website_to_pro(data: dict[str, Any]) -> None:
        fields = data["methods"]["searchText"]["place_fields"]
        assert fields["websiteUri"] == "Text Search Enterprise"
        fields["websiteUri"] = "Text Search Pro"

    table = write_table(tmp_path / "skus-moved.json", move_website_to_pro)
    logged, billed = await usage_log_and_bill(table, tmp_path)

    assert logged != billed
    assert logged["Text Search Enterprise"] == (1, Decimal("0.035"))
    assert "Text Search Enterprise" not in billed
    assert billed["Text Search Pro"] == (1, Decimal("0.032"))
    # The requests the move does not touch still agree.
    for sku in ("Text Search Essentials IDs Only", "Place Details Pro"):
        assert logged[sku] == billed[sku]


@pytest.mark.integration
def test_cli_refuses_a_bad_sku_table_in_one_line(tmp_path: Path) -> None:
    bad = write_table(tmp_path / "bad.json", _sku_of_another_method)
    for table, says in ((tmp_path / "missing.json", "No such file"), (bad, "websiteUri")):
        run = subprocess.run(
            [sys.executable, "-m", "placesim", "--port", "0", "--sku-table", str(table)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert run.returncode == 2
        assert run.stderr.startswith(f"error: --sku-table: {table}"), run.stderr
        assert says in run.stderr
        assert len(run.stderr.strip().splitlines()) == 1
        assert run.stdout == ""
