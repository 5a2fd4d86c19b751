"""Phase 3: turn businesses whose websites publish something into news sources.

For each business of the community whose latest website scan found feeds, calendars, event
or news pages, every candidate (at most NEWS_MAX_CANDIDATES_PER_SITE) is fetched once with
the scanner's fetcher (same SSRF guard, robots.txt, limits) and parsed: RSS/Atom, iCal, or an
HTML listing. A candidate with a title, a link and at least one item becomes an active
collection method; a business with at least one becomes a news source.

Idempotent: news_sources is unique per business and collection_methods per (source, method,
url), both upserted. A candidate that no longer parses deactivates its method (never
deletes it), and a source without an active method is deactivated. The community's
`news_sources_created` is the number of its active news sources, recounted each run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from rollout.db.community_scope import community_business_ids
from rollout.db.models import Business, CollectionMethod, NewsSource, WebsiteScan
from rollout.phase_settings import PhaseSettings
from rollout.phases.news_sources.feeds import (
    FeedError,
    ParsedFeed,
    parse_feed,
    parse_html_listing,
    parse_ical,
    sniff,
)
from rollout.phases.resume import Watermark
from rollout.phases.website_scan.errors import FetchError, clean_text
from rollout.phases.website_scan.fetcher import FEED_ACCEPT, HTML_ACCEPT, WebFetcher

log = logging.getLogger(__name__)

# What a scan candidate is checked as: a feed (RSS or Atom, decided by parsing), a
# calendar, or an HTML page listing items.
FEED, ICAL, HTML = "feed", "ical", "html"


@dataclass(frozen=True, slots=True)
class SiteCandidates:
    business_id: int
    name: str | None
    homepage: str | None
    checks: tuple[tuple[str, str], ...]  # (FEED|ICAL|HTML, url), best first


@dataclass(slots=True)
class CheckedMethod:
    url: str
    method: str | None  # rss | atom | ical | html when it parsed
    item_count: int = 0
    title: str | None = None
    problem: str | None = None

    @property
    def usable(self) -> bool:
        return self.method is not None and self.problem is None


@dataclass(slots=True)
class NewsProgress:
    after_id: int = 0
    checked: int = 0  # businesses checked by this attempt
    total: int = 0

    def details(self) -> dict[str, int]:
        return {"after_id": self.after_id, "checked": self.checked, "total": self.total}


@dataclass(slots=True)
class NewsSummary:
    candidates_checked: int = 0
    methods_usable: int = 0
    problems: dict[str, int] = field(default_factory=dict)


def plan_checks(found: dict[str, Any], limit: int) -> tuple[tuple[str, str], ...]:
    """The candidates of a scan's `found`, feeds first (the cheapest to collect)."""
    order = (("feeds", FEED), ("ical", ICAL), ("event_pages", HTML), ("news_pages", HTML))
    checks: list[tuple[str, str]] = []
    seen: set[str] = set()
    for key, kind in order:
        for candidate in found.get(key) or ():
            url = candidate.get("url") if isinstance(candidate, dict) else None
            if isinstance(url, str) and url not in seen:
                seen.add(url)
                checks.append((kind, url))
    return tuple(checks[:limit])


async def load_candidates(
    session: AsyncSession, community_id: int, *, after_id: int, limit: int
) -> list[SiteCandidates]:
    rows = await session.execute(
        select(Business.id, Business.name, WebsiteScan.final_url, WebsiteScan.found)
        .join(WebsiteScan, WebsiteScan.business_id == Business.id)
        .where(Business.id.in_(community_business_ids(community_id)), Business.id > after_id)
        .order_by(Business.id)
    )
    sites = []
    for business_id, name, final_url, found in rows:
        checks = plan_checks(found or {}, limit)
        if checks:
            sites.append(SiteCandidates(business_id, name, final_url, checks))
    return sites


def _parse(
    kind: str, body: bytes, content_type: str, url: str, text: Callable[[], str]
) -> ParsedFeed:
    if kind == HTML:
        return parse_html_listing(text(), url)
    sniffed = sniff(body, content_type)
    if sniffed == "ical" or (kind == ICAL and sniffed is None):
        return parse_ical(body, url)
    return parse_feed(body, url)


async def check_candidate(fetcher: WebFetcher, kind: str, url: str) -> CheckedMethod:
    """Fetch and parse one candidate once; never raises for the site's faults."""
    checked = CheckedMethod(url=url, method=None)
    try:
        result = await fetcher.fetch(url, accept=HTML_ACCEPT if kind == HTML else FEED_ACCEPT)
    except FetchError as exc:
        checked.problem = f"{exc.status.value}: {exc.message}"[:500]
        return checked
    if not result.ok:
        checked.problem = f"HTTP {result.status_code}"
        return checked
    if kind == HTML and not result.is_html:
        checked.problem = f"not HTML ({result.content_type or 'no content type'})"
        return checked
    try:
        parsed = await asyncio.to_thread(
            _parse, kind, result.body, result.content_type, result.final_url, result.text
        )
    except (FeedError, ValueError) as exc:
        checked.problem = f"unparsable: {exc}"[:500]
        return checked
    checked.method = parsed.kind
    checked.item_count = parsed.item_count
    checked.title = parsed.title
    checked.problem = parsed.problem
    return checked


def _source_name(site: SiteCandidates, checked: Sequence[CheckedMethod]) -> str:
    if site.name:
        return site.name
    for c in checked:
        if c.usable and c.title:
            return clean_text(c.title)[:300]
    return httpx.URL(site.homepage).host if site.homepage else f"business {site.business_id}"


async def save_source(
    session: AsyncSession,
    community_id: int,
    site: SiteCandidates,
    checked: Sequence[CheckedMethod],
) -> bool:
    """Write one business's outcome; True when it is an active news source afterwards."""
    usable = [c for c in checked if c.usable]
    failed_urls = [c.url for c in checked if not c.usable]
    source_id: int | None
    if usable:
        stmt = insert(NewsSource).values(
            business_id=site.business_id,
            community_id=community_id,
            name=_source_name(site, checked),
            homepage_url=site.homepage,
            is_active=True,
        )
        source_id = (
            await session.execute(
                stmt.on_conflict_do_update(
                    index_elements=[NewsSource.business_id],
                    set_={
                        "name": stmt.excluded.name,
                        "homepage_url": stmt.excluded.homepage_url,
                        "is_active": True,
                        "updated_at": func.now(),
                    },
                ).returning(NewsSource.id)
            )
        ).scalar_one()
        methods = insert(CollectionMethod).values(
            [
                {
                    "news_source_id": source_id,
                    "method": c.method,
                    "url": c.url,
                    "is_active": True,
                    "item_count": c.item_count,
                    "last_checked_at": func.now(),
                }
                for c in usable
            ]
        )
        await session.execute(
            methods.on_conflict_do_update(
                index_elements=[
                    CollectionMethod.news_source_id,
                    CollectionMethod.method,
                    CollectionMethod.url,
                ],
                set_={
                    "is_active": True,
                    "item_count": methods.excluded.item_count,
                    "last_checked_at": func.now(),
                    "updated_at": func.now(),
                },
            )
        )
    else:
        source_id = await session.scalar(
            select(NewsSource.id).where(NewsSource.business_id == site.business_id)
        )
        if source_id is None:
            return False
    if failed_urls:
        # A feed that stopped working is switched off, not deleted: its history stays.
        await session.execute(
            update(CollectionMethod)
            .where(
                CollectionMethod.news_source_id == source_id,
                CollectionMethod.url.in_(failed_urls),
                CollectionMethod.is_active,
            )
            .values(is_active=False, last_checked_at=func.now(), updated_at=func.now())
        )
    active = await session.scalar(
        select(func.count()).where(
            CollectionMethod.news_source_id == source_id, CollectionMethod.is_active
        )
    )
    if not active:
        await session.execute(
            update(NewsSource)
            .where(NewsSource.id == source_id, NewsSource.is_active)
            .values(is_active=False, updated_at=func.now())
        )
    return bool(active)


async def news_counts(session: AsyncSession, community_id: int) -> dict[str, int]:
    """Active news sources and collection methods of the community's businesses."""
    sources, methods = (
        await session.execute(
            select(
                func.count(func.distinct(NewsSource.id)),
                func.count(CollectionMethod.id),
            )
            .select_from(NewsSource)
            .outerjoin(
                CollectionMethod,
                (CollectionMethod.news_source_id == NewsSource.id) & CollectionMethod.is_active,
            )
            .where(
                NewsSource.business_id.in_(community_business_ids(community_id)),
                NewsSource.is_active,
            )
        )
    ).one()
    return {"news_sources_created": int(sources), "collection_methods": int(methods)}


async def setup_news_sources(
    sessions: async_sessionmaker[AsyncSession],
    fetcher: WebFetcher,
    settings: PhaseSettings,
    *,
    community_id: int,
    progress: NewsProgress,
) -> NewsSummary:
    """Check every candidate of the community's scans above `progress.after_id`."""
    async with sessions() as session:
        sites = await load_candidates(
            session,
            community_id,
            after_id=progress.after_id,
            limit=settings.news_max_candidates_per_site,
        )
    progress.total = len(sites)
    summary = NewsSummary()
    if not sites:
        return summary
    watermark = Watermark([s.business_id for s in sites], progress.after_id)
    queue = iter(sites)

    async def worker() -> None:
        for site in queue:
            checked = [await check_candidate(fetcher, kind, url) for kind, url in site.checks]
            async with sessions.begin() as session:
                await save_source(session, community_id, site, checked)
            progress.after_id = watermark.done([site.business_id])
            progress.checked += 1
            summary.candidates_checked += len(checked)
            summary.methods_usable += sum(1 for c in checked if c.usable)
            for c in checked:
                if c.problem:
                    word = c.problem.split(":", 1)[0].split(" ", 1)[0]
                    summary.problems[word] = summary.problems.get(word, 0) + 1

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(settings.scan_max_concurrency, len(sites))):
                group.create_task(worker())
    except BaseExceptionGroup as group_error:
        raise group_error.exceptions[0] from None
    return summary
