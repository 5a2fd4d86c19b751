"""Phase 3 activity: news sources and collection methods from the scanned websites."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.heartbeat import Heartbeater
from rollout.db.records import mark_phase, record_phase_counts
from rollout.payloads import PhaseInput, PhaseResult
from rollout.phase_settings import PhaseSettings
from rollout.phases.news_sources.setup import NewsProgress, news_counts, setup_news_sources
from rollout.phases.resume import resume_point
from rollout.phases.website_scan.fetcher import WebFetcher
from rollout.status import Phase, PhaseStatus


class NewsSourceActivities:
    """`fetcher` is best the WebsiteScanActivities' one: one set of per-host limits and one
    robots.txt cache for everything the worker fetches from business websites."""

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

    @activity.defn(name="phase3_setup_news_sources")
    async def setup_news_sources(self, inp: PhaseInput) -> PhaseResult:
        phase = Phase.NEWS_SOURCES
        cr_id = inp.community_rollout_id
        async with self.sessions.begin() as session:
            await mark_phase(session, cr_id, phase, PhaseStatus.RUNNING)

        progress = NewsProgress(after_id=resume_point(activity.info().heartbeat_details))
        async with Heartbeater(progress.details, self.settings.phase_heartbeat_s):
            summary = await setup_news_sources(
                self.sessions,
                self.fetcher,
                self.settings,
                community_id=inp.community_id,
                progress=progress,
            )

        async with self.sessions.begin() as session:
            # Recounted from the rows, not added up: a retry or a second run sets the same
            # exact number.
            counts = await news_counts(session, inp.community_id)
            await record_phase_counts(
                session, cr_id, {"news_sources_created": counts["news_sources_created"]}
            )
            await mark_phase(session, cr_id, phase, PhaseStatus.COMPLETED)
        counts["candidates_checked"] = summary.candidates_checked
        activity.logger.info(
            "community %s: %s news sources (%s methods); %s candidates checked, problems %s",
            inp.community_id,
            counts["news_sources_created"],
            counts["collection_methods"],
            summary.candidates_checked,
            summary.problems or "none",
        )
        return PhaseResult(phase=int(phase), counts=counts)
