"""Run Alembic migrations from code (the starter, the demo, the tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
ALEMBIC_INI = MIGRATIONS_DIR.parent.parent / "alembic.ini"


def alembic_config(database_url: str) -> Config:
    """An Alembic config for `database_url` that works from any working directory, with or
    without the repository's alembic.ini (an installed package has only the migrations)."""
    config = Config(str(ALEMBIC_INI)) if ALEMBIC_INI.exists() else Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # `%` is interpolation syntax in ini values; a password may contain one.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logging"] = False
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


async def upgrade_async(database_url: str, revision: str = "head") -> None:
    # env.py calls asyncio.run, which cannot nest in a running loop: use a thread.
    await asyncio.to_thread(upgrade, database_url, revision)
