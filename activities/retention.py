"""Google's storage terms kept on a schedule: the purge of PlacesRetentionWorkflow.

rollout/retention.py decides what is expired; this adapter runs its purge under the
configured PLACES_CONTENT_POLICY and reports counts. Its payloads live here because no
phase owns them and the workflow, the worker's schedule and this activity all share them.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from rollout.payloads import Payload
from rollout.retention import CONTENT_DAYS, PlacesContentPolicy, purge_expired


class RetentionRun(Payload):
    """PlacesRetentionWorkflow's input. The schedule leaves `as_of` out (the run's own start
    time); a fixed one is for tests and replays. A time zone is required: a naive time
    would be read in the database session's zone."""

    as_of: AwareDatetime | None = None


class RetentionPurge(Payload):
    """The purge activity's input: the workflow's `as_of`, fixed once so a retry purges as
    of the same instant."""

    as_of: AwareDatetime


class RetentionCounts(Payload):
    """What a retention run did: businesses whose expired Google content it cleared."""

    policy: PlacesContentPolicy
    as_of: datetime
    purged: int


class RetentionActivities:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], policy: PlacesContentPolicy
    ) -> None:
        self.sessions = sessions
        self.policy = policy

    @activity.defn(name="retention_purge")
    async def retention_purge(self, inp: RetentionPurge) -> RetentionCounts:
        """Clear the Google content older than CONTENT_DAYS at `as_of` (idempotent: a purged
        value is not purged again). Under `keep` nothing; under `refresh` the same purge as
        `purge`, since refreshing is not implemented yet and expired content must still go."""
        if self.policy == "keep":
            activity.logger.warning(
                "PLACES_CONTENT_POLICY=keep (acknowledged): nothing purged; Google content "
                "is kept past the %d days Google's terms allow",
                CONTENT_DAYS,
            )
            return RetentionCounts(policy=self.policy, as_of=inp.as_of, purged=0)
        async with self.sessions.begin() as session:
            purged = await purge_expired(session, inp.as_of)
        if self.policy == "refresh":
            activity.logger.warning(
                "PLACES_CONTENT_POLICY=refresh: refreshing is not implemented yet (issue #13); "
                "purged the content over %d days instead",
                CONTENT_DAYS,
            )
        return RetentionCounts(policy=self.policy, as_of=inp.as_of, purged=purged)
