"""starter.py through its real command line: bad input is one line, a non-zero exit and no
change; good input migrates and seeds."""

from __future__ import annotations

import os
import subprocess
import sys

import asyncpg
import pytest

from tests.conftest import PROJECT_ROOT, ScratchDatabase


def starter(*args: str, database_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PLACES_API_KEY": "k-secret-test-key"}
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "starter.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


async def community_count(url: str) -> int:
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM communities"))
    finally:
        await conn.close()


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


def test_migrate_then_seed_one_state_then_all(empty_db: ScratchDatabase) -> None:
    migrated = starter("migrate", database_url=empty_db.url)
    assert migrated.returncode == 0, migrated.stderr

    one = starter("seed-communities", "--state", "de", database_url=empty_db.url)
    assert one.returncode == 0, one.stderr
    assert "seeded 56 communities of Delaware" in one.stdout

    every = starter("seed-communities", database_url=empty_db.url)
    assert every.returncode == 0, every.stderr
    assert "seeded 21,612 communities of 51 states and DC" in every.stdout
    assert "GeoNames" in every.stdout


async def test_unknown_state_is_one_line_and_changes_nothing(
    migrated_db: ScratchDatabase,
) -> None:
    result = starter("seed-communities", "--state", "XX", database_url=migrated_db.url)
    assert result.returncode == 2
    line = one_error_line(result)
    assert "unknown state code 'XX'" in line
    assert await community_count(migrated_db.url) == 0


@pytest.mark.parametrize("command", [["migrate"], ["seed-communities", "--state", "TX"]])
def test_unreachable_database_is_one_line_naming_it(command: list[str]) -> None:
    url = "postgresql+asyncpg://rollout:hunter2@127.0.0.1:9/rollout"
    result = starter(*command, database_url=url)
    assert result.returncode == 1
    line = one_error_line(result)
    assert "cannot reach Postgres at 127.0.0.1:9/rollout" in line
    assert "hunter2" not in result.stderr + result.stdout


def test_seed_before_migrate_says_what_to_do(empty_db: ScratchDatabase) -> None:
    result = starter("seed-communities", "--state", "RI", database_url=empty_db.url)
    assert result.returncode == 1
    assert "run `python starter.py migrate` first" in one_error_line(result)


def test_invalid_setting_is_one_line() -> None:
    result = starter("migrate", database_url="mysql://db/x")
    assert result.returncode == 2
    assert "invalid DATABASE_URL" in one_error_line(result)


def test_an_invalid_section_setting_is_named_with_its_prefix() -> None:
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "starter.py"), "estimate", "DE"],
        capture_output=True,
        text=True,
        env={**os.environ, "DISCOVERY_MIN_CELL_DEG": "-1"},
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "invalid DISCOVERY_MIN_CELL_DEG" in one_error_line(result)


def test_unknown_command_is_one_line() -> None:
    result = starter("launch", "TX")
    assert result.returncode == 2
    assert "invalid choice: 'launch'" in one_error_line(result)


def test_bad_start_input_is_one_line_before_contacting_anything() -> None:
    result = starter("start", "TX", "--batch-size", "0", "--throttle-ms", "-1")
    assert result.returncode == 2
    line = one_error_line(result)
    assert "batch_size 0 is outside 1-200" in line
    assert "throttle_ms -1 is outside 0-10000" in line
    result = starter("start", "TX", "--throttle-ms", "30000")
    assert result.returncode == 2
    assert "throttle_ms 30000 is outside 0-10000" in one_error_line(result)


@pytest.mark.parametrize("size", ["0", "500", "many"])
def test_bad_batch_size_is_refused_before_anything_is_sent(size: str) -> None:
    # No Temporal listens on port 9: a refusal that tried to contact it would say so.
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "starter.py"), "set-batch-size", "TX", size],
        capture_output=True,
        text=True,
        env={**os.environ, "TEMPORAL_ADDRESS": "127.0.0.1:9"},
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "batch size" in one_error_line(result)


@pytest.mark.parametrize("command", [["progress", "TX"], ["pause", "TX"], ["list"]])
def test_unreachable_temporal_is_one_line_naming_it(command: list[str]) -> None:
    env_address = "127.0.0.1:9"
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "starter.py"), *command],
        capture_output=True,
        text=True,
        env={**os.environ, "TEMPORAL_ADDRESS": env_address},
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert f"cannot reach Temporal at {env_address}" in one_error_line(result)
