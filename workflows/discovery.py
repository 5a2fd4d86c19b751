"""CommunityDiscoveryWorkflow: phase 1 of a community, as a frontier of search streams.

A stream is one search (a category or query over a cell) paged to its end, one Places
request per activity on the rate-limited queue of its method (Text or Nearby Search). A
saturated stream adds its follow-ups (quadtree cells, or a Text Search for a saturated
Nearby type) to the frontier.
A few streams run at once. Dense cities make thousands of requests, so the workflow
continues-as-new before its history grows large, carrying only the frontier.

With the `cover` strategy (the default, see rollout/phases/discovery/planning.py) every
stream is a free IDs-only probe whose ids the activity keeps in Postgres; when the frontier
is empty an activity plans which probed pages to buy, and the workflow then buys the list's
lines, which it knows only by number (the searches come first, then the Place Details, so
the number says which method's queue a line goes to). The strategy comes from the recorded
plan, so histories of either strategy replay.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

from temporalio import workflow

from workflows.common import (
    PLANNING_HEARTBEAT,
    PLANNING_TIMEOUT,
    Job,
    places_request,
    record,
    run_pool,
)

with workflow.unsafe.imports_passed_through():
    from activities.discovery import DiscoveryActivities
    from rollout.contract import Query, WorkflowType
    from rollout.payloads import PhaseResult
    from rollout.phases.discovery.payloads import (
        BuyRequest,
        DiscoveryCarry,
        DiscoveryInput,
        DiscoveryPlan,
        DiscoveryStrategy,
        PageOutcome,
        PageRequest,
        PurchaseListRequest,
        SearchKind,
        SearchTask,
    )
    from rollout.phases.discovery.planning import explore_follow_ups, follow_ups
    from rollout.places.pricing import Endpoint


@workflow.defn(name=WorkflowType.COMMUNITY_DISCOVERY)
class CommunityDiscoveryWorkflow:
    def __init__(self) -> None:
        self._requests = 0
        self._cost = Decimal(0)
        self._businesses = 0
        self._frontier: list[SearchTask] = []
        self._run_key: str | None = None
        self._purchases: int | None = None
        # Lines before this one are searches, the rest Place Details (None: not known, a
        # carry from before it was kept).
        self._purchase_searches: int | None = None
        self._next_purchase = 0

    @workflow.query(name=Query.DISCOVERY_PROGRESS)
    def discovery_progress(self) -> dict[str, str]:
        progress = {
            "requests": str(self._requests),
            "cost_usd": str(self._cost),
            "businesses": str(self._businesses),
            "frontier": str(len(self._frontier)),
        }
        if self._purchases is not None:
            progress["purchases"] = f"{self._next_purchase}/{self._purchases}"
        return progress

    @workflow.run
    async def run(self, inp: DiscoveryInput) -> PhaseResult:
        phase = inp.phase
        if inp.plan is None:
            plan = await record(
                DiscoveryActivities.discovery_plan, phase, summary="phase 1: plan searches"
            )
            self._frontier = list(plan.tasks)
        else:
            plan = inp.plan
            assert inp.carry is not None
            self._frontier = list(inp.carry.frontier)
            self._requests = inp.carry.requests
            self._cost = inp.carry.cost_usd
            self._businesses = inp.carry.businesses
            self._run_key = inp.carry.run_key
            self._purchases = inp.carry.purchases
            self._purchase_searches = inp.carry.purchase_searches
            self._next_purchase = inp.carry.next_purchase
        cover = plan.rules.strategy is DiscoveryStrategy.COVER
        if cover and self._run_key is None:
            self._run_key = workflow.info().run_id  # names this exploration's sightings

        def explore() -> Coroutine[Any, Any, None]:
            return self._stream(self._frontier.pop(0), plan, inp)

        if await self._pool(lambda: bool(self._frontier), explore, inp):
            self._continue_as_new(inp, plan)

        if cover:
            assert self._run_key is not None
            listing = PurchaseListRequest(
                run_key=self._run_key, community_rollout_id=phase.community_rollout_id
            )
            if self._purchases is None:
                planned = await record(
                    DiscoveryActivities.discovery_plan_purchases,
                    listing,
                    summary="phase 1: plan what to buy",
                    start_to_close=PLANNING_TIMEOUT,
                    heartbeat=PLANNING_HEARTBEAT,
                )
                self._purchases = planned.lines
                self._purchase_searches = planned.searches

            def buy() -> Coroutine[Any, Any, None]:
                self._next_purchase += 1
                return self._buy(self._next_purchase - 1, plan, inp)

            if await self._pool(lambda: self._next_purchase < (self._purchases or 0), buy, inp):
                self._continue_as_new(inp, plan)
            missing = await record(
                DiscoveryActivities.discovery_cover_check,
                listing,
                summary="phase 1: check the cover",
            )
            if missing:
                workflow.logger.warning(
                    "%d sighted places were not returned by their purchase (ranking moved)",
                    missing,
                )

        return await record(
            DiscoveryActivities.discovery_finish, phase, summary="phase 1: count businesses"
        )

    def _count(self, outcome: PageOutcome) -> None:
        self._requests += 1
        self._cost += outcome.cost_usd
        self._businesses += outcome.new_in_region
        self._show()

    def _show(self) -> None:
        """The Web UI's "current details" of this run (not recorded in the history)."""
        stage = "exploring" if self._purchases is None else "buying"
        lines = f"{self._next_purchase}/{self._purchases} lines" if self._purchases else ""
        workflow.set_current_details(
            f"phase 1 discovery, {stage} {lines}: {self._requests:,} requests, "
            f"{self._businesses:,} businesses found, ${self._cost:.2f}"
        )

    async def _pool(self, more: Callable[[], bool], take: Job, inp: DiscoveryInput) -> bool:
        return await run_pool(
            more, take, at_once=inp.streams, continue_as_new_after=inp.continue_as_new_after_events
        )

    def _continue_as_new(self, inp: DiscoveryInput, plan: DiscoveryPlan) -> None:
        carry = DiscoveryCarry(
            frontier=self._frontier,
            requests=self._requests,
            cost_usd=self._cost,
            businesses=self._businesses,
            runs=(inp.carry.runs if inp.carry else 1) + 1,
            run_key=self._run_key,
            purchases=self._purchases,
            next_purchase=self._next_purchase,
            purchase_searches=self._purchase_searches,
        )
        workflow.continue_as_new(inp.model_copy(update={"plan": plan, "carry": carry}))

    async def _stream(
        self, task: SearchTask, plan: DiscoveryPlan, phase_input: DiscoveryInput
    ) -> None:
        inp = phase_input.phase
        total = 0
        token: str | None = None
        page_number = 1
        while True:
            outcome = await places_request(
                DiscoveryActivities.places_search_page,
                PageRequest(
                    task=task,
                    page_token=token,
                    page_number=page_number,
                    community_rollout_id=inp.community_rollout_id,
                    community_id=inp.community_id,
                    region_id=plan.region_id,
                    throttle_ms=inp.throttle_ms,
                    run_key=self._run_key,
                ),
                method=Endpoint.SEARCH_NEARBY
                if task.kind is SearchKind.NEARBY
                else Endpoint.SEARCH_TEXT,
                retry=phase_input.places_retry,
                throttle_ms=inp.throttle_ms,
                summary=f"{task.kind.value} {task.label} d{task.depth} p{page_number}"
                + (" probe" if task.probe else ""),
            )
            self._count(outcome)
            total += outcome.result_count
            if task.kind is SearchKind.NEARBY or not outcome.next_page_token:
                break
            token = outcome.next_page_token
            page_number += 1
        if plan.rules.strategy is DiscoveryStrategy.COVER:
            self._frontier.extend(explore_follow_ups(task, total, plan.rules))
        else:
            self._frontier.extend(follow_ups(task, total, plan.rules, root_box=plan.root_box))

    async def _buy(self, seq: int, plan: DiscoveryPlan, phase_input: DiscoveryInput) -> None:
        """Line `seq` of the purchase list: its pages one by one, or one Place Details."""
        inp = phase_input.phase
        assert self._run_key is not None
        token: str | None = None
        page_number = 1
        searches = self._purchase_searches
        method = None if searches is None else purchase_method(seq, searches)
        while True:
            outcome = await places_request(
                DiscoveryActivities.places_buy,
                BuyRequest(
                    run_key=self._run_key,
                    seq=seq,
                    page_number=page_number,
                    page_token=token,
                    community_rollout_id=inp.community_rollout_id,
                    community_id=inp.community_id,
                    region_id=plan.region_id,
                    throttle_ms=inp.throttle_ms,
                ),
                method=method,
                retry=phase_input.places_retry,
                throttle_ms=inp.throttle_ms,
                summary=f"buy {seq} p{page_number}",
            )
            self._count(outcome)
            if not outcome.next_page_token:
                break
            token = outcome.next_page_token
            page_number += 1


def purchase_method(seq: int, searches: int) -> Endpoint:
    """The Places method of line `seq` of a purchase list whose first `searches` lines are
    searches (Text Search pages) and the rest Place Details."""
    return Endpoint.SEARCH_TEXT if seq < searches else Endpoint.GET_PLACE
