"""The emulator's behaviour knobs: quotas, latency, fault rates, key checks.

Set from the command line at start and changed at run time with `POST /sim/config` (a JSON
object of the fields to change), so integration tests flip behaviour without a restart.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Cloud Console defaults per method, as reported (docs/places.md, Quotas).
GOOGLE_DEFAULT_QPD = {"searchText": 75_000, "searchNearby": 75_000, "getPlace": 125_000}


class FailZone(BaseModel):
    """Every API request whose search area overlaps this circle (or, for Place Details, whose
    place lies in it) fails with `status`: a persistent failure confined to one area, e.g. to
    fail one community of a rollout and let the others complete."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lat: float = Field(ge=-90, le=90)
    lng: float = Field(ge=-180, le=180)
    radius_m: float = Field(ge=0)
    status: Literal[400, 500, 503] = 500


class SimConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    qpm: int = Field(default=600, ge=0, description="per method per window; 0: unlimited")
    qpd: int | None = Field(
        default=None, ge=0, description="per method per day; None: Google's defaults; 0: unlimited"
    )
    quota_window_s: float = Field(default=60.0, gt=0, description="the per-minute window")
    latency_ms: float = Field(default=0.0, ge=0)
    jitter_ms: float = Field(default=0.0, ge=0, description="extra latency, uniform 0..jitter")
    error_rate: float = Field(default=0.0, ge=0, le=1, description="500/503 answers")
    timeout_rate: float = Field(default=0.0, ge=0, le=1, description="no answer for hang_s")
    malformed_rate: float = Field(default=0.0, ge=0, le=1, description="truncated 200 bodies")
    hang_s: float = Field(default=30.0, gt=0, description="how long a timeout fault hangs")
    disabled: bool = Field(default=False, description="403 SERVICE_DISABLED for every call")
    api_key: str | None = Field(
        default=None, description='the accepted key; None: any non-empty key but "invalid"'
    )
    site_slow_s: float = Field(default=8.0, ge=0, description="delay of the slow sites")
    fail_near: tuple[FailZone, ...] = ()
    # Place id churn, as Google's database changes under a kept id: Place Details for a
    # gone id answers 404 NOT_FOUND; for a moved one, the place closed for good with
    # `movedPlaceId` naming its new id (docs/places.md, Place Details).
    gone_places: tuple[str, ...] = ()
    moved_places: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _rates(self) -> SimConfig:
        if self.error_rate + self.timeout_rate + self.malformed_rate > 1:
            raise ValueError("error_rate + timeout_rate + malformed_rate must not exceed 1")
        return self

    def qpd_for(self, method: str) -> int:
        return GOOGLE_DEFAULT_QPD[method] if self.qpd is None else self.qpd

    def public(self) -> dict[str, object]:
        """The config as /sim/config shows it (the accepted key is not echoed)."""
        data = self.model_dump()
        data["api_key"] = None if self.api_key is None else "***"
        return data
