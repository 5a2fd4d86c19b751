"""Phase 1's Places activities keep the usage log equal to the emulator's bill under faults:
broken and lost answers, a database error after a purchase, and Postgres gone the moment an
answer arrives. Real Postgres and the real emulator; only the loss of the database
connection is simulated, by a session factory that refuses to connect when told to.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.billing import BillingLog
from activities.discovery import DiscoveryActivities
from activities.records import RolloutRecordActivities
from rollout.db.models import Business, DiscoverySighting, PlacesAnswer, RolloutApiUsage
from rollout.db.usage import BilledRequest
from rollout.db.usage_spool import UsageSpool
from rollout.payloads import CommunityFinish
from rollout.phases.discovery.payloads import Box, PageRequest, SearchKind, SearchTask
from rollout.phases.discovery.planning import DiscoverySettings
from rollout.places.client import PlacesClient
from rollout.status import CommunityStatus
from tests.support.phase_fixtures import Seeded, seed_rollout
from tests.support.placesim_support import SIM_KEY

if TYPE_CHECKING:
    from tests.support.places_fixtures import Sim

pytest_plugins = ["tests.support.places_fixtures"]


class Outage(Exception):
    pass


class FlakySessions:
    """The real session factory, except that `begin()` fails like a dropped connection
    while `down` is set, or for the next `fail_begins` calls."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.down = False
        self.fail_begins = 0

    def __call__(self) -> AsyncSession:
        return self.sessions()

    def begin(self) -> Any:
        if self.down or self.fail_begins:
            self.fail_begins = max(self.fail_begins - 1, 0)
            raise OperationalError("INSERT", None, ConnectionRefusedError("connection refused"))
        return self.sessions.begin()


@dataclasses.dataclass
class Rig:
    acts: DiscoveryActivities
    flaky: FlakySessions
    spool: UsageSpool
    seeded: Seeded


@contextlib.asynccontextmanager
async def rig(
    engine: AsyncEngine, sim: Sim, tmp_path: Path, client_timeout_s: float = 5.0
) -> AsyncIterator[Rig]:
    seeded = await seed_rollout(engine)
    flaky = FlakySessions(seeded.sessions)
    spool = UsageSpool(tmp_path / "spool.jsonl")
    billing = BillingLog(flaky, spool, retry_delays_s=(0.0, 0.0))  # type: ignore[arg-type]
    async with PlacesClient(sim.base_url, SecretStr(SIM_KEY), timeout=client_timeout_s) as places:
        yield Rig(
            DiscoveryActivities(flaky, places, DiscoverySettings(), billing),  # type: ignore[arg-type]
            flaky,
            spool,
            seeded,
        )


def page_request(seeded: Seeded) -> PageRequest:
    half = 0.02
    task = SearchTask(
        kind=SearchKind.TEXT,
        label="restaurant",
        text_query="restaurant",
        included_type="restaurant",
        box=Box(
            south=seeded.latitude - half,
            west=seeded.longitude - half,
            north=seeded.latitude + half,
            east=seeded.longitude + half,
        ),
    )
    return PageRequest(
        task=task,
        community_rollout_id=seeded.community_rollout_id,
        community_id=seeded.community_id,
        region_id=seeded.region_id,
    )


async def usage_rows(seeded: Seeded) -> list[RolloutApiUsage]:
    async with seeded.sessions() as session:
        return list((await session.scalars(select(RolloutApiUsage))).all())


async def assert_log_equals_bill(seeded: Seeded, sim: Sim) -> list[RolloutApiUsage]:
    rows = await usage_rows(seeded)
    bill = sim.billing()
    assert len(rows) == bill["total_requests"]
    assert sum((r.cost for r in rows), Decimal(0)) == Decimal(bill["total_cost"])
    return rows


def attempt(env: ActivityEnvironment, n: int) -> None:
    env.info = dataclasses.replace(env.info, attempt=n)


async def test_broken_and_lost_answers_are_logged_as_billed(
    engine: AsyncEngine, sim: Sim, tmp_path: Path
) -> None:
    env = ActivityEnvironment()
    async with rig(engine, sim, tmp_path, client_timeout_s=0.5) as r:
        req = page_request(r.seeded)
        sim.configure(malformed_rate=1.0)
        with pytest.raises(ApplicationError) as broken:
            await env.run(r.acts.places_search_page, req)
        assert not broken.value.non_retryable
        sim.configure(malformed_rate=0.0, timeout_rate=1.0, hang_s=3.0)
        attempt(env, 2)
        with pytest.raises(ApplicationError) as lost:
            await env.run(r.acts.places_search_page, req)
        assert not lost.value.non_retryable
        sim.configure(timeout_rate=0.0)
        attempt(env, 3)
        outcome = await env.run(r.acts.places_search_page, req)
    assert outcome.result_count > 0
    rows = await assert_log_equals_bill(r.seeded, sim)
    assert sorted((r.outcome, r.http_status) for r in rows) == [
        ("malformed", 200),
        ("ok", 200),
        ("timeout", None),
    ]
    assert len({r.cost for r in rows}) == 1  # each at the mask's SKU price


async def test_a_bought_page_is_not_bought_again_after_a_database_error(
    engine: AsyncEngine, sim: Sim, tmp_path: Path
) -> None:
    env = ActivityEnvironment()
    async with rig(engine, sim, tmp_path) as r:
        req = page_request(r.seeded)
        # The first begin(), the page's one write (log row, places, answer), fails: nothing
        # of it is written. The second logs the purchase and keeps the answer; the third
        # (storing the places) fails.
        original = r.flaky.begin
        calls = 0

        def fail_first_and_third() -> Any:
            nonlocal calls
            calls += 1
            if calls in (1, 3):
                raise OperationalError("INSERT", None, ConnectionResetError("reset"))
            return original()

        r.flaky.begin = fail_first_and_third  # type: ignore[method-assign]
        with pytest.raises(OperationalError):
            await env.run(r.acts.places_search_page, req)
        r.flaky.begin = original  # type: ignore[method-assign]
        bought = sim.billing()["total_requests"]
        attempt(env, 2)
        second = await env.run(r.acts.places_search_page, req)
        attempt(env, 3)  # and once more after it was stored: the same outcome, no request
        third = await env.run(r.acts.places_search_page, req)
    assert bought == 1
    assert sim.billing()["total_requests"] == 1
    await assert_log_equals_bill(r.seeded, sim)
    assert second == third
    assert second.new_in_region == second.result_count > 0
    async with r.seeded.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Business)) == (
            second.result_count
        )
        kept = (await session.scalars(select(PlacesAnswer))).one()
    assert kept.places is None  # Google's content lives in `businesses` only


async def test_an_answer_billed_while_postgres_is_out_is_spooled_and_used_on_retry(
    engine: AsyncEngine, sim: Sim, tmp_path: Path
) -> None:
    env = ActivityEnvironment()
    async with rig(engine, sim, tmp_path) as r:
        req = page_request(r.seeded)
        r.flaky.down = True  # reads still work: Postgres goes away as the answer arrives
        with pytest.raises(OperationalError):
            await env.run(r.acts.places_search_page, req)
        assert r.spool.pending() == 1
        assert await usage_rows(r.seeded) == []
        # Still out on the next attempt: nothing is bought.
        attempt(env, 2)
        with pytest.raises(OperationalError):
            await env.run(r.acts.places_search_page, req)
        assert sim.billing()["total_requests"] == 1
        r.flaky.down = False
        # Postgres is back: the worker's spool writer and the next attempt both write the
        # same request; it is logged once, and the answer is used, not bought again.
        assert await r.spool.flush(r.seeded.sessions) == 1
        assert r.spool.pending() == 0
        attempt(env, 3)
        outcome = await env.run(r.acts.places_search_page, req)
    assert sim.billing()["total_requests"] == 1
    rows = await assert_log_equals_bill(r.seeded, sim)
    assert len(rows) == 1
    assert outcome.result_count > 0
    assert outcome.new_in_region == outcome.result_count


async def test_spool_keeps_requests_until_postgres_answers(
    engine: AsyncEngine, sim: Sim, tmp_path: Path
) -> None:
    async with rig(engine, sim, tmp_path) as r:
        r.flaky.down = True
        with pytest.raises(OperationalError):
            await ActivityEnvironment().run(r.acts.places_search_page, page_request(r.seeded))
        with pytest.raises(OperationalError):
            await r.spool.flush(r.flaky)  # type: ignore[arg-type]
        assert r.spool.pending() == 1  # an interrupted flush keeps its batch
        r.flaky.down = False
        assert await r.spool.flush(r.flaky) == 1  # type: ignore[arg-type]
        assert await r.spool.flush(r.flaky) == 0  # type: ignore[arg-type]
    await assert_log_equals_bill(r.seeded, sim)


async def test_a_bought_page_carries_the_enrichment_fields_at_no_extra_cost(
    engine: AsyncEngine, sim: Sim, tmp_path: Path
) -> None:
    async with rig(engine, sim, tmp_path) as r:
        outcome = await ActivityEnvironment().run(r.acts.places_search_page, page_request(r.seeded))
    assert outcome.sku == "Text Search Enterprise"  # what the listing alone bills at
    async with r.seeded.sessions() as session:
        rows = (await session.scalars(select(Business))).all()
    assert len(rows) == outcome.result_count > 0
    # Every business is enriched by its page, so phase 4 has nothing to buy for it.
    assert all(b.enriched_at is not None and b.enrichment is not None for b in rows)
    with_hours = [b for b in rows if "regularOpeningHours" in (b.enrichment or {})]
    assert with_hours
    assert all("internationalPhoneNumber" in (b.enrichment or {}) for b in rows)
    # A restaurant search: Google prices most of them.
    assert any("priceLevel" in (b.enrichment or {}) for b in rows)
    await assert_log_equals_bill(r.seeded, sim)


async def test_a_page_is_logged_and_stored_in_one_write(
    engine: AsyncEngine, sim: Sim, tmp_path: Path
) -> None:
    """The usual way (issue #16): one transaction per page, holding the log row, the page's
    ids under the exploration, its places (a paid page) and the answer kept as stored."""
    async with rig(engine, sim, tmp_path) as r:
        original = r.flaky.begin
        calls = 0

        def count() -> Any:
            nonlocal calls
            calls += 1
            return original()

        r.flaky.begin = count  # type: ignore[method-assign]
        paid = page_request(r.seeded).model_copy(update={"run_key": "run-1"})
        probe = paid.model_copy(update={"task": paid.task.model_copy(update={"probe": True})})
        env = ActivityEnvironment()
        probed = await env.run(r.acts.places_search_page, probe)
        env.info = dataclasses.replace(env.info, activity_id="2")
        bought = await env.run(r.acts.places_search_page, paid)
        assert calls == 2
        again = await env.run(r.acts.places_search_page, paid)  # a retry: the kept outcome
    assert again == bought
    assert calls == 2
    assert probed.result_count == bought.result_count > 0
    assert probed.new_in_region == 0
    assert bought.new_in_region == bought.result_count
    assert sim.billing()["total_requests"] == 2
    await assert_log_equals_bill(r.seeded, sim)
    async with r.seeded.sessions() as session:
        sightings = (await session.scalars(select(DiscoverySighting))).all()
        kept = (await session.scalars(select(PlacesAnswer))).all()
        businesses = await session.scalar(select(func.count()).select_from(Business))
    assert sorted(s.paid for s in sightings) == [False, True]
    assert all(len(s.place_ids) == bought.result_count for s in sightings)
    assert all(s.task["label"] == "restaurant" for s in sightings)
    assert businesses == bought.result_count
    assert sorted((a.places, a.new_in_region) for a in kept) == [
        (None, 0),
        (None, bought.result_count),
    ]


async def test_a_spooled_line_the_log_refuses_stays_spooled_and_the_rest_is_written(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    seeded = await seed_rollout(engine)
    spool = UsageSpool(tmp_path / "spool.jsonl")

    def billed(key: str, community_rollout_id: int) -> BilledRequest:
        return BilledRequest(
            request_key=key,
            community_rollout_id=community_rollout_id,
            endpoint="searchText",
            sku="Text Search Enterprise",
            cost=Decimal("0.035"),
        )

    spool.append(billed("good", seeded.community_rollout_id))
    spool.append(billed("refused", 987654321))  # no such community rollout
    assert await spool.flush(seeded.sessions) == 1
    assert spool.pending() == 1  # kept, and said so, for an operator
    assert [r.request_key for r in await usage_rows(seeded)] == ["good"]


async def test_a_community_that_ends_forgets_its_kept_answers(
    engine: AsyncEngine, sim: Sim, tmp_path: Path
) -> None:
    """A phase 1 that failed or paused ends without discovery_finish: the community's end
    drops what it kept for a retry that can no longer come."""
    async with rig(engine, sim, tmp_path) as r:
        original = r.flaky.begin
        calls = 0

        def fail_store() -> Any:
            nonlocal calls
            calls += 1
            # The page's one write fails; the log row and the answer commit (the second);
            # storing the places fails (the third).
            if calls in (1, 3):
                raise OperationalError("INSERT", None, ConnectionResetError("reset"))
            return original()

        r.flaky.begin = fail_store  # type: ignore[method-assign]
        with pytest.raises(OperationalError):
            await ActivityEnvironment().run(r.acts.places_search_page, page_request(r.seeded))
    async with r.seeded.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(PlacesAnswer)) == 1
    finish = CommunityFinish(
        rollout_id=r.seeded.rollout_id,
        community_rollout_id=r.seeded.community_rollout_id,
        community_id=r.seeded.community_id,
        status=CommunityStatus.FAILED,
        failed_phase=1,
        error="Places unreachable",
    )
    await ActivityEnvironment().run(
        RolloutRecordActivities(r.seeded.sessions).finish_community, finish
    )
    async with r.seeded.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(PlacesAnswer)) == 0
