"""Phase 1 activities: plan the searches, run ONE Places request per activity, count.

One HTTP request per `places_search_page` / `places_buy` activity on the `rollout-places`
task queue, whose server-side rate limit (derived from PLACES_QPM) holds the quota for any
number of workers. The cover strategy's probed ids and purchase list live in Postgres
(discovery_sightings, discovery_purchases): workflows only see counts and line numbers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from functools import partial

from sqlalchemy import ARRAY, Text, any_, bindparam, delete, func, literal, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import metrics
from activities.billing import BillingLog, attempt_key, billed_failure, request_id
from activities.heartbeat import Heartbeater
from activities.places_errors import to_temporal_error
from rollout.contract import ErrorType
from rollout.db import answers, records
from rollout.db.answers import KeptAnswer
from rollout.db.businesses import primary_region, region_counts, upsert_places
from rollout.db.models import (
    Business,
    BusinessRegion,
    CommunityRollout,
    DiscoveryPurchase,
    DiscoverySighting,
    Region,
)
from rollout.db.page_writes import PageSighting, PageStore, write_bought_page
from rollout.db.usage import BilledRequest
from rollout.payloads import PhaseInput, PhaseResult
from rollout.phases.discovery.cover import ProbedSearch, plan_cover
from rollout.phases.discovery.payloads import (
    BuyRequest,
    DiscoveryPlan,
    PageOutcome,
    PageRequest,
    PurchaseList,
    PurchaseListRequest,
    SearchKind,
    SearchTask,
)
from rollout.phases.discovery.planning import (
    DiscoverySettings,
    bounding_box,
    plan,
)
from rollout.phases.discovery.requests import search_page
from rollout.places.client import PlacesClient
from rollout.places.errors import (
    NotFoundError,
    PlacesError,
)
from rollout.places.models import DetailsResult, Place, SearchPage
from rollout.places.pricing import Endpoint, request_cost, sku_for
from rollout.status import Phase, PhaseStatus


async def _region_of(session: AsyncSession, community_rollout_id: int) -> Region | None:
    """The primary region of a community rollout's community."""
    community_id = await session.scalar(
        select(CommunityRollout.community_id).where(CommunityRollout.id == community_rollout_id)
    )
    return None if community_id is None else await primary_region(session, community_id)


# A purchase-list line, read without a transaction (one round trip).
# How often the purchase planning heartbeats (the workflow gives it a 30 s heartbeat timeout).
PLANNING_HEARTBEAT_S = 10.0

_PURCHASE_LINE = select(
    DiscoveryPurchase.task, DiscoveryPurchase.place_id, DiscoveryPurchase.pages
).where(
    DiscoveryPurchase.run_key == bindparam("run_key"),
    DiscoveryPurchase.seq == bindparam("seq"),
)


@dataclass(frozen=True)
class _Target:
    """Where a bought page's rows go."""

    run_key: str | None  # cover strategy: the page's ids are kept under this key
    task: SearchTask | None  # None: one place's details
    page_number: int
    community_id: int
    region_id: int
    store: bool  # the places go into `businesses` (a paid page, not a probe)
    key: str | None = None  # the sighting's task key, when not the task's own

    def sighting(self) -> PageSighting | None:
        if self.run_key is None:
            return None
        task = self.task
        return PageSighting(
            run_key=self.run_key,
            task_key=self.key or (task.key if task else ""),
            page_number=self.page_number,
            paid=task is None or not task.probe,
            task=task.model_dump(mode="json") if task else {},
        )

    def page_store(self) -> PageStore | None:
        if not self.store:
            return None
        return PageStore(community_id=self.community_id, region_id=self.region_id)


class DiscoveryActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        places: PlacesClient,
        settings: DiscoverySettings,
        billing: BillingLog,
    ) -> None:
        self.sessions = sessions
        self.places = places
        self.settings = settings
        self.billing = billing

    @activity.defn(name="discovery_plan")
    async def discovery_plan(self, inp: PhaseInput) -> DiscoveryPlan:
        async with self.sessions.begin() as session:
            await records.mark_phase(
                session, inp.community_rollout_id, Phase.DISCOVERY, PhaseStatus.RUNNING
            )
            region = await primary_region(session, inp.community_id)
        if region is None:
            raise ApplicationError(
                f"community {inp.community_id} has no primary region (seed communities first)",
                type=ErrorType.PHASE_THRESHOLD_FAILED,
                non_retryable=True,
            )
        tasks = plan(
            self.settings, region.center_latitude, region.center_longitude, region.radius_m
        )
        return DiscoveryPlan(
            region_id=region.id,
            root_box=bounding_box(region.center_latitude, region.center_longitude, region.radius_m),
            rules=self.settings.rules,
            tasks=tasks,
        )

    @activity.defn(name="places_search_page")
    async def places_search_page(self, req: PageRequest) -> PageOutcome:
        endpoint = "searchNearby" if req.task.kind is SearchKind.NEARBY else "searchText"
        answer = await self._buy(
            req.community_rollout_id,
            endpoint,
            lambda: search_page(
                self.places, req.task, req.page_token, paid_mask=self.settings.search_mask
            ),
            _Target(
                run_key=req.run_key,
                task=req.task,
                page_number=req.page_number,
                community_id=req.community_id,
                region_id=req.region_id,
                store=not req.task.probe,
            ),
        )
        assert answer is not None  # only Place Details answers None (NOT_FOUND)
        if req.throttle_ms:
            await asyncio.sleep(req.throttle_ms / 1000)
        return PageOutcome(
            result_count=answer.result_count,
            next_page_token=answer.next_page_token,
            new_in_region=answer.new_in_region or 0,
            sku=answer.sku,
            cost_usd=answer.cost,
        )

    @activity.defn(name="discovery_plan_purchases")
    async def discovery_plan_purchases(self, req: PurchaseListRequest) -> PurchaseList:
        """Plan which probed pages to buy (rollout/phases/discovery/cover.py) and store the
        list, replacing any list an earlier attempt stored: the same sightings give the same
        list."""
        async with self.sessions.begin() as session:
            rows = (
                await session.execute(
                    select(
                        DiscoverySighting.task_key,
                        DiscoverySighting.page_number,
                        DiscoverySighting.task,
                        DiscoverySighting.place_ids,
                    )
                    .where(DiscoverySighting.run_key == req.run_key, ~DiscoverySighting.paid)
                    .order_by(DiscoverySighting.task_key, DiscoverySighting.page_number)
                )
            ).all()
        tasks: dict[str, dict[str, object]] = {}
        pages: dict[str, list[list[str]]] = {}
        for key, number, task, ids in rows:
            got = pages.setdefault(key, [])
            if number == len(got) + 1:  # pages in order, without gaps (a token needs them)
                got.append(list(ids))
                tasks[key] = task
        sighted = {i for got in pages.values() for page in got for i in page}
        known = await self._link_known(req.community_rollout_id, sighted)
        # Heartbeats while the plan is computed in a thread: a worker killed meanwhile is
        # noticed in the workflow's heartbeat timeout, not the planning's five minutes.
        async with Heartbeater(lambda: None, PLANNING_HEARTBEAT_S):
            cover = await asyncio.to_thread(
                plan_cover,
                [ProbedSearch(key, got) for key, got in pages.items()],
                page_cost=request_cost(sku_for(Endpoint.SEARCH_TEXT, self.settings.search_mask)),
                details_cost=request_cost(sku_for(Endpoint.GET_PLACE, self.settings.details_mask)),
                exclude=known,
            )
        lines: list[dict[str, object]] = [
            {
                "task": {**tasks[purchase.key], "probe": False},
                "pages": purchase.pages,
                "place_id": None,
            }
            for purchase in cover.searches
        ]
        lines += [{"task": None, "pages": 1, "place_id": p} for p in cover.details]
        async with self.sessions.begin() as session:
            await session.execute(
                delete(DiscoveryPurchase).where(DiscoveryPurchase.run_key == req.run_key)
            )
            for start in range(0, len(lines), 1000):  # under asyncpg's parameter limit
                await session.execute(
                    insert(DiscoveryPurchase).values(
                        [
                            {
                                **line,
                                "run_key": req.run_key,
                                "seq": seq,
                                "community_rollout_id": req.community_rollout_id,
                            }
                            for seq, line in enumerate(lines[start : start + 1000], start)
                        ]
                    )
                )
        activity.logger.info(
            "purchase list: %d ids sighted, %d of them known and linked; %d searches "
            "(%d pages) and %d Place Details, $%s (no plan of these probes under $%s)",
            len(sighted),
            len(known),
            len(cover.searches),
            cover.pages,
            len(cover.details),
            cover.cost_usd,
            cover.bound_usd,
        )
        return PurchaseList(
            lines=len(lines),
            searches=len(cover.searches),
            pages=cover.pages,
            details=len(cover.details),
            sighted=len(sighted),
            cost_usd=cover.cost_usd,
            known=len(known),
        )

    async def _link_known(self, community_rollout_id: int, sighted: set[str]) -> frozenset[str]:
        """Link the sighted places fetched within `fresh_days` to the community's region
        (idempotent) and return their ids: the purchase plan leaves them out."""
        if not self.settings.fresh_days or not sighted:
            return frozenset()
        cutoff = func.now() - timedelta(days=self.settings.fresh_days)
        async with self.sessions.begin() as session:
            region = await _region_of(session, community_rollout_id)
            if region is None:
                return frozenset()
            fresh = (
                Business.place_id == any_(bindparam("ids", sorted(sighted), ARRAY(Text))),
                Business.places_fetched_at >= cutoff,
                # A listing the retention purged is no longer known: buy it again.
                or_(
                    Business.places_purged_at.is_(None),
                    Business.places_purged_at < Business.places_fetched_at,
                ),
            )
            known = (await session.scalars(select(Business.place_id).where(*fresh))).all()
            # One statement, whatever the count (a VALUES list would hit asyncpg's limit of
            # 32,767 parameters in a big city).
            await session.execute(
                insert(BusinessRegion)
                .from_select(
                    ["business_id", "region_id"],
                    select(Business.id, literal(region.id)).where(*fresh),
                )
                .on_conflict_do_nothing()
            )
        return frozenset(known)

    @activity.defn(name="places_buy")
    async def places_buy(self, req: BuyRequest) -> PageOutcome:
        """One paid request of the purchase list: a page of a probed search (with the
        listing fields), or one place's details."""
        async with self.sessions() as session:
            conn = await answers.autocommit(session)  # one read: no transaction around it
            line = (
                await conn.execute(_PURCHASE_LINE, {"run_key": req.run_key, "seq": req.seq})
            ).first()
        if line is None:
            raise ApplicationError(
                f"no purchase {req.seq} under {req.run_key}",
                type=ErrorType.PLACES_INVALID_REQUEST,
                non_retryable=True,
            )
        task = None if line.task is None else SearchTask.model_validate(line.task)
        place_id = line.place_id
        request: Callable[[], Awaitable[SearchPage | DetailsResult]]
        if task is None:
            assert place_id is not None
            request = partial(self.places.get_place, place_id, self.settings.details_mask)
        else:
            request = partial(
                search_page,
                self.places,
                task,
                req.page_token,
                paid_mask=self.settings.search_mask,
            )
        endpoint = (Endpoint.GET_PLACE if task is None else Endpoint.SEARCH_TEXT).value
        answer = await self._buy(
            req.community_rollout_id,
            endpoint,
            request,
            _Target(
                run_key=req.run_key,
                task=task,
                page_number=req.page_number,
                community_id=req.community_id,
                region_id=req.region_id,
                store=True,
                key=f"details:{place_id}" if task is None else None,
            ),
        )
        if answer is None:
            # Gone since it was sighted (closed for good, or merged): nothing to buy.
            activity.logger.warning("place %s no longer exists", place_id)
            return PageOutcome(result_count=0, sku="-", cost_usd=Decimal(0))
        next_token = answer.next_page_token if req.page_number < line.pages else None
        if req.throttle_ms:
            await asyncio.sleep(req.throttle_ms / 1000)
        return PageOutcome(
            result_count=answer.result_count,
            next_page_token=next_token,
            new_in_region=answer.new_in_region or 0,
            sku=answer.sku,
            cost_usd=answer.cost,
        )

    async def _buy(
        self,
        community_rollout_id: int,
        endpoint: str,
        request: Callable[[], Awaitable[SearchPage | DetailsResult]],
        target: _Target,
    ) -> KeptAnswer | None:
        """This activity's answer, stored: the one an earlier attempt bought and kept (stored
        now if it was not yet), or a new request, logged and stored before anything else
        happens; None for NOT_FOUND.

        The kept answer is looked up first, which also fails fast, before anything is
        bought, while Postgres is out."""
        info = activity.info()
        rid = request_id(info)
        await self.billing.keep_unkept(rid)
        async with self.sessions() as session:
            kept = await answers.load(session, rid)
        if kept is not None:
            if kept.stored:
                return kept
            new = await self._store_page(kept, target)
            return kept.model_copy(update={"new_in_region": new})
        try:
            billed = await request()
        except PlacesError as error:
            if isinstance(error, NotFoundError) and endpoint == Endpoint.GET_PLACE.value:
                return None
            metrics.places_request(endpoint, "-", type(error).__name__, Decimal(0))
            failed = billed_failure(
                error,
                request_key=attempt_key(info),
                community_rollout_id=community_rollout_id,
                endpoint=endpoint,
            )
            if failed is not None:
                await self.billing.record(failed)
            raise to_temporal_error(error) from None
        metrics.places_request(endpoint, billed.sku, "ok", billed.cost)
        if isinstance(billed, SearchPage):
            places, token = billed.places, billed.next_page_token
        else:
            places, token = (billed.place,), None
        usage = BilledRequest(
            request_key=attempt_key(info),
            community_rollout_id=community_rollout_id,
            endpoint=endpoint,
            sku=billed.sku,
            cost=billed.cost,
            result_count=len(places),
            http_status=billed.http_status,
        )
        try:
            # The usual way: the log row, the page's rows and the answer as stored, in one
            # statement.
            async with self.sessions.begin() as session:
                new = await write_bought_page(
                    session,
                    usage,
                    request_id=rid,
                    places=places,
                    next_page_token=token,
                    sighting=target.sighting(),
                    store=target.page_store(),
                )
        except Exception as exc:
            # Nothing of it was written. The careful way: the log row and the answer kept
            # first (or spooled, if Postgres is out), then the places; a retry finds it.
            activity.logger.warning("page not stored in one write (%s); logging it first", exc)
            answer = KeptAnswer.of(
                rid,
                community_rollout_id,
                sku=billed.sku,
                cost=billed.cost,
                places=places,
                next_page_token=token,
            )
            await self.billing.record(usage, answer)
            new = await self._store_page(answer, target, places)
        return KeptAnswer(
            request_id=rid,
            community_rollout_id=community_rollout_id,
            sku=billed.sku,
            cost=billed.cost,
            next_page_token=token,
            result_count=len(places),
            new_in_region=new,
        )

    @activity.defn(name="discovery_cover_check")
    async def discovery_cover_check(self, req: PurchaseListRequest) -> int:
        """How many ids the exploration sighted that no paid request returned (a ranking
        that moved between the probe and the purchase) and that were not linked as known
        (fresh) places either; 0 when the cover held."""
        async with self.sessions.begin() as session:
            ids = func.unnest(DiscoverySighting.place_ids)
            sighted = select(ids).where(
                DiscoverySighting.run_key == req.run_key, ~DiscoverySighting.paid
            )
            fetched = select(ids).where(
                DiscoverySighting.run_key == req.run_key, DiscoverySighting.paid
            )
            region = await _region_of(session, req.community_rollout_id)
            linked = (
                select(Business.place_id)
                .join(BusinessRegion, BusinessRegion.business_id == Business.id)
                .where(BusinessRegion.region_id == (region.id if region else None))
            )
            missing = sighted.except_(fetched, linked).subquery()
            count = await session.scalar(select(func.count()).select_from(missing))
        return int(count or 0)

    async def _store_page(
        self, answer: KeptAnswer, target: _Target, places: Sequence[Place] | None = None
    ) -> int:
        """The careful way, after the answer was logged and kept: in one transaction, the
        page's ids under the exploration's key (a retry replaces them), its places in
        `businesses` (unless a probe), and the answer marked stored."""
        if places is None:
            places = answer.parsed_places()
        sighting = target.sighting()
        store = target.page_store()
        new = 0
        async with self.sessions.begin() as session:
            if sighting is not None and places:
                stmt = insert(DiscoverySighting).values(
                    run_key=sighting.run_key,
                    community_rollout_id=answer.community_rollout_id,
                    task_key=sighting.task_key,
                    page_number=sighting.page_number,
                    paid=sighting.paid,
                    task=sighting.task,
                    place_ids=[p.id for p in places],
                )
                await session.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["run_key", "task_key", "page_number", "paid"],
                        set_={"place_ids": stmt.excluded.place_ids},
                    )
                )
            if store is not None and places:
                new = await upsert_places(
                    session,
                    places,
                    community_id=store.community_id,
                    region_id=store.region_id,
                    enriched=store.enriched,
                )
            await answers.mark_stored(session, answer.request_id, new)
        return new

    @activity.defn(name="discovery_finish")
    async def discovery_finish(self, inp: PhaseInput) -> PhaseResult:
        """Count the community's unique businesses and complete phase 1, in one transaction."""
        async with self.sessions.begin() as session:
            region = await primary_region(session, inp.community_id)
            assert region is not None
            total, with_site = await region_counts(session, region.id)
            counts = {"businesses_discovered": total, "businesses_with_websites": with_site}
            await records.record_phase_counts(session, inp.community_rollout_id, counts)
            await records.mark_phase(
                session, inp.community_rollout_id, Phase.DISCOVERY, PhaseStatus.COMPLETED
            )
            cost = await records.community_cost(session, inp.community_rollout_id)
            await answers.forget(session, inp.community_rollout_id)
        metrics.businesses_discovered(total)
        return PhaseResult(phase=Phase.DISCOVERY, counts=counts, cost_usd=cost)
