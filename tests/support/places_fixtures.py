"""The Places emulator as a real child process, shared by the Places test modules.

Load with `pytest_plugins = ["tests.support.places_fixtures"]`. One emulator runs per test
session on a free loopback port; the `sim` fixture restores its default behaviour and clears
its bill and quota counters around each test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from placesim.process import PlacesimServer
from tests.support.placesim_support import DEFAULT_CONFIG, SIM_KEY, SIM_SEED, Sim

# Re-exported for `if TYPE_CHECKING: from tests.support.places_fixtures import Sim`; at run time,
# import them from tests.support.placesim_support (importing this plugin module directly would
# happen before pytest registers it).
__all__ = ["DEFAULT_CONFIG", "SIM_KEY", "SIM_SEED", "Sim", "placesim", "sim"]


@pytest.fixture(scope="session")
def placesim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    log_dir = tmp_path_factory.mktemp("placesim")
    with PlacesimServer(log_dir, seed=SIM_SEED, qpm=0) as server:
        yield Sim(server.base_url)


@pytest.fixture
def sim(placesim: Sim) -> Iterator[Sim]:
    placesim.restore()
    yield placesim
    placesim.restore()
