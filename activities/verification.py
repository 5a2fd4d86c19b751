"""Phase 5 activity: the community's verification report; thresholds can fail the phase."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import Heartbeater
from rollout.contract import ErrorType
from rollout.db.models import CommunityRollout
from rollout.db.records import mark_phase
from rollout.payloads import PhaseInput, PhaseResult
from rollout.phase_settings import PhaseSettings
from rollout.phases.discovery.planning import DiscoverySettings
from rollout.phases.verification.report import build_report, expected_categories, load_facts
from rollout.status import Phase, PhaseStatus

THRESHOLD_FAILED = ErrorType.PHASE_THRESHOLD_FAILED


class VerificationActivities:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: PhaseSettings,
        discovery: DiscoverySettings | None = None,
    ) -> None:
        """`discovery` gives the categories phase 1 searches (the expected ones unless
        VERIFY_EXPECTED_CATEGORIES says otherwise); None: phase 1's default lists."""
        self.sessions = sessions
        self.settings = settings
        self.categories = expected_categories(settings, discovery)

    @activity.defn(name="phase5_verify")
    async def verify(self, inp: PhaseInput) -> PhaseResult:
        # One database pass, but a big city's takes a while: heartbeat, so a worker that
        # dies meanwhile is noticed within the heartbeat timeout, not the 30 min one.
        async with Heartbeater(lambda: "verifying", self.settings.phase_heartbeat_s):
            return await self._verify(inp)

    async def _verify(self, inp: PhaseInput) -> PhaseResult:
        phase = Phase.VERIFICATION
        cr_id = inp.community_rollout_id
        async with self.sessions.begin() as session:
            await mark_phase(session, cr_id, phase, PhaseStatus.RUNNING)

        async with self.sessions() as session:
            facts, region = await load_facts(session, inp.community_id)
        report = build_report(facts, region, self.settings, self.categories)
        report["community_id"] = inp.community_id
        report["generated_at"] = dt.datetime.now(dt.UTC).isoformat()
        error = "; ".join(report["failures"]) or None

        # The report is stored whether or not it passes: operators need it most when a
        # community fails verification. A failure is recorded with it, in one transaction.
        async with self.sessions.begin() as session:
            await session.execute(
                update(CommunityRollout)
                .where(CommunityRollout.id == cr_id)
                .values(verification_report=report, updated_at=func.now())
            )
            status = PhaseStatus.COMPLETED if report["passed"] else PhaseStatus.FAILED
            await mark_phase(session, cr_id, phase, status, error)

        counts = {
            "businesses_verified": report["businesses"],
            "probable_duplicates": report["duplicates"]["redundant_businesses"],
            "outside_region": report["outside_region"]["count"],
            "closed": report["closed"]["count"],
            "businesses_flagged": len(report["flags"]),
            "empty_categories": len(report["categories"]["empty"]),
            "websites_unreachable": report["websites"]["unreachable"],
        }
        if not report["passed"]:
            activity.logger.warning("community %s failed verification: %s", inp.community_id, error)
            raise ApplicationError(
                f"verification failed: {error}",
                counts,
                type=THRESHOLD_FAILED,
                non_retryable=True,
            )
        activity.logger.info("community %s verified: %s", inp.community_id, counts)
        return PhaseResult(phase=int(phase), counts=counts)
