"""StateRolloutWorkflow: one state's rollout, a sliding window of community children.

Shape (samples-python batch_sliding_window, hardened):
- an activity creates the rollout rows and orders the communities (priority first);
- pages of community ids are loaded by activity as the window needs them, so only a cursor
  travels through continue-as-new;
- at most `batch_size` children run at once; a finished child frees its slot at once;
- children run with ABANDON and report back by signal (`community_finished`), so they
  survive this workflow's continue-as-new and no completion is lost across it;
- pause / resume / cancel / set_batch_size signals only change state here; the main loop
  turns that state into database writes and search-attribute updates, one at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from temporalio import workflow
from temporalio.common import (
    RetryPolicy,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import (
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    TerminatedError,
    WorkflowAlreadyStartedError,
)
from temporalio.exceptions import TimeoutError as TemporalTimeoutError

from workflows.common import RECORD_RETRY, record, should_continue_as_new
from workflows.community_rollout import CommunityRolloutWorkflow

with workflow.unsafe.imports_passed_through():
    from activities.children import ChildWatchActivities
    from activities.outages import ServiceProbeActivities
    from activities.records import RolloutRecordActivities
    from rollout.contract import (
        PLACES_SEARCH_TEXT_TASK_QUEUE,
        ROLLOUT_TASK_QUEUE,
        ErrorType,
        Query,
        SearchAttribute,
        Signal,
        Update,
        WorkflowType,
        community_workflow_id,
    )
    from rollout.pacific import next_pacific_midnight
    from rollout.payloads import (
        MAX_BATCH_SIZE,
        MAX_THROTTLE_MS,
        MIN_BATCH_SIZE,
        BatchSizeInput,
        ChildCheck,
        CommandAnswer,
        CommunityFinish,
        CommunityPage,
        CommunityPageInput,
        CommunityRef,
        CommunityResult,
        CommunityRolloutInput,
        FinalizeInput,
        InFlightCommunity,
        InitiateRolloutInput,
        InitiateRolloutResult,
        PauseInput,
        ProgressDocument,
        ResumeInput,
        RolloutSettings,
        RolloutStatusChange,
        RolloutSummary,
        ServiceCheck,
        SilentCommunity,
        StateRolloutCarry,
        StateRolloutInput,
        Totals,
        cents,
    )
    from rollout.progress import FINISHED as FINISHED_STATUSES
    from rollout.progress import RolloutFacts, average_cost, build_progress
    from rollout.states import STATE_NAMES
    from rollout.status import CommunityStatus, RolloutStatus

STATE_CODE_KEY = SearchAttributeKey.for_keyword(SearchAttribute.STATE_CODE)
STATUS_KEY = SearchAttributeKey.for_keyword(SearchAttribute.STATUS)

PAGE_SIZE = 50
# How long a cancelled rollout waits for its in-flight children to acknowledge.
CANCEL_GRACE = timedelta(minutes=2)
# A child id still held by a closing run of an earlier rollout: wait and retry.
CHILD_ID_BUSY_WAIT = timedelta(seconds=15)
CHILD_ID_BUSY_TRIES = 20
# Children this run did not start (carried over by continue-as-new) are checked every
# StateRolloutInput.carried_child_check_s (60 s) for having closed without reporting;
# children it started are watched through their handles.
CHILD_CHECK_TIMEOUT = timedelta(seconds=30)
# Children watched (a child that closes without reporting fails its community), a busy
# child id retried beside the other communities, requeued communities kept in position
# order. Runs started before this patch keep the earlier behaviour until they continue as new.
WATCH_CHILDREN_PATCH = "watch-children"
# A pause the rollout took because a service was out ends by itself once a probe finds the
# services answering (every StateRolloutInput.service_probe_s); one for the daily quota at midnight
# Pacific time. A pause by the operator is never ended by the rollout.
AUTO_RESUME_PATCH = "auto-resume"
# A community paused by an "outage" again after the services answered the probe fails:
# the error is its own (e.g. Places failing for its area only).
OUTAGE_PAUSES_PER_COMMUNITY = 1
SERVICE_PROBE_TIMEOUT = timedelta(seconds=60)


def _silent_reason(err: ChildWorkflowError) -> str:
    """How a child ended without reporting, in the words the community row keeps."""
    cause = err.cause
    if isinstance(cause, TerminatedError):
        return "terminated"
    if isinstance(cause, TemporalTimeoutError):
        return "timed out"
    if isinstance(cause, CancelledError):
        return "cancelled"
    if isinstance(cause, ApplicationError):
        return f"failed: {cause.type or 'Error'}: {cause.message}"[:2000]
    return f"failed: {cause or err}"[:2000]


def validate_input(inp: StateRolloutInput) -> list[str]:
    """Every problem with the start input, one message each (empty when valid)."""
    problems = []
    code = inp.state_code.strip().upper()
    if code not in STATE_NAMES:
        problems.append(
            f"unknown state code {inp.state_code!r}: expected one of the 50 states or DC"
        )
    if not MIN_BATCH_SIZE <= inp.batch_size <= MAX_BATCH_SIZE:
        problems.append(f"batch_size {inp.batch_size} is outside {MIN_BATCH_SIZE}-{MAX_BATCH_SIZE}")
    if not 0 <= inp.throttle_ms <= MAX_THROTTLE_MS:
        problems.append(f"throttle_ms {inp.throttle_ms} is outside 0-{MAX_THROTTLE_MS}")
    if inp.budget_usd is not None and inp.budget_usd <= 0:
        problems.append(f"budget_usd {inp.budget_usd} must be positive")
    if any(c <= 0 for c in [*inp.priority_communities, *inp.only_communities]):
        problems.append("community ids must be positive integers")
    return problems


@workflow.defn(name=WorkflowType.STATE_ROLLOUT)
class StateRolloutWorkflow:
    @workflow.init
    def __init__(self, inp: StateRolloutInput) -> None:
        # Built from the input before any handler runs, so a signal that arrives with the
        # first task (or right after continue-as-new) sees the carried state.
        self._input = inp
        self._state = inp.state_code.strip().upper()
        carry = inp.carry
        self._rollout_id: int | None = carry.rollout_id if carry else None
        self._state_name = carry.state_name if carry else STATE_NAMES.get(self._state, self._state)
        self._total = carry.total_communities if carry else 0
        self._started_at = carry.started_at if carry else None
        self._cursor = carry.cursor if carry else 0
        self._exhausted = carry.exhausted if carry else False
        self._buffer: list[CommunityRef] = list(carry.requeued) if carry else []
        self._in_flight: dict[int, InFlightCommunity] = (
            {c.community_rollout_id: c for c in carry.in_flight} if carry else {}
        )
        self._totals = carry.totals.model_copy() if carry else Totals()
        self._batch_size = carry.batch_size if carry else inp.batch_size
        self._budget = inp.budget_usd
        self._paused = carry.paused if carry else False
        self._paused_reason = carry.paused_reason if carry else None
        self._cancel_requested = carry.cancel_requested if carry else False
        self._runs = carry.runs if carry else 1
        self._status = (
            RolloutStatus.PLANNED
            if carry is None
            else (RolloutStatus.PAUSED if self._paused else RolloutStatus.IN_PROGRESS)
        )
        # What the database and the search attributes currently say.
        self._recorded_status = self._status
        self._completed_at: datetime | None = None
        self._busy_tries: dict[int, int] = dict(carry.busy_tries) if carry else {}
        # Set in run(): whether this run follows WATCH_CHILDREN_PATCH.
        self._watching = False
        # Communities whose child this run started, watched through their handles.
        self._watched: set[int] = set()
        # Communities waiting for a busy child id to be released (a timer requeues them).
        self._waiting_ids: dict[int, CommunityRef] = {}
        self._jobs: list[asyncio.Task[None]] = []
        # Set in run(): whether this run follows AUTO_RESUME_PATCH.
        self._auto_resume = False
        # How a pause the rollout took by itself ends by itself: "outage" (when the
        # services answer again) or "daily_quota" (at midnight Pacific); None: by hand.
        self._resume_when: str | None = carry.resume_when if carry else None
        # Outage pauses per community, to tell a community's own error from an outage.
        self._outage_pauses: dict[int, int] = dict(carry.outage_pauses) if carry else {}
        # Communities whose "outage" turned out to be their own error, to be recorded failed.
        self._to_fail: list[CommunityResult] = list(carry.to_fail) if carry else []

    # ----------------------------------------------------------------------------------
    # signals and the query
    # ----------------------------------------------------------------------------------

    @workflow.signal(name=Signal.PAUSE)
    def pause(self, inp: PauseInput | None = None) -> None:
        reason = (inp.reason if inp else None) or "paused by operator"
        if self._paused and self._resume_when is not None:
            # The operator takes over a pause the rollout would have ended by itself.
            workflow.logger.info("%s: operator pause replaces %r", self._state, self._paused_reason)
            self._resume_when = None
            self._paused_reason = reason
            self._update_details()
            return
        self._pause(reason)

    @workflow.signal(name=Signal.RESUME)
    def resume(self, inp: ResumeInput | None = None) -> None:
        if self._cancel_requested or self._status.value in ("completed", "cancelled", "failed"):
            workflow.logger.warning("resume ignored: the rollout is %s", self._status.value)
            return
        if inp is not None and inp.budget_usd is not None:
            if inp.budget_usd <= 0:
                workflow.logger.warning("resume ignored: budget_usd must be positive")
                return
            self._budget = inp.budget_usd
        if not self._paused:
            workflow.logger.warning("resume ignored: the rollout is not paused")
            return
        workflow.logger.info("resuming %s", self._state)
        self._paused = False
        self._paused_reason = None
        self._resume_when = None
        self._set_status(RolloutStatus.IN_PROGRESS)

    @workflow.signal(name=Signal.CANCEL)
    def cancel(self) -> None:
        if not self._cancel_requested:
            workflow.logger.info("cancel requested for %s", self._state)
        self._cancel_requested = True

    @workflow.signal(name=Signal.SET_BATCH_SIZE)
    def set_batch_size(self, inp: BatchSizeInput) -> None:
        if not MIN_BATCH_SIZE <= inp.batch_size <= MAX_BATCH_SIZE:
            workflow.logger.warning(
                "set_batch_size ignored: %s is outside %s-%s",
                inp.batch_size,
                MIN_BATCH_SIZE,
                MAX_BATCH_SIZE,
            )
            return
        workflow.logger.info("batch size %s -> %s", self._batch_size, inp.batch_size)
        self._batch_size = inp.batch_size
        self._update_details()

    # -- the same commands as Updates: validated first, answered by the workflow itself --

    @workflow.update(name=Update.PAUSE)
    def pause_rollout(self, inp: PauseInput) -> CommandAnswer:
        self.pause(inp)
        return self._answer(f"paused ({self._paused_reason})")

    @pause_rollout.validator
    def _validate_pause(self, inp: PauseInput) -> None:
        self._refuse_if_finished()
        if self._paused and self._resume_when is None:
            raise ValueError(f"{self._state} is already paused ({self._paused_reason})")

    @workflow.update(name=Update.RESUME)
    def resume_rollout(self, inp: ResumeInput) -> CommandAnswer:
        self.resume(inp)
        budget = f" with a ${cents(self._budget)} budget" if self._budget else ""
        return self._answer(f"resumed{budget}")

    @resume_rollout.validator
    def _validate_resume(self, inp: ResumeInput) -> None:
        self._refuse_if_finished()
        if not self._paused:
            raise ValueError(f"{self._state} is not paused (it is {self._status.value})")
        if inp.budget_usd is not None and inp.budget_usd <= 0:
            raise ValueError(f"budget {inp.budget_usd} must be positive")

    @workflow.update(name=Update.SET_BATCH_SIZE)
    def change_batch_size(self, inp: BatchSizeInput) -> CommandAnswer:
        before = self._batch_size
        self.set_batch_size(inp)
        return self._answer(f"batch size {before} -> {self._batch_size}")

    @change_batch_size.validator
    def _validate_batch_size(self, inp: BatchSizeInput) -> None:
        self._refuse_if_finished()
        if not MIN_BATCH_SIZE <= inp.batch_size <= MAX_BATCH_SIZE:
            raise ValueError(
                f"batch size {inp.batch_size} is outside {MIN_BATCH_SIZE}-{MAX_BATCH_SIZE}"
            )

    def _refuse_if_finished(self) -> None:
        if self._cancel_requested:
            raise ValueError(f"{self._state}'s rollout is being cancelled")
        if self._status in FINISHED_STATUSES:
            raise ValueError(f"{self._state}'s rollout has ended ({self._status.value})")

    def _answer(self, message: str) -> CommandAnswer:
        return CommandAnswer(message=f"{self._state} {message}", status=self._status)

    @workflow.signal(name=Signal.COMMUNITY_FINISHED)
    def community_finished(self, result: CommunityResult) -> None:
        self._finished(result)

    def _finished(self, result: CommunityResult) -> None:
        entry = self._in_flight.pop(result.community_rollout_id, None)
        if entry is None:  # a duplicate report, or one for an earlier rollout's child
            return
        t = self._totals
        if result.status is CommunityStatus.PAUSED:
            # The community could not run for a rollout-wide reason: it goes back to the
            # front of the queue, and the rollout pauses with that reason.
            ref = CommunityRef(**entry.model_dump(include=set(CommunityRef.model_fields)))
            if self._auto_resume and result.resume_when == "outage":
                pauses = self._outage_pauses.get(ref.community_rollout_id, 0) + 1
                self._outage_pauses[ref.community_rollout_id] = pauses
                if pauses > OUTAGE_PAUSES_PER_COMMUNITY:
                    # The services answered the probe since its last pause: the error is
                    # this community's own, not an outage. The main loop records it failed
                    # (before any continue-as-new, which carries it until then).
                    self._in_flight[ref.community_rollout_id] = entry
                    self._to_fail.append(result)
                    return
            self._requeue(ref)
            if self._auto_resume and result.resume_when and not self._paused:
                self._resume_when = result.resume_when
            self._pause(result.pause_reason or "a community could not run")
            return
        if result.status is CommunityStatus.COMPLETED:
            t.completed += 1
            t.completed_cost_usd += result.cost_usd
        elif result.status is CommunityStatus.FAILED:
            t.failed += 1
        elif result.status is CommunityStatus.CANCELLED:
            t.cancelled += 1
        t.businesses += result.businesses_discovered
        t.news_sources += result.news_sources_created
        t.cost_usd += result.cost_usd
        self._update_details()

    @workflow.query(name=Query.PROGRESS)
    def progress(self) -> ProgressDocument:
        facts = RolloutFacts(
            rollout_id=self._rollout_id,
            state_code=self._state,
            state_name=self._state_name,
            status=self._status,
            total_communities=self._total,
            started_at=self._started_at,
            completed_at=self._completed_at,
            batch_size=self._batch_size,
            throttle_ms=self._input.throttle_ms,
            skip_enrichment=self._input.skip_enrichment,
            budget_usd=self._budget,
            paused_reason=self._paused_reason,
        )
        return build_progress(
            facts,
            self._totals,
            list(self._in_flight.values()),
            default_community_cost=self._input.default_community_cost_usd,
        )

    # ----------------------------------------------------------------------------------
    # main loop
    # ----------------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: StateRolloutInput) -> RolloutSummary:
        self._watching = workflow.patched(WATCH_CHILDREN_PATCH)
        if self._watching:
            self._spawn(self._watch_carried_children(), "watch carried children")
        self._auto_resume = workflow.patched(AUTO_RESUME_PATCH)
        if self._auto_resume:
            self._spawn(self._resume_by_itself(), "resume by itself")
        try:
            if inp.carry is None:
                await self._initiate(inp)
            await self._sync_status()
            await self._dispatch()
        except asyncio.CancelledError:
            # `temporal workflow cancel` (or a client cancel): clean up like the signal.
            self._cancel_requested = True
            summary = await self._finish()
            workflow.logger.info("rollout of %s cancelled: %s", self._state, summary)
            raise
        return await self._finish()

    async def _initiate(self, inp: StateRolloutInput) -> None:
        problems = validate_input(inp)
        if problems:
            raise ApplicationError(
                "; ".join(problems), type=ErrorType.INVALID_ROLLOUT_INPUT, non_retryable=True
            )
        workflow.upsert_search_attributes(
            [STATE_CODE_KEY.value_set(self._state), STATUS_KEY.value_set(self._status.value)]
        )
        info = workflow.info()
        result: InitiateRolloutResult = await record(
            RolloutRecordActivities.initiate_rollout,
            InitiateRolloutInput(
                state_code=self._state,
                workflow_id=info.workflow_id,
                workflow_run_id=info.first_execution_run_id,
                settings=RolloutSettings(
                    batch_size=inp.batch_size,
                    throttle_ms=inp.throttle_ms,
                    skip_enrichment=inp.skip_enrichment,
                    priority_communities=inp.priority_communities,
                    budget_usd=inp.budget_usd,
                    only_communities=inp.only_communities,
                ),
                initiated_by=inp.initiated_by,
            ),
            summary=f"initiate {self._state} rollout",
        )
        self._rollout_id = result.rollout_id
        self._state_name = result.state_name
        self._total = result.total_communities
        self._started_at = result.started_at
        # The rows were written as in_progress; a pause that raced the start is synced next.
        self._recorded_status = RolloutStatus.IN_PROGRESS
        if self._status is RolloutStatus.PLANNED:
            self._status = RolloutStatus.IN_PROGRESS
        workflow.upsert_search_attributes([STATUS_KEY.value_set(self._recorded_status.value)])
        self._update_details()

    def _wants_attention(self) -> bool:
        if self._cancel_requested or self._status is not self._recorded_status:
            return True
        if self._to_fail:
            return True
        if self._should_continue_as_new():
            return True
        if self._nothing_left():
            return True  # even if paused meanwhile
        if self._paused:
            return False
        return len(self._in_flight) < self._batch_size and bool(self._buffer or not self._exhausted)

    async def _dispatch(self) -> None:
        while True:
            await workflow.wait_condition(self._wants_attention)
            if self._cancel_requested:
                return
            if self._status is not self._recorded_status:
                await self._sync_status()
                continue
            if self._to_fail:
                await self._fail_after_outage(self._to_fail.pop(0))
                continue
            if self._should_continue_as_new():
                await self._continue_as_new()
            if self._nothing_left():
                return  # every community has finished
            if self._paused or len(self._in_flight) >= self._batch_size:
                continue
            ref = await self._next_community()
            if ref is None:
                if self._nothing_left():
                    return  # every community has finished
                continue
            budget_problem = self._budget_problem()
            if budget_problem:
                self._requeue(ref)
                self._pause(budget_problem)
                continue
            await self._start_child(ref)

    async def _next_community(self) -> CommunityRef | None:
        if not self._buffer and not self._exhausted:
            assert self._rollout_id is not None
            page: CommunityPage = await record(
                RolloutRecordActivities.load_community_page,
                CommunityPageInput(
                    rollout_id=self._rollout_id, after_position=self._cursor, limit=PAGE_SIZE
                ),
                summary=f"load communities after #{self._cursor}",
            )
            self._buffer.extend(page.communities)
            if page.communities:
                self._cursor = page.communities[-1].position
            self._exhausted = page.exhausted
        return self._buffer.pop(0) if self._buffer else None

    async def _start_child(self, ref: CommunityRef) -> None:
        assert self._rollout_id is not None
        # Recorded before the start is awaited: a fast child's report must find it.
        self._in_flight[ref.community_rollout_id] = InFlightCommunity(
            **ref.model_dump(), started_at=workflow.now()
        )
        if self._watching:
            self._watched.add(ref.community_rollout_id)  # through its handle, not a check
        self._update_details()
        try:
            handle = await workflow.start_child_workflow(
                CommunityRolloutWorkflow.run,
                CommunityRolloutInput(
                    rollout_id=self._rollout_id,
                    community_rollout_id=ref.community_rollout_id,
                    community_id=ref.community_id,
                    community_name=ref.name,
                    state_code=self._state,
                    parent_workflow_id=workflow.info().workflow_id,
                    throttle_ms=self._input.throttle_ms,
                    skip_enrichment=self._input.skip_enrichment,
                    phase_retry=self._input.phase_retry,
                    places_retry=self._input.places_retry,
                ),
                id=community_workflow_id(self._state, ref.community_id),
                task_queue=ROLLOUT_TASK_QUEUE,
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                search_attributes=TypedSearchAttributes(
                    [SearchAttributePair(STATE_CODE_KEY, self._state)]
                ),
                static_summary=f"{ref.name}, {self._state} (community {ref.community_id})",
            )
        except WorkflowAlreadyStartedError:
            # The id is still held by a closing child of an earlier rollout of this state.
            del self._in_flight[ref.community_rollout_id]
            self._watched.discard(ref.community_rollout_id)
            tries = self._busy_tries.get(ref.community_rollout_id, 0) + 1
            self._busy_tries[ref.community_rollout_id] = tries
            if tries >= CHILD_ID_BUSY_TRIES:
                await self._record_unstartable(ref)
                return
            workflow.logger.warning("community %s still running elsewhere; retrying", ref.name)
            if self._watching:
                # The other communities go on meanwhile; a timer requeues this one.
                self._waiting_ids[ref.community_rollout_id] = ref
                self._spawn(self._retry_busy_later(ref), f"retry {ref.name}")
                return
            self._buffer.insert(0, ref)
            await workflow.sleep(CHILD_ID_BUSY_WAIT, summary="child id busy")
            return
        if self._watching:
            self._spawn(self._watch_child(ref, handle), f"watch {ref.name}")

    def _spawn(self, job: Coroutine[Any, Any, None], name: str) -> None:
        """A background job of this run; finished ones are dropped as new ones start."""
        self._jobs = [j for j in self._jobs if not j.done()]
        self._jobs.append(asyncio.create_task(job, name=name))

    async def _retry_busy_later(self, ref: CommunityRef) -> None:
        await workflow.sleep(CHILD_ID_BUSY_WAIT, summary=f"child id of {ref.name} busy")
        if self._waiting_ids.pop(ref.community_rollout_id, None) is not None:
            self._requeue(ref)

    def _requeue(self, ref: CommunityRef) -> None:
        """Put a community back in the queue: in position order (the order it was planned
        in), or at the front for runs from before WATCH_CHILDREN_PATCH."""
        if not self._watching:
            self._buffer.insert(0, ref)
            return
        index = next(
            (i for i, queued in enumerate(self._buffer) if queued.position > ref.position),
            len(self._buffer),
        )
        self._buffer.insert(index, ref)

    def _nothing_left(self) -> bool:
        return (
            self._exhausted and not self._buffer and not self._in_flight and not self._waiting_ids
        )

    # ----------------------------------------------------------------------------------
    # children that close without reporting
    # ----------------------------------------------------------------------------------

    async def _watch_child(
        self, ref: CommunityRef, handle: workflow.ChildWorkflowHandle[Any, CommunityResult]
    ) -> None:
        """A child reports by signal before it closes; one that closes without reporting
        (terminated, timed out, failed) fails its community with the reason."""
        try:
            await handle
        except ChildWorkflowError as err:
            await self._close_silent(ref.community_rollout_id, _silent_reason(err))

    async def _watch_carried_children(self) -> None:
        """Children started by an earlier run have no handle here: ask Temporal about them
        every `carried_child_check_s` while any is in flight."""
        while True:
            await workflow.wait_condition(lambda: bool(self._carried_in_flight()))
            await workflow.sleep(
                timedelta(seconds=self._input.carried_child_check_s),
                summary="check carried children",
            )
            carried = self._carried_in_flight()
            if not carried:
                continue
            by_id = {community_workflow_id(self._state, c.community_id): c for c in carried}
            closed = await workflow.execute_activity_method(
                ChildWatchActivities.closed_children,
                ChildCheck(workflow_ids=list(by_id)),
                start_to_close_timeout=CHILD_CHECK_TIMEOUT,
                retry_policy=RECORD_RETRY,
                summary=f"check {len(by_id)} carried children",
            )
            for child in closed:
                await self._close_silent(
                    by_id[child.workflow_id].community_rollout_id, child.reason
                )

    async def _resume_by_itself(self) -> None:
        while True:
            await workflow.wait_condition(
                lambda: (
                    self._paused and self._resume_when is not None and not self._cancel_requested
                )
            )
            when = self._resume_when
            if when == "daily_quota":
                wake = next_pacific_midnight(workflow.now())
                await workflow.sleep(
                    wake - workflow.now(), summary="daily Places quota resets at midnight PT"
                )
            else:
                await workflow.sleep(
                    timedelta(seconds=self._input.service_probe_s), summary="wait for the services"
                )
                if not (self._paused and self._resume_when == when):
                    continue
                status = await workflow.execute_activity_method(
                    ServiceProbeActivities.services_available,
                    ServiceCheck(),
                    # Its Places probe is a Text Search: held to that method's quota.
                    task_queue=PLACES_SEARCH_TEXT_TASK_QUEUE,
                    start_to_close_timeout=SERVICE_PROBE_TIMEOUT,
                    retry_policy=RetryPolicy(maximum_attempts=1),
                    summary="are Postgres and Places back?",
                )
                if status.problem is not None:
                    workflow.logger.info("%s still paused: %s", self._state, status.problem)
                    continue
            if self._paused and self._resume_when == when and not self._cancel_requested:
                workflow.logger.info("%s resumes by itself (%s over)", self._state, when)
                self.resume(None)

    def _paused_until_something(self) -> bool:
        return self._paused and self._resume_when is not None and not self._cancel_requested

    def _carried_in_flight(self) -> list[InFlightCommunity]:
        return [c for cr_id, c in self._in_flight.items() if cr_id not in self._watched]

    async def _close_silent(self, community_rollout_id: int, reason: str) -> None:
        entry = self._in_flight.get(community_rollout_id)
        if entry is None or self._rollout_id is None:
            return  # it reported after all
        workflow.logger.warning("community %s closed without reporting: %s", entry.name, reason)
        result = await record(
            RolloutRecordActivities.close_silent_community,
            SilentCommunity(
                rollout_id=self._rollout_id,
                community_rollout_id=community_rollout_id,
                community_id=entry.community_id,
                reason=reason,
            ),
            summary=f"{entry.name}: {reason}",
        )
        if community_rollout_id in self._in_flight:
            self.community_finished(result)

    async def _fail_after_outage(self, paused: CommunityResult) -> None:
        assert self._rollout_id is not None
        entry = self._in_flight[paused.community_rollout_id]
        result = await record(
            RolloutRecordActivities.finish_community,
            CommunityFinish(
                rollout_id=self._rollout_id,
                community_rollout_id=paused.community_rollout_id,
                community_id=paused.community_id,
                status=CommunityStatus.FAILED,
                failed_phase=paused.failed_phase,
                error=f"{paused.pause_reason} (again after the services answered)"[:2000],
            ),
            summary=f"{entry.name}: failed, not an outage",
        )
        self.community_finished(result)

    async def _record_unstartable(self, ref: CommunityRef) -> None:
        assert self._rollout_id is not None
        result: CommunityResult = await record(
            RolloutRecordActivities.finish_community,
            CommunityFinish(
                rollout_id=self._rollout_id,
                community_rollout_id=ref.community_rollout_id,
                community_id=ref.community_id,
                status=CommunityStatus.FAILED,
                error="could not start: a workflow with this community's id is still running",
            ),
            summary="finish_community",
        )
        self._in_flight[ref.community_rollout_id] = InFlightCommunity(
            **ref.model_dump(), started_at=workflow.now()
        )
        self.community_finished(result)

    # ----------------------------------------------------------------------------------
    # status, budget, continue-as-new, finish
    # ----------------------------------------------------------------------------------

    def _pause(self, reason: str) -> None:
        if self._paused or self._cancel_requested:
            return
        if self._status.value in ("completed", "cancelled", "failed"):
            return
        workflow.logger.info("pausing %s: %s", self._state, reason)
        self._paused = True
        self._paused_reason = reason
        self._set_status(RolloutStatus.PAUSED)

    def _set_status(self, status: RolloutStatus) -> None:
        self._status = status
        self._update_details()

    async def _sync_status(self) -> None:
        """Bring the database rows and the RolloutStatus search attribute to self._status."""
        if self._rollout_id is None or self._status is self._recorded_status:
            return
        target = self._status
        await record(
            RolloutRecordActivities.set_rollout_status,
            RolloutStatusChange(
                rollout_id=self._rollout_id, status=target, paused_reason=self._paused_reason
            ),
            summary=f"status {target.value}",
        )
        workflow.upsert_search_attributes([STATUS_KEY.value_set(target.value)])
        self._recorded_status = target

    def _average_cost(self) -> Decimal:
        return average_cost(self._totals, self._input.default_community_cost_usd)

    def _budget_problem(self) -> str | None:
        if self._budget is None:
            return None
        average = self._average_cost()
        committed = self._totals.cost_usd + len(self._in_flight) * average
        if committed + average > self._budget:
            return (
                f"budget: ${cents(self._totals.cost_usd)} spent and "
                f"{len(self._in_flight)} communities in flight; the next community "
                f"(about ${cents(average)}) would pass the ${cents(self._budget)} budget"
            )
        return None

    def _should_continue_as_new(self) -> bool:
        return should_continue_as_new(self._input.continue_as_new_after_events)

    async def _continue_as_new(self) -> None:
        # Let running handlers finish first; signals that arrive meanwhile are handled
        # here or make the server reject the continue-as-new so the SDK retries the task.
        await workflow.wait_condition(workflow.all_handlers_finished)
        assert self._rollout_id is not None
        assert self._started_at is not None
        carry = StateRolloutCarry(
            rollout_id=self._rollout_id,
            state_name=self._state_name,
            total_communities=self._total,
            started_at=self._started_at,
            cursor=self._cursor,
            exhausted=self._exhausted,
            # Communities waiting for a busy child id go first: the next run retries them.
            requeued=sorted([*self._waiting_ids.values(), *self._buffer], key=lambda c: c.position)
            if self._watching
            else self._buffer,
            in_flight=list(self._in_flight.values()),
            totals=self._totals,
            batch_size=self._batch_size,
            paused=self._paused,
            paused_reason=self._paused_reason,
            cancel_requested=self._cancel_requested,
            runs=self._runs + 1,
            busy_tries=self._busy_tries,
            resume_when=self._resume_when,
            outage_pauses=self._outage_pauses,
            to_fail=self._to_fail,
        )
        workflow.logger.info(
            "continuing %s as new (run %s, %s events)",
            self._state,
            self._runs + 1,
            workflow.info().get_current_history_length(),
        )
        workflow.continue_as_new(
            self._input.model_copy(update={"carry": carry, "budget_usd": self._budget})
        )

    async def _finish(self) -> RolloutSummary:
        if self._rollout_id is None:
            raise ApplicationError("the rollout was never initiated", non_retryable=True)
        if self._cancel_requested:
            for community in list(self._in_flight.values()):
                handle = workflow.get_external_workflow_handle(
                    community_workflow_id(self._state, community.community_id)
                )
                try:
                    await handle.cancel()
                except Exception as exc:  # already closed: nothing to cancel
                    workflow.logger.info("cancel of %s: %s", community.name, exc)
            # Give the children a moment to record their cancellation and report.
            try:
                await workflow.wait_condition(
                    lambda: not self._in_flight,
                    timeout=CANCEL_GRACE,
                    timeout_summary="children acknowledge cancel",
                )
            except TimeoutError:
                workflow.logger.warning("%s children did not report in time", len(self._in_flight))
            final = RolloutStatus.CANCELLED
        elif self._totals.completed == 0 and self._totals.failed > 0:
            final = RolloutStatus.FAILED
        else:
            final = RolloutStatus.COMPLETED
        summary: RolloutSummary = await record(
            RolloutRecordActivities.finalize_rollout,
            FinalizeInput(rollout_id=self._rollout_id, status=final),
            summary=f"finalize {final.value}",
        )
        self._status = self._recorded_status = final
        self._paused = False
        self._paused_reason = None
        self._completed_at = workflow.now()
        workflow.upsert_search_attributes([STATUS_KEY.value_set(final.value)])
        self._update_details()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return summary

    def _update_details(self) -> None:
        """Live details for the Web UI (Markdown, shown on the workflow page)."""
        t = self._totals
        done = t.completed + t.failed + t.cancelled
        lines = [
            f"**{self._state_name} rollout** — {self._status.value}",
            "",
            f"- communities: {done:,}/{self._total:,} done "
            f"({t.completed:,} completed, {t.failed:,} failed, {t.cancelled:,} cancelled)",
            f"- in flight: {len(self._in_flight)} of a window of {self._batch_size}",
            f"- businesses: {t.businesses:,}; news sources: {t.news_sources:,}",
            f"- Places cost: ${cents(t.cost_usd)}"
            + (f" of a ${cents(self._budget)} budget" if self._budget else ""),
        ]
        if self._paused_reason:
            lines.append(f"- paused: {self._paused_reason}")
        if self._in_flight:
            names = ", ".join(c.name for c in list(self._in_flight.values())[:10])
            lines.append(f"- now: {names}")
        workflow.set_current_details("\n".join(lines))
