"""The `outbox-relay` schedule on the real stack: the worker creates it at start (and
leaves it, or brings it back to its spec, when it exists), and a triggered run is an
OutboxRelayWorkflow that the worker runs to the end."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from temporalio.client import (
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from rollout.contract import (
    OUTBOX_RELAY_RUN_ID_PREFIX,
    OUTBOX_RELAY_SCHEDULE_ID,
    ROLLOUT_TASK_QUEUE,
    WorkflowType,
)
from rollout.phases.seeding.payloads import RelayCounts
from tests.support.rollout_harness import (
    RolloutEnv,
    emulator,  # noqa: F401 - fixture
    rollout_env,  # noqa: F401 - fixture
)
from worker import ensure_relay_schedule

pytestmark = pytest.mark.integration


async def test_worker_schedules_the_outbox_relay(rollout_env: RolloutEnv) -> None:  # noqa: F811
    env = rollout_env
    handle = env.client.get_schedule_handle(OUTBOX_RELAY_SCHEDULE_ID)

    # Created by the worker at start: OutboxRelayWorkflow every minute on `rollout`, SKIP.
    described = await handle.describe()
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == WorkflowType.OUTBOX_RELAY
    assert action.task_queue == ROLLOUT_TASK_QUEUE
    assert action.id == OUTBOX_RELAY_RUN_ID_PREFIX
    assert [i.every for i in described.schedule.spec.intervals] == [timedelta(minutes=1)]
    assert described.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP

    # Another worker start leaves it as it is, however often.
    assert await ensure_relay_schedule(env.client) == "unchanged"
    assert await ensure_relay_schedule(env.client) == "unchanged"

    # One changed by hand comes back to the worker's spec; the operator's pause stays.
    def hourly(current: ScheduleUpdateInput) -> ScheduleUpdate:
        schedule = current.description.schedule
        schedule.spec.intervals = [ScheduleIntervalSpec(every=timedelta(hours=1))]
        return ScheduleUpdate(schedule=schedule)

    await handle.update(hourly)
    await handle.pause(note="test: paused by the operator")
    try:
        assert await ensure_relay_schedule(env.client) == "updated"
        restored = await handle.describe()
        assert [i.every for i in restored.schedule.spec.intervals] == [timedelta(minutes=1)]
        assert restored.schedule.state.paused
        assert restored.schedule.state.note == "test: paused by the operator"
        assert await ensure_relay_schedule(env.client) == "unchanged"
    finally:
        await handle.unpause(note="test: unpaused")

    # A triggered run (or the minute's own): this worker has no webhook URLs, so nothing
    # is due for it.
    seen = {
        a.action.workflow_id
        for a in (await handle.describe()).info.recent_actions
        if isinstance(a.action, ScheduleActionExecutionStartWorkflow)
    }
    await handle.trigger()
    deadline = time.monotonic() + 60
    while True:
        described = await handle.describe()
        started = [
            a.action
            for a in described.info.recent_actions
            if isinstance(a.action, ScheduleActionExecutionStartWorkflow)
            and a.action.workflow_id not in seen
        ]
        if started:
            break
        assert time.monotonic() < deadline, "the triggered run did not start"
        await asyncio.sleep(0.3)
    run = started[-1]
    assert run.workflow_id.startswith(f"{OUTBOX_RELAY_RUN_ID_PREFIX}-")
    result = await asyncio.wait_for(
        env.client.get_workflow_handle(
            run.workflow_id, run_id=run.first_execution_run_id, result_type=RelayCounts
        ).result(),
        timeout=60,
    )
    assert result == RelayCounts(batches=1)
