"""The emulator's SKU table: which SKU a field mask bills at, and what a request costs.

The table is the emulator's own data file (`data/skus.json`, transcribed from Google's pricing
and method pages, with its sources and date), independent of the client's pricing code: the
emulator stands in for Google's bill, so a pricing mistake in the client must show up as a
usage log that no longer matches the emulator's bill instead of being repeated by both.

Google's rules, as reproduced here: a request bills at the highest SKU among the fields of its
mask; `*` (and, for the searches, `places` and `places.*`) bills at the method's top SKU; a
sub-path (`places.displayName.text`) bills as its field; snake_case names are accepted for
their camelCase field; the mask may hold no spaces, so a path with a space is unknown, and
unknown paths are refused (400) with their list.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_SKU_TABLE = Path(__file__).resolve().parent / "data" / "skus.json"


class Method(StrEnum):
    """The Places methods the emulator serves, named as Google names their quotas."""

    SEARCH_TEXT = "searchText"
    SEARCH_NEARBY = "searchNearby"
    GET_PLACE = "getPlace"


class FieldMaskError(ValueError):
    """A field mask the API refuses."""


class EmptyFieldMaskError(FieldMaskError):
    pass


class UnknownFieldError(FieldMaskError):
    def __init__(self, method: Method, paths: Sequence[str]) -> None:
        self.method = method
        self.paths = tuple(paths)
        super().__init__(f"unknown field(s) for {method.value}: {', '.join(self.paths)}")


class MethodSkus(BaseModel):
    """One method's field -> SKU table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    place_field_prefix: Literal["places", ""]  # "": Place Details masks name fields bare
    skus: tuple[str, ...] = Field(min_length=1)  # cheapest first
    place_fields: dict[str, str]  # Place field -> SKU
    response_fields: dict[str, str] = {}  # top-level search response field -> SKU

    @model_validator(mode="after")
    def _consistent(self) -> MethodSkus:
        if len(set(self.skus)) != len(self.skus):
            raise ValueError("a SKU is listed twice")
        if not self.place_field_prefix and self.response_fields:
            # Without a prefix every top-level name is a Place field.
            raise ValueError("response_fields need a place_field_prefix")
        for field, sku in (self.place_fields | self.response_fields).items():
            if sku not in self.skus:
                raise ValueError(f"{field}: SKU {sku!r} is not one of the method's skus")
        return self

    def rank(self, sku: str) -> int:
        return self.skus.index(sku)


class SkuTable(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    as_of: dt.date
    currency: Literal["USD"]
    sources: tuple[str, ...] = Field(min_length=1)
    notes: tuple[str, ...] = ()
    usd_per_1000: dict[str, Decimal]
    methods: dict[Method, MethodSkus]

    @model_validator(mode="after")
    def _consistent(self) -> SkuTable:
        missing = set(Method) - set(self.methods)
        if missing:
            raise ValueError(f"no SKU table for {', '.join(sorted(m.value for m in missing))}")
        billed = {sku for table in self.methods.values() for sku in table.skus}
        if billed - set(self.usd_per_1000):
            raise ValueError(f"SKUs without a price: {sorted(billed - set(self.usd_per_1000))}")
        if set(self.usd_per_1000) - billed:
            # A price no method uses is most likely a misspelt SKU name.
            raise ValueError(f"prices no method bills: {sorted(set(self.usd_per_1000) - billed)}")
        negative = [sku for sku, price in self.usd_per_1000.items() if price < 0]
        if negative:
            raise ValueError(f"negative prices: {negative}")
        return self

    def sku_for(self, method: Method | str, field_mask: str | Sequence[str]) -> str:
        """The SKU a request with this mask bills at. Raises UnknownFieldError naming every
        path the method does not know, EmptyFieldMaskError for a mask without paths."""
        method = Method(method)
        table = self.methods[method]
        paths = split_field_mask(field_mask) if isinstance(field_mask, str) else field_mask
        if not paths:
            raise EmptyFieldMaskError("a field mask is mandatory")
        ranks: list[int] = []
        unknown: list[str] = []
        for path in paths:
            sku = _sku_of_path(table, path)
            if sku is None:
                unknown.append(path)
            else:
                ranks.append(table.rank(sku))
        if unknown:
            raise UnknownFieldError(method, unknown)
        return table.skus[max(ranks)]

    def request_cost(self, sku: str) -> Decimal:
        """What one request of this SKU bills: a thousandth of its price per 1,000."""
        return self.usd_per_1000[sku] / 1000


def load_sku_table(path: Path = DEFAULT_SKU_TABLE) -> SkuTable:
    return SkuTable.model_validate_json(path.read_bytes())


@lru_cache(maxsize=1)
def default_sku_table() -> SkuTable:
    return load_sku_table()


def split_field_mask(field_mask: str) -> tuple[str, ...]:
    """The paths of "a,b", kept as written (spaces included, as the API allows none), empty
    entries dropped; raises EmptyFieldMaskError when none is left."""
    paths = tuple(path for path in field_mask.split(",") if path)
    if not paths:
        raise EmptyFieldMaskError("a field mask is mandatory")
    return paths


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def camel_case(name: str) -> str:
    """moved_place_id -> movedPlaceId; camelCase names are unchanged."""
    first, *others = name.split("_")
    return first + "".join(word[:1].upper() + word[1:] for word in others)


def _sku_of_path(table: MethodSkus, path: str) -> str | None:
    if path == "*":
        return table.skus[-1]
    segments = path.split(".")
    if not all(segment == "*" or _NAME.match(segment) for segment in segments):
        return None
    if not table.place_field_prefix:
        return table.place_fields.get(camel_case(segments[0]))
    if segments[0] != table.place_field_prefix:
        return table.response_fields.get(camel_case(segments[0]))
    if len(segments) == 1 or segments[1] == "*":
        return table.skus[-1]
    return table.place_fields.get(camel_case(segments[1]))
