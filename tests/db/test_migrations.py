"""Migrations: upgrade on an empty database, models match (alembic check), round trip."""

from __future__ import annotations

import asyncio

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from rollout.db.migrate import alembic_config
from rollout.db.models import Base
from rollout.db.session import create_engine
from tests.conftest import ScratchDatabase


async def _tables(url: str) -> set[str]:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    finally:
        await engine.dispose()
    return set(names)


def tables(url: str) -> set[str]:
    return asyncio.run(_tables(url))


def test_single_head() -> None:
    config = alembic_config("postgresql+asyncpg://unused/unused")
    assert len(ScriptDirectory.from_config(config).get_heads()) == 1


def test_upgrade_check_downgrade_round_trip(empty_db: ScratchDatabase) -> None:
    config = alembic_config(empty_db.url)
    expected = set(Base.metadata.tables)

    command.upgrade(config, "head")
    assert tables(empty_db.url) == expected | {"alembic_version"}
    command.check(config)  # raises if the models and the migrations disagree

    command.downgrade(config, "base")
    assert tables(empty_db.url) == {"alembic_version"}

    command.upgrade(config, "head")
    assert tables(empty_db.url) == expected | {"alembic_version"}
    command.check(config)


async def test_one_active_rollout_per_state(migrated_db: ScratchDatabase) -> None:
    engine = create_engine(migrated_db.url, pool_size=1)
    insert = text(
        "INSERT INTO state_rollouts (state_code, state_name, status, workflow_id) "
        "VALUES (:s, 'Delaware', :status, 'state-rollout-DE')"
    )
    try:
        async with engine.begin() as conn:
            await conn.execute(insert, {"s": "DE", "status": "completed"})
            await conn.execute(insert, {"s": "DE", "status": "paused"})
        # A second active (planned / in_progress / paused) rollout of DE is refused...
        for status in ("planned", "in_progress", "paused"):
            with pytest.raises(IntegrityError, match="uq_state_rollouts_active_state"):
                async with engine.begin() as conn:
                    await conn.execute(insert, {"s": "DE", "status": status})
        # ...while finished ones and other states are not limited.
        async with engine.begin() as conn:
            await conn.execute(insert, {"s": "DE", "status": "cancelled"})
            await conn.execute(insert, {"s": "RI", "status": "in_progress"})
        # Status words are checked by the database too.
        with pytest.raises(IntegrityError, match="ck_state_rollouts_status_word"):
            async with engine.begin() as conn:
                await conn.execute(insert, {"s": "VT", "status": "running"})
    finally:
        await engine.dispose()


async def test_money_is_numeric(migrated_db: ScratchDatabase) -> None:
    engine = create_engine(migrated_db.url, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT table_name, column_name, data_type FROM information_schema.columns "
                    "WHERE column_name IN ('cost', 'total_cost', 'api_cost_estimate', 'budget_usd')"
                )
            )
            found = {(t, c): d for t, c, d in rows}
    finally:
        await engine.dispose()
    assert set(found) == {
        ("rollout_api_usage", "cost"),
        ("places_answers", "cost"),
        ("state_rollouts", "total_cost"),
        ("state_rollouts", "budget_usd"),
        ("community_rollouts", "api_cost_estimate"),
    }
    assert set(found.values()) == {"numeric"}
