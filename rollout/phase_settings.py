"""Settings of phases 2-6 (website scan, news sources, enrichment, verification, seeding).

A section of rollout.settings.Settings (`settings.phases`); it reads the same environment and
`.env` file as the rest, and can be built on its own where a test needs only it.

Lists accept either JSON (`["a","b"]`) or a comma-separated string (`a,b`); the webhook URL
map accepts JSON (`{"crm": "https://..."}`) or `platform=url` pairs separated by commas.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from rollout.status import Platform

DEFAULT_USER_AGENT = (
    "StatewideRolloutBot/0.1 (+local-news platform website discovery; "
    "reads robots.txt, homepages and public feeds only)"
)

# Place Details fields worth paying for once per business with a website: contact, hours,
# rating and price. The highest of them (phone, hours, rating) bill the request at Place
# Details Enterprise; nothing here reaches Enterprise + Atmosphere. `location` is left out
# on purpose: phase 1 already has it, and Google lets it be cached for 30 days only.
DEFAULT_ENRICHMENT_FIELD_MASK = (
    "id,displayName,formattedAddress,addressComponents,businessStatus,googleMapsUri,"
    "primaryType,types,websiteUri,nationalPhoneNumber,internationalPhoneNumber,"
    "regularOpeningHours,rating,userRatingCount,priceLevel"
)


def _split(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class PhaseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # How often long phase activities heartbeat (well inside the workflow's 30-second
    # heartbeat_timeout; the details are the resume point of a retry).
    phase_heartbeat_s: float = Field(default=2.0, gt=0)

    # -- phase 2: website scanning ----------------------------------------------------
    scan_max_concurrency: int = Field(default=32, ge=1, le=1000)
    scan_per_host_concurrency: int = Field(default=2, ge=1, le=100)
    # Per network operation (connect, each read, write, pool wait).
    scan_timeout_s: float = Field(default=10.0, gt=0)
    # Wall-clock cap on one whole site (robots, redirects, homepage, feed probes): a server
    # that drips one byte every few seconds defeats per-read timeouts but not this one.
    scan_site_deadline_s: float = Field(default=30.0, gt=0)
    scan_max_bytes: int = Field(default=2_000_000, ge=1024)
    scan_max_redirects: int = Field(default=5, ge=0, le=20)
    scan_user_agent: str = DEFAULT_USER_AGENT
    # Explicit exceptions to the SSRF guard: "host", "host:port" or an IP network
    # ("127.0.0.0/8"). The emulator's host:port goes here; nothing is allowed by default.
    scan_allow_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Ports a site may use unless its host is allow-listed.
    scan_allowed_ports: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [80, 443, 8080, 8443]
    )
    # Paths probed for a feed, relative to the homepage's directory, when it links none.
    scan_feed_paths: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["/feed", "/rss.xml", "/atom.xml"]
    )
    # robots.txt Crawl-delay is honoured per host up to this many seconds.
    scan_max_crawl_delay_s: float = Field(default=5.0, ge=0)
    scan_robots_cache_s: float = Field(default=3600.0, ge=0)

    # -- phase 3: news sources ---------------------------------------------------------
    news_max_candidates_per_site: int = Field(default=4, ge=1, le=20)

    # -- phase 4: enrichment -----------------------------------------------------------
    enrichment_fresh_days: int = Field(default=30, ge=0)
    enrichment_field_mask: str = DEFAULT_ENRICHMENT_FIELD_MASK

    # -- phase 5: verification ---------------------------------------------------------
    verify_min_businesses: int = Field(default=1, ge=0)
    # Rates are fractions in [0, 1]; a rate above its maximum fails the phase. 1.0 = never.
    verify_max_duplicate_rate: float = Field(default=0.5, ge=0, le=1)
    verify_max_outside_region_rate: float = Field(default=1.0, ge=0, le=1)
    verify_max_unreachable_rate: float = Field(default=1.0, ge=0, le=1)
    verify_duplicate_distance_m: float = Field(default=30.0, gt=0)
    verify_required_fields: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["name", "formatted_address", "location", "primary_type"]
    )
    # Categories a community is expected to have; empty: the categories phase 1 searches
    # (DISCOVERY_DENSE_CATEGORIES + DISCOVERY_SPARSE_CATEGORIES).
    verify_expected_categories: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # -- phase 6: cross-platform seeding -----------------------------------------------
    platform_webhook_urls: Annotated[dict[Platform, str], NoDecode] = Field(default_factory=dict)
    platform_webhook_secret: SecretStr = SecretStr("")
    platform_webhook_timeout_s: float = Field(default=10.0, gt=0)
    # Tries per outbox row within one phase run; a row still undelivered stays pending for
    # the next run (or for the platform to pull) until it has been tried this many times:
    platform_webhook_attempts_per_run: int = Field(default=3, ge=1)
    platform_webhook_max_attempts: int = Field(default=10, ge=1)
    platform_webhook_concurrency: int = Field(default=8, ge=1)

    @field_validator(
        "scan_allow_hosts",
        "scan_allowed_ports",
        "scan_feed_paths",
        "verify_required_fields",
        "verify_expected_categories",
        mode="before",
    )
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("scan_feed_paths")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("/"):
                raise ValueError(f"feed path {path!r} must start with /")
        return value

    @field_validator("verify_required_fields")
    @classmethod
    def _required(cls, value: list[str]) -> list[str]:
        known = {"name", "formatted_address", "location", "primary_type", "website_uri"}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown required field(s): {sorted(unknown)}; known: {known}")
        return value

    @field_validator("platform_webhook_urls", mode="before")
    @classmethod
    def _urls(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return {}
            if text.startswith("{"):
                return json.loads(text)
            pairs = [p.split("=", 1) for p in text.split(",") if p.strip()]
            if any(len(p) != 2 for p in pairs):
                raise ValueError("PLATFORM_WEBHOOK_URLS: expected platform=url pairs")
            return {k.strip(): v.strip() for k, v in pairs}
        return value

    @field_validator("platform_webhook_urls")
    @classmethod
    def _http_urls(cls, value: dict[Platform, str]) -> dict[Platform, str]:
        for platform, url in value.items():
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"webhook URL of {platform.value} must be http(s)")
        return value

    @model_validator(mode="after")
    def _secret_with_urls(self) -> PhaseSettings:
        # An unsigned delivery could not be authenticated by the receiver: refuse to start
        # rather than send one.
        if self.platform_webhook_urls and not self.platform_webhook_secret.get_secret_value():
            raise ValueError("PLATFORM_WEBHOOK_SECRET is required when webhook URLs are set")
        return self
