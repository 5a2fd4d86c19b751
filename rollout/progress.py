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
from rollout.status import PHASE_NAMES, Phase, RolloutStatus

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


def progress_line(doc: ProgressDocument) -> str:
    """One plain line for a rollout's state: `progress --watch` into a pipe or a log (where a
    live-redrawn bar would print nothing until the end) and the state workflow's details in
    the Web UI."""
    r = doc.rollout
    b = doc.status_breakdown
    done = b.completed + b.failed + b.cancelled
    paused = f" ({doc.paused_reason})" if doc.paused_reason else ""
    return (
        f"{r.state_code} {r.status.value}{paused}: {done}/{r.total_communities} communities "
        f"(completed {b.completed}, failed {b.failed}, in flight {b.processing}, "
        f"queued {b.queued}, paused {b.paused}, cancelled {b.cancelled}), "
        f"businesses {doc.total_businesses}, news sources {doc.total_news_sources}, "
        f"cost ${doc.total_cost}"
    )


def in_flight_line(community: InFlightCommunity) -> str:
    """What one in-flight community is doing, as far as is known."""
    text = community.name
    if community.problem:
        return f"{text}: {community.problem}"
    if community.phase is not None:
        text += f": phase {community.phase} ({PHASE_NAMES[Phase(community.phase)]})"
    live = []
    if community.requests is not None:
        live.append(f"{community.requests:,} requests")
    if community.businesses is not None:
        live.append(f"{community.businesses:,} businesses")
    if community.cost_usd is not None:
        live.append(f"${community.cost_usd:.2f}")
    return text + (f", {', '.join(live)}" if live else "")
