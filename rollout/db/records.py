"""Rollout bookkeeping in Postgres: state and community rollout rows, phase rows, API usage.

Every function takes the caller's AsyncSession and runs inside the caller's transaction, so
an activity can record a phase's completion in the same transaction as the phase's work.
All writes are idempotent: a retried activity converges on the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from rollout.db.models import (
    Community,
    CommunityRollout,
    CommunityRolloutPhase,
    RolloutApiUsage,
    StateRollout,
)
from rollout.payloads import (
    DEFAULT_COMMUNITY_COST,
    CommunityPage,
    CommunityRef,
    InFlightCommunity,
    InitiateRolloutInput,
    InitiateRolloutResult,
    ProgressDocument,
    RolloutSettings,
    RolloutSummary,
    Totals,
)
from rollout.progress import RolloutFacts, build_progress
from rollout.states import STATE_NAMES
from rollout.status import (
    ACTIVE_ROLLOUT_STATUSES,
    CommunityStatus,
    PhaseStatus,
    RolloutStatus,
)


class RolloutInputError(ValueError):
    """The rollout cannot start as asked (bad state, foreign priority ids, no communities)."""


class ActiveRolloutExistsError(RuntimeError):
    """The state already has a planned, in-progress or paused rollout."""


# --------------------------------------------------------------------------------------
# State rollouts
# --------------------------------------------------------------------------------------


async def active_rollout(session: AsyncSession, state_code: str) -> StateRollout | None:
    return await session.scalar(
        select(StateRollout).where(
            StateRollout.state_code == state_code,
            StateRollout.status.in_([s.value for s in ACTIVE_ROLLOUT_STATUSES]),
        )
    )


async def initiate_rollout(
    session: AsyncSession, inp: InitiateRolloutInput
) -> InitiateRolloutResult:
    """Create the StateRollout and its CommunityRollout rows, or return the ones this
    workflow run already created (a retried activity)."""
    existing = await session.scalar(
        select(StateRollout).where(StateRollout.workflow_run_id == inp.workflow_run_id)
    )
    if existing is not None:
        assert existing.started_at is not None
        return InitiateRolloutResult(
            rollout_id=existing.id,
            state_name=existing.state_name,
            total_communities=existing.total_communities,
            started_at=existing.started_at,
        )

    state = inp.state_code
    if state not in STATE_NAMES:
        raise RolloutInputError(f"unknown state code {state!r}")
    rows = (
        await session.execute(
            select(Community.id, Community.population)
            .where(Community.state_code == state)
            .order_by(Community.population.desc(), Community.id)
        )
    ).all()
    if not rows:
        raise RolloutInputError(
            f"no communities found for {state}; run `python starter.py seed-communities "
            f"--state {state}` first"
        )
    in_state = {community_id for community_id, _ in rows}
    priority = list(dict.fromkeys(inp.settings.priority_communities))
    foreign = [c for c in priority if c not in in_state]
    if foreign:
        raise RolloutInputError(
            f"priority communities not in {state}: {', '.join(map(str, foreign))}"
        )
    only = list(dict.fromkeys(inp.settings.only_communities))
    foreign = [c for c in only if c not in in_state]
    if foreign:
        raise RolloutInputError(f"communities not in {state}: {', '.join(map(str, foreign))}")

    blocking = await active_rollout(session, state)
    if blocking is not None:
        raise ActiveRolloutExistsError(
            f"{state} already has an active rollout (#{blocking.id}, {blocking.status})"
        )

    # Priority communities first, in the order given; then the largest places first. A
    # rollout of chosen communities only (a retry of the failed ones, a rerun) takes those.
    ordered = priority + [c for c, _ in rows if c not in set(priority)]
    if only:
        ordered = [c for c in ordered if c in set(only)]
    rollout = StateRollout(
        state_code=state,
        state_name=STATE_NAMES[state],
        status=RolloutStatus.IN_PROGRESS.value,
        workflow_id=inp.workflow_id,
        workflow_run_id=inp.workflow_run_id,
        total_communities=len(ordered),
        budget_usd=inp.settings.budget_usd,
        settings=inp.settings.model_dump(mode="json"),
        initiated_by=inp.initiated_by,
        started_at=func.now(),
    )
    session.add(rollout)
    try:
        await session.flush()
    except IntegrityError as exc:
        # Lost a race with a concurrent start: the partial unique index decided.
        if "uq_state_rollouts_active_state" in str(exc.orig):
            raise ActiveRolloutExistsError(f"{state} already has an active rollout") from None
        raise
    await session.execute(
        insert(CommunityRollout),
        [
            {
                "state_rollout_id": rollout.id,
                "community_id": community_id,
                "position": position,
                "is_priority": community_id in set(priority),
                "status": CommunityStatus.QUEUED.value,
            }
            for position, community_id in enumerate(ordered, start=1)
        ],
    )
    await session.refresh(rollout, ["started_at"])
    assert rollout.started_at is not None
    return InitiateRolloutResult(
        rollout_id=rollout.id,
        state_name=rollout.state_name,
        total_communities=len(ordered),
        started_at=rollout.started_at,
    )


async def community_page(
    session: AsyncSession, rollout_id: int, after_position: int, limit: int
) -> CommunityPage:
    """The next communities to dispatch, in order, after `after_position`."""
    rows = (
        await session.execute(
            select(
                CommunityRollout.id,
                CommunityRollout.community_id,
                Community.name,
                CommunityRollout.position,
                CommunityRollout.is_priority,
            )
            .join(Community, Community.id == CommunityRollout.community_id)
            .where(
                CommunityRollout.state_rollout_id == rollout_id,
                CommunityRollout.position > after_position,
                CommunityRollout.status.in_(
                    [CommunityStatus.QUEUED.value, CommunityStatus.PAUSED.value]
                ),
            )
            .order_by(CommunityRollout.position)
            .limit(limit + 1)
        )
    ).all()
    refs = [
        CommunityRef(
            community_rollout_id=cr_id,
            community_id=community_id,
            name=name,
            position=position,
            is_priority=is_priority,
        )
        for cr_id, community_id, name, position, is_priority in rows[:limit]
    ]
    return CommunityPage(communities=refs, exhausted=len(rows) <= limit)


async def set_rollout_status(
    session: AsyncSession, rollout_id: int, status: RolloutStatus, paused_reason: str | None
) -> None:
    """Pause (queued communities become paused), resume (paused become queued again), or
    record another status. Idempotent."""
    await session.execute(
        update(StateRollout)
        .where(StateRollout.id == rollout_id)
        .values(
            status=status.value,
            paused_reason=paused_reason if status is RolloutStatus.PAUSED else None,
            updated_at=func.now(),
        )
    )
    moves = {
        RolloutStatus.PAUSED: (CommunityStatus.QUEUED, CommunityStatus.PAUSED),
        RolloutStatus.IN_PROGRESS: (CommunityStatus.PAUSED, CommunityStatus.QUEUED),
    }
    if status in moves:
        source, target = moves[status]
        await session.execute(
            update(CommunityRollout)
            .where(
                CommunityRollout.state_rollout_id == rollout_id,
                CommunityRollout.status == source.value,
            )
            .values(status=target.value, updated_at=func.now())
        )


async def community_totals(session: AsyncSession, rollout_id: int) -> Totals:
    """A rollout's totals, counted from its community rows."""
    cr = CommunityRollout
    completed, failed, cancelled, businesses, news, cost, completed_cost = (
        await session.execute(
            select(
                func.count().filter(cr.status == CommunityStatus.COMPLETED.value),
                func.count().filter(cr.status == CommunityStatus.FAILED.value),
                func.count().filter(cr.status == CommunityStatus.CANCELLED.value),
                func.coalesce(func.sum(cr.businesses_discovered), 0),
                func.coalesce(func.sum(cr.news_sources_created), 0),
                func.coalesce(func.sum(cr.api_cost_estimate), 0),
                func.coalesce(
                    func.sum(cr.api_cost_estimate).filter(
                        cr.status == CommunityStatus.COMPLETED.value
                    ),
                    0,
                ),
            ).where(cr.state_rollout_id == rollout_id)
        )
    ).one()
    return Totals(
        completed=completed,
        failed=failed,
        cancelled=cancelled,
        businesses=int(businesses),
        news_sources=int(news),
        cost_usd=Decimal(cost),
        completed_cost_usd=Decimal(completed_cost),
    )


async def finalize_rollout(
    session: AsyncSession, rollout_id: int, status: RolloutStatus
) -> RolloutSummary:
    """Close a rollout: communities never started become cancelled (when cancelled), totals
    are recomputed from the community rows, status and completed_at are set."""
    if status is RolloutStatus.CANCELLED:
        await session.execute(
            update(CommunityRollout)
            .where(
                CommunityRollout.state_rollout_id == rollout_id,
                CommunityRollout.status.in_(
                    [CommunityStatus.QUEUED.value, CommunityStatus.PAUSED.value]
                ),
            )
            .values(status=CommunityStatus.CANCELLED.value, updated_at=func.now())
        )
    totals = await community_totals(session, rollout_id)
    await session.execute(
        update(StateRollout)
        .where(StateRollout.id == rollout_id)
        .values(
            status=status.value,
            completed_at=func.coalesce(StateRollout.completed_at, func.now()),
            completed_communities=totals.completed,
            failed_communities=totals.failed,
            cancelled_communities=totals.cancelled,
            total_businesses=totals.businesses,
            total_news_sources=totals.news_sources,
            total_cost=totals.cost_usd,
            paused_reason=None,
            updated_at=func.now(),
        )
    )
    return RolloutSummary(
        rollout_id=rollout_id,
        status=status,
        completed=totals.completed,
        failed=totals.failed,
        cancelled=totals.cancelled,
        businesses=totals.businesses,
        news_sources=totals.news_sources,
        cost_usd=totals.cost_usd,
    )


async def active_rollouts(session: AsyncSession, state_code: str | None) -> list[StateRollout]:
    """Rollout rows still marked planned, in progress or paused (of one state, or all)."""
    query = select(StateRollout).where(
        StateRollout.status.in_([s.value for s in ACTIVE_ROLLOUT_STATUSES])
    )
    if state_code is not None:
        query = query.where(StateRollout.state_code == state_code)
    return list((await session.scalars(query.order_by(StateRollout.state_code))).all())


async def close_orphaned_rollout(
    session: AsyncSession, rollout_id: int, status: RolloutStatus, reason: str
) -> RolloutSummary:
    """Close an active rollout row whose workflow is gone: communities that never started
    become cancelled, those it left in flight failed with `reason`; totals are recounted."""
    cr = CommunityRollout
    await session.execute(
        update(cr)
        .where(cr.state_rollout_id == rollout_id, cr.status == CommunityStatus.PROCESSING.value)
        .values(
            status=CommunityStatus.FAILED.value,
            error=reason,
            completed_at=func.now(),
            updated_at=func.now(),
        )
    )
    await session.execute(
        update(cr)
        .where(
            cr.state_rollout_id == rollout_id,
            cr.status.in_([CommunityStatus.QUEUED.value, CommunityStatus.PAUSED.value]),
        )
        .values(status=CommunityStatus.CANCELLED.value, updated_at=func.now())
    )
    summary = await finalize_rollout(session, rollout_id, status)
    await session.execute(
        update(StateRollout).where(StateRollout.id == rollout_id).values(closed_reason=reason)
    )
    return summary


async def record_community_finished(session: AsyncSession, rollout_id: int) -> None:
    """Keep the state row's live counters equal to the community rows they count."""
    cr = CommunityRollout
    counts = (
        select(
            func.count().filter(cr.status == CommunityStatus.COMPLETED.value).label("done"),
            func.count().filter(cr.status == CommunityStatus.FAILED.value).label("failed"),
            func.coalesce(func.sum(cr.businesses_discovered), 0).label("businesses"),
            func.coalesce(func.sum(cr.news_sources_created), 0).label("news"),
            func.coalesce(func.sum(cr.api_cost_estimate), 0).label("cost"),
        )
        .where(cr.state_rollout_id == rollout_id)
        .subquery()
    )
    await session.execute(
        update(StateRollout)
        .where(StateRollout.id == rollout_id)
        .values(
            completed_communities=select(counts.c.done).scalar_subquery(),
            failed_communities=select(counts.c.failed).scalar_subquery(),
            total_businesses=select(counts.c.businesses).scalar_subquery(),
            total_news_sources=select(counts.c.news).scalar_subquery(),
            total_cost=select(counts.c.cost).scalar_subquery(),
            updated_at=func.now(),
        )
    )


# --------------------------------------------------------------------------------------
# Community rollouts and their phases
# --------------------------------------------------------------------------------------


async def begin_community(session: AsyncSession, community_rollout_id: int) -> None:
    await session.execute(
        update(CommunityRollout)
        .where(CommunityRollout.id == community_rollout_id)
        .values(
            status=CommunityStatus.PROCESSING.value,
            started_at=func.coalesce(CommunityRollout.started_at, func.now()),
            completed_at=None,
            error=None,
            failed_phase=None,
            updated_at=func.now(),
        )
    )


async def community_cost(session: AsyncSession, community_rollout_id: int) -> Decimal:
    cost = await session.scalar(
        select(func.coalesce(func.sum(RolloutApiUsage.cost), 0)).where(
            RolloutApiUsage.community_rollout_id == community_rollout_id
        )
    )
    return Decimal(cost or 0)


FINAL_COMMUNITY_STATUSES = frozenset(
    s.value for s in (CommunityStatus.COMPLETED, CommunityStatus.FAILED, CommunityStatus.CANCELLED)
)


async def finish_community(
    session: AsyncSession,
    community_rollout_id: int,
    status: CommunityStatus,
    *,
    failed_phase: int | None = None,
    error: str | None = None,
) -> CommunityRollout:
    """Set a community's final (or paused) status; its cost is the sum of its logged
    billed requests, so it is exact however often phases were retried."""
    cost = await community_cost(session, community_rollout_id)
    finished = status in (
        CommunityStatus.COMPLETED,
        CommunityStatus.FAILED,
        CommunityStatus.CANCELLED,
    )
    await session.execute(
        update(CommunityRollout)
        .where(CommunityRollout.id == community_rollout_id)
        .values(
            status=status.value,
            api_cost_estimate=cost,
            failed_phase=failed_phase,
            error=error,
            completed_at=func.now() if finished else None,
            updated_at=func.now(),
        )
    )
    if failed_phase is not None:
        await mark_phase(session, community_rollout_id, failed_phase, PhaseStatus.FAILED, error)
    row = await session.get(CommunityRollout, community_rollout_id, populate_existing=True)
    assert row is not None
    return row


async def close_silent_community(
    session: AsyncSession, community_rollout_id: int, reason: str
) -> CommunityRollout:
    """A community whose workflow closed without reporting (terminated, timed out, failed):
    failed in the phase it was in, with `reason`. A community that did record its end
    keeps it; either way the row as it stands is returned."""
    row = await session.get(
        CommunityRollout, community_rollout_id, with_for_update=True, populate_existing=True
    )
    assert row is not None
    if row.status in FINAL_COMMUNITY_STATUSES:
        return row
    return await finish_community(
        session,
        community_rollout_id,
        CommunityStatus.FAILED,
        failed_phase=row.current_phase,
        error=reason,
    )


async def mark_phase(
    session: AsyncSession,
    community_rollout_id: int,
    phase: int,
    status: PhaseStatus,
    error: str | None = None,
) -> None:
    """Upsert a phase row. RUNNING stamps started_at once and counts the attempt;
    COMPLETED/SKIPPED/FAILED stamp completed_at. The community's current_phase follows."""
    now = func.now()
    values: dict[str, object] = {
        "community_rollout_id": community_rollout_id,
        "phase": phase,
        "status": status.value,
        "error": error,
    }
    t = CommunityRolloutPhase
    if status is PhaseStatus.RUNNING:
        values |= {"started_at": now, "attempts": 1, "completed_at": None}
        on_conflict: dict[str, object] = {
            "status": status.value,
            "error": None,
            "started_at": func.coalesce(t.started_at, now),
            "attempts": t.attempts + 1,
            "completed_at": None,
            "updated_at": now,
        }
    else:
        values |= {"started_at": now, "completed_at": now}
        on_conflict = {
            "status": status.value,
            "error": error,
            "started_at": func.coalesce(t.started_at, now),
            "completed_at": now,
            "updated_at": now,
        }
    stmt = insert(t).values(**values)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[t.community_rollout_id, t.phase], set_=on_conflict
        )
    )
    if status is PhaseStatus.RUNNING:
        await session.execute(
            update(CommunityRollout)
            .where(CommunityRollout.id == community_rollout_id)
            .values(current_phase=phase, updated_at=now)
        )


async def record_phase_counts(
    session: AsyncSession, community_rollout_id: int, counts: dict[str, int]
) -> None:
    """Write a phase's named counts onto the community row (exact values, not increments,
    so a retried phase cannot double count)."""
    allowed = {"businesses_discovered", "businesses_with_websites", "news_sources_created"}
    values = {k: v for k, v in counts.items() if k in allowed}
    if values:
        await session.execute(
            update(CommunityRollout)
            .where(CommunityRollout.id == community_rollout_id)
            .values(**values, updated_at=func.now())
        )


async def start_problems(
    session: AsyncSession,
    state_code: str,
    priority: Sequence[int],
    only: Sequence[int] = (),
) -> list[str]:
    """Why a rollout of `state_code` cannot start, checked before anything is started."""
    problems: list[str] = []
    count = await session.scalar(
        select(func.count()).select_from(Community).where(Community.state_code == state_code)
    )
    if not count:
        problems.append(
            f"no communities found for {state_code}; run `python starter.py seed-communities "
            f"--state {state_code}` first"
        )
    for what, ids in (("priority communities", priority), ("communities", only)):
        if not ids:
            continue
        found = set(
            (
                await session.scalars(
                    select(Community.id).where(
                        Community.id.in_(list(ids)), Community.state_code == state_code
                    )
                )
            ).all()
        )
        foreign = [c for c in ids if c not in found]
        if foreign:
            problems.append(f"{what} not in {state_code}: {', '.join(map(str, foreign))}")
    blocking = await active_rollout(session, state_code)
    if blocking is not None:
        problems.append(
            f"{state_code} already has an active rollout (#{blocking.id}, {blocking.status})"
        )
    return problems


@dataclass(frozen=True, slots=True)
class FailedCommunity:
    community_id: int
    name: str
    failed_phase: int | None
    attempts: int
    error: str | None
    verification: dict[str, Any] | None


async def failed_communities(session: AsyncSession, rollout_id: int) -> list[FailedCommunity]:
    """The failed communities of a rollout, in rollout order, with the attempts of the phase
    that failed and their verification report (when phase 5 wrote one)."""
    cr, phase = CommunityRollout, CommunityRolloutPhase
    rows = await session.execute(
        select(
            cr.community_id,
            Community.name,
            cr.failed_phase,
            func.coalesce(phase.attempts, 0),
            cr.error,
            cr.verification_report,
        )
        .join(Community, Community.id == cr.community_id)
        .outerjoin(
            phase,
            (phase.community_rollout_id == cr.id) & (phase.phase == cr.failed_phase),
        )
        .where(cr.state_rollout_id == rollout_id, cr.status == CommunityStatus.FAILED.value)
        .order_by(cr.position)
    )
    return [FailedCommunity(*row) for row in rows]


async def latest_rollout(session: AsyncSession, state_code: str) -> StateRollout | None:
    return await session.scalar(
        select(StateRollout)
        .where(StateRollout.state_code == state_code)
        .order_by(StateRollout.id.desc())
        .limit(1)
    )


async def progress_from_db(session: AsyncSession, state_code: str) -> ProgressDocument | None:
    """The progress document of the state's latest rollout, from the rows alone (for a
    rollout whose workflow cannot answer a query: closed long ago, or no worker running)."""
    rollout = await latest_rollout(session, state_code)
    if rollout is None:
        return None
    totals = await community_totals(session, rollout.id)
    cr = CommunityRollout
    in_flight_rows = (
        await session.execute(
            select(
                cr.id, cr.community_id, Community.name, cr.position, cr.is_priority, cr.started_at
            )
            .join(Community, Community.id == cr.community_id)
            .where(cr.state_rollout_id == rollout.id, cr.status == CommunityStatus.PROCESSING.value)
            .order_by(cr.position)
        )
    ).all()
    settings = RolloutSettings.model_validate(rollout.settings or {})
    facts = RolloutFacts(
        rollout_id=rollout.id,
        state_code=rollout.state_code,
        state_name=rollout.state_name,
        status=RolloutStatus(rollout.status),
        total_communities=rollout.total_communities,
        started_at=rollout.started_at,
        completed_at=rollout.completed_at,
        batch_size=settings.batch_size,
        throttle_ms=settings.throttle_ms,
        skip_enrichment=settings.skip_enrichment,
        budget_usd=rollout.budget_usd,
        paused_reason=rollout.paused_reason,
    )
    in_flight = [
        InFlightCommunity(
            community_rollout_id=cr_id,
            community_id=community_id,
            name=name,
            position=position,
            is_priority=is_priority,
            started_at=started_at or rollout.started_at,
        )
        for cr_id, community_id, name, position, is_priority, started_at in in_flight_rows
    ]
    return build_progress(facts, totals, in_flight, default_community_cost=DEFAULT_COMMUNITY_COST)


async def rollout_report(
    session: AsyncSession, rollout_id: int
) -> tuple[int, list[tuple[str, int, Decimal]]]:
    """(businesses with websites, [(sku, requests, cost)]) of a rollout."""
    with_websites = await session.scalar(
        select(func.coalesce(func.sum(CommunityRollout.businesses_with_websites), 0)).where(
            CommunityRollout.state_rollout_id == rollout_id
        )
    )
    rows = await session.execute(
        select(RolloutApiUsage.sku, func.count(), func.coalesce(func.sum(RolloutApiUsage.cost), 0))
        .join(CommunityRollout, CommunityRollout.id == RolloutApiUsage.community_rollout_id)
        .where(CommunityRollout.state_rollout_id == rollout_id)
        .group_by(RolloutApiUsage.sku)
        .order_by(RolloutApiUsage.sku)
    )
    return int(with_websites or 0), [(sku, int(n), Decimal(cost)) for sku, n, cost in rows]
