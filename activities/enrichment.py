"""Phase 4 activity: Pro enrichment with Place Details (skipped with skip_enrichment)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._heartbeat import Heartbeater
from rollout.dto import PhaseInput, PhaseResult
from rollout.enrichment import (
    AnswerCapture,
    EnrichProgress,
    Pacer,
    enrich_community,
    phase_cost,
)
from rollout.phase_settings import PhaseSettings, get_phase_settings
from rollout.places.client import PlacesClient
from rollout.places.errors import PermissionDeniedError, PlacesError, QuotaExceededError
from rollout.places.pricing import Endpoint, FieldMaskError, sku_for
from rollout.records import mark_phase
from rollout.settings import get_settings
from rollout.status import Phase, PhaseStatus

# The workflow pauses the whole rollout on this type (workflows/community_rollout.py).
PLACES_ACCESS_ERROR = "PlacesAccessError"
# Google's guidance: wait at least 30 s after a per-minute quota error.
MIN_QUOTA_RETRY = timedelta(seconds=30)

PlacesFactory = Callable[[httpx.AsyncBaseTransport], PlacesClient]


def default_places_factory(transport: httpx.AsyncBaseTransport) -> PlacesClient:
    settings = get_settings()
    return PlacesClient(settings.places_base_url, settings.places_api_key, transport=transport)


def places_failure(exc: PlacesError) -> ApplicationError:
    """Temporal's view of a Places error: rollout-wide problems stop everything, transient
    ones retry after the delay the API asked for, the rest fail the phase."""
    if isinstance(exc, PermissionDeniedError) or (
        isinstance(exc, QuotaExceededError) and exc.per_day
    ):
        return ApplicationError(exc.message, type=PLACES_ACCESS_ERROR, non_retryable=True)
    if exc.retryable:
        delay = timedelta(seconds=exc.retry_after) if exc.retry_after is not None else None
        if isinstance(exc, QuotaExceededError):
            delay = max(delay or MIN_QUOTA_RETRY, MIN_QUOTA_RETRY)
        return ApplicationError(exc.message, type=type(exc).__name__, next_retry_delay=delay)
    return ApplicationError(exc.message, type=type(exc).__name__, non_retryable=True)


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
        settings: PhaseSettings | None = None,
        places: PlacesFactory | None = None,
        *,
        places_qpm: int | None = None,
    ) -> None:
        """`places` builds a PlacesClient on the given transport (default: from
        PLACES_BASE_URL and PLACES_API_KEY). Place Details requests of all this object's
        activities together stay under `places_qpm` per minute (default PLACES_QPM)."""
        self.sessions = sessions
        self.settings = settings or get_phase_settings()
        self.places = places or default_places_factory
        self.pacer = Pacer((places_qpm or get_settings().places_qpm) / 60)
        # Fail at worker start, not mid-rollout, on a mask the API would refuse.
        self.sku = sku_for(Endpoint.GET_PLACE, self.settings.enrichment_field_mask)

    @activity.defn(name="phase4_enrich")
    async def enrich(self, inp: PhaseInput) -> PhaseResult:
        phase = Phase.ENRICHMENT
        cr_id = inp.community_rollout_id
        if inp.skip_enrichment:
            async with self.sessions.begin() as session:
                await mark_phase(session, cr_id, phase, PhaseStatus.SKIPPED)
            return PhaseResult(phase=int(phase), status="skipped")
        async with self.sessions.begin() as session:
            await mark_phase(session, cr_id, phase, PhaseStatus.RUNNING)

        prefix = request_key_prefix(activity.info())
        progress = EnrichProgress()
        capture = AnswerCapture()
        try:
            client = self.places(capture)
        except ValueError as exc:  # no API key configured: nothing can run until one is
            raise ApplicationError(str(exc), type=PLACES_ACCESS_ERROR, non_retryable=True) from None
        try:
            async with client, Heartbeater(progress.details, self.settings.phase_heartbeat_s):
                fresh = await enrich_community(
                    self.sessions,
                    client,
                    community_id=inp.community_id,
                    community_rollout_id=cr_id,
                    field_mask=self.settings.enrichment_field_mask,
                    fresh_days=self.settings.enrichment_fresh_days,
                    request_key=lambda place_id: f"{prefix}/{place_id}",
                    throttle_s=inp.throttle_ms / 1000,
                    progress=progress,
                    capture=capture,
                    pacer=self.pacer,
                )
        except PlacesError as exc:
            activity.logger.warning(
                "community %s: enrichment stopped after %s of %s: %r",
                inp.community_id,
                progress.enriched,
                progress.total,
                exc,
            )
            raise places_failure(exc) from None
        except FieldMaskError as exc:
            raise ApplicationError(str(exc), type="PhaseConfigError", non_retryable=True) from None

        async with self.sessions.begin() as session:
            cost = await phase_cost(session, cr_id)
            await mark_phase(session, cr_id, phase, PhaseStatus.COMPLETED)
        counts = {
            "businesses_enriched": progress.enriched,
            "enrichment_fresh_skipped": fresh,
            "enrichment_not_found": progress.not_found,
        }
        activity.logger.info(
            "community %s: %s enriched (%s), %s still fresh, %s not found; phase cost $%s",
            inp.community_id,
            progress.enriched,
            self.sku,
            fresh,
            progress.not_found,
            cost,
        )
        return PhaseResult(phase=int(phase), counts=counts, cost_usd=cost)
