"""Google's storage terms kept on a schedule: the activities of PlacesRetentionWorkflow.

rollout/retention.py decides what is expired or due; rollout/retention_requests.py applies
what a Places answer says. These adapters page through businesses (purge, list who is due)
on the `rollout` queue, and make one Place Details per activity on the Places queue (a
refresh, billed and logged like any request; a free place-id re-check). Every change a
platform must hear of is written with its outbox event in the same transaction.
Payloads live here because no phase owns them: the workflow, the worker's schedule and
these activities share them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import AwareDatetime, Field
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities import metrics
from activities.billing import BillingLog, billed_failure
from activities.enrichment import request_key_prefix
from activities.places_errors import to_temporal_error
from rollout.db.usage import BilledRequest, UsageOutcome
from rollout.payloads import Payload
from rollout.places.client import PlacesClient
from rollout.places.errors import NotFoundError, PlacesError
from rollout.places.pricing import Endpoint, request_cost, sku_for
from rollout.retention import (
    CONTENT_DAYS,
    PlacesContentPolicy,
    purge_expired,
    purge_expired_page,
    retention_plan,
)
from rollout.retention_requests import (
    RECHECK_ENDPOINT,
    REFRESH_ENDPOINT,
    RequestOutcome,
    RetentionRequestKind,
    due_page,
    due_target,
    recheck_mask,
    refresh_mask,
    store_not_found,
    store_recheck,
    store_refresh,
)

# Told of every business whose stored state changed, in the transaction that changed it:
# the platforms' outbox events (rollout/phases/seeding/events.py).
BusinessesChanged = Callable[[AsyncSession, Sequence[int]], Awaitable[object]]

RetentionStage = Literal["purge", "refresh", "recheck"]


class RetentionRun(Payload):
    """PlacesRetentionWorkflow's input. The schedule leaves `as_of` out (the run's own start
    time); a fixed one is for tests and replays. A time zone is required: a naive time
    would be read in the database session's zone. `carry` is the run's state handed over
    by continue-as-new."""

    as_of: AwareDatetime | None = None
    carry: RetentionCarry | None = None
    # Continue-as-new once the history has this many events (a test hook; the server's
    # suggestion applies regardless).
    continue_as_new_after_events: int | None = Field(default=None, ge=10)


class RetentionPurge(Payload):
    """The single-statement purge's input (runs recorded before the paged run)."""

    as_of: AwareDatetime


class RetentionBegin(Payload):
    as_of: AwareDatetime


class RetentionSetup(Payload):
    """What the run works with, from the worker's settings and the database at its start."""

    policy: PlacesContentPolicy
    budget_usd: Decimal
    refresh_request_usd: Decimal
    refresh_sku: str
    expiring: int
    refresh: int
    recheck: int


class RetentionPage(Payload):
    stage: RetentionStage
    as_of: AwareDatetime
    after_business_id: int = 0
    limit: int = Field(default=500, ge=1, le=5000)


class PurgedPage(Payload):
    purged: int
    next_after_id: int | None


class RetentionTargets(Payload):
    business_ids: list[int]


class RetentionRequest(Payload):
    """One Places request for one business (ids only: the place id is read when it runs)."""

    kind: RetentionRequestKind
    business_id: int
    as_of: AwareDatetime


class RetentionRequestResult(Payload):
    outcome: RequestOutcome
    cost_usd: Decimal = Decimal(0)
    requests: int = 0


class RetentionResume(Payload):
    """The `resume` signal of a run paused on its budget: go on with a higher one."""

    budget_usd: Decimal = Field(gt=0)


class RetentionCounts(Payload):
    """What a retention run did. `unfinished`: refreshes not made when the run ended paused
    on its budget (their content is purged when it reaches CONTENT_DAYS)."""

    policy: PlacesContentPolicy
    as_of: datetime
    purged: int
    refreshed: int = 0
    confirmed: int = 0
    followed: int = 0
    closed: int = 0
    moved: int = 0
    not_found: int = 0
    requests: int = 0
    cost_usd: Decimal = Decimal(0)
    failed: int = 0  # requests whose retries were spent (their business waits its turn)
    unfinished: int = 0

    def add(self, result: RetentionRequestResult) -> None:
        self.requests += result.requests
        self.cost_usd += result.cost_usd
        if result.outcome is not RequestOutcome.CURRENT:
            name = result.outcome.value
            setattr(self, name, getattr(self, name) + 1)


class RetentionCarry(Payload):
    setup: RetentionSetup
    as_of: AwareDatetime
    stage: RetentionStage
    after_business_id: int
    counts: RetentionCounts


RetentionRun.model_rebuild()


class RetentionActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        policy: PlacesContentPolicy,
        *,
        places: PlacesClient | None = None,
        billing: BillingLog | None = None,
        budget_usd: Decimal = Decimal(100),
        atmosphere: bool = False,
        on_changed: BusinessesChanged | None = None,
    ) -> None:
        self.sessions = sessions
        self.policy = policy
        self.places = places
        self.billing = billing
        self.budget_usd = budget_usd
        self.refresh_mask = refresh_mask(atmosphere=atmosphere)
        self.recheck_mask = recheck_mask()
        # Fail at worker start on a mask the API would refuse.
        self.refresh_sku = sku_for(Endpoint.GET_PLACE, self.refresh_mask)
        self.recheck_sku = sku_for(Endpoint.GET_PLACE, self.recheck_mask)
        self.on_changed = on_changed

    async def _changed(self, session: AsyncSession, business_ids: Sequence[int]) -> None:
        if business_ids and self.on_changed is not None:
            await self.on_changed(session, business_ids)

    @activity.defn(name="retention_purge")
    async def retention_purge(self, inp: RetentionPurge) -> RetentionCounts:
        """Clear the Google content older than CONTENT_DAYS at `as_of` in one statement
        (idempotent: a purged value is not purged again); nothing under `keep`."""
        if self.policy == "keep":
            return RetentionCounts(policy=self.policy, as_of=inp.as_of, purged=0)
        async with self.sessions.begin() as session:
            purged = await purge_expired(session, inp.as_of)
        return RetentionCounts(policy=self.policy, as_of=inp.as_of, purged=purged)

    @activity.defn(name="retention_begin")
    async def retention_begin(self, inp: RetentionBegin) -> RetentionSetup:
        """The policy and budget of this worker, and what the run has before it."""
        async with self.sessions() as session:
            plan = await retention_plan(
                session, self.policy, inp.as_of, refresh_mask=self.refresh_mask
            )
        if self.policy == "keep":
            activity.logger.warning(
                "PLACES_CONTENT_POLICY=keep (acknowledged): nothing purged; %d businesses "
                "hold Google content past the %d days Google's terms allow",
                plan.expiring,
                CONTENT_DAYS,
            )
        return RetentionSetup(
            policy=self.policy,
            budget_usd=self.budget_usd,
            refresh_request_usd=request_cost(self.refresh_sku),
            refresh_sku=self.refresh_sku,
            expiring=plan.expiring,
            refresh=plan.refresh,
            recheck=plan.recheck,
        )

    @activity.defn(name="retention_purge_page")
    async def retention_purge_page(self, page: RetentionPage) -> PurgedPage:
        """Purge the next page of businesses with expired content, and tell their platforms
        (a tombstone: the listing they were sent may not be kept either)."""
        async with self.sessions.begin() as session:
            purged = await purge_expired_page(
                session, page.as_of, after_business_id=page.after_business_id, limit=page.limit
            )
            await self._changed(session, purged.business_ids)
        return PurgedPage(purged=len(purged.business_ids), next_after_id=purged.next_after_id)

    @activity.defn(name="retention_due")
    async def retention_due(self, page: RetentionPage) -> RetentionTargets:
        """The next page of business ids due a refresh or a re-check."""
        if page.stage == "purge":
            raise ValueError("the purge pages itself: retention_purge_page")
        async with self.sessions() as session:
            ids = await due_page(
                session,
                page.stage,
                self.policy,
                page.as_of,
                after_business_id=page.after_business_id,
                limit=page.limit,
            )
        return RetentionTargets(business_ids=ids)

    @activity.defn(name="places_retention_request")
    async def places_retention_request(self, req: RetentionRequest) -> RetentionRequestResult:
        """One Place Details for one business (on the Places queue): a refresh (billed,
        logged before its answer is stored) or an IDs-only re-check (free, logged too).
        Nothing when the business is not due any more, which makes a retry after a stored
        answer free."""
        if self.places is None or self.billing is None:
            raise RuntimeError("retention requests need the Places client and billing log")
        async with self.sessions() as session:
            target = await due_target(session, req.kind, self.policy, req.as_of, req.business_id)
        if target is None:
            return RetentionRequestResult(outcome=RequestOutcome.CURRENT)
        refresh = req.kind == "refresh"
        endpoint = REFRESH_ENDPOINT if refresh else RECHECK_ENDPOINT
        mask = self.refresh_mask if refresh else self.recheck_mask
        key = f"{request_key_prefix(activity.info())}/{target.place_id}"
        try:
            answer = await self.places.get_place(target.place_id, mask)
        except NotFoundError:
            async with self.sessions.begin() as session:
                outcome = (
                    await store_not_found(session, target)
                    if refresh
                    else await store_recheck(session, target, None)
                )
                await self._changed(session, [target.business_id])
            metrics.places_request(Endpoint.GET_PLACE.value, "-", "NotFoundError", Decimal(0))
            return RetentionRequestResult(outcome=outcome, requests=1)
        except PlacesError as exc:
            billed = billed_failure(
                exc, request_key=key, community_rollout_id=None, endpoint=endpoint
            )
            if billed is not None:
                await self.billing.record(billed)
            metrics.places_request(Endpoint.GET_PLACE.value, "-", type(exc).__name__, Decimal(0))
            raise to_temporal_error(exc) from None
        await self.billing.record(
            BilledRequest(
                request_key=key,
                community_rollout_id=None,
                endpoint=endpoint,
                sku=answer.sku,
                cost=answer.cost,
                result_count=1,
                http_status=answer.http_status,
                outcome=UsageOutcome.OK,
            )
        )
        metrics.places_request(Endpoint.GET_PLACE.value, answer.sku, "ok", answer.cost)
        async with self.sessions.begin() as session:
            if refresh:
                outcome = await store_refresh(session, target, answer.place, answer.raw)
            else:
                outcome = await store_recheck(session, target, answer.place)
            await self._changed(session, [target.business_id])
        return RetentionRequestResult(outcome=outcome, cost_usd=answer.cost, requests=1)
