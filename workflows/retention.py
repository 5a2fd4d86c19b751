"""PlacesRetentionWorkflow: Google's storage terms kept daily, started by the
`places-retention` schedule (worker.py creates it).

A run, as of its start time, in three stages over the businesses in id order:

1. purge: the Google content older than Google's terms allow is cleared, a page per
   activity, each page with its platforms' tombstones (rollout/retention.py);
2. refresh (PLACES_CONTENT_POLICY=refresh): content between 25 and 30 days old is bought
   again, one Place Details per activity on the rate-limited Places queue, billed and logged
   like any request. The run's spend is held to RETENTION_BUDGET_USD: when the next refresh
   would pass it the run pauses, and a `resume` signal with a higher budget lets it go on;
   without one it ends after PAUSE_LIMIT, and what it did not refresh is purged when it
   reaches 30 days;
3. recheck: place ids not confirmed for 12 months are checked with the free IDs-only Place
   Details; NOT_FOUND and moved ids close the business (rollout/retention_requests.py).

The `progress` query answers the counts so far. Long runs continue-as-new between pages,
carrying the stage, the cursor and the counts.
"""

from __future__ import annotations

from collections.abc import Coroutine
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows.common import places_request, record, run_pool, should_continue_as_new

with workflow.unsafe.imports_passed_through():
    from activities.retention import (
        RetentionActivities,
        RetentionBegin,
        RetentionCarry,
        RetentionCounts,
        RetentionPage,
        RetentionPurge,
        RetentionRequest,
        RetentionResume,
        RetentionRun,
        RetentionSetup,
        RetentionStage,
    )
    from rollout.contract import Query, Signal, WorkflowType
    from rollout.payloads import default_places_retry
    from rollout.places.pricing import Endpoint
    from rollout.retention_requests import RetentionRequestKind

# The single-statement purge of runs recorded before the paged run: one UPDATE over every
# business, longer than a bookkeeping write on a large table.
PURGE_TIMEOUT = timedelta(minutes=10)
# A page of the purge: a few hundred rows and their outbox events.
PAGE_TIMEOUT = timedelta(minutes=2)
PURGE_PAGE = 500
REQUEST_PAGE = 200
# Requests in flight at once: enough to keep the Places queue's rate busy.
REQUESTS_AT_ONCE = 20
# How long a run paused on its budget waits for `resume` before it ends (the schedule's
# next run is a day after this one started).
PAUSE_LIMIT = timedelta(hours=6)
PAGED_RUN_PATCH = "retention-paged-run"


@workflow.defn(name=WorkflowType.PLACES_RETENTION)
class PlacesRetentionWorkflow:
    def __init__(self) -> None:
        self._counts: RetentionCounts | None = None
        self._stage: RetentionStage = "purge"
        self._budget = Decimal(0)
        self._paused = False
        self._setup: RetentionSetup | None = None
        self._in_flight = 0

    @workflow.signal(name=Signal.RESUME)
    def resume(self, inp: RetentionResume) -> None:
        if inp.budget_usd <= self._budget:
            workflow.logger.warning(
                "resume ignored: budget $%s is not above the run's $%s",
                inp.budget_usd,
                self._budget,
            )
            return
        self._budget = inp.budget_usd
        self._paused = False

    @workflow.query(name=Query.PROGRESS)
    def progress(self) -> dict[str, str]:
        counts = self._counts
        shown = counts.model_dump(mode="json") if counts is not None else {}
        return {
            "stage": self._stage,
            "paused": str(self._paused).lower(),
            "budget_usd": str(self._budget),
            **{k: str(v) for k, v in shown.items()},
        }

    @workflow.run
    async def run(self, inp: RetentionRun) -> RetentionCounts:
        if inp.carry is None and not workflow.patched(PAGED_RUN_PATCH):
            return await self._single_purge(inp)
        if inp.carry is None:
            as_of = inp.as_of or workflow.now()  # the run's start, from its history
            setup = await record(
                RetentionActivities.retention_begin,
                RetentionBegin(as_of=as_of),
                summary=f"retention as of {as_of.isoformat()}: plan",
            )
            self._counts = RetentionCounts(policy=setup.policy, as_of=as_of, purged=0)
            after = 0
        else:
            setup = inp.carry.setup
            as_of = inp.carry.as_of
            self._counts = inp.carry.counts
            self._stage = inp.carry.stage
            after = inp.carry.after_business_id
        self._setup = setup
        self._budget = setup.budget_usd
        counts = self._counts

        stages: list[RetentionStage] = []
        if setup.policy != "keep":
            stages.append("purge")
        if setup.policy == "refresh":
            stages.append("refresh")
        stages.append("recheck")
        for stage in stages[stages.index(self._stage) if self._stage in stages else 0 :]:
            if stage != self._stage:
                self._stage, after = stage, 0
            while True:
                self._show()
                if stage == "purge":
                    next_after = await self._purge_page(as_of, after)
                else:
                    next_after = await self._request_page(
                        stage, as_of, after, inp.continue_as_new_after_events
                    )
                if next_after is None:
                    break
                after = next_after
                if should_continue_as_new(inp.continue_as_new_after_events):
                    workflow.continue_as_new(
                        RetentionRun(
                            carry=RetentionCarry(
                                # A budget raised by `resume` goes on with the run.
                                setup=setup.model_copy(update={"budget_usd": self._budget}),
                                as_of=as_of,
                                stage=stage,
                                after_business_id=after,
                                counts=counts,
                            ),
                            continue_as_new_after_events=inp.continue_as_new_after_events,
                        )
                    )
        self._stage = "recheck"
        workflow.logger.info(
            "retention as of %s (PLACES_CONTENT_POLICY=%s): purged %d businesses, refreshed "
            "%d, ids confirmed %d, followed %d, closed %d, moved %d, not found %d; %d requests, "
            "$%s%s",
            as_of.isoformat(),
            counts.policy,
            counts.purged,
            counts.refreshed,
            counts.confirmed,
            counts.followed,
            counts.closed,
            counts.moved,
            counts.not_found,
            counts.requests,
            counts.cost_usd,
            f"; {counts.unfinished} refreshes left undone on the budget"
            if counts.unfinished
            else "",
        )
        return counts

    async def _single_purge(self, inp: RetentionRun) -> RetentionCounts:
        as_of = inp.as_of or workflow.now()
        counts = await record(
            RetentionActivities.retention_purge,
            RetentionPurge(as_of=as_of),
            summary=f"purge Google content expired as of {as_of.isoformat()}",
            start_to_close=PURGE_TIMEOUT,
        )
        workflow.logger.info(
            "retention as of %s (PLACES_CONTENT_POLICY=%s): purged %d businesses",
            as_of.isoformat(),
            counts.policy,
            counts.purged,
        )
        return counts

    async def _purge_page(self, as_of: datetime, after: int) -> int | None:
        assert self._counts is not None
        page = await record(
            RetentionActivities.retention_purge_page,
            RetentionPage(stage="purge", as_of=as_of, after_business_id=after, limit=PURGE_PAGE),
            summary=f"purge expired Google content, businesses after #{after}",
            start_to_close=PAGE_TIMEOUT,
        )
        self._counts.purged += page.purged
        return page.next_after_id

    async def _request_page(
        self, stage: RetentionStage, as_of: datetime, after: int, hand_over_at: int | None
    ) -> int | None:
        """Requests for the next page of businesses due; the cursor after it, or None when
        the stage is done (or ended on its budget). A history long enough to continue-as-new
        stops the page early and returns its own start, `after`."""
        counts, setup = self._counts, self._setup
        assert counts is not None
        assert setup is not None
        targets = await record(
            RetentionActivities.retention_due,
            RetentionPage(stage=stage, as_of=as_of, after_business_id=after, limit=REQUEST_PAGE),
            summary=f"{stage}: businesses due after #{after}",
        )
        ids = list(targets.business_ids)
        queue = list(ids)
        per_request = setup.refresh_request_usd if stage == "refresh" else Decimal(0)

        def affordable() -> bool:
            # What is spent, plus what the requests in flight may still cost.
            in_flight = self._in_flight * per_request
            return counts.cost_usd + in_flight + per_request <= self._budget

        def more() -> bool:
            return bool(queue) and (per_request == 0 or affordable())

        def take() -> Coroutine[Any, Any, None]:
            # Counted in flight from here: the pool asks more() again before it runs.
            self._in_flight += 1
            return self._request(stage, as_of, queue.pop(0))

        self._in_flight = 0
        while True:
            if await run_pool(
                more, take, at_once=REQUESTS_AT_ONCE, continue_as_new_after=hand_over_at
            ):
                # The history is long: hand over from this page's start. What was done is
                # no longer due, so the next run lists only what is left.
                return after
            if not queue:
                break
            # The budget stops the refreshes: pause until resumed with a higher one.
            self._paused = True
            self._show()
            workflow.logger.warning(
                "retention paused: refreshes would pass the run's budget of $%s ($%s spent, "
                "%d due on this page); signal `resume` with a higher budget_usd to go on",
                self._budget,
                counts.cost_usd,
                len(queue),
            )
            try:
                await workflow.wait_condition(lambda: not self._paused, timeout=PAUSE_LIMIT)
            except TimeoutError:
                counts.unfinished = max(setup.refresh - counts.requests, len(queue))
                workflow.logger.warning(
                    "retention ends unpaused after %s: %d refreshes left undone",
                    PAUSE_LIMIT,
                    counts.unfinished,
                )
                self._paused = False
                return None
        return ids[-1] if len(ids) == REQUEST_PAGE else None

    async def _request(self, stage: RetentionStage, as_of: datetime, business_id: int) -> None:
        assert self._counts is not None
        kind: RetentionRequestKind = "refresh" if stage == "refresh" else "recheck"
        try:
            result = await places_request(
                RetentionActivities.places_retention_request,
                RetentionRequest(kind=kind, business_id=business_id, as_of=as_of),
                # A refresh and a re-check are both Place Details.
                method=Endpoint.GET_PLACE,
                retry=default_places_retry(),
                throttle_ms=0,
                summary=f"{stage} business #{business_id}",
            )
        except ActivityError as exc:
            # One business's request failing for good (its retries spent) must not stop
            # the run: its content is purged in its turn, its id re-checked another day.
            self._counts.failed += 1
            workflow.logger.warning("%s of business #%d failed: %s", stage, business_id, exc.cause)
            return
        finally:
            self._in_flight -= 1
        self._counts.add(result)

    def _show(self) -> None:
        """The Web UI's current details of the run."""
        c = self._counts
        if c is None:
            return
        state = f"paused on its ${self._budget} budget" if self._paused else self._stage
        workflow.set_current_details(
            f"retention as of {c.as_of:%Y-%m-%d %H:%M} UTC ({c.policy}), {state}: purged "
            f"{c.purged:,}, refreshed {c.refreshed:,}, ids confirmed {c.confirmed:,}, closed "
            f"{c.closed + c.moved + c.not_found:,}; {c.requests:,} requests, ${c.cost_usd:.2f}"
        )
