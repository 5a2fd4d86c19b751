"""Phase 2 activity: scan the community's business websites."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.heartbeat import Heartbeater
from rollout.db.records import mark_phase
from rollout.payloads import PhaseInput, PhaseResult
from rollout.phase_settings import PhaseSettings
from rollout.phases.resume import resume_point
from rollout.phases.website_scan.community import ScanProgress, scan_community, scan_counts
from rollout.phases.website_scan.fetcher import WebFetcher
from rollout.status import Phase, PhaseStatus


class WebsiteScanActivities:
    """Holds the worker's one WebFetcher, so the global and per-host limits and the
    robots.txt cache are shared by every scan the worker runs at the same time."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: PhaseSettings,
        fetcher: WebFetcher | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.fetcher = fetcher or WebFetcher(self.settings)

    async def aclose(self) -> None:
        await self.fetcher.aclose()

    @activity.defn(name="phase2_scan_websites")
    async def scan_websites(self, inp: PhaseInput) -> PhaseResult:
        phase = Phase.WEBSITE_SCAN
        cr_id = inp.community_rollout_id
        async with self.sessions.begin() as session:
            await mark_phase(session, cr_id, phase, PhaseStatus.RUNNING)

        progress = ScanProgress(after_id=resume_point(activity.info().heartbeat_details))
        if progress.after_id:
            activity.logger.info(
                "community %s: resuming the scan after business %s",
                inp.community_id,
                progress.after_id,
            )
        counts: dict[str, int] = {}

        async def finalize(session: AsyncSession) -> None:
            # Same transaction as the last scan rows: counted over every attempt's rows.
            counts.update(await scan_counts(session, inp.community_id, cr_id))
            await mark_phase(session, cr_id, phase, PhaseStatus.COMPLETED)

        async with Heartbeater(progress.details, self.settings.phase_heartbeat_s):
            await scan_community(
                self.sessions,
                self.fetcher,
                self.settings,
                community_id=inp.community_id,
                community_rollout_id=cr_id,
                progress=progress,
                finalize=finalize,
            )
        activity.logger.info(
            "community %s: %s websites scanned (%s this attempt), %s reachable, %s publishing",
            inp.community_id,
            counts["websites_scanned"],
            progress.scanned,
            counts["websites_reachable"],
            counts["websites_publishing"],
        )
        return PhaseResult(phase=int(phase), counts=counts)
