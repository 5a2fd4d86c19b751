"""Activities that keep the rollout's own records: state and community rollout rows."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import metrics
from rollout.contract import ErrorType
from rollout.db import answers, records
from rollout.payloads import (
    CommunityFinish,
    CommunityMark,
    CommunityPage,
    CommunityPageInput,
    CommunityResult,
    FinalizeInput,
    InitiateRolloutInput,
    InitiateRolloutResult,
    PhaseMark,
    RolloutStatusChange,
    RolloutSummary,
    SilentCommunity,
)
from rollout.status import CommunityStatus


class RolloutRecordActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity.defn(name="initiate_rollout")
    async def initiate_rollout(self, inp: InitiateRolloutInput) -> InitiateRolloutResult:
        try:
            async with self.sessions.begin() as session:
                result = await records.initiate_rollout(session, inp)
        except records.RolloutInputError as exc:
            raise ApplicationError(
                str(exc), type=ErrorType.ROLLOUT_INPUT, non_retryable=True
            ) from None
        except records.ActiveRolloutExistsError as exc:
            raise ApplicationError(
                str(exc), type=ErrorType.ACTIVE_ROLLOUT_EXISTS, non_retryable=True
            ) from None
        activity.logger.info(
            "rollout #%s of %s: %s communities",
            result.rollout_id,
            inp.state_code,
            result.total_communities,
        )
        return result

    @activity.defn(name="load_community_page")
    async def load_community_page(self, inp: CommunityPageInput) -> CommunityPage:
        async with self.sessions() as session:
            return await records.community_page(
                session, inp.rollout_id, inp.after_position, inp.limit
            )

    @activity.defn(name="set_rollout_status")
    async def set_rollout_status(self, inp: RolloutStatusChange) -> None:
        async with self.sessions.begin() as session:
            await records.set_rollout_status(session, inp.rollout_id, inp.status, inp.paused_reason)

    @activity.defn(name="finalize_rollout")
    async def finalize_rollout(self, inp: FinalizeInput) -> RolloutSummary:
        async with self.sessions.begin() as session:
            return await records.finalize_rollout(session, inp.rollout_id, inp.status)

    @activity.defn(name="begin_community")
    async def begin_community(self, inp: CommunityMark) -> None:
        async with self.sessions.begin() as session:
            await records.begin_community(session, inp.community_rollout_id)

    @activity.defn(name="mark_phase")
    async def mark_phase(self, inp: PhaseMark) -> None:
        async with self.sessions.begin() as session:
            await records.mark_phase(
                session, inp.community_rollout_id, inp.phase, inp.status, inp.error
            )

    @activity.defn(name="finish_community")
    async def finish_community(self, inp: CommunityFinish) -> CommunityResult:
        """Final status, exact cost and counts of a community, and the state row's counters
        recomputed, in one transaction."""
        async with self.sessions.begin() as session:
            row = await records.finish_community(
                session,
                inp.community_rollout_id,
                inp.status,
                failed_phase=inp.failed_phase,
                error=inp.error,
            )
            await records.record_community_finished(session, inp.rollout_id)
            # Answers kept for a retry of phase 1 (a failed or paused one ends without
            # discovery_finish): none can come now.
            await answers.forget(session, inp.community_rollout_id)
        metrics.community_finished(inp.status.value)
        return CommunityResult(
            community_rollout_id=inp.community_rollout_id,
            community_id=inp.community_id,
            status=inp.status,
            businesses_discovered=row.businesses_discovered,
            businesses_with_websites=row.businesses_with_websites,
            news_sources_created=row.news_sources_created,
            cost_usd=row.api_cost_estimate,
            failed_phase=inp.failed_phase,
            error=inp.error,
            pause_reason=inp.pause_reason,
            resume_when=inp.resume_when,
        )

    @activity.defn(name="close_silent_community")
    async def close_silent_community(self, inp: SilentCommunity) -> CommunityResult:
        """Fail a community whose workflow closed without reporting, unless it recorded its
        end; the state row's counters follow. Returns what the row says."""
        async with self.sessions.begin() as session:
            row = await records.close_silent_community(
                session, inp.community_rollout_id, inp.reason
            )
            await records.record_community_finished(session, inp.rollout_id)
            await answers.forget(session, inp.community_rollout_id)
        status = CommunityStatus(row.status)
        metrics.community_finished(status.value)
        return CommunityResult(
            community_rollout_id=inp.community_rollout_id,
            community_id=inp.community_id,
            status=status,
            businesses_discovered=row.businesses_discovered,
            businesses_with_websites=row.businesses_with_websites,
            news_sources_created=row.news_sources_created,
            cost_usd=row.api_cost_estimate,
            failed_phase=row.failed_phase,
            error=row.error,
        )
