"""The progress document (the `progress` query's answer), built one way.

The state workflow builds it from the state it holds; `starter.py progress` builds it from
the database rows when no workflow can answer (closed long ago, or no worker running).
Both go through `build_progress`, so counts, percentages and cents always agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from rollout.payloads import (
    InFlightCommunity,
    ProgressDocument,
    ProgressRollout,
    StatusBreakdown,
    Totals,
    cents,
)
from rollout.status import RolloutStatus

FINISHED = frozenset({RolloutStatus.COMPLETED, RolloutStatus.CANCELLED, RolloutStatus.FAILED})


@dataclass(frozen=True, slots=True)
class RolloutFacts:
    """What a rollout is, apart from its counts."""

    rollout_id: int | None
    state_code: str
    state_name: str
    status: RolloutStatus
    total_communities: int
    started_at: datetime | None
    completed_at: datetime | None
    batch_size: int
    throttle_ms: int
    skip_enrichment: bool
    budget_usd: Decimal | None
    paused_reason: str | None


def average_cost(totals: Totals, default: Decimal) -> Decimal:
    """Cost of one community: the completed ones' average, `default` before any."""
    if totals.completed:
        return totals.completed_cost_usd / totals.completed
    return default


def build_progress(
    facts: RolloutFacts,
    totals: Totals,
    in_flight: Sequence[InFlightCommunity],
    *,
    default_community_cost: Decimal,
) -> ProgressDocument:
    done = totals.completed + totals.failed + totals.cancelled
    remaining = max(facts.total_communities - done - len(in_flight), 0)
    finished = facts.status in FINISHED
    paused = facts.status is RolloutStatus.PAUSED
    cancelled = totals.cancelled + (remaining if facts.status is RolloutStatus.CANCELLED else 0)
    breakdown = StatusBreakdown(
        processing=len(in_flight),
        completed=totals.completed,
        failed=totals.failed,
        cancelled=cancelled,
        paused=remaining if paused else 0,
        queued=remaining if not paused and not finished else 0,
    )
    total = facts.total_communities
    estimate = (remaining + len(in_flight)) * average_cost(totals, default_community_cost)
    return ProgressDocument(
        rollout=ProgressRollout(
            id=facts.rollout_id,
            state_code=facts.state_code,
            state_name=facts.state_name,
            status=facts.status,
            total_communities=total,
            completed_communities=totals.completed,
            failed_communities=totals.failed,
            cancelled_communities=cancelled,
            started_at=facts.started_at,
            completed_at=facts.completed_at,
            batch_size=facts.batch_size,
            throttle_ms=facts.throttle_ms,
            skip_enrichment=facts.skip_enrichment,
            budget_usd=facts.budget_usd,
        ),
        progress_percentage=round(100.0 * done / total, 1) if total else 0.0,
        status_breakdown=breakdown,
        total_businesses=totals.businesses,
        total_news_sources=totals.news_sources,
        total_cost=cents(totals.cost_usd),
        estimated_remaining_cost=cents(estimate) if not finished else Decimal("0.00"),
        in_flight=sorted(in_flight, key=lambda c: c.position),
        paused_reason=facts.paused_reason,
    )
