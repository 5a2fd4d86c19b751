"""Phase 4 activities: enrichment from the businesses' own websites, and Place Details for
listings whose enrichment fields are stale (skipped with skip_enrichment).

CommunityEnrichmentWorkflow lists the targets (`phase4_targets`), makes one request per
`places_enrich` activity on the rate-limited Place Details queue, and totals up
(`phase4_finish`). Workflows list business ids only, never place ids.
"""

from __future__ import annotations

import asyncio
import hashlib
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import metrics
from activities.billing import BillingLog
from activities.places_errors import to_temporal_error
from rollout.contract import ErrorType
from rollout.db.records import mark_phase
from rollout.payloads import PhaseResult
from rollout.phase_settings import PhaseSettings
from rollout.phases.enrichment.details import (
    TargetOutcome,
    count_fresh,
    enrich_target,
    phase_cost,
    stale_target,
    target_page,
)
from rollout.phases.enrichment.payloads import (
    EnrichmentFinish,
    EnrichOutcome,
    EnrichRequest,
    EnrichTargets,
    EnrichTargetsRequest,
)
from rollout.phases.enrichment.website import merge_site_profiles
from rollout.places.client import PlacesClient
from rollout.places.errors import PlacesError
from rollout.places.pricing import Endpoint, FieldMaskError, sku_for
from rollout.status import Phase, PhaseStatus


def request_key_prefix(info: activity.Info) -> str:
    """Unique per activity attempt across every workflow: Google bills each request, and a
    retry's requests are new ones that must be logged on their own."""
    prefix = f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}/{info.attempt}"
    if len(prefix) > 180:  # keep room for the place id within request_key's 255 characters
        prefix = hashlib.sha256(prefix.encode()).hexdigest()
    return prefix


class EnrichmentActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        places: PlacesClient,
        settings: PhaseSettings,
        billing: BillingLog,
    ) -> None:
        """`places` is the process's shared client; `places_enrich` is paced by its task
        queue's rate limit, like every Places request."""
        self.sessions = sessions
        self.places = places
        self.settings = settings
        self.billing = billing
        # Fail at worker start, not mid-rollout, on a mask the API would refuse.
        self.sku = sku_for(Endpoint.GET_PLACE, self.settings.enrichment_field_mask)

    # -- phase 4 as CommunityEnrichmentWorkflow: list, one request per activity, finish --

    @activity.defn(name="phase4_targets")
    async def targets(self, req: EnrichTargetsRequest) -> EnrichTargets:
        """The next page of business ids to enrich; the first page also marks the phase
        running and counts the businesses still fresh."""
        fresh_days = self.settings.enrichment_fresh_days
        async with self.sessions.begin() as session:
            fresh = None
            if req.after_business_id == 0:
                await mark_phase(
                    session, req.community_rollout_id, Phase.ENRICHMENT, PhaseStatus.RUNNING
                )
                fresh = await count_fresh(session, req.community_id, fresh_days)
            ids = await target_page(
                session, req.community_id, fresh_days, req.after_business_id, req.limit
            )
        return EnrichTargets(business_ids=ids, fresh=fresh)

    @activity.defn(name="places_enrich")
    async def places_enrich(self, req: EnrichRequest) -> EnrichOutcome:
        """One Place Details (on `rollout-places-get-place`): nothing when the business is fresh by
        now, which also makes a retry after a stored answer free."""
        async with self.sessions() as session:
            target = await stale_target(
                session, req.business_id, self.settings.enrichment_fresh_days
            )
        if target is None:
            return EnrichOutcome(outcome="fresh")
        key = f"{request_key_prefix(activity.info())}/{target.place_id}"
        try:
            outcome, cost = await enrich_target(
                self.sessions,
                self.places,
                target,
                community_rollout_id=req.community_rollout_id,
                field_mask=self.settings.enrichment_field_mask,
                request_key=key,
                record=self.billing.record,
            )
        except PlacesError as exc:
            metrics.places_request(Endpoint.GET_PLACE.value, "-", type(exc).__name__, Decimal(0))
            raise to_temporal_error(exc) from None
        except FieldMaskError as exc:
            raise ApplicationError(
                str(exc), type=ErrorType.PHASE_CONFIG, non_retryable=True
            ) from None
        if outcome is TargetOutcome.ENRICHED:
            metrics.places_request(Endpoint.GET_PLACE.value, self.sku, "ok", cost)
        if req.throttle_ms:
            await asyncio.sleep(req.throttle_ms / 1000)  # the operator's throttle, as phase 1
        return EnrichOutcome(outcome=outcome.value, cost_usd=cost)

    @activity.defn(name="phase4_finish")
    async def finish(self, req: EnrichmentFinish) -> PhaseResult:
        cr_id = req.phase.community_rollout_id
        async with self.sessions.begin() as session:
            profiles = await merge_site_profiles(session, req.phase.community_id)
            cost = await phase_cost(session, cr_id)
            await mark_phase(session, cr_id, Phase.ENRICHMENT, PhaseStatus.COMPLETED)
        activity.logger.info(
            "community %s: %s enriched from their own websites; %s refreshed (%s), %s "
            "still fresh, %s not found; phase cost $%s",
            req.phase.community_id,
            profiles,
            req.enriched,
            self.sku,
            req.fresh,
            req.not_found,
            cost,
        )
        return PhaseResult(
            phase=int(Phase.ENRICHMENT),
            counts={
                "businesses_enriched": req.enriched,
                "enrichment_fresh_skipped": req.fresh,
                "enrichment_not_found": req.not_found,
                "site_profiles": profiles,
            },
            cost_usd=cost,
        )
