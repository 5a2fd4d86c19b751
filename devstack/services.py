"""The rest of the embedded stack: the Places emulator and a worker as child processes.

Used by `starter.py dev` / `demo` and the benchmarks, on top of devstack.embedded (Postgres and
Temporal), so every entry point runs the same real services.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx

from devstack.embedded import EmbeddedStack, ManagedProcess
from placesim.process import placesim_process, placesim_ready
from rollout.communities import load_communities
from rollout.settings import EMULATOR_API_KEY, WORKER_GRACEFUL_SHUTDOWN_S, Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# A shorter category list than a real rollout's (rollout/phases/discovery/planning.py) so
# that a whole state finishes in a few minutes on a laptop; every phase still does its real work.
DEMO_DISCOVERY = {
    "DISCOVERY_DENSE_CATEGORIES": '["restaurant", "cafe", "hair_salon", "church"]',
    "DISCOVERY_SPARSE_CATEGORIES": '["florist", "library", "plumber"]',
    "DISCOVERY_TEXT_QUERIES": "[]",
    # The emulator hosts every business website on one host:port, where real sites have a
    # host each; the per-host politeness limit would serialise the whole demo on it.
    "SCAN_PER_HOST_CONCURRENCY": "16",
}


def start_emulator(
    stack: EmbeddedStack,
    port: int,
    *,
    seed: int = 1,
    qpm: int = 600,
    extra: list[str] | None = None,
) -> str:
    """Start placesim under the stack; returns its base URL."""
    url = f"http://127.0.0.1:{port}"
    process = placesim_process(
        port, stack.log_dir / "placesim.log", seed=seed, qpm=qpm, extra_args=extra or []
    )
    stack.add_process(process, placesim_ready(url), timeout=60)
    return url


def warm_emulator(sim_url: str, state: str) -> int:
    """Have the emulator generate the state's communities now (GET /sim/world, no quota).
    It generates a community on the first request that touches it, a fraction of a second
    of its one thread each (more on a busy machine), during which it reads no request: the
    requests queued meanwhile are then counted in a bunch, closer together than they were
    sent, which Google's servers do not do."""
    ids = [c.id for c in load_communities(state)]
    with httpx.Client(base_url=sim_url, timeout=120) as http:
        for community_id in ids:
            http.get("/sim/world", params={"community_id": community_id}).raise_for_status()
    return len(ids)


def worker_environment(
    stack: EmbeddedStack, settings: Settings, places_url: str | None, extra: Mapping[str, str]
) -> dict[str, str]:
    env = {**os.environ, **stack.environment(), "LOG_LEVEL": settings.log_level}
    if places_url is not None:
        env["PLACES_BASE_URL"] = places_url
        env["PLACES_API_KEY"] = settings.places_api_key.get_secret_value() or EMULATOR_API_KEY
        # The emulator hosts the business websites on loopback; the scanner refuses
        # loopback unless told, and is told exactly this host and port.
        env.setdefault("SCAN_ALLOW_HOSTS", places_url.removeprefix("http://"))
    env.update(extra)
    return env


def start_worker(
    stack: EmbeddedStack, env: Mapping[str, str], *, name: str = "worker", timeout: float = 60
) -> ManagedProcess:
    log_path = stack.log_dir / f"{name}.log"
    ready_file = stack.log_dir / f"{name}.ready"
    ready_file.unlink(missing_ok=True)
    process = ManagedProcess(
        name,
        [sys.executable, str(PROJECT_ROOT / "worker.py")],
        log_path,
        env={**env, "WORKER_READY_FILE": str(ready_file)},
        # The operator's directory, where .env and .stack are (an installed copy's
        # PROJECT_ROOT is site-packages).
        cwd=Path.cwd(),
        # The worker's own graceful shutdown lets running activities finish for up to
        # WORKER_GRACEFUL_SHUTDOWN_S; killing it sooner would cut them off at Ctrl-C.
        stop_timeout=WORKER_GRACEFUL_SHUTDOWN_S + 5,
    )
    stack.add_process(process, ready_file.exists, timeout)
    return process
