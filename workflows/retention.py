"""PlacesRetentionWorkflow: Google's storage terms kept daily, started by the
`places-retention` schedule (worker.py creates it).

This increment purges only: the Google content older than Google's terms allow is
cleared in the database (rollout/retention.py). Refreshing content before it expires
(Place Details on the rate-limited `rollout-places` queue, PLACES_CONTENT_POLICY=refresh)
and re-checking old place ids are later work (issue #13); until then a `refresh` run
purges what is expired, like `starter.py retention`.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.common import record

with workflow.unsafe.imports_passed_through():
    from activities.retention import (
        RetentionActivities,
        RetentionCounts,
        RetentionPurge,
        RetentionRun,
    )
    from rollout.contract import WorkflowType

# The purge is one UPDATE over every business: longer than a bookkeeping write on a large
# table, and retried from scratch (idempotently) when cut off.
PURGE_TIMEOUT = timedelta(minutes=10)


@workflow.defn(name=WorkflowType.PLACES_RETENTION)
class PlacesRetentionWorkflow:
    @workflow.run
    async def run(self, inp: RetentionRun) -> RetentionCounts:
        # The run's start time, from its history: the same on replay.
        as_of = inp.as_of or workflow.now()
        counts = await record(
            RetentionActivities.retention_purge,
            RetentionPurge(as_of=as_of),
            summary=f"purge Google content expired as of {as_of.isoformat()}",
            start_to_close=PURGE_TIMEOUT,
        )
        workflow.logger.info(
            "retention as of %s (PLACES_CONTENT_POLICY=%s): purged %d businesses",
            as_of.isoformat(),
            counts.policy,
            counts.purged,
        )
        return counts
