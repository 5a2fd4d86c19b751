"""Payloads of the rollout as a whole that cross Temporal: small pydantic models of ids,
counts and settings (each phase's own payloads live in rollout/phases/<phase>/payloads.py).

Never ORM rows, never pages of places. Workflows and activities both import this module
(it is deterministic: no I/O, no clocks), and the pydantic data converter encodes it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rollout.status import CommunityStatus, PhaseStatus, RolloutStatus

MIN_BATCH_SIZE = 1
MAX_BATCH_SIZE = 200
# The operator's pause before each Places request. Bounded so that a request activity's
# timeout (which adds it to the request's own) stays short enough to notice a dead worker.
MAX_THROTTLE_MS = 10_000
# Cost assumed per community before any has completed (the estimate and budget checks use
# the completed communities' average from then on).
DEFAULT_COMMUNITY_COST = Decimal("34.00")


def cents(amount: Decimal) -> Decimal:
    """Dollars to the cent, half a cent up: every cost the progress document, the starter
    and the Web UI summary show is rounded this one way."""
    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


class Payload(BaseModel):
    model_config = ConfigDict(frozen=False, extra="forbid")


class RetrySpec(Payload):
    """Retry policy of phase activities. The default: 3 attempts, waiting 60 s then 300 s
    (900 s is the ceiling); tests pass shorter intervals."""

    initial_s: float = 60.0
    backoff: float = 5.0
    maximum_s: float = 900.0
    attempts: int = 3


def default_places_retry() -> RetrySpec:
    """Single Places requests: quick retries of transient errors (a per-minute 429 brings
    its own Retry-After delay)."""
    return RetrySpec(initial_s=2.0, backoff=2.0, maximum_s=60.0, attempts=8)


class PhaseInput(Payload):
    """What a phase activity needs: ids and the rollout's settings, nothing else."""

    rollout_id: int
    community_rollout_id: int
    community_id: int
    state_code: str
    throttle_ms: int = 100
    skip_enrichment: bool = False


class PhaseResult(Payload):
    phase: int
    status: Literal["completed", "skipped"] = "completed"
    # Named counts for the community row and the progress document, e.g.
    # {"businesses_discovered": 120, "businesses_with_websites": 71}.
    counts: dict[str, int] = Field(default_factory=dict)
    cost_usd: Decimal = Decimal(0)


class CommunityRef(Payload):
    community_rollout_id: int
    community_id: int
    name: str
    position: int
    is_priority: bool = False


class InFlightCommunity(CommunityRef):
    started_at: datetime
    # Live, filled by `starter.py progress` from the community's own workflows (the state
    # workflow does not hear of them: they change with every request).
    phase: int | None = None
    requests: int | None = None
    businesses: int | None = None
    cost_usd: Decimal | None = None
    # Why it makes no progress, when its workflow says so (a workflow task failing again and
    # again: a bug, or a change that does not replay).
    problem: str | None = None


class CommunityResult(Payload):
    """A child's report to its parent (by signal, so it survives the parent's continue-as-new)."""

    community_rollout_id: int
    community_id: int
    status: CommunityStatus
    businesses_discovered: int = 0
    businesses_with_websites: int = 0
    news_sources_created: int = 0
    cost_usd: Decimal = Decimal(0)
    failed_phase: int | None = None
    error: str | None = None
    # Set when the community could not run for a reason that concerns the whole rollout
    # (invalid API key, API disabled, daily quota exhausted, a service out): the parent
    # pauses.
    pause_reason: str | None = None
    # How the parent may resume by itself: "outage" (once the services answer again) or
    # "daily_quota" (at midnight Pacific time, when Google resets the quota).
    resume_when: Literal["outage", "daily_quota"] | None = None


class CommunityRolloutInput(Payload):
    rollout_id: int
    community_rollout_id: int
    community_id: int
    community_name: str
    state_code: str
    parent_workflow_id: str
    throttle_ms: int = 100
    skip_enrichment: bool = False
    phase_retry: RetrySpec = Field(default_factory=RetrySpec)
    places_retry: RetrySpec = Field(default_factory=default_places_retry)


class RolloutSettings(Payload):
    """The operator's settings for a rollout (the contract's start input)."""

    batch_size: int = 5
    throttle_ms: int = 100
    skip_enrichment: bool = False
    priority_communities: list[int] = Field(default_factory=list)
    budget_usd: Decimal | None = None
    # Only these communities (a retry of a rollout's failed ones, or a rerun of one); empty:
    # every community of the state.
    only_communities: list[int] = Field(default_factory=list)


class StateRolloutInput(RolloutSettings):
    state_code: str
    initiated_by: str = "system"
    phase_retry: RetrySpec = Field(default_factory=RetrySpec)
    places_retry: RetrySpec = Field(default_factory=default_places_retry)
    # Cost assumed per community before any has completed (estimates and the budget check).
    default_community_cost_usd: Decimal = DEFAULT_COMMUNITY_COST
    # Test hook: continue-as-new after this many history events (the server suggests it
    # at 4,096 events anyway).
    continue_as_new_after_events: int | None = None
    # How often children started by an earlier run are checked for having closed without
    # reporting (tests shorten it).
    carried_child_check_s: float = 60.0
    # How often a rollout paused by an outage probes the services (tests shorten it).
    service_probe_s: float = 60.0
    # Set only by continue-as-new.
    carry: StateRolloutCarry | None = None


class Totals(Payload):
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    businesses: int = 0
    news_sources: int = 0
    cost_usd: Decimal = Decimal(0)
    # Cost of the completed communities only: the basis of the remaining-cost estimate.
    completed_cost_usd: Decimal = Decimal(0)


class StateRolloutCarry(Payload):
    """Everything a continued-as-new run needs to go on exactly where the last one stopped."""

    rollout_id: int
    state_name: str
    total_communities: int
    started_at: datetime
    cursor: int  # position of the last community taken from the queue
    exhausted: bool = False
    requeued: list[CommunityRef] = Field(default_factory=list)
    in_flight: list[InFlightCommunity] = Field(default_factory=list)
    totals: Totals = Field(default_factory=Totals)
    batch_size: int
    paused: bool = False
    paused_reason: str | None = None
    cancel_requested: bool = False
    runs: int = 1
    # Failed starts of communities whose child id another workflow still held.
    busy_tries: dict[int, int] = Field(default_factory=dict)
    resume_when: str | None = None
    outage_pauses: dict[int, int] = Field(default_factory=dict)
    to_fail: list[CommunityResult] = Field(default_factory=list)


class InitiateRolloutInput(Payload):
    state_code: str
    workflow_id: str
    workflow_run_id: str
    settings: RolloutSettings
    initiated_by: str = "system"


class InitiateRolloutResult(Payload):
    rollout_id: int
    state_name: str
    total_communities: int
    started_at: datetime


class CommunityPageInput(Payload):
    rollout_id: int
    after_position: int
    limit: int


class CommunityPage(Payload):
    communities: list[CommunityRef]
    exhausted: bool


class RolloutStatusChange(Payload):
    rollout_id: int
    status: RolloutStatus
    paused_reason: str | None = None


class FinalizeInput(Payload):
    rollout_id: int
    status: RolloutStatus


class RolloutSummary(Payload):
    """Totals recomputed from the community rows at the end of a rollout."""

    rollout_id: int
    status: RolloutStatus
    completed: int
    failed: int
    cancelled: int
    businesses: int
    news_sources: int
    cost_usd: Decimal


class PauseInput(Payload):
    reason: str | None = None


class BatchSizeInput(Payload):
    batch_size: int


class CommandAnswer(Payload):
    """What a state rollout says to an operator command it accepted."""

    message: str
    status: RolloutStatus


class ProgressRollout(Payload):
    id: int | None
    state_code: str
    state_name: str
    status: RolloutStatus
    total_communities: int
    completed_communities: int
    failed_communities: int
    cancelled_communities: int
    started_at: datetime | None
    completed_at: datetime | None = None
    batch_size: int
    throttle_ms: int
    skip_enrichment: bool
    budget_usd: Decimal | None = None


class StatusBreakdown(Payload):
    queued: int = 0
    processing: int = 0
    completed: int = 0
    failed: int = 0
    paused: int = 0
    cancelled: int = 0


class ProgressDocument(Payload):
    """The `progress` query's answer (docs/contract.md, The progress document)."""

    rollout: ProgressRollout
    progress_percentage: float
    status_breakdown: StatusBreakdown
    total_businesses: int
    total_news_sources: int
    total_cost: Decimal
    estimated_remaining_cost: Decimal
    in_flight: list[InFlightCommunity]
    paused_reason: str | None = None


class CommunityMark(Payload):
    rollout_id: int
    community_rollout_id: int
    community_id: int


class PhaseMark(Payload):
    community_rollout_id: int
    phase: int
    status: PhaseStatus
    error: str | None = None


class CommunityFinish(Payload):
    rollout_id: int
    community_rollout_id: int
    community_id: int
    status: CommunityStatus
    failed_phase: int | None = None
    error: str | None = None
    pause_reason: str | None = None
    resume_when: Literal["outage", "daily_quota"] | None = None


class ServiceCheck(Payload):
    """Which services a paused rollout waits for; the answer is the first still out."""

    places: bool = True
    database: bool = True


class ServiceStatus(Payload):
    problem: str | None = None  # None: every service asked about answers


class SilentCommunity(Payload):
    """A community child that closed without reporting, and why (e.g. "terminated")."""

    rollout_id: int
    community_rollout_id: int
    community_id: int
    reason: str


class ChildCheck(Payload):
    workflow_ids: list[str]


class ClosedChild(Payload):
    workflow_id: str
    reason: str


class ResumeInput(Payload):
    # Raise (or set) the budget when resuming a rollout that paused on it.
    budget_usd: Decimal | None = None


StateRolloutInput.model_rebuild()
