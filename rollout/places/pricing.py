"""Places API (New) pricing: which SKU a field mask bills at, and what a request costs.

Google bills a request at the highest SKU among the fields in its mask, and every call (each
page of a search too) is one billable event (docs/places.md, Billing). Both the price
list and the field -> SKU tables are data with a date (`data/pricing_<date>.json`), not code
constants: when Google changes them, add a new dated file and point `DEFAULT_PRICE_LIST` at it.

The emulator (`placesim`) bills from its own SKU table (placesim/data/skus.json), not from this
module, so a mistake here shows as a cost log that no longer matches the emulator's bill.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, model_validator

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_PRICE_LIST = DATA_DIR / "pricing_2025-11-21.json"


class Endpoint(StrEnum):
    """The three Places methods the project uses, named as Google names their quotas."""

    SEARCH_TEXT = "searchText"
    SEARCH_NEARBY = "searchNearby"
    GET_PLACE = "getPlace"


class FieldMaskError(ValueError):
    """A field mask the API would refuse; raised before any request is sent."""


class EmptyFieldMaskError(FieldMaskError):
    pass


class UnknownFieldError(FieldMaskError):
    def __init__(self, endpoint: Endpoint, fields: Sequence[str]) -> None:
        self.endpoint = endpoint
        self.fields = tuple(fields)
        super().__init__(f"unknown field(s) for {endpoint.value}: {', '.join(self.fields)}")


class UnknownSkuError(KeyError):
    pass


# --------------------------------------------------------------------------------------
# The data file
# --------------------------------------------------------------------------------------


class SkuPrice(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    free_monthly_cap: int | None  # None: unlimited, never charged
    per_1000: tuple[Decimal, ...]  # USD per 1,000 events, one per volume tier


class SkuTier(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sku: str
    place_fields: frozenset[str]  # Place fields, masked as <prefix><field>
    response_fields: frozenset[str]  # top-level response fields (nextPageToken, ...)


class EndpointTable(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    place_field_prefix: str  # "places." for the searches, "" for Place Details
    tiers: tuple[SkuTier, ...]  # cheapest first; a mask bills at its highest tier

    def tier_of(self, field: str, *, response_level: bool) -> int | None:
        for index, tier in enumerate(self.tiers):
            if field in (tier.response_fields if response_level else tier.place_fields):
                return index
        return None


class PriceList(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    price_list_date: dt.date
    currency: str
    sources: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    tier_upper_bounds: tuple[int | None, ...]
    skus: dict[str, SkuPrice]
    endpoints: dict[Endpoint, EndpointTable]

    @model_validator(mode="after")
    def _consistent(self) -> PriceList:
        bounds = self.tier_upper_bounds
        if not bounds or bounds[-1] is not None:
            raise ValueError("the last volume tier must be unbounded (null)")
        finite = [b for b in bounds[:-1] if b is not None]
        if len(finite) != len(bounds) - 1 or finite != sorted(finite):
            raise ValueError("tier_upper_bounds must increase and only the last may be null")
        for name, price in self.skus.items():
            if len(price.per_1000) != len(bounds):
                raise ValueError(f"{name}: one price per volume tier expected")
        if set(self.endpoints) != set(Endpoint):
            raise ValueError("every endpoint needs a field table")
        for endpoint, table in self.endpoints.items():
            seen: set[str] = set()
            for tier in table.tiers:
                if tier.sku not in self.skus:
                    raise ValueError(f"{endpoint.value}: SKU {tier.sku!r} has no price")
                fields = {f"p:{f}" for f in tier.place_fields} | {
                    f"r:{f}" for f in tier.response_fields
                }
                if fields & seen:
                    raise ValueError(f"{endpoint.value}: fields in two tiers: {fields & seen}")
                seen |= fields
        return self


def load_price_list(path: Path = DEFAULT_PRICE_LIST) -> PriceList:
    return PriceList.model_validate_json(path.read_bytes())


@lru_cache(maxsize=1)
def price_list() -> PriceList:
    """The current price list (DEFAULT_PRICE_LIST), loaded once."""
    return load_price_list()


# --------------------------------------------------------------------------------------
# Field masks -> SKU
# --------------------------------------------------------------------------------------

_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def split_field_mask(field_mask: str | Sequence[str], *, strict: bool = False) -> tuple[str, ...]:
    """The paths of a mask given as "a,b" or ["a", "b"]; empty raises EmptyFieldMaskError.

    Google allows no spaces anywhere in the list. By default they are stripped, so callers
    can write masks readably; `strict=True` (what the emulator uses) keeps them, and a path
    with a space is then an unknown field, as the API treats it.
    """
    items = [field_mask] if isinstance(field_mask, str) else list(field_mask)
    parts = [part for item in items for part in item.split(",")]
    if not strict:
        parts = ["".join(part.split()) for part in parts]
    paths = tuple(part for part in parts if part)
    if not paths:
        raise EmptyFieldMaskError(
            "a field mask is mandatory: Places API (New) has no default fields"
        )
    return paths


def _camel(name: str) -> str:
    """moved_place_id -> movedPlaceId: Google accepts both spellings in masks."""
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _tier_of_path(table: EndpointTable, path: str) -> int | None:
    top = len(table.tiers) - 1
    if path == "*":
        return top
    segments = path.split(".")
    if not all(_SEGMENT.match(s) or s == "*" for s in segments):
        return None
    if table.place_field_prefix:  # search endpoints: places.<field> or a response field
        if segments[0] != table.place_field_prefix.rstrip("."):
            return table.tier_of(_camel(segments[0]), response_level=True)
        if len(segments) == 1 or segments[1] == "*":  # "places" / "places.*": every field
            return top
        return table.tier_of(_camel(segments[1]), response_level=False)
    # Place Details: <field>[.<subfield>...]
    return table.tier_of(_camel(segments[0]), response_level=False)


def sku_for(
    endpoint: Endpoint | str,
    field_mask: str | Sequence[str],
    *,
    prices: PriceList | None = None,
    strict: bool = False,
) -> str:
    """The SKU a request with this mask is billed at: the highest tier among its fields.

    `places.` prefixes the fields of the two searches, none for Place Details; sub-paths
    (places.displayName.text) bill as their field; `*` and `places.*` bill at the top tier.
    Unknown fields raise UnknownFieldError (the API answers 400 for them).
    """
    endpoint = Endpoint(endpoint)
    table = (prices or price_list()).endpoints[endpoint]
    highest = -1
    unknown: list[str] = []
    for path in split_field_mask(field_mask, strict=strict):
        tier = _tier_of_path(table, path)
        if tier is None:
            unknown.append(path)
        else:
            highest = max(highest, tier)
    if unknown:
        raise UnknownFieldError(endpoint, unknown)
    return table.tiers[highest].sku


def skus_of(endpoint: Endpoint | str, *, prices: PriceList | None = None) -> tuple[str, ...]:
    """The endpoint's SKUs, cheapest first."""
    table = (prices or price_list()).endpoints[Endpoint(endpoint)]
    return tuple(tier.sku for tier in table.tiers)


# --------------------------------------------------------------------------------------
# Prices
# --------------------------------------------------------------------------------------


def _price(sku: str, prices: PriceList | None) -> SkuPrice:
    try:
        return (prices or price_list()).skus[sku]
    except KeyError:
        raise UnknownSkuError(sku) from None


def request_cost(sku: str, *, prices: PriceList | None = None) -> Decimal:
    """List price of one request: the first paid tier's price per 1,000, divided by 1,000.

    This is what the project logs per request. It ignores the monthly free cap and volume
    discounts on purpose: those are per billing account per month, so a per-request log
    cannot know them; `monthly_cost` applies them for estimates.
    """
    return _price(sku, prices).per_1000[0] / 1000


def free_monthly_cap(sku: str, *, prices: PriceList | None = None) -> int | None:
    """Events per month that cost nothing; None means unlimited."""
    return _price(sku, prices).free_monthly_cap


def monthly_cost(sku: str, requests: int, *, prices: PriceList | None = None) -> Decimal:
    """What `requests` events of one SKU in one calendar month cost, graduated: the free cap
    first, then each volume tier at its own price (the pricing page's worked example)."""
    if requests < 0:
        raise ValueError("requests must be >= 0")
    plist = prices or price_list()
    price = _price(sku, plist)
    if price.free_monthly_cap is None:
        return Decimal(0)
    total = Decimal(0)
    start = price.free_monthly_cap  # events up to here are free
    for bound, per_1000 in zip(plist.tier_upper_bounds, price.per_1000, strict=True):
        end = requests if bound is None else min(requests, bound)
        if end > start:
            total += per_1000 * (end - start) / 1000
        start = max(start, end if bound is None else bound)
        if requests <= start:
            break
    return total
