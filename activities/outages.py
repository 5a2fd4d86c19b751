"""Outages in Temporal's terms: a Postgres that cannot be reached is one error type for
every activity, and a probe tells a paused rollout when its services answer again."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from activities.billing import attempt_key
from rollout.contract import ErrorType
from rollout.db.errors import is_connection_error
from rollout.db.usage import BilledRequest, log_billed
from rollout.payloads import ServiceCheck, ServiceStatus
from rollout.phases.discovery.planning import PROBE_MASK
from rollout.places.client import PlacesClient
from rollout.places.errors import PlacesError


def database_unavailable(exc: BaseException) -> ApplicationError:
    cause = getattr(exc, "orig", None) or exc
    reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return ApplicationError(
        f"Postgres unreachable: {reason[:300]}", type=ErrorType.DATABASE_UNAVAILABLE
    )


class OutageInterceptor(Interceptor):
    """Any activity that fails because Postgres cannot be reached fails with the
    DatabaseUnavailable type (retryable), so workflows can tell an outage from a bug."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _OutageInbound(next)


class _OutageInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await self.next.execute_activity(input)
        except ApplicationError:
            raise
        except Exception as exc:
            if is_connection_error(exc):
                # No cause attached: workflows classify a failure by its innermost
                # ApplicationError, which would then be the driver's ConnectionRefusedError
                # and fail a community for an outage. The message keeps the reason.
                raise database_unavailable(exc) from None
            raise


class ServiceProbeActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], places: PlacesClient) -> None:
        self.sessions = sessions
        self.places = places

    @activity.defn(name="services_available")
    async def services_available(self, check: ServiceCheck) -> ServiceStatus:
        """The first service that still does not answer, or none. The Places probe is an
        IDs-only Text Search, which Google does not bill."""
        if check.database:
            try:
                async with self.sessions() as session:
                    await session.execute(text("SELECT 1"))
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                return ServiceStatus(problem=database_unavailable(exc).message)
        if check.places:
            try:
                page = await self.places.search_text("cafe", PROBE_MASK, page_size=1)
            except PlacesError as exc:
                if exc.retryable:
                    return ServiceStatus(problem=f"Places unreachable: {exc.message[:300]}")
                # A non-retryable answer (bad key, quota) is not an outage: Places answers.
                return ServiceStatus()
            # Logged like every request (its SKU costs nothing), so the log matches the bill.
            async with self.sessions.begin() as session:
                await log_billed(
                    session,
                    BilledRequest(
                        request_key=attempt_key(activity.info()),
                        community_rollout_id=None,
                        endpoint=page.endpoint.value,
                        sku=page.sku,
                        cost=page.cost,
                        result_count=page.result_count,
                        http_status=page.http_status,
                    ),
                )
        return ServiceStatus()
