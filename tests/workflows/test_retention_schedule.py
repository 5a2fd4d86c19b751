"""The `places-retention` schedule on the real stack: the worker creates it at start (and
leaves it, or brings it back to its spec, when it exists), `temporal schedule list` shows
it, and a triggered run purges the Google content older than 30 days and nothing younger."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import (
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from activities.retention import RetentionCounts
from devstack.embedded import temporal_cli as temporal_binary
from rollout.contract import (
    RETENTION_RUN_ID_PREFIX,
    RETENTION_SCHEDULE_ID,
    ROLLOUT_TASK_QUEUE,
    WorkflowType,
)
from tests.support.rollout_harness import (
    RolloutEnv,
    emulator,  # noqa: F401 - fixture
    rollout_env,  # noqa: F401 - fixture
)
from worker import WORKFLOWS, ensure_retention_schedule, sandbox_runner

pytestmark = pytest.mark.integration


async def add_business(env: RolloutEnv, place_id: str, age_days: int) -> int:
    """A Dover business whose Google listing was fetched `age_days` ago."""
    business_id: int = await env.write(
        """
        INSERT INTO businesses (place_id, community_id, name, formatted_address, latitude,
                                longitude, types, places_fetched_at, first_seen_at)
        SELECT :place_id, id, :name, '1 Main St, Dover, DE', 39.16, -75.52, '{bakery}',
               now() - make_interval(days => :age), now() - make_interval(days => :age)
        FROM communities WHERE state_code = 'DE' AND name = 'Dover'
        RETURNING id
        """,
        place_id=place_id,
        name=f"Bakery {age_days} days",
        age=age_days,
    )
    return business_id


def schedule_list(env: RolloutEnv) -> list[dict[str, object]]:
    result = subprocess.run(
        [temporal_binary(), "schedule", "list", "--address", env.stack.temporal_address,
         "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    listed: list[dict[str, object]] = json.loads(result.stdout or "[]")
    return listed


async def test_worker_schedules_the_retention_run(rollout_env: RolloutEnv) -> None:  # noqa: F811
    env = rollout_env
    handle = env.client.get_schedule_handle(RETENTION_SCHEDULE_ID)

    # Created by the worker at start: daily PlacesRetentionWorkflow on `rollout`, SKIP.
    described = await handle.describe()
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == WorkflowType.PLACES_RETENTION
    assert action.task_queue == ROLLOUT_TASK_QUEUE
    assert action.id == RETENTION_RUN_ID_PREFIX
    assert [i.every for i in described.schedule.spec.intervals] == [timedelta(days=1)]
    assert described.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP

    # A second worker start leaves it as it is.
    assert await ensure_retention_schedule(env.client) == "unchanged"

    # One changed by hand comes back to the worker's spec; the operator's pause stays.
    def hourly(current: ScheduleUpdateInput) -> ScheduleUpdate:
        schedule = current.description.schedule
        schedule.spec.intervals = [ScheduleIntervalSpec(every=timedelta(hours=1))]
        return ScheduleUpdate(schedule=schedule)

    await handle.update(hourly)
    await handle.pause(note="test: paused by the operator")
    try:
        assert await ensure_retention_schedule(env.client) == "updated"
        restored = await handle.describe()
        assert [i.every for i in restored.schedule.spec.intervals] == [timedelta(days=1)]
        assert restored.schedule.state.paused
        assert restored.schedule.state.note == "test: paused by the operator"
    finally:
        await handle.unpause(note="test: unpaused")

    # The operator's view: `temporal schedule list` (visibility may lag a moment).
    deadline = time.monotonic() + 30
    while not any(s.get("scheduleId") == RETENTION_SCHEDULE_ID for s in schedule_list(env)):
        assert time.monotonic() < deadline, "places-retention not in `temporal schedule list`"
        await asyncio.sleep(0.5)

    # A triggered run purges the 40-day-old listing, not the 10-day-old one.
    expired = await add_business(env, "ChIJ-retention-40", 40)
    fresh = await add_business(env, "ChIJ-retention-10", 10)
    await handle.trigger()
    deadline = time.monotonic() + 60
    while not (described := await handle.describe()).info.recent_actions:
        assert time.monotonic() < deadline, "the triggered run did not start"
        await asyncio.sleep(0.3)
    started = described.info.recent_actions[-1].action
    assert isinstance(started, ScheduleActionExecutionStartWorkflow)
    assert started.workflow_id.startswith(f"{RETENTION_RUN_ID_PREFIX}-")
    run = env.client.get_workflow_handle(
        started.workflow_id, run_id=started.first_execution_run_id, result_type=RetentionCounts
    )
    counts = await asyncio.wait_for(run.result(), timeout=60)
    assert counts == RetentionCounts(policy="purge", as_of=counts.as_of, purged=1)

    rows = {
        row.id: row
        for row in await env.rows(
            "SELECT id, place_id, name, latitude, places_purged_at FROM businesses"
        )
    }
    assert rows[expired].place_id == "ChIJ-retention-40"  # kept indefinitely
    assert rows[expired].name is None
    assert rows[expired].latitude is None
    assert rows[expired].places_purged_at is not None
    assert rows[fresh].name == "Bakery 10 days"
    assert rows[fresh].latitude is not None
    assert rows[fresh].places_purged_at is None

    # The run's history replays against today's workflow code; RECORD_HISTORIES=1 keeps it
    # for tests/workflows/test_replay.py, as the rollout's own histories are kept.
    history = await run.fetch_history()
    await Replayer(
        workflows=WORKFLOWS,
        data_converter=pydantic_data_converter,
        workflow_runner=sandbox_runner(),
    ).replay_workflow(history)
    if os.environ.get("RECORD_HISTORIES") == "1":
        (Path(__file__).parent / "histories" / "PlacesRetentionWorkflow__daily.json").write_text(
            json.dumps({"workflow_id": started.workflow_id, "history": history.to_json_dict()})
        )
