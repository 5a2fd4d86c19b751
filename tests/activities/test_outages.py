"""Outages: a Postgres that cannot be reached is one error type for every activity, and the
probe a paused rollout uses tells an outage from a service that answers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from pydantic import SecretStr
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput

from activities.outages import OutageInterceptor, ServiceProbeActivities
from rollout.contract import ErrorType
from rollout.db.session import create_engine, session_factory
from rollout.payloads import ServiceCheck
from rollout.places.client import PlacesClient

if TYPE_CHECKING:
    from tests.support.places_fixtures import Sim

pytest_plugins = ["tests.support.places_fixtures"]


class Raises(ActivityInboundInterceptor):
    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        raise self.error


async def run_through_interceptor(error: BaseException) -> BaseException:
    inbound = OutageInterceptor().intercept_activity(Raises(error))
    try:
        await inbound.execute_activity(None)  # type: ignore[arg-type]
    except Exception as exc:
        return exc
    raise AssertionError("the activity did not raise")


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connection refused"),
        # A server going down under an open connection (pg_ctl stop -m fast).
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator"),
        DBAPIError("INSERT", None, asyncpg.exceptions.AdminShutdownError("shutting down")),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
    ],
)
async def test_a_database_connection_error_becomes_database_unavailable(
    error: BaseException,
) -> None:
    raised = await run_through_interceptor(error)
    assert isinstance(raised, ApplicationError)
    assert raised.type == ErrorType.DATABASE_UNAVAILABLE
    assert not raised.non_retryable
    assert "Postgres unreachable" in raised.message
    # No cause: a workflow reads the innermost ApplicationError, which must be this one,
    # not the driver's error converted by the SDK.
    assert raised.__cause__ is None


async def test_other_errors_pass_unchanged() -> None:
    assert isinstance(await run_through_interceptor(ValueError("bug")), ValueError)
    mine = ApplicationError("as raised", type="PhaseThresholdFailed")
    assert await run_through_interceptor(mine) is mine


async def test_the_probe_tells_an_outage_from_a_service_that_answers(
    engine: AsyncEngine, sim: Sim
) -> None:
    env = ActivityEnvironment()
    async with PlacesClient(sim.base_url, SecretStr("test-key"), timeout=5.0) as places:
        probe = ServiceProbeActivities(session_factory(engine), places)
        assert (await env.run(probe.services_available, ServiceCheck())).problem is None
        sim.configure(error_rate=1.0)
        places_out = await env.run(probe.services_available, ServiceCheck())
        assert places_out.problem is not None
        assert places_out.problem.startswith("Places unreachable")
        assert (await env.run(probe.services_available, ServiceCheck(places=False))).problem is None
        sim.configure(error_rate=0.0)
        # Nothing listens on port 9: Postgres is out.
        gone = create_engine("postgresql+asyncpg://postgres@127.0.0.1:9/rollout")
        try:
            down = ServiceProbeActivities(session_factory(gone), places)
            problem = (await env.run(down.services_available, ServiceCheck())).problem
        finally:
            await gone.dispose()
    assert problem is not None
    assert problem.startswith("Postgres unreachable")
    assert sim.billing()["total_cost"] in ("0", "0.00", "0.000")  # the probes are free
