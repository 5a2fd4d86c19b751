"""CommunityEnrichmentWorkflow: phase 4 of a community, one Place Details per activity.

Phase 4's requests go through the rate-limited Place Details queue like phase 1's purchases,
so the Places quota holds for any number of workers (a whole-phase activity could only be paced
per worker process). The workflow lists the targets a page of business ids at a time
(internal ids, never place ids), keeps a few requests in flight, and continues-as-new
before its history grows large, carrying the listing cursor, the queue and the counts.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from temporalio import workflow

from workflows.common import places_request, record, run_pool, should_continue_as_new

with workflow.unsafe.imports_passed_through():
    from activities.enrichment import EnrichmentActivities
    from rollout.contract import Query, WorkflowType
    from rollout.payloads import PhaseResult
    from rollout.phases.enrichment.payloads import (
        EnrichmentCarry,
        EnrichmentFinish,
        EnrichmentInput,
        EnrichRequest,
        EnrichTargetsRequest,
    )
    from rollout.places.pricing import Endpoint


@workflow.defn(name=WorkflowType.COMMUNITY_ENRICHMENT)
class CommunityEnrichmentWorkflow:
    def __init__(self) -> None:
        self._carry = EnrichmentCarry()

    @workflow.query(name=Query.ENRICHMENT_PROGRESS)
    def enrichment_progress(self) -> dict[str, int | str]:
        c = self._carry
        return {
            "enriched": c.enriched,
            "fresh": c.fresh,
            "not_found": c.not_found,
            "requests": c.requests,
            "cost_usd": str(c.cost_usd),
        }

    @workflow.run
    async def run(self, inp: EnrichmentInput) -> PhaseResult:
        self._carry = inp.carry.model_copy() if inp.carry else EnrichmentCarry()
        carry = self._carry

        def enrich() -> Coroutine[Any, Any, None]:
            return self._enrich(carry.queue.pop(0), inp)

        # A page of targets at a time: list, enrich it `streams` at once, list the next.
        while carry.queue or not carry.listed_all:
            if not carry.queue:
                await self._list(inp)
            # The pool stops early when the history is long enough; so does this loop.
            await run_pool(
                lambda: bool(carry.queue),
                enrich,
                at_once=inp.streams,
                continue_as_new_after=inp.continue_as_new_after_events,
            )
            more = bool(carry.queue) or not carry.listed_all
            if more and should_continue_as_new(inp.continue_as_new_after_events):
                carry.runs += 1
                workflow.continue_as_new(inp.model_copy(update={"carry": carry}))
        return await record(
            EnrichmentActivities.finish,
            EnrichmentFinish(
                phase=inp.phase,
                enriched=carry.enriched,
                fresh=carry.fresh,
                not_found=carry.not_found,
            ),
            summary="phase 4: total up",
        )

    async def _list(self, inp: EnrichmentInput) -> None:
        carry = self._carry
        page = await record(
            EnrichmentActivities.targets,
            EnrichTargetsRequest(
                community_rollout_id=inp.phase.community_rollout_id,
                community_id=inp.phase.community_id,
                after_business_id=carry.after_business_id,
                limit=inp.page_size,
            ),
            summary=f"phase 4: list after {carry.after_business_id}",
        )
        if page.fresh is not None:
            carry.fresh += page.fresh
        carry.queue.extend(page.business_ids)
        if page.business_ids:
            carry.after_business_id = page.business_ids[-1]
        carry.listed_all = len(page.business_ids) < inp.page_size

    async def _enrich(self, business_id: int, inp: EnrichmentInput) -> None:
        outcome = await places_request(
            EnrichmentActivities.places_enrich,
            EnrichRequest(
                community_rollout_id=inp.phase.community_rollout_id,
                business_id=business_id,
                throttle_ms=inp.phase.throttle_ms,
            ),
            method=Endpoint.GET_PLACE,
            retry=inp.places_retry,
            throttle_ms=inp.phase.throttle_ms,
            summary=f"details {business_id}",
        )
        carry = self._carry
        carry.requests += 1
        carry.cost_usd += outcome.cost_usd
        workflow.set_current_details(
            f"phase 4 enrichment: {carry.requests:,} requests, {carry.enriched:,} enriched, "
            f"${carry.cost_usd:.2f}"
        )
        if outcome.outcome == "enriched":
            carry.enriched += 1
        elif outcome.outcome == "fresh":
            carry.fresh += 1  # enriched meanwhile (a neighbour, or an earlier attempt)
        elif outcome.outcome == "not_found":
            carry.not_found += 1
