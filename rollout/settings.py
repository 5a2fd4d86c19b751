"""Runtime settings, read from the environment and an optional `.env` file.

One `Settings` object, with a section per concern: the top level holds the contract's
connection settings (TEMPORAL_ADDRESS, DATABASE_URL, PLACES_*, ...) and the embedded stack's
ports; `settings.discovery` holds phase 1's (DISCOVERY_*, rollout/phases/discovery/
planning.py) and `settings.phases` those of phases 2-6 (SCAN_*, NEWS_*, ENRICHMENT_*,
VERIFY_*, PLATFORM_WEBHOOK_*, rollout/phase_settings.py). The sections read the same
environment and `.env` as the top level; every variable keeps its flat name.
The Places API key is a `SecretStr`: its repr and str are masked, so it cannot leak through
logging a settings object or an exception that carries one.
"""

from __future__ import annotations

import tempfile
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from rollout.phase_settings import PhaseSettings
from rollout.phases.discovery.planning import DiscoverySettings
from rollout.places.pricing import Endpoint

# Ports of the embedded stack. Postgres uses 55432 rather than 5432 so it never collides
# with a system Postgres; Temporal keeps the CLI's own defaults so the `temporal` CLI
# works without --address.
DEFAULT_POSTGRES_PORT = 55432
DEFAULT_TEMPORAL_PORT = 7233
DEFAULT_UI_PORT = 8233
DEFAULT_PLACESIM_PORT = 8765
DEFAULT_DATABASE_NAME = "rollout"
GOOGLE_PLACES_URL = "https://places.googleapis.com"
# The key the embedded stack's emulator accepts (it is not a secret: the emulator is local).
EMULATOR_API_KEY = "placesim-local-key"
# How long a stopping worker lets running activities finish (worker.py's graceful shutdown;
# the embedded stack waits that long, and a little more, before killing it).
WORKER_GRACEFUL_SHUTDOWN_S = 30


def embedded_database_url(
    port: int = DEFAULT_POSTGRES_PORT, database: str = DEFAULT_DATABASE_NAME
) -> str:
    return f"postgresql+asyncpg://postgres@127.0.0.1:{port}/{database}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    # When DATABASE_URL is not set, the embedded Postgres of `starter.py dev` is assumed.
    database_url: str = embedded_database_url()
    places_api_key: SecretStr = SecretStr("")
    places_base_url: str = GOOGLE_PLACES_URL
    # Google's per-minute quota of each Places method (searchText, searchNearby, getPlace):
    # PLACES_QPM for every method, unless the method's own override says otherwise (a
    # project granted more Place Details than Text Search, say).
    places_qpm: int = Field(default=600, ge=1)
    places_qpm_search_text: int | None = Field(default=None, ge=1)
    places_qpm_search_nearby: int | None = Field(default=None, ge=1)
    places_qpm_get_place: int | None = Field(default=None, ge=1)
    # Billed requests Postgres could not take yet (rollout/db/usage_spool.py): keep it on a
    # disk that outlives the worker process.
    usage_spool_path: Path = Path(".stack") / "unlogged-usage.jsonl"
    # Touched by a running worker; `rollout-worker --health` reads its age.
    worker_health_file: Path = Path(tempfile.gettempdir()) / "rollout-worker.alive"

    # Embedded stack (starter.py dev / demo, tests, benchmarks).
    # Relative paths are the working directory's: an installed copy keeps its state where
    # it is run (`python starter.py` runs from the project root).
    stack_dir: Path = Path(".stack")
    stack_postgres_port: int = Field(default=DEFAULT_POSTGRES_PORT, ge=1, le=65535)
    stack_temporal_port: int = Field(default=DEFAULT_TEMPORAL_PORT, ge=1, le=65535)
    stack_ui_port: int = Field(default=DEFAULT_UI_PORT, ge=1, le=65535)
    stack_placesim_port: int = Field(default=DEFAULT_PLACESIM_PORT, ge=1, le=65535)

    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    # Prometheus endpoint of the worker (SDK metrics and the project's own); 0 turns it off.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_bind: str = "127.0.0.1"

    # What happens to Google's Places content when Google's terms stop allowing it to be
    # cached (30 days; rollout/retention.py, docs/places.md Storage terms): `purge` clears it,
    # `refresh` buys it again before then (whether refreshed content may be kept is the
    # owners' legal call), `keep` keeps it, only with the acknowledgement below.
    places_content_policy: Literal["purge", "refresh", "keep"] = "purge"
    places_content_policy_acknowledged: bool = False
    # What one retention run may spend on refreshes (list price); a run that would pass it
    # pauses until resumed with a higher budget (workflows/retention.py).
    retention_budget_usd: Decimal = Field(default=Decimal(100), gt=0)

    # Sections (built from the same environment; not settable as one variable each).
    discovery: DiscoverySettings = Field(default_factory=DiscoverySettings, exclude=True)
    phases: PhaseSettings = Field(default_factory=PhaseSettings, exclude=True)

    @field_validator("stack_dir", "usage_spool_path", "worker_health_file")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        # Fixed at start: child processes run in other directories.
        return value.expanduser().resolve()

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        # Accept the URLs people paste from elsewhere and pin the asyncpg driver.
        for prefix in (
            "postgres://",
            "postgresql://",
            "postgresql+psycopg://",
            "postgresql+psycopg2://",
        ):
            if value.startswith(prefix):
                return "postgresql+asyncpg://" + value[len(prefix) :]
        if not value.startswith("postgresql+asyncpg://"):
            raise ValueError("DATABASE_URL must be a postgresql:// or postgresql+asyncpg:// URL")
        return value

    @model_validator(mode="after")
    def _keeping_is_acknowledged(self) -> Settings:
        # Keeping Google content past 30 days goes against Google's terms: a deliberate,
        # named decision, never a typo's consequence.
        if self.places_content_policy == "keep" and not self.places_content_policy_acknowledged:
            raise ValueError(
                "PLACES_CONTENT_POLICY=keep keeps Google's Places content past the 30 days "
                "Google's terms allow; set PLACES_CONTENT_POLICY_ACKNOWLEDGED=true to confirm "
                "the owners decided so, or choose purge or refresh"
            )
        return self

    def places_qpm_of(self, method: Endpoint) -> int:
        """The per-minute quota of one Places method."""
        override = {
            Endpoint.SEARCH_TEXT: self.places_qpm_search_text,
            Endpoint.SEARCH_NEARBY: self.places_qpm_search_nearby,
            Endpoint.GET_PLACE: self.places_qpm_get_place,
        }[method]
        return self.places_qpm if override is None else override

    @property
    def uses_google(self) -> bool:
        return self.places_base_url.rstrip("/") == GOOGLE_PLACES_URL

    @property
    def database_url_given(self) -> bool:
        """True when DATABASE_URL came from the environment or `.env`, not the default."""
        return "database_url" in self.model_fields_set


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def describe_settings_error(exc: ValidationError) -> str:
    """One line naming the variable and what is wrong with it, for a command's error line
    (not a traceback)."""
    problem = exc.errors()[0]
    # A section's variables carry its prefix (DISCOVERY_MIN_CELL_DEG).
    sections = {cls.__name__: cls for cls in (Settings, DiscoverySettings, PhaseSettings)}
    section = sections.get(exc.title)
    prefix = str(section.model_config.get("env_prefix") or "") if section else ""
    name = (prefix + str(problem["loc"][0])).upper() if problem["loc"] else "settings"
    message = str(problem["msg"]).removeprefix("Value error, ")
    return f"invalid {name}: {message}"
