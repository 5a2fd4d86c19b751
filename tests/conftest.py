"""Shared fixtures: one real embedded stack (Postgres + Temporal dev server) per test
session, on free ports with throwaway data, so tests run beside a developer's `dev`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from devstack.embedded import EmbeddedStack, StackConfig
from rollout.db.migrate import upgrade
from rollout.db.session import create_engine
from rollout.settings import embedded_database_url

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Fixtures that start a real service (Postgres and Temporal, the emulator as a process):
# every test that uses one, directly or through another fixture, is an integration test.
SERVICE_FIXTURES = frozenset({"stack", "emulator", "placesim"})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark integration tests by what they use, so `-m "not integration"` can never pick
    one that needs a service (it runs before the marker selection deselects)."""
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    with EmbeddedStack(StackConfig.ephemeral(tmp_path_factory.mktemp("stack"))) as running:
        yield running


class ScratchDatabase:
    """A database of its own on the session's Postgres, dropped afterwards."""

    def __init__(self, stack: EmbeddedStack) -> None:
        assert stack.postgres is not None
        self.postgres = stack.postgres
        self.name = f"t_{uuid.uuid4().hex[:12]}"
        self.url = embedded_database_url(stack.config.postgres_port, self.name)

    def __enter__(self) -> ScratchDatabase:
        self.postgres.ensure_database(self.name)
        return self

    def __exit__(self, *exc: object) -> None:
        self.postgres.drop_database(self.name)


@pytest.fixture
def empty_db(stack: EmbeddedStack) -> Iterator[ScratchDatabase]:
    with ScratchDatabase(stack) as db:
        yield db


@pytest.fixture
def migrated_db(empty_db: ScratchDatabase) -> ScratchDatabase:
    upgrade(empty_db.url)
    return empty_db


@pytest_asyncio.fixture
async def engine(migrated_db: ScratchDatabase) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(migrated_db.url)
    try:
        yield eng
    finally:
        await eng.dispose()
