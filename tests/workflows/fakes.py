"""In-memory fakes of every activity the rollout workflows call, for the time-skipping tests.

One `FakeRolloutDb` per test plays the database, the Places API and the phase work: it hands
out canned payloads of the real types, keeps a few rows (one per community) the way
rollout/db/records.py does, and records every activity call with its attempt and the test
server's (skipped) time. A test changes what an activity does with a hook (raise, count,
wait) or holds a community inside an activity with a gate it opens later.

Every fake is registered under the real activity's name (`@activity.defn(name=...)`) and
takes and returns the same payload types, so the real workflows run against them unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from temporalio import activity
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

from rollout.payloads import (
    CommunityFinish,
    CommunityMark,
    CommunityPage,
    CommunityPageInput,
    CommunityRef,
    CommunityResult,
    FinalizeInput,
    InitiateRolloutInput,
    InitiateRolloutResult,
    PhaseInput,
    PhaseMark,
    PhaseResult,
    RolloutStatusChange,
    RolloutSummary,
    ServiceCheck,
    ServiceStatus,
    SilentCommunity,
)
from rollout.phases.discovery.payloads import (
    BuyRequest,
    CoverageRules,
    DiscoveryPlan,
    DiscoveryStrategy,
    PageOutcome,
    PageRequest,
    PurchaseList,
    PurchaseListRequest,
    SearchKind,
    SearchTask,
)
from rollout.phases.discovery.planning import bounding_box
from rollout.phases.enrichment.payloads import (
    EnrichmentFinish,
    EnrichOutcome,
    EnrichRequest,
    EnrichTargets,
    EnrichTargetsRequest,
)
from rollout.states import STATE_NAMES
from rollout.status import CommunityStatus, RolloutStatus

# The test server's current time (WorkflowEnvironment.get_current_time).
Clock = Callable[[], Awaitable[datetime]]

# Activity names, as registered by the real activity classes.
INITIATE = "initiate_rollout"
LOAD_PAGE = "load_community_page"
SET_STATUS = "set_rollout_status"
FINALIZE = "finalize_rollout"
BEGIN = "begin_community"
MARK_PHASE = "mark_phase"
FINISH = "finish_community"
CLOSE_SILENT = "close_silent_community"
SERVICES = "services_available"
DISCOVERY_PLAN = "discovery_plan"
DISCOVERY_PLAN_PURCHASES = "discovery_plan_purchases"
DISCOVERY_COVER_CHECK = "discovery_cover_check"
DISCOVERY_FINISH = "discovery_finish"
SCAN_WEBSITES = "phase2_scan_websites"
NEWS_SOURCES = "phase3_setup_news_sources"
ENRICH_TARGETS = "phase4_targets"
ENRICH_FINISH = "phase4_finish"
VERIFY = "phase5_verify"
SEED = "phase6_seed_platforms"
PLACES_SEARCH = "places_search_page"
PLACES_BUY = "places_buy"
PLACES_ENRICH = "places_enrich"

# What one community yields when its phases complete.
FINAL = frozenset({CommunityStatus.COMPLETED, CommunityStatus.FAILED, CommunityStatus.CANCELLED})
BUSINESSES_PER_COMMUNITY = 7
NEWS_SOURCES_PER_COMMUNITY = 2
# How often a held activity heartbeats (real time), so a cancel reaches it quickly.
HELD_HEARTBEAT_S = 0.05
# Real-time limit of every wait in these tests: generous, and only reached on a failure.
WAIT_S = 30.0


@dataclass(frozen=True)
class Call:
    """One attempt of one activity, as the fake saw it."""

    activity: str
    community_id: int | None  # None for the rollout-wide bookkeeping
    attempt: int
    at: datetime  # the test server's (skipped) time when the attempt ran
    workflow_id: str
    workflow_run_id: str
    # What the call was about: the status of finish_community / set_rollout_status /
    # finalize_rollout, the phase of mark_phase.
    detail: str | None = None
    task_queue: str = ""  # the queue the attempt was dispatched from
    fairness_key: str | None = None  # its Priority's fairness key


# Runs in an activity attempt once it is recorded and past its gate; may raise or wait.
Hook = Callable[[Call], Awaitable[None]]


@dataclass
class FakeCommunity:
    """A community_rollouts row."""

    community_id: int
    name: str
    community_rollout_id: int = 0
    position: int = 0
    is_priority: bool = False
    status: CommunityStatus = CommunityStatus.QUEUED
    cost_usd: Decimal = Decimal(0)
    businesses: int = 0
    news_sources: int = 0

    def ref(self) -> CommunityRef:
        return CommunityRef(
            community_rollout_id=self.community_rollout_id,
            community_id=self.community_id,
            name=self.name,
            position=self.position,
            is_priority=self.is_priority,
        )


@dataclass
class FakeRolloutDb:
    """The database, the Places API and the phases of one test, in memory."""

    state_code: str
    clock: Clock
    communities: int = 5
    # Places cost of one community (billed by its discovery phase).
    cost_per_community: Decimal = Decimal("1.25")
    rollout_id: int = 42
    calls: list[Call] = field(default_factory=list)
    cancelled: list[Call] = field(default_factory=list)
    hooks: dict[str, Hook] = field(default_factory=dict)
    rows: dict[int, FakeCommunity] = field(default_factory=dict)  # by community_rollout_id
    status_changes: list[RolloutStatusChange] = field(default_factory=list)
    finish_inputs: list[CommunityFinish] = field(default_factory=list)  # every attempt
    _gates: dict[tuple[str, int], asyncio.Event] = field(default_factory=dict)
    _waiting: set[tuple[str, int]] = field(default_factory=set)
    _running: set[int] = field(default_factory=set)
    # What the services probe reports as still out (None: everything answers).
    outage: str | None = None
    # Most communities between begin_community and finish_community at one time: each
    # child runs longer than that, and the parent frees its slot only after the report.
    peak_running: int = 0

    def __post_init__(self) -> None:
        self._by_id = {
            community_id: FakeCommunity(community_id=community_id, name=f"Town {community_id}")
            for community_id in self.community_ids
        }

    # -- the test's side ---------------------------------------------------------------

    @property
    def community_ids(self) -> list[int]:
        """Ids in the order the fake database ranks them (before priorities)."""
        return [101 + i for i in range(self.communities)]

    def on(self, activity_name: str, hook: Hook) -> None:
        self.hooks[activity_name] = hook

    def hold(self, activity_name: str, *community_ids: int) -> None:
        """Keep these communities inside `activity_name` until `release`."""
        for community_id in community_ids:
            self._gates[(activity_name, community_id)] = asyncio.Event()

    def release(self, activity_name: str, *community_ids: int) -> None:
        for community_id in community_ids:
            self._gates[(activity_name, community_id)].set()

    def release_all(self) -> None:
        for gate in self._gates.values():
            gate.set()

    def waiting_in(self, activity_name: str) -> list[int]:
        """Communities held in `activity_name` right now, in community id order."""
        return sorted(c for name, c in self._waiting if name == activity_name)

    def calls_to(self, activity_name: str, community_id: int | None = None) -> list[Call]:
        return [
            c
            for c in self.calls
            if c.activity == activity_name
            and (community_id is None or c.community_id == community_id)
        ]

    def begun(self) -> list[int]:
        """Community ids in the order their children began (a re-run appears again)."""
        return [c.community_id for c in self.calls_to(BEGIN) if c.community_id is not None]

    def finishes(self, community_id: int) -> list[str | None]:
        return [c.detail for c in self.calls_to(FINISH, community_id)]

    def row(self, community_id: int) -> FakeCommunity:
        return self._by_id[community_id]

    def ids_by_position(self) -> list[int]:
        return [c.community_id for c in sorted(self.rows.values(), key=lambda r: r.position)]

    def activities(self) -> list[Callable[..., Any]]:
        """The fakes for the `rollout` task queue's worker."""
        return [
            self.initiate_rollout,
            self.load_community_page,
            self.set_rollout_status,
            self.finalize_rollout,
            self.begin_community,
            self.mark_phase,
            self.finish_community,
            self.close_silent_community,
            self.discovery_plan,
            self.discovery_plan_purchases,
            self.discovery_cover_check,
            self.discovery_finish,
            self.scan_websites,
            self.setup_news_sources,
            self.enrichment_targets,
            self.enrichment_finish,
            self.verify,
            self.seed_platforms,
            self.unfaked,
        ]

    def places_activities(self) -> list[Callable[..., Any]]:
        """The fakes for the places task queues' workers."""
        return [
            self.places_search_page,
            self.places_buy,
            self.places_enrich,
            self.services_available,
            self.unfaked,
        ]

    # -- every attempt goes through here -----------------------------------------------

    async def _enter(
        self, name: str, community_id: int | None = None, detail: str | None = None
    ) -> Call:
        info = activity.info()
        call = Call(
            activity=name,
            community_id=community_id,
            attempt=info.attempt,
            at=await self.clock(),
            workflow_id=info.workflow_id or "",
            workflow_run_id=info.workflow_run_id or "",
            detail=detail,
            task_queue=info.task_queue,
            fairness_key=info.priority.fairness_key,
        )
        self.calls.append(call)
        try:
            if community_id is not None:
                await self._wait_at_gate(name, community_id)
            hook = self.hooks.get(name)
            if hook is not None:
                await hook(call)
        except asyncio.CancelledError:
            # The workflow cancelled the attempt (learnt through a heartbeat).
            self.cancelled.append(call)
            raise
        return call

    async def _wait_at_gate(self, name: str, community_id: int) -> None:
        gate = self._gates.get((name, community_id))
        if gate is None or gate.is_set():
            return
        self._waiting.add((name, community_id))
        try:
            while not gate.is_set():
                # Heartbeats carry the workflow's cancel request back to the attempt.
                activity.heartbeat()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gate.wait(), HELD_HEARTBEAT_S)
        finally:
            self._waiting.discard((name, community_id))

    def _community(self, community_rollout_id: int) -> FakeCommunity:
        return self.rows[community_rollout_id]

    # -- bookkeeping (activities/records.py) -------------------------------------------

    @activity.defn(name=INITIATE)
    async def initiate_rollout(self, inp: InitiateRolloutInput) -> InitiateRolloutResult:
        call = await self._enter(INITIATE)
        if not self.rows:
            # Priority communities first, in the order given, then the database's order.
            priority = list(dict.fromkeys(inp.settings.priority_communities))
            ordered = priority + [c for c in self.community_ids if c not in priority]
            for position, community_id in enumerate(ordered, start=1):
                row = self._by_id[community_id]
                row.community_rollout_id = position * 10
                row.position = position
                row.is_priority = community_id in priority
                self.rows[row.community_rollout_id] = row
        return InitiateRolloutResult(
            rollout_id=self.rollout_id,
            state_name=STATE_NAMES[inp.state_code],
            total_communities=len(self.rows),
            started_at=call.at,
        )

    @activity.defn(name=LOAD_PAGE)
    async def load_community_page(self, inp: CommunityPageInput) -> CommunityPage:
        await self._enter(LOAD_PAGE)
        # Like the real query: queued or paused rows after the cursor, by position.
        rows = sorted(
            (
                r
                for r in self.rows.values()
                if r.position > inp.after_position
                and r.status in (CommunityStatus.QUEUED, CommunityStatus.PAUSED)
            ),
            key=lambda r: r.position,
        )
        return CommunityPage(
            communities=[r.ref() for r in rows[: inp.limit]], exhausted=len(rows) <= inp.limit
        )

    @activity.defn(name=SET_STATUS)
    async def set_rollout_status(self, inp: RolloutStatusChange) -> None:
        await self._enter(SET_STATUS, detail=inp.status.value)
        self.status_changes.append(inp)

    @activity.defn(name=FINALIZE)
    async def finalize_rollout(self, inp: FinalizeInput) -> RolloutSummary:
        await self._enter(FINALIZE, detail=inp.status.value)
        rows = list(self.rows.values())
        if inp.status is RolloutStatus.CANCELLED:
            for r in rows:
                if r.status in (CommunityStatus.QUEUED, CommunityStatus.PAUSED):
                    r.status = CommunityStatus.CANCELLED
        return RolloutSummary(
            rollout_id=inp.rollout_id,
            status=inp.status,
            completed=sum(r.status is CommunityStatus.COMPLETED for r in rows),
            failed=sum(r.status is CommunityStatus.FAILED for r in rows),
            cancelled=sum(r.status is CommunityStatus.CANCELLED for r in rows),
            businesses=sum(r.businesses for r in rows),
            news_sources=sum(r.news_sources for r in rows),
            cost_usd=sum((r.cost_usd for r in rows), Decimal(0)),
        )

    @activity.defn(name=BEGIN)
    async def begin_community(self, inp: CommunityMark) -> None:
        await self._enter(BEGIN, inp.community_id)
        self._community(inp.community_rollout_id).status = CommunityStatus.PROCESSING
        self._running.add(inp.community_id)
        self.peak_running = max(self.peak_running, len(self._running))

    @activity.defn(name=MARK_PHASE)
    async def mark_phase(self, inp: PhaseMark) -> None:
        community = self._community(inp.community_rollout_id)
        await self._enter(MARK_PHASE, community.community_id, detail=f"{inp.phase}:{inp.status}")

    @activity.defn(name=FINISH)
    async def finish_community(self, inp: CommunityFinish) -> CommunityResult:
        self.finish_inputs.append(inp)
        await self._enter(FINISH, inp.community_id, detail=inp.status.value)
        row = self._community(inp.community_rollout_id)
        row.status = inp.status
        self._running.discard(inp.community_id)
        # Like the real row: the cost is everything the community was billed, in all runs.
        return CommunityResult(
            community_rollout_id=inp.community_rollout_id,
            community_id=inp.community_id,
            status=inp.status,
            businesses_discovered=row.businesses,
            news_sources_created=row.news_sources,
            cost_usd=row.cost_usd,
            failed_phase=inp.failed_phase,
            error=inp.error,
            pause_reason=inp.pause_reason,
            resume_when=inp.resume_when,
        )

    @activity.defn(name=CLOSE_SILENT)
    async def close_silent_community(self, inp: SilentCommunity) -> CommunityResult:
        """Like the real one: a community that recorded its end keeps it."""
        await self._enter(CLOSE_SILENT, inp.community_id, detail=inp.reason)
        row = self._community(inp.community_rollout_id)
        if row.status not in FINAL:
            row.status = CommunityStatus.FAILED
        self._running.discard(inp.community_id)
        return CommunityResult(
            community_rollout_id=inp.community_rollout_id,
            community_id=inp.community_id,
            status=row.status,
            businesses_discovered=row.businesses,
            news_sources_created=row.news_sources,
            cost_usd=row.cost_usd,
            error=inp.reason if row.status is CommunityStatus.FAILED else None,
        )

    @activity.defn(name=SERVICES)
    async def services_available(self, check: ServiceCheck) -> ServiceStatus:
        """The probe of a rollout paused by an outage: `outage` says what is still out."""
        await self._enter(SERVICES, detail=self.outage)
        return ServiceStatus(problem=self.outage)

    @activity.defn(dynamic=True)
    async def unfaked(self, args: Sequence[RawValue]) -> None:
        """Any activity without a fake here (a new one the workflows call): fail the
        workflow at once with its name, rather than retry until the test times out."""
        name = activity.info().activity_type
        await self._enter(name)
        raise ApplicationError(
            f"no fake for activity {name!r} in tests/workflows/fakes.py",
            type="NoFakeActivity",
            non_retryable=True,
        )

    # -- phase 1 (activities/discovery.py) ---------------------------------------------

    @activity.defn(name=DISCOVERY_PLAN)
    async def discovery_plan(self, inp: PhaseInput) -> DiscoveryPlan:
        await self._enter(DISCOVERY_PLAN, inp.community_id)
        # One Nearby Search that is not saturated: one Places request, no follow-ups.
        box = bounding_box(39.0, -75.5, 2_000)
        return DiscoveryPlan(
            region_id=inp.community_id,
            root_box=box,
            rules=CoverageRules(
                min_cell_deg=0.005, probe_cells=False, strategy=DiscoveryStrategy.STREAM
            ),
            tasks=[
                SearchTask(
                    kind=SearchKind.NEARBY,
                    label="bakery",
                    included_type="bakery",
                    center_lat=39.0,
                    center_lng=-75.5,
                    radius_m=2_000,
                )
            ],
        )

    @activity.defn(name=PLACES_SEARCH)
    async def places_search_page(self, req: PageRequest) -> PageOutcome:
        await self._enter(PLACES_SEARCH, req.community_id)
        row = self._community(req.community_rollout_id)
        row.cost_usd += self.cost_per_community
        return PageOutcome(
            result_count=BUSINESSES_PER_COMMUNITY,
            new_in_region=BUSINESSES_PER_COMMUNITY,
            sku="nearby-pro",
            cost_usd=self.cost_per_community,
        )

    @activity.defn(name=DISCOVERY_PLAN_PURCHASES)
    async def discovery_plan_purchases(self, req: PurchaseListRequest) -> PurchaseList:
        # Only the cover strategy calls this; the fake plans stream, so nothing to buy.
        await self._enter(
            DISCOVERY_PLAN_PURCHASES, self._community(req.community_rollout_id).community_id
        )
        return PurchaseList(lines=0, searches=0, pages=0, details=0, sighted=0, cost_usd=Decimal(0))

    @activity.defn(name=PLACES_BUY)
    async def places_buy(self, req: BuyRequest) -> PageOutcome:
        await self._enter(PLACES_BUY, req.community_id)
        return PageOutcome(result_count=0, sku="text-enterprise", cost_usd=Decimal(0))

    @activity.defn(name=DISCOVERY_COVER_CHECK)
    async def discovery_cover_check(self, req: PurchaseListRequest) -> int:
        await self._enter(
            DISCOVERY_COVER_CHECK, self._community(req.community_rollout_id).community_id
        )
        return 0

    @activity.defn(name=DISCOVERY_FINISH)
    async def discovery_finish(self, inp: PhaseInput) -> PhaseResult:
        await self._enter(DISCOVERY_FINISH, inp.community_id)
        row = self._community(inp.community_rollout_id)
        row.businesses = BUSINESSES_PER_COMMUNITY
        return PhaseResult(
            phase=1,
            counts={"businesses_discovered": BUSINESSES_PER_COMMUNITY},
            cost_usd=row.cost_usd,
        )

    # -- phases 2, 3, 5, 6 -------------------------------------------------------------

    @activity.defn(name=SCAN_WEBSITES)
    async def scan_websites(self, inp: PhaseInput) -> PhaseResult:
        await self._enter(SCAN_WEBSITES, inp.community_id)
        return PhaseResult(phase=2, counts={"websites_scanned": BUSINESSES_PER_COMMUNITY})

    @activity.defn(name=NEWS_SOURCES)
    async def setup_news_sources(self, inp: PhaseInput) -> PhaseResult:
        await self._enter(NEWS_SOURCES, inp.community_id)
        self._community(inp.community_rollout_id).news_sources = NEWS_SOURCES_PER_COMMUNITY
        return PhaseResult(phase=3, counts={"news_sources_created": NEWS_SOURCES_PER_COMMUNITY})

    @activity.defn(name=VERIFY)
    async def verify(self, inp: PhaseInput) -> PhaseResult:
        await self._enter(VERIFY, inp.community_id)
        return PhaseResult(phase=5)

    @activity.defn(name=SEED)
    async def seed_platforms(self, inp: PhaseInput) -> PhaseResult:
        await self._enter(SEED, inp.community_id)
        return PhaseResult(phase=6)

    # -- phase 4 (activities/enrichment.py) --------------------------------------------

    @activity.defn(name=ENRICH_TARGETS)
    async def enrichment_targets(self, req: EnrichTargetsRequest) -> EnrichTargets:
        await self._enter(ENRICH_TARGETS, req.community_id)
        # One business to enrich on the first page, then the end of the list.
        ids = [req.community_id * 1000] if req.after_business_id == 0 else []
        return EnrichTargets(business_ids=ids, fresh=0 if req.after_business_id == 0 else None)

    @activity.defn(name=PLACES_ENRICH)
    async def places_enrich(self, req: EnrichRequest) -> EnrichOutcome:
        await self._enter(PLACES_ENRICH, self._community(req.community_rollout_id).community_id)
        return EnrichOutcome(outcome="enriched")

    @activity.defn(name=ENRICH_FINISH)
    async def enrichment_finish(self, req: EnrichmentFinish) -> PhaseResult:
        await self._enter(ENRICH_FINISH, req.phase.community_id)
        return PhaseResult(phase=4, counts={"businesses_enriched": req.enriched})


async def until(
    predicate: Callable[[], bool], what: str, *, within: float = WAIT_S, poll: float = 0.02
) -> None:
    """Wait (real time, without skipping the test server's clock) until `predicate()`."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(poll)


def intervals(calls: Sequence[Call]) -> list[float]:
    """Seconds of test-server time between consecutive attempts."""
    return [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(calls)]
