"""docker-compose.yml: the production-like topology is complete and consistent with the code.

No Docker engine runs here, so the file's structure is what can be checked: it against the
Compose specification's schema, then what the schema cannot know: pinned images, health
checks and restart policies, the workers' metrics and environment as the settings read
them, the search attributes, and the monitoring profile's files."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import SecretStr

from devstack.embedded import SEARCH_ATTRIBUTES
from rollout.contract import PLACES_TASK_QUEUE
from rollout.phase_settings import PhaseSettings
from rollout.phases.discovery.planning import DiscoverySettings
from rollout.places.client import PlacesClient
from rollout.settings import (
    EMULATOR_API_KEY,
    GOOGLE_PLACES_URL,
    WORKER_GRACEFUL_SHUTDOWN_S,
    Settings,
)

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
SERVICES: dict[str, Any] = COMPOSE["services"]

# The Compose specification's schema (compose-spec/compose-spec, schema/compose-spec.json,
# Apache-2.0: tests/data/LICENSE.compose-spec), as vendored by check-jsonschema 0.39.0 (PyPI,
# 2026-10: check_jsonschema/builtin_schemas/vendor/compose-spec.json). Replace both files
# from a newer check-jsonschema, then this hash.
COMPOSE_SPEC = ROOT / "tests" / "data" / "compose-spec.json"
COMPOSE_SPEC_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"

# Jobs that run to completion; everything else runs until stopped.
ONE_SHOT = {
    "temporal-admin-tools",
    "temporal-create-namespace",
    "temporal-search-attributes",
    "rollout-migrate",
    "grafana-dashboards",
}
WORKERS = ("worker", "worker-emulator")
PROJECT_IMAGE_SERVICES = [name for name, s in SERVICES.items() if s.get("build") == "."]
METRICS_PORT = "9464"
TEMPORAL_METRICS_PORT = "8000"

GRAFANA = ROOT / "deploy" / "grafana"
ROLLOUT_DASHBOARD = GRAFANA / "dashboards" / "rollout.json"
FETCH_SDK_DASHBOARD = GRAFANA / "fetch-temporal-sdk-dashboard.sh"


def seconds(duration: str) -> float:
    """A Compose duration ("45s", "1m30s", "500ms") in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts, duration
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def container_port(mapping: str | int) -> str:
    """The container side of a `ports` entry ("127.0.0.1:9090:9090/tcp" -> "9090")."""
    return str(mapping).split("/")[0].rsplit(":", 1)[-1]


def interpolated(value: object) -> str:
    """A value as Compose gives it to the container when none of its variables is set."""
    return re.sub(r"\$\{\w+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", str(value))


def environment(service: str) -> dict[str, str]:
    return {name: str(value) for name, value in SERVICES[service]["environment"].items()}


def settings_of(service: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    """The settings a container of `service` starts with (no .env: the container has none)."""
    monkeypatch.chdir(tmp_path)
    for name, value in environment(service).items():
        monkeypatch.setenv(name, interpolated(value))
    return Settings()


def volume_targets(service: str) -> dict[str, str]:
    """Source -> path in the container, for the service's short-syntax volumes."""
    return dict(tuple(v.split(":")[:2]) for v in SERVICES[service].get("volumes", []))


def strings(node: object) -> list[str]:
    """Every string value of a parsed YAML or JSON document."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return []


def exprs(dashboard: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for panel in dashboard["panels"]:
        found += [target["expr"] for target in panel.get("targets", [])]
        found += exprs(panel) if "panels" in panel else []
    return found


# --- the file as a whole ----------------------------------------------------------------


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
        "worker-emulator",
        "placesim",
        "prometheus",
        "grafana-dashboards",
        "grafana",
    }
    profiles = {name: s.get("profiles") for name, s in SERVICES.items() if "profiles" in s}
    assert profiles == {
        # Never both workers at once: they poll the same task queues.
        "worker": ["production"],
        "worker-emulator": ["emulator"],
        "placesim": ["emulator"],
        "prometheus": ["monitoring"],
        "grafana-dashboards": ["monitoring"],
        "grafana": ["monitoring"],
    }
    assert (ROOT / "Dockerfile").exists()
    for name in WORKERS:
        assert SERVICES[name]["build"] == "."
        assert SERVICES[name]["command"] == ["python", "worker.py"]


def test_the_file_follows_the_compose_specification() -> None:
    assert hashlib.sha256(COMPOSE_SPEC.read_bytes()).hexdigest() == COMPOSE_SPEC_SHA256
    schema = json.loads(COMPOSE_SPEC.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(COMPOSE)]
    assert errors == []
    # The schema does reject what Compose rejects (a misspelt key, a number for a string).
    broken = {"services": {"worker": {"image": "x:1", "helthcheck": {}, "restart": 3}}}
    assert len(list(validator.iter_errors(broken))) == 2


def test_images_are_pinned_and_not_deprecated() -> None:
    for name, service in SERVICES.items():
        image = service.get("image")
        assert image, f"{name}: no image"
        assert ":" in image, f"{name}: {image} is not pinned"
        assert not image.endswith(":latest"), f"{name}: {image} is not pinned"
        assert "auto-setup" not in image, f"{name}: temporalio/auto-setup is deprecated"
    temporal = {
        name: SERVICES[name]["image"].split(":")
        for name in SERVICES
        if SERVICES[name]["image"].startswith(("temporalio/server:", "temporalio/admin-tools:"))
    }
    assert {"temporal", "temporal-admin-tools", "temporal-create-namespace"} <= set(temporal)
    # Server and admin-tools (whose schema tool migrates the server's database) move together.
    assert len({version for _, version in temporal.values()}) == 1
    assert SERVICES["grafana-dashboards"]["image"] == SERVICES["grafana"]["image"]


def test_long_running_services_have_healthchecks_and_restart_policies() -> None:
    for name, service in SERVICES.items():
        if name in ONE_SHOT:
            # Retried a few times, never restarted once done.
            assert re.fullmatch(r"on-failure(:\d+)?|no", service.get("restart", "no")), name
            continue
        assert service.get("restart") == "unless-stopped", name
        check = service.get("healthcheck", {})
        assert check.get("test"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert seconds(check["start_period"]) > 0, name


def test_dependencies_wait_for_health_or_completion() -> None:
    for name, service in SERVICES.items():
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in SERVICES, f"{name} -> {dependency}"
            expected = (
                "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            )
            assert spec["condition"] == expected, f"{name} -> {dependency}"
            # A dependency outside the service's profiles would never start with it.
            assert set(SERVICES[dependency].get("profiles", [])) <= set(
                service.get("profiles", [])
            ), f"{name} -> {dependency}"


# --- the workers ------------------------------------------------------------------------


def test_metrics_are_exposed_without_host_ports_so_workers_scale() -> None:
    for name, service in SERVICES.items():
        published = {container_port(p) for p in service.get("ports", [])}
        assert not published & {METRICS_PORT, TEMPORAL_METRICS_PORT}, name
        # A fixed name admits one container per service.
        assert "container_name" not in service, name
    for name in WORKERS:
        worker = SERVICES[name]
        assert "ports" not in worker, name
        assert [str(p) for p in worker["expose"]] == [METRICS_PORT]
        env = environment(name)
        assert env["METRICS_PORT"] == METRICS_PORT
        assert env["METRICS_BIND"] == "0.0.0.0"  # noqa: S104 - inside the container network
    temporal = SERVICES["temporal"]
    assert environment("temporal")["PROMETHEUS_ENDPOINT"] == f"0.0.0.0:{TEMPORAL_METRICS_PORT}"
    assert [str(p) for p in temporal["expose"]] == [TEMPORAL_METRICS_PORT]


def test_workers_stop_gracefully_and_report_health() -> None:
    for name in WORKERS:
        worker = SERVICES[name]
        assert worker["healthcheck"]["test"] == ["CMD", "python", "worker.py", "--health"]
        assert worker["stop_signal"] == "SIGTERM"
        assert seconds(worker["stop_grace_period"]) > WORKER_GRACEFUL_SHUTDOWN_S
        # The spool of unlogged billed requests outlives the container, on a named volume
        # that starts as a copy of the image's directory, which the image's user owns.
        spool = Path(environment(name)["USAGE_SPOOL_PATH"])
        assert volume_targets(name)["rollout-spool"] == str(spool.parent)
        assert re.search(rf"chown \S*rollout\S* {re.escape(str(spool.parent))}\b", DOCKERFILE)


def test_the_image_healthcheck_is_the_workers_and_others_replace_it() -> None:
    """The image's HEALTHCHECK asks the worker; the workers restate it, the emulator and the
    one-shot jobs of the same image replace or disable it."""
    line = re.search(r"HEALTHCHECK (.*?)\\?\n\s*CMD (\[.*\])", DOCKERFILE)
    assert line
    options = dict(re.findall(r"--([a-z-]+)=(\S+)", line.group(1)))
    for name in WORKERS:
        check = SERVICES[name]["healthcheck"]
        assert check["test"] == ["CMD", *json.loads(line.group(2))]
        for option, value in options.items():
            key = option.replace("-", "_")
            assert str(check[key]) == value, f"{name}: {key}"
    for name in PROJECT_IMAGE_SERVICES:
        check = SERVICES[name].get("healthcheck", {})
        if name in ONE_SHOT:
            assert check == {"disable": True}, name
        elif name not in WORKERS:
            assert "worker.py" not in check["test"], name


def test_the_emulator_worker_works_out_of_the_box(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = environment("worker-emulator")
    assert "${" not in env["PLACES_API_KEY"]  # nothing to set
    settings = settings_of("worker-emulator", monkeypatch, tmp_path)
    key = settings.places_api_key.get_secret_value()
    assert key == EMULATOR_API_KEY
    assert key not in ("", "invalid")  # the emulator accepts any other key
    PlacesClient(settings.places_base_url, settings.places_api_key)  # no refusal
    # The emulator serves its businesses' websites from its own host:port, which the SSRF
    # guard must allow, and nothing else.
    command = SERVICES["placesim"]["command"]
    emulator = f"placesim:{command[command.index('--port') + 1]}"
    assert settings.places_base_url == f"http://{emulator}"
    assert settings.phases.scan_allow_hosts == [emulator]
    assert SERVICES["worker-emulator"]["depends_on"]["placesim"]["condition"] == "service_healthy"


def test_the_production_worker_needs_its_own_key_and_allows_no_private_host(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = environment("worker")
    assert "SCAN_ALLOW_HOSTS" not in env
    # The key comes from the operator's environment, with no default to fall back on.
    assert re.fullmatch(r"\$\{PLACES_API_KEY(:?-)?\}", env["PLACES_API_KEY"])
    # Not `${VAR:?}` anywhere: Compose interpolates every service before it applies the
    # profiles, so a required key would stop the emulator profile too.
    assert not [s for s in strings(COMPOSE) if re.search(r"\$\{\w+:?\?", s)]
    settings = settings_of("worker", monkeypatch, tmp_path)
    assert settings.places_base_url == GOOGLE_PLACES_URL
    assert settings.phases.scan_allow_hosts == []
    # Without a key the worker refuses to start (and says why) instead of calling Google.
    assert settings.places_api_key.get_secret_value() == ""
    with pytest.raises(ValueError, match="PLACES_API_KEY"):
        PlacesClient(settings.places_base_url, SecretStr(""))


def test_environment_names_match_the_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    known = {
        name.upper()
        for model in (Settings, PhaseSettings, DiscoverySettings)
        for name in model.model_fields
    }
    assert {"rollout-migrate", "placesim", *WORKERS} <= set(PROJECT_IMAGE_SERVICES)
    for name in PROJECT_IMAGE_SERVICES:
        env = SERVICES[name].get("environment", {})
        assert set(env) <= known, f"{name}: unknown settings {set(env) - known}"
    for name in ("rollout-migrate", *WORKERS):
        env = environment(name)
        assert env["TEMPORAL_ADDRESS"] == "temporal:7233"
        assert env["DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert env["LOG_FORMAT"] == "json"
    for name in WORKERS:
        assert {"PLACES_API_KEY", "PLACES_BASE_URL", "PLACES_QPM", "USAGE_SPOOL_PATH"} <= set(
            environment(name)
        )
        # Every value parses as the settings read it.
        settings = settings_of(name, monkeypatch, tmp_path)
        assert settings.metrics_port == int(METRICS_PORT)
        assert settings.log_format == "json"


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
    for name in WORKERS:
        worker_deps = SERVICES[name]["depends_on"]
        assert worker_deps["temporal-search-attributes"]["condition"] == (
            "service_completed_successfully"
        )
        assert worker_deps["rollout-migrate"]["condition"] == "service_completed_successfully"


def test_mounted_files_and_volumes_exist() -> None:
    for name in SERVICES:
        for source in volume_targets(name):
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source}"
            else:
                assert source in COMPOSE["volumes"], f"{name}: {source}"


# --- the monitoring profile -------------------------------------------------------------


def test_prometheus_scrapes_every_worker_replica_and_the_server() -> None:
    mounted = {t: s for s, t in volume_targets("prometheus").items()}
    config_path = next(
        a.split("=", 1)[1] for a in SERVICES["prometheus"]["command"] if "config" in a
    )
    config: dict[str, Any] = yaml.safe_load((ROOT / mounted[config_path]).read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    # DNS discovery, not static targets: `--scale worker=N` adds targets by itself.
    (workers,) = jobs["rollout-worker"]["dns_sd_configs"]
    assert set(workers["names"]) == set(WORKERS)
    assert workers["type"] == "A"
    assert str(workers["port"]) == METRICS_PORT
    assert jobs["temporal-server"]["static_configs"][0]["targets"] == [
        f"temporal:{TEMPORAL_METRICS_PORT}"
    ]


def test_grafana_is_provisioned_with_prometheus_and_both_dashboards() -> None:
    grafana = volume_targets("grafana")
    provisioning = GRAFANA / "provisioning"
    assert grafana["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (datasource,) = datasources["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    assert "127.0.0.1:9090:9090" in SERVICES["prometheus"]["ports"]
    assert datasource["isDefault"] is True

    providers = yaml.safe_load((provisioning / "dashboards" / "dashboards.yml").read_text())
    paths = {p["name"]: p["options"]["path"] for p in providers["providers"]}
    # The project's dashboard from this repository, read-only.
    assert grafana["./deploy/grafana/dashboards"] == paths["rollout"]
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{paths['rollout']}/{ROLLOUT_DASHBOARD.name}"
    # Temporal's, where the download job leaves it: on the volume both containers share.
    script = FETCH_SDK_DASHBOARD.read_text()
    assert f"DIR={paths['temporal']}\n" in script
    data = volume_targets("grafana-dashboards")["grafana-data"]
    assert grafana["grafana-data"] == data
    assert paths["temporal"].startswith(data + "/")
    assert (
        volume_targets("grafana-dashboards")["./deploy/grafana/fetch-temporal-sdk-dashboard.sh"]
        == SERVICES["grafana-dashboards"]["command"][0]
    )


def test_temporal_sdk_dashboard_is_pinned_by_commit_and_hash() -> None:
    script = FETCH_SDK_DASHBOARD.read_text()
    commit = re.search(r"^COMMIT=([0-9a-f]{40})$", script, re.MULTILINE)
    assert commit
    assert re.search(r"^SHA256=[0-9a-f]{64}$", script, re.MULTILINE)
    assert "temporalio/dashboards/$COMMIT/sdk/temporal-go-java-sdks-tally.json" in script
    assert "sha256sum -c" in script
    # The provisioning file names the same commit.
    providers = GRAFANA / "provisioning" / "dashboards" / "dashboards.yml"
    assert commit.group(1) in providers.read_text()


def test_dashboards_are_json_and_query_the_metrics_the_worker_exports() -> None:
    for path in (GRAFANA / "dashboards").glob("*.json"):
        json.loads(path.read_text())
    dashboard = json.loads(ROLLOUT_DASHBOARD.read_text())
    queries = exprs(dashboard)
    text = "\n".join(queries)
    # Prometheus's names of activities/metrics.py's metrics (`_total` counters, the cost
    # histogram in `_usd`) and of the SDK's schedule-to-start histogram, in seconds.
    assert set(re.findall(r"\brollout_\w+", text)) <= {
        "rollout_places_requests_total",
        "rollout_places_cost_usd_sum",
        "rollout_places_cost_usd_count",
        "rollout_places_cost_usd_bucket",
        "rollout_businesses_discovered_total",
        "rollout_communities_total",
    }
    assert re.search(r"sum by \(sku\) \(rate\(rollout_places_requests_total\[", text)
    assert "sum(rollout_places_cost_usd_sum)" in text
    assert "rate(rollout_places_cost_usd_sum[" in text
    assert re.search(r"sum by \(status\) \(\w+\(rollout_communities_total\[", text)
    latency = [q for q in queries if "schedule_to_start" in q]
    assert latency
    for query in latency:
        assert query.startswith("histogram_quantile(")
        # One line per places queue (one per Places method).
        assert "sum by (le, task_queue)" in query
        assert (
            'temporal_activity_schedule_to_start_latency_seconds_bucket{task_queue=~"'
            f'{PLACES_TASK_QUEUE}.*"}}' in query
        )
    # Every panel reads the provisioned Prometheus.
    datasources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    uid = datasources["datasources"][0]["uid"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert all(t["datasource"]["uid"] == uid for t in panel["targets"]), panel["title"]
