"""The billed-request log (rollout_api_usage): one row per request Google would bill."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from rollout.db.models import RolloutApiUsage


async def log_api_usage(
    session: AsyncSession,
    *,
    request_key: str,
    community_rollout_id: int | None,
    endpoint: str,
    sku: str,
    cost: Decimal,
    result_count: int,
    http_status: int | None = 200,
    provider: str = "google_places",
) -> bool:
    """Record one billed request; returns False when `request_key` was already logged.

    The key names the request, not the attempt's outcome: an activity derives it from its
    activity id and attempt number, so the same billed response is never logged twice, while
    a retry (a new request that Google bills again) gets a row of its own.
    """
    result = await session.execute(
        insert(RolloutApiUsage)
        .values(
            request_key=request_key,
            community_rollout_id=community_rollout_id,
            provider=provider,
            endpoint=endpoint,
            sku=sku,
            request_count=1,
            cost=cost,
            result_count=result_count,
            http_status=http_status,
        )
        .on_conflict_do_nothing(index_elements=[RolloutApiUsage.request_key])
        .returning(RolloutApiUsage.id)
    )
    return result.scalar_one_or_none() is not None
