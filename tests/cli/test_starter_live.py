"""starter.py against a live stack (Temporal dev server, Postgres, the emulator and a worker):
every operator error is one line with a non-zero exit and changes nothing, and
`progress --watch` follows a rollout through pause, resume and cancel to its end."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from temporalio import workflow
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowExecutionStatus
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from cli import control
from rollout.contract import community_workflow_id, state_workflow_id
from rollout.payloads import InFlightCommunity, RolloutSummary
from rollout.progress import in_flight_line
from rollout.status import RolloutStatus
from tests.cli.test_starter_cli import one_error_line
from tests.conftest import PROJECT_ROOT
from tests.support.rollout_harness import (
    RolloutEnv,
    emulator,  # noqa: F401 - fixture
    rollout_env,  # noqa: F401 - fixture
)
from workflows.community_rollout import COMMUNITY_STATUS_KEY
from workflows.state_rollout import CANCEL_GRACE


async def starter(env: RolloutEnv, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(PROJECT_ROOT / "starter.py"), *args],
        capture_output=True,
        text=True,
        env={**env.worker_env, "LOG_LEVEL": "WARNING"},
        timeout=120,
        check=False,
    )


async def fails_with(env: RolloutEnv, expected: str, *args: str) -> None:
    result = await starter(env, *args)
    assert result.returncode == 1, (args, result.stdout, result.stderr)
    line = one_error_line(result)
    assert expected in line, line


async def succeeds(env: RolloutEnv, *args: str) -> str:
    result = await starter(env, *args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


async def current_details(env: RolloutEnv, workflow_id: str) -> str:
    """What the Web UI shows as a workflow's current details (the SDK's metadata query)."""
    metadata = await env.client.get_workflow_handle(workflow_id).query(
        "__temporal_workflow_metadata", result_type=WorkflowMetadata
    )
    return str(metadata.current_details)


async def in_flight_with_phase(env: RolloutEnv, state: str) -> dict[str, Any]:
    """The first in-flight community `progress --json` shows with its phase."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        document = json.loads(await succeeds(env, "progress", state, "--json"))
        for community in document["in_flight"]:
            if community["phase"] is not None:
                return dict(community)
        await asyncio.sleep(0.2)
    raise AssertionError(f"no in-flight community of {state} showed its phase in 120 s")


async def test_operator_errors_and_watch_through_a_live_rollout(rollout_env: RolloutEnv) -> None:
    env = rollout_env

    # Nothing started yet (WY: no test of the session's shared server ever starts it): each
    # command says so and starts nothing.
    await fails_with(env, "no rollout found for WY; start one with `start WY`", "progress", "WY")
    for command in ("pause", "resume", "cancel"):
        await fails_with(env, "no active rollout for WY", command, "WY")
    await fails_with(env, "no active rollout for WY", "set-batch-size", "WY", "4")
    # VT's communities were never seeded in this database.
    await fails_with(env, "no communities found for VT; run `python starter.py seed-communities",
                     "start", "VT")  # fmt: skip
    assert await env.scalar("SELECT count(*) FROM state_rollouts") == 0

    out = await succeeds(env, "start", "DE", "--batch-size", "1", "--throttle-ms", "0")
    assert "started state-rollout-DE" in out
    await env.wait_for(
        "DE", lambda d: d.rollout.status is RolloutStatus.IN_PROGRESS, what="in progress"
    )

    # Each in-flight community shows its phase, and in phase 1 its live counts, from its
    # own workflows.
    live = await in_flight_with_phase(env, "DE")
    assert 1 <= live["phase"] <= 6
    if live["phase"] == 1:
        assert live["requests"] is not None
        assert live["businesses"] is not None
        assert Decimal(live["cost_usd"]) >= 0
    # The Web UI's "current details" of the rollout and of a community.
    details = await current_details(env, state_workflow_id("DE"))
    assert details.startswith("**Delaware rollout**"), details
    community = community_workflow_id("DE", live["community_id"])
    assert " of 6, " in await current_details(env, community)

    # A second start of a running state, and resume when not paused, are refused.
    await fails_with(env, "DE already has", "start", "DE")
    await fails_with(env, "DE is not paused (it is in_progress)", "resume", "DE")
    assert await env.scalar("SELECT count(*) FROM state_rollouts") == 1

    # The watch, piped (not a terminal): one line per change until the rollout ends.
    watch = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, str(PROJECT_ROOT / "starter.py"), "progress", "DE", "--watch",
         "--interval", "0.3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env.worker_env, "LOG_LEVEL": "WARNING"},
    )  # fmt: skip
    try:
        assert watch.stdout is not None
        first = await asyncio.to_thread(watch.stdout.readline)  # the watch is up
        await env.wait_for("DE", lambda d: d.status_breakdown.completed >= 1, what="1 completed")
        assert "pause sent to DE" in await succeeds(env, "pause", "DE", "--reason", "lunch")
        await env.wait_for("DE", lambda d: d.rollout.status is RolloutStatus.PAUSED, what="pause")
        await fails_with(env, "DE is already paused (lunch)", "pause", "DE")
        assert "DE resumed" in await succeeds(env, "resume", "DE")
        # Updates: the workflow's own answer is printed.
        assert "DE batch size 1 -> 2" in await succeeds(env, "set-batch-size", "DE", "2")
        await env.wait_for(
            "DE", lambda d: d.rollout.status is RolloutStatus.IN_PROGRESS, what="resume"
        )
        await succeeds(env, "cancel", "DE")
        # A cancelled rollout may wait its children's whole grace period before it ends.
        deadline = CANCEL_GRACE.total_seconds() + 90
        stdout, stderr = await asyncio.to_thread(watch.communicate, timeout=deadline)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    assert watch.returncode == 0, stderr
    lines = [first.strip(), *stdout.strip().splitlines()]
    statuses = [line.split(":")[0] for line in lines]
    assert statuses[0] == "DE in_progress"
    assert "DE paused (lunch)" in statuses
    assert statuses[-1] == "DE cancelled", lines
    assert statuses.index("DE paused (lunch)") < len(statuses) - 1
    assert "/56 communities" in lines[-1]
    # Only changes are printed: no line repeats the one before it. (A document can come back
    # to an earlier state, e.g. when a query times out and the rows answer for a moment.)
    assert all(a != b for a, b in itertools.pairwise(lines)), lines

    # Closed: control commands say so; progress still answers, from the closed rollout.
    await fails_with(env, "no active rollout for DE (the last one is completed)", "pause", "DE")
    document = json.loads(await succeeds(env, "progress", "DE", "--json"))
    assert document["rollout"]["status"] == "cancelled"
    breakdown = document["status_breakdown"]
    assert breakdown["completed"] >= 1
    assert breakdown["completed"] + breakdown["failed"] + breakdown["cancelled"] == 56
    listed = json.loads(await succeeds(env, "list", "--json"))
    mine = [r for r in listed if r["workflow_id"] == "state-rollout-DE"]
    assert mine[0]["status"] == "cancelled"


async def test_reconcile_closes_a_rollout_whose_workflow_was_terminated(
    rollout_env: RolloutEnv,
) -> None:
    """A state workflow terminated outside the starter leaves its row active; `reconcile`
    (and `start`, which reconciles first) close it without any SQL."""
    env = rollout_env
    handle = await env.start("DE", batch_size=1)
    await env.wait_for("DE", lambda d: d.status_breakdown.processing == 1, what="one in flight")
    first_id = (await env.wait_for("DE", lambda d: d.rollout.id is not None)).rollout.id
    await handle.terminate("operator terminated it from the Web UI")
    # The row still says in progress, but no workflow answers for it.
    assert await env.scalar("SELECT status FROM state_rollouts WHERE id = :i", i=first_id) == (
        "in_progress"
    )
    await fails_with(env, "no active rollout for DE", "pause", "DE")

    out = await succeeds(env, "reconcile", "DE")
    assert (
        f"closed rollout #{first_id} of DE: in_progress -> cancelled "
        "(its workflow was terminated)" in out
    ), out
    row = (
        await env.rows(
            "SELECT status, closed_reason, completed_at IS NOT NULL FROM state_rollouts "
            "WHERE id = :i",
            i=first_id,
        )
    )[0]
    assert tuple(row) == ("cancelled", "its workflow was terminated", True)
    left = dict(
        await env.rows(
            "SELECT status, count(*) FROM community_rollouts WHERE state_rollout_id = :i "
            "GROUP BY status",
            i=first_id,
        )
    )
    assert set(left) <= {"completed", "failed", "cancelled"}, left
    assert sum(left.values()) == 56
    assert "nothing to reconcile" in await succeeds(env, "reconcile", "DE")

    # Again, and this time `start` does the reconciling before it starts the new rollout.
    second = await env.start("DE", batch_size=1)
    second_id = (await env.wait_for("DE", lambda d: d.rollout.id is not None)).rollout.id
    assert second_id != first_id
    await second.terminate("lost")
    out = await succeeds(env, "start", "DE", "--batch-size", "1", "--throttle-ms", "0")
    assert f"closed rollout #{second_id} of DE: in_progress -> cancelled" in out, out
    assert "started state-rollout-DE" in out
    third = await env.wait_for(
        "DE",
        lambda d: (
            d.rollout.id not in (None, first_id, second_id)
            and d.rollout.status is RolloutStatus.IN_PROGRESS
        ),
        what="the new rollout in progress",
    )
    active = await env.scalar(
        "SELECT count(*) FROM state_rollouts WHERE status IN ('planned','in_progress','paused')"
    )
    assert (active, third.rollout.state_code) == (1, "DE")
    await succeeds(env, "cancel", "DE")


async def test_failures_are_listed_and_retried_without_sql(rollout_env: RolloutEnv) -> None:
    """Communities that fail (here phase 5: a threshold the smallest towns cannot meet) are
    listed by `failures`, run again by `retry-failed` once fixed, and one community can be
    run again with `rerun`."""
    env = rollout_env
    env.stop_worker(signal.SIGTERM)
    env.start_worker(VERIFY_MIN_BUSINESSES="1")
    await succeeds(env, "start", "DE", "--batch-size", "10", "--throttle-ms", "0")
    handle = env.client.get_workflow_handle(state_workflow_id("DE"))
    first = RolloutSummary.model_validate(await handle.result())
    assert first.failed > 0, first

    listed = json.loads(await succeeds(env, "failures", "DE", "--json"))
    assert listed["rollout_id"] == first.rollout_id
    assert len(listed["failed"]) == first.failed
    for community in listed["failed"]:
        assert community["failed_phase"] == 5
        assert community["attempts"] >= 1
        assert "PhaseThresholdFailed" in community["error"]
        assert community["verification"]["passed"] is False
    table = await succeeds(env, "failures", "DE")
    assert listed["failed"][0]["name"] in table
    # In the Web UI a failed community's workflow is Failed, and searchable as such.
    child = env.client.get_workflow_handle(
        community_workflow_id("DE", listed["failed"][0]["community_id"])
    )
    described = await child.describe()
    assert described.status == WorkflowExecutionStatus.FAILED
    assert described.typed_search_attributes.get(COMMUNITY_STATUS_KEY) == "failed"

    # Fixed (the threshold lifted): only the failed communities run again.
    env.stop_worker(signal.SIGTERM)
    env.start_worker()
    out = await succeeds(env, "retry-failed", "DE", "--batch-size", "10", "--throttle-ms", "0")
    assert f"retrying {first.failed} failed communities of DE" in out
    second = RolloutSummary.model_validate(
        await env.client.get_workflow_handle(state_workflow_id("DE")).result()
    )
    assert (second.completed, second.failed) == (first.failed, 0)
    retried = await env.rows(
        "SELECT community_id FROM community_rollouts WHERE state_rollout_id = :r ORDER BY 1",
        r=second.rollout_id,
    )
    assert sorted(c["community_id"] for c in listed["failed"]) == [r[0] for r in retried]
    assert "no failed communities" in await succeeds(env, "failures", "DE")
    await fails_with(env, "no failed communities in DE's last rollout", "retry-failed", "DE")

    # One community again; one that is not in the state changes nothing.
    rollouts = await env.scalar("SELECT count(*) FROM state_rollouts")
    await fails_with(env, "communities not in DE: 999999999", "rerun", "DE", "--community",
                     "999999999")  # fmt: skip
    assert await env.scalar("SELECT count(*) FROM state_rollouts") == rollouts
    one = listed["failed"][0]["community_id"]
    await succeeds(env, "rerun", "DE", "--community", str(one), "--throttle-ms", "0")
    third = RolloutSummary.model_validate(
        await env.client.get_workflow_handle(state_workflow_id("DE")).result()
    )
    assert (third.completed, third.failed, third.cancelled) == (1, 0, 0)


@workflow.defn(name="BuggyCommunity")
class BuggyCommunity:
    """A workflow whose every task fails: a bug, as a bad deploy would have."""

    @workflow.run
    async def run(self) -> None:
        raise RuntimeError("a bug in workflow code")


async def test_a_workflow_stuck_on_a_bug_is_named_not_hidden(rollout_env: RolloutEnv) -> None:
    env = rollout_env
    queue = "buggy-community"
    community = InFlightCommunity(
        community_rollout_id=1,
        community_id=4699066,
        name="Houston",
        position=1,
        started_at=datetime.now(UTC),
    )
    workflow_id = community_workflow_id("ZZ", community.community_id)
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[BuggyCommunity],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        handle = await env.client.start_workflow(
            BuggyCommunity.run, id=workflow_id, task_queue=queue
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                described = await handle.describe()
                if described.raw_description.pending_workflow_task.attempt >= 3:
                    break
                assert time.monotonic() < deadline, "the workflow task never failed 3 times"
                await asyncio.sleep(0.5)
            live = await control.live_community(env.client, "ZZ", community)
        finally:
            await handle.terminate("test over")
    assert live.problem is not None
    assert live.problem.startswith("workflow task failing (attempt "), live.problem
    assert in_flight_line(live).startswith("Houston: workflow task failing")
