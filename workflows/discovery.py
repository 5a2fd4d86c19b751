"""CommunityDiscoveryWorkflow: phase 1 of a community, as a frontier of search streams.

A stream is one search (a category or query over a cell) paged to its end, one Places
request per activity on the rate-limited `rollout-places` queue. A saturated stream adds its
follow-ups (quadtree cells, or a Text Search for a saturated Nearby type) to the frontier.
A few streams run at once. Dense cities make thousands of requests, so the workflow
continues-as-new before its history grows large, carrying only the frontier.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.workflow import ActivityCancellationType

from workflows.common import record, retry_policy

with workflow.unsafe.imports_passed_through():
    from rollout.discovery import (
        DiscoveryCarry,
        DiscoveryInput,
        DiscoveryPlan,
        PageOutcome,
        PageRequest,
        SearchKind,
        SearchTask,
        follow_ups,
    )
    from rollout.dto import PLACES_TASK_QUEUE, PhaseResult

# Places errors that no retry can help; the retry intervals come from the input.
PLACES_NON_RETRYABLE = ["PlacesAccessError", "InvalidRequestError", "NotFoundError"]
PLACES_TIMEOUT = timedelta(seconds=30)  # the client's own timeout is 10 s


@workflow.defn(name="CommunityDiscoveryWorkflow")
class CommunityDiscoveryWorkflow:
    def __init__(self) -> None:
        self._requests = 0
        self._cost = Decimal(0)
        self._frontier: list[SearchTask] = []

    @workflow.query(name="discovery_progress")
    def discovery_progress(self) -> dict[str, str]:
        return {
            "requests": str(self._requests),
            "cost_usd": str(self._cost),
            "frontier": str(len(self._frontier)),
        }

    @workflow.run
    async def run(self, inp: DiscoveryInput) -> PhaseResult:
        phase = inp.phase
        if inp.plan is None:
            plan = await record(
                "discovery_plan", phase, DiscoveryPlan, summary="phase 1: plan searches"
            )
            self._frontier = list(plan.tasks)
        else:
            plan = inp.plan
            assert inp.carry is not None
            self._frontier = list(inp.carry.frontier)
            self._requests = inp.carry.requests
            self._cost = inp.carry.cost_usd

        pending: set[asyncio.Task[None]] = set()
        draining = False
        try:
            while self._frontier or pending:
                while self._frontier and not draining and len(pending) < max(inp.streams, 1):
                    task = self._frontier.pop(0)
                    pending.add(asyncio.create_task(self._stream(task, plan, phase_input=inp)))
                if not pending:
                    break
                done, still = await workflow.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                pending = set(still)
                for finished in done:
                    finished.result()  # a failed stream fails the phase
                if not draining and self._should_continue_as_new(inp):
                    draining = True  # let running streams end, then hand over the frontier
        except BaseException:
            for other in pending:
                other.cancel()
            raise

        if draining and self._frontier:
            carry = DiscoveryCarry(
                frontier=self._frontier,
                requests=self._requests,
                cost_usd=self._cost,
                runs=(inp.carry.runs if inp.carry else 1) + 1,
            )
            workflow.continue_as_new(inp.model_copy(update={"plan": plan, "carry": carry}))

        return await record(
            "discovery_finish", phase, PhaseResult, summary="phase 1: count businesses"
        )

    async def _stream(
        self, task: SearchTask, plan: DiscoveryPlan, phase_input: DiscoveryInput
    ) -> None:
        inp = phase_input.phase
        total = 0
        token: str | None = None
        page_number = 1
        while True:
            outcome: PageOutcome = await workflow.execute_activity(
                "places_search_page",
                PageRequest(
                    task=task,
                    page_token=token,
                    page_number=page_number,
                    community_rollout_id=inp.community_rollout_id,
                    community_id=inp.community_id,
                    region_id=plan.region_id,
                    throttle_ms=inp.throttle_ms,
                ),
                result_type=PageOutcome,
                task_queue=PLACES_TASK_QUEUE,
                start_to_close_timeout=PLACES_TIMEOUT,
                # On cancel, wait for the attempt to end, so its billed requests are logged
                # before the community's cost is totted up.
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                retry_policy=retry_policy(phase_input.places_retry, PLACES_NON_RETRYABLE),
                summary=f"{task.kind.value} {task.label} d{task.depth} p{page_number}"
                + (" probe" if task.probe else ""),
            )
            self._requests += 1
            self._cost += outcome.cost_usd
            total += outcome.result_count
            if task.kind is SearchKind.NEARBY or not outcome.next_page_token:
                break
            token = outcome.next_page_token
            page_number += 1
        self._frontier.extend(follow_ups(task, total, plan.rules, root_box=plan.root_box))

    @staticmethod
    def _should_continue_as_new(inp: DiscoveryInput) -> bool:
        info = workflow.info()
        if info.is_continue_as_new_suggested():
            return True
        limit = inp.continue_as_new_after_events
        return limit is not None and info.get_current_history_length() >= limit
