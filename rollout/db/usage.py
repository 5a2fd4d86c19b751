"""The billed-request log (rollout_api_usage): one row per request Google would bill."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from rollout.db.models import RolloutApiUsage


class UsageOutcome(StrEnum):
    OK = "ok"
    # A 200 whose body arrived broken: Google answered, so it billed.
    MALFORMED = "malformed"
    # Sent, and no answer within the client's timeout: Google may have answered and billed
    # it, and nothing tells us otherwise, so it counts as billed (the log is never below the
    # bill; an upper bound by at most these rows).
    TIMEOUT = "timeout"


class BilledRequest(BaseModel):
    """One billed request, as logged; also what the spool and a heartbeat carry when
    Postgres cannot take it yet."""

    model_config = ConfigDict(frozen=True)

    request_key: str
    community_rollout_id: int | None
    endpoint: str
    sku: str
    cost: Decimal
    result_count: int = 0
    http_status: int | None = 200
    outcome: UsageOutcome = UsageOutcome.OK
    provider: str = "google_places"


async def log_billed(session: AsyncSession, billed: BilledRequest) -> bool:
    """Record one billed request; returns False when its `request_key` was already logged.

    The key names the request, not the attempt's outcome: an activity derives it from its
    activity id and attempt number, so the same billed response is never logged twice, while
    a retry (a new request that Google bills again) gets a row of its own.
    """
    result = await session.execute(
        insert(RolloutApiUsage)
        .values(
            request_key=billed.request_key,
            community_rollout_id=billed.community_rollout_id,
            provider=billed.provider,
            endpoint=billed.endpoint,
            sku=billed.sku,
            request_count=1,
            cost=billed.cost,
            result_count=billed.result_count,
            http_status=billed.http_status,
            outcome=billed.outcome.value,
        )
        .on_conflict_do_nothing(index_elements=[RolloutApiUsage.request_key])
        .returning(RolloutApiUsage.id)
    )
    return result.scalar_one_or_none() is not None


# log_billed as a common table expression (`usage`), for a statement that writes the log row
# together with what the answer brought (rollout/db/page_writes.py): one atomic write.
USAGE_CTE = """
    usage AS (
        INSERT INTO rollout_api_usage (request_key, community_rollout_id, provider, endpoint,
                                       sku, request_count, cost, result_count, http_status,
                                       outcome)
        VALUES (:usage_request_key, :usage_community_rollout_id, :usage_provider,
                :usage_endpoint, :usage_sku, 1, CAST(:usage_cost AS numeric),
                :usage_result_count, :usage_http_status, :usage_outcome)
        ON CONFLICT (request_key) DO NOTHING
    )
"""


def usage_parameters(billed: BilledRequest) -> dict[str, object]:
    """The bound values of USAGE_CTE."""
    return {
        "usage_request_key": billed.request_key,
        "usage_community_rollout_id": billed.community_rollout_id,
        "usage_provider": billed.provider,
        "usage_endpoint": billed.endpoint,
        "usage_sku": billed.sku,
        "usage_cost": billed.cost,
        "usage_result_count": billed.result_count,
        "usage_http_status": billed.http_status,
        "usage_outcome": billed.outcome.value,
    }
