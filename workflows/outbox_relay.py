"""OutboxRelayWorkflow: delivers the due outbox rows in batches until none is due, started
every minute by the `outbox-relay` schedule (worker.py creates it).

Phase 6 delivers its own rows as it writes them (the fast path); this run delivers what
that left undelivered once its backoff has passed, and the update and tombstone events
written outside a rollout (rollout/phases/seeding/events.py).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.common import record

with workflow.unsafe.imports_passed_through():
    from activities.outbox_relay import OutboxRelayActivities
    from rollout.contract import WorkflowType
    from rollout.phases.seeding.payloads import RelayBatch, RelayCounts, RelayRun

# A batch posts each of its rows once, PLATFORM_WEBHOOK_CONCURRENCY at a time, each post
# bounded by PLATFORM_WEBHOOK_TIMEOUT_S; well inside the rows' lease (webhooks.LEASE).
BATCH_TIMEOUT = timedelta(minutes=5)


@workflow.defn(name=WorkflowType.OUTBOX_RELAY)
class OutboxRelayWorkflow:
    @workflow.run
    async def run(self, inp: RelayRun) -> RelayCounts:
        total = RelayCounts()
        batch = RelayBatch(
            batch_size=inp.batch_size,
            backoff_initial_s=inp.backoff_initial_s,
            backoff_maximum_s=inp.backoff_maximum_s,
        )
        while total.batches < inp.max_batches:
            counts = await record(
                OutboxRelayActivities.relay_batch,
                batch,
                summary=f"deliver up to {inp.batch_size} due outbox rows",
                start_to_close=BATCH_TIMEOUT,
            )
            total.batches += 1
            total.claimed += counts.claimed
            total.delivered += counts.delivered
            total.retrying += counts.retrying
            total.failed += counts.failed
            if counts.claimed < inp.batch_size:
                break  # nothing more is due
        workflow.logger.info(
            "outbox relay: %d rows in %d batches, %d delivered, %d to retry, %d failed",
            total.claimed,
            total.batches,
            total.delivered,
            total.retrying,
            total.failed,
        )
        return total
