"""CommunityEnrichmentWorkflow: phase 4 of a community, one Place Details per activity.

Phase 4's requests go through the rate-limited `rollout-places` queue like phase 1's, so the
Places quota holds for any number of workers (a whole-phase activity could only be paced
per worker process). The workflow lists the targets a page of business ids at a time
(internal ids, never place ids), keeps a few requests in flight, and continues-as-new
before its history grows large, carrying the listing cursor, the queue and the counts.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.workflow import ActivityCancellationType

from workflows.common import record, retry_policy, should_continue_as_new

with workflow.unsafe.imports_passed_through():
    from rollout.dto import (
        PLACES_TASK_QUEUE,
        EnrichmentCarry,
        EnrichmentFinish,
        EnrichmentInput,
        EnrichOutcome,
        EnrichRequest,
        EnrichTargets,
        EnrichTargetsRequest,
        PhaseResult,
    )

# Places errors that no retry can help; the retry intervals come from the input.
PLACES_NON_RETRYABLE = ["PlacesAccessError", "PhaseConfigError"]
PLACES_TIMEOUT = timedelta(seconds=30)  # the client's own timeout is 10 s


@workflow.defn(name="CommunityEnrichmentWorkflow")
class CommunityEnrichmentWorkflow:
    def __init__(self) -> None:
        self._carry = EnrichmentCarry()

    @workflow.query(name="enrichment_progress")
    def enrichment_progress(self) -> dict[str, int]:
        c = self._carry
        return {"enriched": c.enriched, "fresh": c.fresh, "not_found": c.not_found}

    @workflow.run
    async def run(self, inp: EnrichmentInput) -> PhaseResult:
        phase = inp.phase
        self._carry = inp.carry.model_copy() if inp.carry else EnrichmentCarry()
        carry = self._carry
        pending: set[asyncio.Task[None]] = set()
        draining = False
        try:
            while True:
                while not draining and len(pending) < max(inp.streams, 1):
                    if not carry.queue and not carry.listed_all:
                        await self._list(inp)
                    if not carry.queue:
                        break
                    pending.add(asyncio.create_task(self._enrich(carry.queue.pop(0), inp)))
                if not pending:
                    break
                done, still = await workflow.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                pending = set(still)
                for finished in done:
                    finished.result()  # a request that still fails fails the phase
                if not draining and should_continue_as_new(inp.continue_as_new_after_events):
                    draining = True  # let running requests end, then hand over the rest
        except BaseException:
            for other in pending:
                other.cancel()
            raise
        if draining and (carry.queue or not carry.listed_all):
            workflow.continue_as_new(
                inp.model_copy(update={"carry": carry.model_copy(update={"runs": carry.runs + 1})})
            )
        return await record(
            "phase4_finish",
            EnrichmentFinish(
                phase=phase, enriched=carry.enriched, fresh=carry.fresh, not_found=carry.not_found
            ),
            PhaseResult,
            summary="phase 4: total up",
        )

    async def _list(self, inp: EnrichmentInput) -> None:
        carry = self._carry
        page = await record(
            "phase4_targets",
            EnrichTargetsRequest(
                community_rollout_id=inp.phase.community_rollout_id,
                community_id=inp.phase.community_id,
                after_business_id=carry.after_business_id,
                limit=inp.page_size,
            ),
            EnrichTargets,
            summary=f"phase 4: list after {carry.after_business_id}",
        )
        if page.fresh is not None:
            carry.fresh += page.fresh
        carry.queue.extend(page.business_ids)
        if page.business_ids:
            carry.after_business_id = page.business_ids[-1]
        carry.listed_all = len(page.business_ids) < inp.page_size

    async def _enrich(self, business_id: int, inp: EnrichmentInput) -> None:
        outcome: EnrichOutcome = await workflow.execute_activity(
            "places_enrich",
            EnrichRequest(
                community_rollout_id=inp.phase.community_rollout_id,
                business_id=business_id,
                throttle_ms=inp.phase.throttle_ms,
            ),
            result_type=EnrichOutcome,
            task_queue=PLACES_TASK_QUEUE,
            start_to_close_timeout=PLACES_TIMEOUT,
            # On cancel, wait for the attempt to end, so its billed request is logged
            # before the community's cost is totted up.
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            retry_policy=retry_policy(inp.places_retry, PLACES_NON_RETRYABLE),
            summary=f"details {business_id}",
        )
        carry = self._carry
        if outcome.outcome == "enriched":
            carry.enriched += 1
        elif outcome.outcome == "fresh":
            carry.fresh += 1  # enriched meanwhile (a neighbour, or an earlier attempt)
        elif outcome.outcome == "not_found":
            carry.not_found += 1
