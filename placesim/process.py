"""Run the emulator as a child process, for tests, benchmarks and the embedded stack.

    process = placesim_process(port, log_dir / "placesim.log", seed=1)
    stack.add_process(process, placesim_ready(f"http://127.0.0.1:{port}"), timeout=30)

or on its own: `with PlacesimServer(log_dir, qpm=0) as sim: ... sim.base_url ...`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import httpx

from devstack.embedded import ManagedProcess, StackError, free_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def placesim_argv(
    port: int,
    *,
    host: str = "127.0.0.1",
    seed: int = 1,
    qpm: int = 600,
    sku_table: Path | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    table = [] if sku_table is None else ["--sku-table", str(sku_table)]
    return [
        sys.executable, "-m", "placesim", "--host", host, "--port", str(port),
        "--seed", str(seed), "--qpm", str(qpm), *table, *extra_args,
    ]  # fmt: skip


def placesim_process(
    port: int,
    log_path: Path,
    *,
    host: str = "127.0.0.1",
    seed: int = 1,
    qpm: int = 600,
    sku_table: Path | None = None,
    extra_args: Sequence[str] = (),
) -> ManagedProcess:
    """The emulator as a ManagedProcess (not started). It runs from the project root, so
    `-m placesim` imports however the project is installed. `sku_table`: bill from this table
    instead of placesim/data/skus.json."""
    return ManagedProcess(
        "placesim",
        placesim_argv(
            port, host=host, seed=seed, qpm=qpm, sku_table=sku_table, extra_args=extra_args
        ),
        log_path,
        cwd=PROJECT_ROOT,
    )


def placesim_ready(base_url: str) -> Callable[[], bool]:
    """A readiness check for EmbeddedStack.add_process: the emulator answers /sim/health."""

    def ready() -> bool:
        try:
            response = httpx.get(f"{base_url}/sim/health", timeout=2)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.json().get("service") == "placesim"

    return ready


class PlacesimServer:
    """The emulator on a free loopback port, started and stopped with `with`."""

    def __init__(
        self,
        log_dir: Path,
        *,
        seed: int = 1,
        qpm: int = 600,
        sku_table: Path | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.startup_timeout = startup_timeout
        self.process = placesim_process(
            self.port,
            log_dir / "placesim.log",
            seed=seed,
            qpm=qpm,
            sku_table=sku_table,
            extra_args=extra_args,
        )

    def start(self) -> PlacesimServer:
        self.process.start()
        ready = placesim_ready(self.base_url)
        deadline = time.monotonic() + self.startup_timeout
        try:
            while not ready():
                if not self.process.running():
                    raise self.process.failure()
                if time.monotonic() > deadline:
                    raise StackError(f"placesim not ready after {self.startup_timeout:.0f}s")
                time.sleep(0.1)
        except BaseException:
            self.process.stop()
            raise
        return self

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> PlacesimServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
