"""Typed views of Places API (New) requests and responses.

Place is parsed from Google's camelCase JSON (`displayName.text` flattened to `display_name`);
fields the mask did not ask for (or that Google has no data for) are None. Google's JSON omits
false booleans and empty lists (proto3 JSON), so `pure_service_area_business` is None, not
False, for an ordinary business.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from rollout.places.pricing import Endpoint


class LatLng(BaseModel):
    model_config = ConfigDict(frozen=True)

    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)

    def to_api(self) -> dict[str, float]:
        return {"latitude": self.latitude, "longitude": self.longitude}


class Circle(BaseModel):
    model_config = ConfigDict(frozen=True)

    center: LatLng
    # Google allows (0, 50,000] m for both Nearby's restriction and Text Search's bias.
    radius_m: float = Field(gt=0, le=50_000)

    def to_api(self) -> dict[str, Any]:
        return {"circle": {"center": self.center.to_api(), "radius": self.radius_m}}


class Rectangle(BaseModel):
    """A viewport. `low` is the south-west corner, `high` the north-east one; a low
    longitude greater than the high one means the box crosses the antimeridian."""

    model_config = ConfigDict(frozen=True)

    low: LatLng
    high: LatLng

    @model_validator(mode="after")
    def _ordered(self) -> Rectangle:
        if self.low.latitude > self.high.latitude:
            raise ValueError("rectangle low.latitude must not exceed high.latitude")
        return self

    def to_api(self) -> dict[str, Any]:
        return {"rectangle": {"low": self.low.to_api(), "high": self.high.to_api()}}


class BusinessStatus(StrEnum):
    BUSINESS_STATUS_UNSPECIFIED = "BUSINESS_STATUS_UNSPECIFIED"
    OPERATIONAL = "OPERATIONAL"
    CLOSED_TEMPORARILY = "CLOSED_TEMPORARILY"
    CLOSED_PERMANENTLY = "CLOSED_PERMANENTLY"


class Place(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        # Fields without a typed attribute (the Atmosphere ones, and those Google adds over
        # time) are kept as sent, never refused: `extra_fields` hands them on.
        extra="allow",
    )

    id: str = Field(min_length=1)
    display_name: str | None = None
    formatted_address: str | None = None
    location: LatLng | None = None
    types: tuple[str, ...] | None = None
    primary_type: str | None = None
    business_status: BusinessStatus | None = None
    website_uri: str | None = None
    national_phone_number: str | None = None
    google_maps_uri: str | None = None
    pure_service_area_business: bool | None = None
    rating: float | None = Field(default=None, ge=0, le=5)
    user_rating_count: int | None = Field(default=None, ge=0)
    # Set with business_status CLOSED_PERMANENTLY when the place moved to another id.
    moved_place_id: str | None = None
    # Enrichment: kept as Google shapes them (businesses.enrichment).
    international_phone_number: str | None = None
    regular_opening_hours: dict[str, Any] | None = None
    price_level: str | None = None
    price_range: dict[str, Any] | None = None
    address_components: list[dict[str, Any]] | None = None

    def enrichment(self) -> dict[str, Any]:
        """What the platform keeps beyond the listing columns: the enrichment fields and
        any other field the answer carried (Atmosphere), in the API's spelling."""
        typed = self.model_dump(
            mode="json", by_alias=True, exclude_none=True, include=_ENRICHMENT_ATTRIBUTES
        )
        return {**typed, **(self.model_extra or {})}

    @field_validator("display_name", mode="before")
    @classmethod
    def _localized_text(cls, value: object) -> object:
        # LocalizedText {"text": ..., "languageCode": ...}; a plain string is accepted too.
        if isinstance(value, dict):
            return value.get("text")
        return value

    @field_validator("business_status", mode="before")
    @classmethod
    def _known_status(cls, value: object) -> object:
        # A status Google adds later must not make a whole page unreadable.
        if isinstance(value, str) and value not in BusinessStatus.__members__:
            return BusinessStatus.BUSINESS_STATUS_UNSPECIFIED
        return value


_ENRICHMENT_ATTRIBUTES = {
    "international_phone_number",
    "regular_opening_hours",
    "price_level",
    "price_range",
    "address_components",
}


class _Billed(BaseModel):
    """What one successful, billed request cost (list price, see pricing.request_cost)."""

    model_config = ConfigDict(frozen=True)

    endpoint: Endpoint
    sku: str
    cost: Decimal
    http_status: int


class SearchPage(_Billed):
    """One page of a Text Search, or the single answer of a Nearby Search."""

    places: tuple[Place, ...]
    next_page_token: str | None = None

    @property
    def result_count(self) -> int:
        return len(self.places)


class DetailsResult(_Billed):
    place: Place
    # The JSON as Google sent it: `Place` carries only the listing fields phase 1 uses, and
    # enrichment pays for more (opening hours, international phone, address components).
    raw: dict[str, Any] = Field(default_factory=dict, repr=False)
