"""CommunityRolloutWorkflow: one community through the six phases, in order.

Each phase is retried by its retry policy (by default 3 attempts, 60 s then 300 s apart). A
phase that still fails marks the community failed with the phase and the error; the state
rollout goes on. A rollout-wide problem (invalid key, API disabled, daily quota gone) does
not fail the community: it is reported as paused with the reason, and the parent pauses the
whole rollout. The result always reaches the parent by signal, so the parent may have
continued-as-new meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import (
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    FailureError,
    is_cancelled_exception,
)
from temporalio.workflow import ActivityCancellationType

from workflows.common import Activity, record, retry_policy
from workflows.discovery import CommunityDiscoveryWorkflow
from workflows.enrichment import CommunityEnrichmentWorkflow

with workflow.unsafe.imports_passed_through():
    from activities.news_sources import NewsSourceActivities
    from activities.records import RolloutRecordActivities
    from activities.seeding import SeedingActivities
    from activities.verification import VerificationActivities
    from activities.website_scan import WebsiteScanActivities
    from rollout.contract import (
        OUTAGE_ERRORS,
        PHASE_NON_RETRYABLE,
        ErrorType,
        Query,
        SearchAttribute,
        Signal,
        WorkflowType,
        discovery_workflow_id,
        enrichment_workflow_id,
    )
    from rollout.payloads import (
        CommunityFinish,
        CommunityMark,
        CommunityResult,
        CommunityRolloutInput,
        PhaseInput,
        PhaseMark,
        PhaseResult,
    )
    from rollout.phases.discovery.payloads import DiscoveryInput
    from rollout.phases.enrichment.payloads import EnrichmentInput
    from rollout.status import PHASE_NAMES, CommunityStatus, Phase, PhaseStatus

# The phases that are one activity each (1 and 4 are child workflows of single requests).
PHASE_ACTIVITIES: dict[Phase, Activity[PhaseInput, PhaseResult]] = {
    Phase.WEBSITE_SCAN: WebsiteScanActivities.scan_websites,
    Phase.NEWS_SOURCES: NewsSourceActivities.setup_news_sources,
    Phase.VERIFICATION: VerificationActivities.verify,
    Phase.SEEDING: SeedingActivities.seed_platforms,
}
# Phase 4 as CommunityEnrichmentWorkflow. Deprecated patch: every run takes the child
# workflow; histories recorded with the patch marker still replay. See "Patches" in
# docs/architecture.md for when this call is removed.
ENRICHMENT_CHILD_PATCH = "phase4-enrichment-workflow"
COMMUNITY_STATUS_PATCH = "community-status"
# Patched: phases 1 and 4 (child workflows) retry like the other phases, and a phase that
# still fails because a service is out pauses the rollout instead of failing the community.
OUTAGE_PATCH = "outage-pause"
COMMUNITY_STATUS_KEY = SearchAttributeKey.for_keyword(SearchAttribute.COMMUNITY_STATUS)
PHASE_TIMEOUT = timedelta(minutes=30)
# Every phase activity heartbeats every few seconds, so a worker that dies mid-phase is
# noticed within this (not PHASE_TIMEOUT) and the phase resumes elsewhere, from its
# heartbeat details where it has any.
PHASE_HEARTBEAT = timedelta(seconds=30)


def application_cause(error: BaseException) -> ApplicationError | None:
    """The innermost ApplicationError behind an activity or child-workflow failure."""
    found: ApplicationError | None = None
    current: BaseException | None = error
    while current is not None:
        if isinstance(current, ApplicationError):
            found = current
        current = current.cause if isinstance(current, FailureError) else current.__cause__
    return found


def describe_failure(error: BaseException) -> str:
    cause = application_cause(error)
    if cause is not None:
        return f"{cause.type or 'Error'}: {cause.message}" if cause.type else cause.message
    return str(error) or type(error).__name__


@workflow.defn(name=WorkflowType.COMMUNITY_ROLLOUT)
class CommunityRolloutWorkflow:
    def __init__(self) -> None:
        self._phase: Phase | None = None
        # Set in run(): whether this run follows OUTAGE_PATCH.
        self._outages = False

    @workflow.query(name=Query.PHASE)
    def current_phase(self) -> int | None:
        return int(self._phase) if self._phase else None

    @workflow.run
    async def run(self, inp: CommunityRolloutInput) -> CommunityResult:
        mark = CommunityMark(
            rollout_id=inp.rollout_id,
            community_rollout_id=inp.community_rollout_id,
            community_id=inp.community_id,
        )
        finish = CommunityFinish(
            rollout_id=inp.rollout_id,
            community_rollout_id=inp.community_rollout_id,
            community_id=inp.community_id,
            status=CommunityStatus.COMPLETED,
        )
        # Patched: the workflow carries its community's status as a search attribute and
        # ends Failed when its community failed (after reporting it), so failures show in
        # the Web UI. Runs started before keep the earlier behaviour.
        show_status = workflow.patched(COMMUNITY_STATUS_PATCH)
        self._outages = workflow.patched(OUTAGE_PATCH)
        if show_status:
            workflow.upsert_search_attributes(
                [COMMUNITY_STATUS_KEY.value_set(CommunityStatus.PROCESSING.value)]
            )
        cancelled = False
        try:
            await record(
                RolloutRecordActivities.begin_community,
                mark,
                summary=f"begin {inp.community_name}",
            )
            finish = await self._run_phases(inp, finish)
        except asyncio.CancelledError:
            cancelled = True
            finish.status = CommunityStatus.CANCELLED
            finish.error = "cancelled with the rollout"
        result = await record(
            RolloutRecordActivities.finish_community,
            finish,
            summary=f"{finish.status.value}: {inp.community_name}",
        )
        await self._report(inp, result)
        if show_status:
            workflow.upsert_search_attributes([COMMUNITY_STATUS_KEY.value_set(result.status.value)])
        if cancelled:
            raise CancelledError("cancelled with the rollout")
        if show_status and result.status is CommunityStatus.FAILED:
            raise ApplicationError(
                f"{inp.community_name} failed in phase {result.failed_phase}: {result.error}",
                type=ErrorType.COMMUNITY_FAILED,
                non_retryable=True,
            )
        return result

    async def _run_phases(
        self, inp: CommunityRolloutInput, finish: CommunityFinish
    ) -> CommunityFinish:
        phase_input = PhaseInput(
            rollout_id=inp.rollout_id,
            community_rollout_id=inp.community_rollout_id,
            community_id=inp.community_id,
            state_code=inp.state_code,
            throttle_ms=inp.throttle_ms,
            skip_enrichment=inp.skip_enrichment,
        )
        for phase in Phase:
            self._phase = phase
            workflow.set_current_details(
                f"{inp.community_name}: phase {int(phase)} of {len(Phase)}, {PHASE_NAMES[phase]}"
            )
            try:
                await self._run_phase(phase, phase_input, inp)
            except asyncio.CancelledError:
                raise
            except FailureError as err:
                if is_cancelled_exception(err):
                    # The rollout was cancelled while this phase ran: not a phase failure.
                    raise asyncio.CancelledError(str(err)) from err
                cause = application_cause(err)
                message = describe_failure(err)
                kind = cause.type if cause is not None else None
                if cause is not None and kind in (
                    ErrorType.PLACES_ACCESS,
                    ErrorType.PLACES_DAILY_QUOTA,
                ):
                    workflow.logger.warning("%s paused: %s", inp.community_name, message)
                    finish.status = CommunityStatus.PAUSED
                    finish.pause_reason = f"Places: {cause.message}"
                    if self._outages and kind == ErrorType.PLACES_DAILY_QUOTA:
                        finish.resume_when = "daily_quota"
                    return finish
                if self._outages and cause is not None and kind in OUTAGE_ERRORS:
                    # A service was out for longer than the phase's retries: not this
                    # community's failure. It goes back to the queue; the rollout pauses
                    # until the service answers again.
                    at = workflow.now().strftime("%Y-%m-%d %H:%M UTC")
                    workflow.logger.warning(
                        "%s paused by an outage: %s", inp.community_name, message
                    )
                    finish.status = CommunityStatus.PAUSED
                    finish.pause_reason = f"{cause.message} (phase {int(phase)}, at {at})"
                    finish.resume_when = "outage"
                    finish.failed_phase = int(phase)  # the phase row keeps the error
                    return finish
                workflow.logger.warning(
                    "%s failed in phase %s: %s", inp.community_name, int(phase), message
                )
                finish.status = CommunityStatus.FAILED
                finish.failed_phase = int(phase)
                finish.error = message[:2000]
                return finish
        self._phase = None
        return finish

    async def _run_phase(
        self, phase: Phase, phase_input: PhaseInput, inp: CommunityRolloutInput
    ) -> PhaseResult | None:
        if phase is Phase.DISCOVERY:
            return await self._with_phase_retries(
                inp,
                lambda: workflow.execute_child_workflow(
                    CommunityDiscoveryWorkflow.run,
                    DiscoveryInput(phase=phase_input, places_retry=inp.places_retry),
                    id=discovery_workflow_id(workflow.info().workflow_id),
                    static_summary=f"phase 1 discovery: {inp.community_name}",
                ),
            )
        if phase is Phase.ENRICHMENT:
            if inp.skip_enrichment:
                await record(
                    RolloutRecordActivities.mark_phase,
                    PhaseMark(
                        community_rollout_id=inp.community_rollout_id,
                        phase=int(phase),
                        status=PhaseStatus.SKIPPED,
                    ),
                    summary="phase 4 skipped (skip_enrichment)",
                )
                return None
            workflow.deprecate_patch(ENRICHMENT_CHILD_PATCH)
            return await self._with_phase_retries(
                inp,
                lambda: workflow.execute_child_workflow(
                    CommunityEnrichmentWorkflow.run,
                    EnrichmentInput(phase=phase_input, places_retry=inp.places_retry),
                    id=enrichment_workflow_id(workflow.info().workflow_id),
                    static_summary=f"phase 4 enrichment: {inp.community_name}",
                ),
            )
        return await workflow.execute_activity_method(
            PHASE_ACTIVITIES[phase],
            phase_input,
            start_to_close_timeout=PHASE_TIMEOUT,
            # On cancel, wait for the attempt to end, so its billed requests are logged
            # before the community's cost is totted up.
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            heartbeat_timeout=PHASE_HEARTBEAT,
            retry_policy=retry_policy(inp.phase_retry, PHASE_NON_RETRYABLE),
            summary=f"phase {int(phase)}: {inp.community_name}",
        )

    async def _with_phase_retries(
        self, inp: CommunityRolloutInput, run: Callable[[], Awaitable[PhaseResult]]
    ) -> PhaseResult:
        """Phases 1 and 4 are child workflows: a failed run is run again by the phase's
        retry policy, as the activity phases are (a new run re-plans; what it bought is
        known and not bought again). Errors no retry can help end it at once."""
        spec = inp.phase_retry
        attempt = 1
        while True:
            try:
                return await run()
            except ChildWorkflowError as err:
                cause = application_cause(err)
                hopeless = is_cancelled_exception(err) or (
                    cause is not None and (cause.non_retryable or cause.type in PHASE_NON_RETRYABLE)
                )
                if not self._outages or hopeless or attempt >= spec.attempts:
                    raise
                delay = min(spec.initial_s * spec.backoff ** (attempt - 1), spec.maximum_s)
                workflow.logger.warning("phase failed (%s); again in %.0f s", cause, delay)
                await workflow.sleep(timedelta(seconds=delay), summary=f"phase retry {attempt}")
                attempt += 1

    async def _report(self, inp: CommunityRolloutInput, result: CommunityResult) -> None:
        parent = workflow.get_external_workflow_handle(inp.parent_workflow_id)
        try:
            # By name: the parent's module imports this one for its typed child start.
            await parent.signal(Signal.COMMUNITY_FINISHED, result)
        except Exception as exc:  # the parent's final run has closed: nothing to report to
            workflow.logger.info("could not report to %s: %s", inp.parent_workflow_id, exc)
