"""Settings: contract names, .env honoured, the API key never printed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rollout.places.pricing import Endpoint
from rollout.settings import Settings


def test_defaults_follow_the_contract(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "DATABASE_URL", "PLACES_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.temporal_address == "localhost:7233"
    assert settings.temporal_namespace == "default"
    assert settings.places_base_url == "https://places.googleapis.com"
    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert not settings.database_url_given


def test_dotenv_is_honoured_and_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        "TEMPORAL_NAMESPACE=rollouts\nPLACES_QPM=1200\nDATABASE_URL=postgresql://u@db:5432/x\n"
        "TEMPORAL_ADDRESS=from-dotenv:7233\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEMPORAL_ADDRESS", "from-env:7233")
    settings = Settings()
    assert settings.temporal_namespace == "rollouts"
    assert settings.places_qpm == 1200
    assert settings.temporal_address == "from-env:7233"
    # Plain postgresql:// URLs get the async driver; a given URL disables embedded Postgres.
    assert settings.database_url == "postgresql+asyncpg://u@db:5432/x"
    assert settings.database_url_given


def test_api_key_is_masked_everywhere(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PLACES_API_KEY", "AIza-very-secret")
    settings = Settings()
    assert settings.places_api_key.get_secret_value() == "AIza-very-secret"
    logging.getLogger("test").warning("settings: %s %r", settings, settings)
    assert "AIza-very-secret" not in caplog.text
    assert "AIza-very-secret" not in str(settings.model_dump())
    assert "AIza-very-secret" not in settings.model_dump_json()


def test_bad_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLACES_QPM", "0")
    with pytest.raises(ValueError, match="places_qpm"):
        Settings()
    monkeypatch.setenv("PLACES_QPM", "600")
    monkeypatch.setenv("RETENTION_BUDGET_USD", "0")
    with pytest.raises(ValueError, match="retention_budget_usd"):
        Settings()


def test_sections_read_the_same_flat_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        'DISCOVERY_DENSE_CATEGORIES=["bakery"]\nSCAN_MAX_CONCURRENCY=5\n'
    )
    monkeypatch.setenv("VERIFY_MIN_BUSINESSES", "3")
    settings = Settings()
    assert settings.discovery.dense_categories == ["bakery"]
    assert settings.phases.scan_max_concurrency == 5
    assert settings.phases.verify_min_businesses == 3
    # A bad value in a section is refused when the settings are read, naming it.
    monkeypatch.setenv("DISCOVERY_DENSE_CATEGORIES", '["not_a_place_type"]')
    with pytest.raises(ValueError, match="not_a_place_type"):
        Settings()


def test_each_places_method_has_places_qpm_unless_its_own_is_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("PLACES_QPM", "900")
    monkeypatch.setenv("PLACES_QPM_GET_PLACE", "3000")
    settings = Settings()
    assert {m: settings.places_qpm_of(m) for m in Endpoint} == {
        Endpoint.SEARCH_TEXT: 900,
        Endpoint.SEARCH_NEARBY: 900,
        Endpoint.GET_PLACE: 3000,
    }
    monkeypatch.setenv("PLACES_QPM_SEARCH_TEXT", "0")
    with pytest.raises(ValueError, match="places_qpm_search_text"):
        Settings()
