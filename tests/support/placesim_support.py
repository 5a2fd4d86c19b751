"""Helpers for tests against the Places emulator: its test settings and a control client.

The fixtures are in tests/support/places_fixtures.py (a plugin module, loaded with pytest_plugins);
this module holds what test modules import directly, so the plugin is not imported before
pytest registers it.
"""

from __future__ import annotations

from typing import Any

import httpx

SIM_SEED = 11
SIM_KEY = "test-places-key-5f3a9c"

# What each test starts from: no quotas in the way, no faults, any key but "invalid".
DEFAULT_CONFIG: dict[str, Any] = {
    "qpm": 0,
    "qpd": 0,
    "quota_window_s": 60.0,
    "latency_ms": 0.0,
    "jitter_ms": 0.0,
    "error_rate": 0.0,
    "timeout_rate": 0.0,
    "malformed_rate": 0.0,
    "hang_s": 30.0,
    "disabled": False,
    "api_key": None,
    "site_slow_s": 0.5,
    "fail_near": [],
}


class Sim:
    """Control and ground-truth access to a running emulator."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.base_url}{path}", params=params, timeout=30)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, payload: Any = None) -> Any:
        response = httpx.post(f"{self.base_url}{path}", json=payload, timeout=30)
        response.raise_for_status()
        return response.json()

    def configure(self, **changes: Any) -> Any:
        return self.post("/sim/config", changes)

    def billing(self) -> Any:
        return self.get("/sim/billing")

    def community(self, community_id: int) -> Any:
        return self.get("/sim/world", community_id=community_id)

    def restore(self) -> None:
        self.post("/sim/config", DEFAULT_CONFIG)
        self.post("/sim/reset")
