"""Phase 6 activity: outbox rows for the downstream platforms, delivered where configured."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.heartbeat import Heartbeater
from rollout.db.records import mark_phase
from rollout.payloads import PhaseInput, PhaseResult
from rollout.phase_settings import PhaseSettings
from rollout.phases.seeding.events import sync_business_events
from rollout.phases.seeding.outbox import (
    build_outbox,
    outbox_status_counts,
    retired_businesses,
    upsert_outbox,
)
from rollout.phases.seeding.webhooks import DeliveryCounts, WebhookDelivery
from rollout.status import Phase, PhaseStatus


class SeedingActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: PhaseSettings,
        http: httpx.AsyncClient | None = None,
        *,
        backoff_s: float = 1.0,
    ) -> None:
        """`http` posts the webhooks (default: a client of its own). Webhook URLs are the
        operator's configuration, not data from the web, so they are not SSRF-guarded:
        platforms may well live on a private network."""
        self.sessions = sessions
        self.settings = settings
        self.http = http or httpx.AsyncClient(
            timeout=self.settings.platform_webhook_timeout_s,
            follow_redirects=False,
            headers={"User-Agent": self.settings.scan_user_agent},
        )
        self.delivery = WebhookDelivery(
            self.sessions, self.http, self.settings, backoff_s=backoff_s
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    @activity.defn(name="phase6_seed_platforms")
    async def seed_platforms(self, inp: PhaseInput) -> PhaseResult:
        phase = Phase.SEEDING
        cr_id = inp.community_rollout_id
        async with self.sessions.begin() as session:
            await mark_phase(session, cr_id, phase, PhaseStatus.RUNNING)

        webhooks = bool(self.settings.platform_webhook_urls)
        async with self.sessions.begin() as session:
            items = await build_outbox(session, inp.community_id, cr_id)
            seeded = await upsert_outbox(session, items, cr_id)
            # Closed and purged businesses are not rebuilt: their rows get tombstones,
            # which the relay delivers.
            retired = await sync_business_events(
                session, await retired_businesses(session, inp.community_id)
            )
            if not webhooks:
                # Nothing to deliver: the outbox rows and the phase's completion commit
                # together, and the platforms pull their pending rows.
                await mark_phase(session, cr_id, phase, PhaseStatus.COMPLETED)

        delivered = DeliveryCounts()
        if webhooks:
            # The rows are committed first (the outbox pattern): a crash during delivery
            # leaves them pending, and the retry delivers them.
            async with Heartbeater(
                lambda: {"delivered": delivered.delivered}, self.settings.phase_heartbeat_s
            ):
                delivered = await self.delivery.deliver(items)
        async with self.sessions.begin() as session:
            status = await outbox_status_counts(session, items)
            if webhooks:
                await mark_phase(session, cr_id, phase, PhaseStatus.COMPLETED)

        counts = {
            "outbox_rows": seeded.outbox_rows,
            "outbox_created": seeded.outbox_created,
            "outbox_changed": seeded.outbox_changed,
            "outbox_tombstones": retired.tombstones,
            "delivered_now": delivered.delivered,
            "outbox_pending": status.get("pending", 0),
            "outbox_delivered": status.get("delivered", 0),
            "outbox_failed": status.get("failed", 0),
        }
        counts |= {f"outbox_{p}": n for p, n in sorted(seeded.per_platform.items())}
        log = activity.logger.warning if delivered.failed else activity.logger.info
        log("community %s seeded: %s", inp.community_id, counts)
        return PhaseResult(phase=int(phase), counts=counts)
