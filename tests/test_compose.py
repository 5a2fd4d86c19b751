"""docker-compose.yml: the production-like topology is complete and consistent with the code.

No Docker engine runs here, so the file's structure is what can be checked: the services,
pinned images, the environment names the settings read, and the search attributes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from devstack.embedded import SEARCH_ATTRIBUTES
from rollout.phase_settings import PhaseSettings
from rollout.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def test_services_of_the_topology() -> None:
    assert set(SERVICES) == {
        "postgresql",
        "temporal-admin-tools",
        "temporal",
        "temporal-create-namespace",
        "temporal-search-attributes",
        "temporal-ui",
        "rollout-postgres",
        "rollout-migrate",
        "worker",
        "placesim",
    }
    assert SERVICES["placesim"]["profiles"] == ["emulator"]
    assert SERVICES["worker"]["build"] == "."
    assert (ROOT / "Dockerfile").exists()
    assert SERVICES["worker"]["command"] == ["python", "worker.py"]


def test_images_are_pinned_and_not_deprecated() -> None:
    for name, service in SERVICES.items():
        image = service.get("image")
        if image is None:
            assert "build" in service, name
            continue
        assert ":" in image, f"{name}: {image} is not pinned"
        assert not image.endswith(":latest"), f"{name}: {image} is not pinned"
        assert "auto-setup" not in image, f"{name}: temporalio/auto-setup is deprecated"
    versions = {
        SERVICES[s]["image"].split(":")[1]
        for s in ("temporal", "temporal-admin-tools", "temporal-create-namespace")
    }
    assert len(versions) == 1  # server and admin-tools move together


def test_environment_names_match_the_settings() -> None:
    known = {name.upper() for name in Settings.model_fields} | {
        name.upper() for name in PhaseSettings.model_fields
    }
    for name in ("rollout-migrate", "worker"):
        env = SERVICES[name]["environment"]
        assert set(env) <= known, f"{name}: unknown settings {set(env) - known}"
        for required in (
            "TEMPORAL_ADDRESS",
            "TEMPORAL_NAMESPACE",
            "DATABASE_URL",
            "PLACES_API_KEY",
            "PLACES_BASE_URL",
            "PLACES_QPM",
        ):
            assert required in env
        assert env["DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert env["TEMPORAL_ADDRESS"] == "temporal:7233"


def test_search_attributes_are_registered() -> None:
    job = SERVICES["temporal-search-attributes"]
    script = ROOT / job["volumes"][0].split(":")[0]
    text = script.read_text()
    for attribute, kind in SEARCH_ATTRIBUTES.items():
        assert attribute in text
        assert f"--type {kind}" in text
    assert (
        job["depends_on"]["temporal-create-namespace"]["condition"]
        == "service_completed_successfully"
    )
    worker_deps = SERVICES["worker"]["depends_on"]
    assert worker_deps["temporal-search-attributes"]["condition"] == (
        "service_completed_successfully"
    )
    assert worker_deps["rollout-migrate"]["condition"] == "service_completed_successfully"


def test_mounted_scripts_exist() -> None:
    for service in SERVICES.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
