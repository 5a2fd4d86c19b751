"""The outbox relay's activity: one batch of due outbox rows delivered by webhook."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from rollout.phase_settings import PhaseSettings
from rollout.phases.seeding.payloads import RelayBatch, RelayBatchCounts
from rollout.phases.seeding.relay import deliver_due
from rollout.phases.seeding.webhooks import Backoff, WebhookSender


class OutboxRelayActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: PhaseSettings,
        http: httpx.AsyncClient,
    ) -> None:
        """`http` is the worker's webhook client (phase 6's): the platforms' URLs are the
        operator's configuration, so they are not SSRF-guarded."""
        self.sessions = sessions
        self.sender = WebhookSender(http, settings)

    @activity.defn(name="outbox_relay_batch")
    async def relay_batch(self, inp: RelayBatch) -> RelayBatchCounts:
        counts = await deliver_due(
            self.sessions,
            self.sender,
            limit=inp.batch_size,
            backoff=Backoff(inp.backoff_initial_s, inp.backoff_maximum_s),
        )
        if counts.retrying or counts.failed:
            activity.logger.warning(
                "outbox relay: %d of %d rows not delivered (%d to retry, %d failed), e.g. %s",
                counts.retrying + counts.failed,
                counts.claimed,
                counts.retrying,
                counts.failed,
                counts.sample_error,
            )
        return RelayBatchCounts(
            claimed=counts.claimed,
            delivered=counts.delivered,
            retrying=counts.retrying,
            failed=counts.failed,
        )
