"""Phase 1 activities: plan the searches, run ONE Places request per activity, count.

One HTTP request per `places_search_page` activity on the `rollout-places` task queue, whose
server-side rate limit (derived from PLACES_QPM) holds the quota for any number of workers.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import metrics
from rollout import records
from rollout.businesses import primary_region, region_counts, upsert_places
from rollout.discovery import (
    PROBE_MASK,
    SEARCH_MASK,
    Box,
    DiscoveryPlan,
    DiscoverySettings,
    PageOutcome,
    PageRequest,
    SearchKind,
    bounding_box,
    plan,
)
from rollout.dto import PhaseInput, PhaseResult
from rollout.places.client import PlacesClient
from rollout.places.errors import (
    PermissionDeniedError,
    PlacesError,
    QuotaExceededError,
)
from rollout.places.models import Circle, LatLng, Rectangle, SearchPage
from rollout.status import Phase, PhaseStatus
from rollout.usage import log_api_usage

PLACES_ACCESS_ERROR = "PlacesAccessError"


def to_application_error(error: PlacesError) -> ApplicationError:
    """Google's meaning, in Temporal's terms: rollout-wide problems stop at once (and pause
    the rollout), request errors fail without retry, transient ones retry after the
    server's Retry-After when it gave one."""
    if isinstance(error, PermissionDeniedError) or (
        isinstance(error, QuotaExceededError) and error.per_day
    ):
        what = "daily quota exhausted" if isinstance(error, QuotaExceededError) else error.message
        return ApplicationError(what, type=PLACES_ACCESS_ERROR, non_retryable=True)
    delay = timedelta(seconds=error.retry_after) if error.retry_after else None
    return ApplicationError(
        error.message,
        type=type(error).__name__,
        non_retryable=not error.retryable,
        next_retry_delay=delay if error.retryable else None,
    )


class DiscoveryActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        places: PlacesClient,
        settings: DiscoverySettings,
    ) -> None:
        self.sessions = sessions
        self.places = places
        self.settings = settings

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
                type="PhaseThresholdFailed",
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
        try:
            page = await self._request(req)
        except PlacesError as error:
            metrics.places_request(endpoint, "-", type(error).__name__, Decimal(0))
            raise to_application_error(error) from None
        metrics.places_request(endpoint, page.sku, "ok", page.cost)
        info = activity.info()
        # Logged in its own transaction right away: the response is billed whatever happens
        # next, and a retry of this activity is a new request Google bills again (a new
        # attempt number, so a new key), while a replayed log of this one is a no-op.
        async with self.sessions.begin() as session:
            await log_api_usage(
                session,
                request_key=f"{info.workflow_run_id}/{info.activity_id}/{info.attempt}",
                community_rollout_id=req.community_rollout_id,
                endpoint=page.endpoint.value,
                sku=page.sku,
                cost=page.cost,
                result_count=page.result_count,
                http_status=page.http_status,
            )
        new = 0
        if not req.task.probe and page.places:
            async with self.sessions.begin() as session:
                new = await upsert_places(
                    session,
                    page.places,
                    community_id=req.community_id,
                    region_id=req.region_id,
                )
        if req.throttle_ms:
            await asyncio.sleep(req.throttle_ms / 1000)
        return PageOutcome(
            result_count=page.result_count,
            next_page_token=page.next_page_token,
            new_in_region=new,
            sku=page.sku,
            cost_usd=page.cost,
        )

    async def _request(self, req: PageRequest) -> SearchPage:
        task = req.task
        mask = PROBE_MASK if task.probe else SEARCH_MASK
        if task.kind is SearchKind.NEARBY:
            assert task.center_lat is not None
            assert task.center_lng is not None
            assert task.radius_m is not None
            return await self.places.search_nearby(
                mask.replace(",nextPageToken", ""),
                location_restriction=Circle(
                    center=LatLng(latitude=task.center_lat, longitude=task.center_lng),
                    radius_m=task.radius_m,
                ),
                included_types=[task.included_type] if task.included_type else None,
            )
        assert task.box is not None
        assert task.text_query is not None
        return await self.places.search_text(
            task.text_query,
            mask,
            included_type=task.included_type,
            location_restriction=_rectangle(task.box),
            page_token=req.page_token,
        )

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
        metrics.businesses_discovered(total)
        return PhaseResult(phase=Phase.DISCOVERY, counts=counts, cost_usd=cost)


def _rectangle(box: Box) -> Rectangle:
    return Rectangle(
        low=LatLng(latitude=box.south, longitude=box.west),
        high=LatLng(latitude=box.north, longitude=box.east),
    )
