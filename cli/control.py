"""What the starter does through Temporal (and the database, for checks and reports).

Every failure an operator can act on is a ControlError with one line that says what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from rollout.contract import (
    ROLLOUT_TASK_QUEUE,
    community_workflow_id,
    discovery_workflow_id,
    enrichment_workflow_id,
    state_workflow_id,
)
from rollout.db import records
from rollout.db.errors import is_connection_error, unavailable
from rollout.db.session import create_engine
from rollout.payloads import (
    BatchSizeInput,
    CommandAnswer,
    InFlightCommunity,
    PauseInput,
    ProgressDocument,
    ResumeInput,
    RolloutSettings,
    RolloutSummary,
    StateRolloutInput,
)
from rollout.settings import Settings
from rollout.states import STATE_NAMES
from rollout.status import ACTIVE_ROLLOUT_STATUSES, Phase, RolloutStatus
from workflows.common import rollout_priority
from workflows.community_rollout import CommunityRolloutWorkflow
from workflows.discovery import CommunityDiscoveryWorkflow
from workflows.enrichment import CommunityEnrichmentWorkflow
from workflows.state_rollout import (
    STATE_CODE_KEY,
    STATUS_KEY,
    StateRolloutWorkflow,
    validate_input,
)

QUERY_TIMEOUT = timedelta(seconds=10)
# An operator command waits this long for a worker to take it.
UPDATE_TIMEOUT = timedelta(seconds=30)


class ControlError(Exception):
    """One line for the operator; the starter exits non-zero."""


class InputError(ControlError):
    """The operator's input is wrong (exit code 2, like argparse's errors)."""


async def connect(settings: Settings) -> Client:
    try:
        return await Client.connect(
            settings.temporal_address,
            namespace=settings.temporal_namespace,
            data_converter=pydantic_data_converter,
        )
    except RuntimeError as exc:
        text = str(exc)
        if "Connection refused" in text or "ConnectionRefused" in text:
            reason = "connection refused"
        elif "dns error" in text.lower() or "failed to lookup" in text.lower():
            reason = "unknown host"
        else:
            reason = (text.splitlines()[0] if text else type(exc).__name__)[:160]
        raise ControlError(
            f"cannot reach Temporal at {settings.temporal_address} ({reason}); "
            "is `python starter.py dev` running, or TEMPORAL_ADDRESS right?"
        ) from None


@contextlib.asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine for one command: a connection failure inside becomes one ControlError line
    naming the database, and the engine is disposed either way."""
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        yield engine
    except Exception as exc:
        if is_connection_error(exc):
            raise ControlError(str(unavailable(settings.database_url, exc))) from None
        raise
    finally:
        await engine.dispose()


async def _db_check_problems(settings: Settings, state: str, rollout: RolloutSettings) -> list[str]:
    async with _database(settings) as engine, engine.connect() as conn:
        return await records.start_problems(
            AsyncSession(bind=conn), state, rollout.priority_communities, rollout.only_communities
        )


def check_input(state: str, rollout: RolloutSettings, *, initiated_by: str) -> StateRolloutInput:
    """The workflow's own validation, run before anything is contacted."""
    inp = StateRolloutInput(state_code=state, initiated_by=initiated_by, **rollout.model_dump())
    problems = validate_input(inp)
    if problems:
        raise InputError("; ".join(problems))
    return inp


async def start(
    client: Client,
    settings: Settings,
    state: str,
    rollout: RolloutSettings,
    *,
    initiated_by: str,
) -> tuple[WorkflowHandle[StateRolloutWorkflow, RolloutSummary], list[Reconciled]]:
    """Start a rollout, first closing the state's rollout row its workflow left active."""
    inp = check_input(state, rollout, initiated_by=initiated_by)
    closed = await reconcile(client, settings, state)
    problems = await _db_check_problems(settings, state, rollout)
    if problems:
        raise ControlError("; ".join(problems))
    workflow_id = state_workflow_id(state)
    budget = f", budget ${rollout.budget_usd}" if rollout.budget_usd else ""
    try:
        handle = await client.start_workflow(
            StateRolloutWorkflow.run,
            inp,
            id=workflow_id,
            task_queue=ROLLOUT_TASK_QUEUE,
            # A running (or paused) rollout of the state blocks a second one; a closed one
            # does not.
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            # Inherited by every workflow and activity of the rollout: the state's share of
            # each Places method's quota (docs/contract.md, Task queues).
            priority=rollout_priority(state),
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(STATE_CODE_KEY, state),
                    SearchAttributePair(STATUS_KEY, RolloutStatus.PLANNED.value),
                ]
            ),
            static_summary=f"{STATE_NAMES[state]} rollout (batch {rollout.batch_size}{budget})",
            static_details=(
                f"Statewide rollout of **{STATE_NAMES[state]}** started by {initiated_by}.\n\n"
                f"- batch size {rollout.batch_size}, throttle {rollout.throttle_ms} ms\n"
                f"- enrichment {'skipped' if rollout.skip_enrichment else 'on'}\n"
                f"- priority communities: {len(rollout.priority_communities)}\n"
                + (
                    f"- only communities: {', '.join(map(str, rollout.only_communities))}\n"
                    if rollout.only_communities
                    else ""
                )
                + f"- budget: {('$' + str(rollout.budget_usd)) if rollout.budget_usd else 'none'}"
            ),
        )
    except WorkflowAlreadyStartedError:
        raise ControlError(
            f"{state} already has a running rollout ({workflow_id}); "
            f"pause, resume or cancel it, or watch it with `progress {state}`"
        ) from None
    return handle, closed


@dataclass(frozen=True)
class Reconciled:
    """A rollout row closed because its workflow is no longer running it."""

    state_code: str
    rollout_id: int
    was: str
    now: RolloutStatus
    reason: str


async def orphan_reason(
    client: Client, workflow_id: str, first_run_id: str | None
) -> tuple[RolloutStatus, str] | None:
    """Why a rollout row's workflow no longer runs it, and the status to close it with;
    None while its workflow (the run chain that started with `first_run_id`) still runs."""
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        return RolloutStatus.FAILED, "its workflow no longer exists (Temporal lost or deleted it)"
    info = description.raw_description.workflow_execution_info
    same_chain = first_run_id is None or info.first_run_id == first_run_id
    status = description.status
    if status == WorkflowExecutionStatus.RUNNING:
        if same_chain:
            return None
        return RolloutStatus.FAILED, f"its workflow ended; {workflow_id} now runs a newer one"
    if not same_chain:
        return RolloutStatus.FAILED, f"its workflow ended ({workflow_id} ran again since)"
    if status == WorkflowExecutionStatus.CANCELED:
        return RolloutStatus.CANCELLED, "its workflow was cancelled outside the starter"
    if status == WorkflowExecutionStatus.TERMINATED:
        return RolloutStatus.CANCELLED, "its workflow was terminated"
    return RolloutStatus.FAILED, f"its workflow {_word(status)} without closing the rollout"


async def reconcile(client: Client, settings: Settings, state: str | None) -> list[Reconciled]:
    """Close every active rollout row (of `state`, or of all states) whose workflow no
    longer runs it, so `start`, `pause` and `progress` agree again without any SQL."""
    changed: list[Reconciled] = []
    async with _database(settings) as engine:
        async with AsyncSession(engine) as session:
            rows = await records.active_rollouts(session, state)
        for row in rows:
            found = await orphan_reason(client, row.workflow_id, row.workflow_run_id)
            if found is None:
                continue
            status, reason = found
            async with AsyncSession(engine) as session, session.begin():
                await records.close_orphaned_rollout(session, row.id, status, reason)
            changed.append(Reconciled(row.state_code, row.id, row.status, status, reason))
    return changed


@dataclass(frozen=True)
class Failures:
    rollout_id: int
    status: str
    communities: list[records.FailedCommunity]


async def failures(settings: Settings, state: str) -> Failures:
    """The failed communities of the state's latest rollout."""
    async with _database(settings) as engine, AsyncSession(engine) as session:
        rollout = await records.latest_rollout(session, state)
        if rollout is None:
            raise ControlError(f"no rollout found for {state}; start one with `start {state}`")
        failed = await records.failed_communities(session, rollout.id)
    return Failures(rollout.id, rollout.status, failed)


async def failed_to_retry(settings: Settings, state: str) -> list[int]:
    """The community ids `retry-failed` runs again: the failed ones of the state's last
    rollout, which must have ended."""
    found = await failures(settings, state)
    if found.status in {s.value for s in ACTIVE_ROLLOUT_STATUSES}:
        raise ControlError(
            f"{state}'s rollout #{found.rollout_id} is still {found.status}; "
            "retry its failed communities once it has ended (or cancel it)"
        )
    if not found.communities:
        raise ControlError(f"no failed communities in {state}'s last rollout (#{found.rollout_id})")
    return [c.community_id for c in found.communities]


async def running_handle(
    client: Client, state: str
) -> WorkflowHandle[StateRolloutWorkflow, RolloutSummary]:
    handle = client.get_workflow_handle_for(StateRolloutWorkflow.run, state_workflow_id(state))
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise ControlError(f"no active rollout for {state}") from None
        raise
    if description.status != WorkflowExecutionStatus.RUNNING:
        raise ControlError(
            f"no active rollout for {state} (the last one is {_word(description.status)})"
        )
    return handle


def _word(status: WorkflowExecutionStatus | None) -> str:
    return status.name.lower().replace("_", " ") if status else "unknown"


async def query_progress(client: Client, state: str) -> ProgressDocument | None:
    """The live progress document, or None when no workflow can answer."""
    handle = client.get_workflow_handle_for(StateRolloutWorkflow.run, state_workflow_id(state))
    try:
        return await handle.query(StateRolloutWorkflow.progress, rpc_timeout=QUERY_TIMEOUT)
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.DEADLINE_EXCEEDED):
            return None
        raise
    except Exception:
        return None


LIVE_QUERY_TIMEOUT = timedelta(seconds=3)


async def live_community(
    client: Client, state: str, community: InFlightCommunity
) -> InFlightCommunity:
    """One in-flight community with its phase and, in phases 1 and 4, the live counts of
    its phase workflow; as it was when a workflow does not answer (starting, or closing)."""
    workflow_id = community_workflow_id(state, community.community_id)
    try:
        phase = await client.get_workflow_handle_for(
            CommunityRolloutWorkflow.run, workflow_id
        ).query(CommunityRolloutWorkflow.current_phase, rpc_timeout=LIVE_QUERY_TIMEOUT)
        live: dict[str, object] = {"phase": phase}
        if phase == Phase.DISCOVERY:
            found = await client.get_workflow_handle_for(
                CommunityDiscoveryWorkflow.run, discovery_workflow_id(workflow_id)
            ).query(CommunityDiscoveryWorkflow.discovery_progress, rpc_timeout=LIVE_QUERY_TIMEOUT)
            live.update(
                requests=int(found["requests"]),
                businesses=int(found.get("businesses", 0)),
                cost_usd=Decimal(found["cost_usd"]),
            )
        elif phase == Phase.ENRICHMENT:
            enriched = await client.get_workflow_handle_for(
                CommunityEnrichmentWorkflow.run, enrichment_workflow_id(workflow_id)
            ).query(CommunityEnrichmentWorkflow.enrichment_progress, rpc_timeout=LIVE_QUERY_TIMEOUT)
            live.update(
                requests=int(enriched.get("requests", 0)),
                cost_usd=Decimal(str(enriched.get("cost_usd", "0"))),
            )
    except Exception:  # not started yet, closing, no worker, or stuck: see what is known
        problem = await _stuck(client, workflow_id)
        return community.model_copy(update={"problem": problem}) if problem else community
    return community.model_copy(update=live)


# A workflow task that has failed this often is not a passing hiccup.
STUCK_AFTER_ATTEMPTS = 3


async def _stuck(client: Client, workflow_id: str) -> str | None:
    """Why a running workflow makes no progress, if its workflow task keeps failing."""
    try:
        described = await client.get_workflow_handle(workflow_id).describe(
            rpc_timeout=LIVE_QUERY_TIMEOUT
        )
    except Exception:
        return None
    task = described.raw_description.pending_workflow_task
    if task.attempt < STUCK_AFTER_ATTEMPTS:
        return None
    since = described.raw_description.workflow_execution_info.start_time.ToDatetime()
    return (
        f"workflow task failing (attempt {task.attempt}; started {since:%Y-%m-%d %H:%M} UTC): "
        "see the worker's log or the Web UI; it resumes by itself once a fixed worker runs"
    )


async def progress(client: Client, settings: Settings, state: str) -> ProgressDocument:
    """The progress document: from the state workflow, each in-flight community's phase and
    live counts from its own workflows; from the database when no workflow answers."""
    document = await query_progress(client, state)
    if document is not None:
        if document.in_flight:
            live = await asyncio.gather(
                *(live_community(client, state, c) for c in document.in_flight)
            )
            document = document.model_copy(update={"in_flight": list(live)})
        return document
    async with _database(settings) as engine, AsyncSession(engine) as session:
        document = await records.progress_from_db(session, state)
    if document is None:
        raise ControlError(f"no rollout found for {state}; start one with `start {state}`")
    return document


async def _command(state: str, update: Awaitable[CommandAnswer]) -> CommandAnswer:
    """Await an operator command sent as an Update: the workflow validates it and answers,
    so a refusal comes back as its own reason, and nothing is changed."""
    try:
        return await update
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or exc)
        raise ControlError(message) from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.DEADLINE_EXCEEDED:
            raise ControlError(
                f"no worker answered for {state} within {UPDATE_TIMEOUT.seconds} s; "
                "is `python worker.py` running?"
            ) from None
        raise


async def pause(client: Client, state: str, reason: str | None) -> CommandAnswer:
    handle = await running_handle(client, state)
    return await _command(
        state,
        handle.execute_update(
            StateRolloutWorkflow.pause_rollout,
            PauseInput(reason=reason),
            rpc_timeout=UPDATE_TIMEOUT,
        ),
    )


async def resume(client: Client, state: str, budget_usd: Decimal | None) -> CommandAnswer:
    handle = await running_handle(client, state)
    return await _command(
        state,
        handle.execute_update(
            StateRolloutWorkflow.resume_rollout,
            ResumeInput(budget_usd=budget_usd),
            rpc_timeout=UPDATE_TIMEOUT,
        ),
    )


async def cancel(client: Client, state: str) -> None:
    handle = await running_handle(client, state)
    await handle.signal(StateRolloutWorkflow.cancel)


async def set_batch_size(client: Client, state: str, batch_size: int) -> CommandAnswer:
    handle = await running_handle(client, state)
    return await _command(
        state,
        handle.execute_update(
            StateRolloutWorkflow.change_batch_size,
            BatchSizeInput(batch_size=batch_size),
            rpc_timeout=UPDATE_TIMEOUT,
        ),
    )


@dataclass
class RolloutListing:
    state_code: str
    status: str
    workflow_status: str
    workflow_id: str
    started: datetime | None
    closed: datetime | None


async def list_rollouts(client: Client, limit: int = 100) -> list[RolloutListing]:
    rows: list[RolloutListing] = []
    async for execution in client.list_workflows(
        "WorkflowType = 'StateRolloutWorkflow'", limit=limit
    ):
        attrs = execution.typed_search_attributes
        rows.append(
            RolloutListing(
                state_code=attrs.get(STATE_CODE_KEY) or "?",
                status=attrs.get(STATUS_KEY) or "?",
                workflow_status=_word(execution.status),
                workflow_id=execution.id,
                started=execution.start_time,
                closed=execution.close_time,
            )
        )
    return rows


@dataclass
class RolloutReport:
    with_websites: int
    cost_by_sku: list[tuple[str, int, Decimal]]


async def rollout_report(settings: Settings, rollout_id: int) -> RolloutReport:
    """Figures for the end-of-rollout summary, from the database."""
    async with _database(settings) as engine, AsyncSession(engine) as session:
        with_websites, by_sku = await records.rollout_report(session, rollout_id)
    return RolloutReport(with_websites=with_websites, cost_by_sku=by_sku)
