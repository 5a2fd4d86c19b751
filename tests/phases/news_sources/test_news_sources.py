"""Phase 3 (news sources) on real Postgres, against local sites and the emulator's sites.

The emulator test also runs phase 2 on one business of every site kind the emulator hosts,
good and bad, and checks both phases against its ground truth (/sim/world).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import ActivityEnvironment

from activities.news_sources import NewsSourceActivities
from activities.website_scan import WebsiteScanActivities
from rollout.db.models import (
    CollectionMethod,
    CommunityRollout,
    CommunityRolloutPhase,
    NewsSource,
    WebsiteScan,
)
from rollout.phase_settings import PhaseSettings
from rollout.phases.website_scan.errors import ScanStatus
from rollout.phases.website_scan.fetcher import WebFetcher
from tests.support.phase_fixtures import (
    Seeded,
    SiteServer,
    add_business,
    atom,
    fetcher_for,
    homepage,
    ical,
    page,
    rss,
    seed_rollout,
)

if TYPE_CHECKING:
    from tests.support.places_fixtures import Sim

pytest_plugins = ["tests.support.places_fixtures"]


def settings_for(*allow: str, **overrides: Any) -> PhaseSettings:
    values: dict[str, Any] = {
        "scan_allow_hosts": list(allow),
        "scan_timeout_s": 1.0,
        "scan_site_deadline_s": 4.0,
        "scan_max_bytes": 1_000_000,
        "scan_max_concurrency": 8,
        "scan_per_host_concurrency": 4,
        "phase_heartbeat_s": 0.2,
    }
    values.update(overrides)
    return PhaseSettings(**values)


class Phases:
    """Phases 2 and 3 sharing one fetcher, as a worker runs them."""

    def __init__(self, seeded: Seeded, settings: PhaseSettings) -> None:
        self.seeded = seeded
        self.fetcher: WebFetcher = fetcher_for(settings)
        self.scan = WebsiteScanActivities(seeded.sessions, settings, self.fetcher)
        self.news = NewsSourceActivities(seeded.sessions, settings, self.fetcher)
        self.env = ActivityEnvironment()

    async def run_scan(self) -> dict[str, int]:
        return (await self.env.run(self.scan.scan_websites, self.seeded.phase_input())).counts

    async def run_news(self) -> dict[str, int]:
        return (await self.env.run(self.news.setup_news_sources, self.seeded.phase_input())).counts


@pytest.fixture
async def server() -> AsyncIterator[SiteServer]:
    async with SiteServer() as srv:
        yield srv


async def _sources(seeded: Seeded) -> dict[int, tuple[bool, set[tuple[str, str, bool]]]]:
    """business id -> (source active, {(method, url, active)})."""
    async with seeded.sessions() as session:
        rows = await session.execute(
            select(
                NewsSource.business_id,
                NewsSource.is_active,
                CollectionMethod.method,
                CollectionMethod.url,
                CollectionMethod.is_active,
            ).join(CollectionMethod, CollectionMethod.news_source_id == NewsSource.id)
        )
        out: dict[int, tuple[bool, set[tuple[str, str, bool]]]] = {}
        for business_id, active, method, url, method_active in rows:
            assert business_id is not None
            out.setdefault(business_id, (active, set()))[1].add((method, url, method_active))
        return out


async def _community_count(seeded: Seeded) -> int:
    async with seeded.sessions() as session:
        cr = await session.get(CommunityRollout, seeded.community_rollout_id)
        assert cr is not None
        return cr.news_sources_created


async def test_phase3_builds_sources_once_and_deactivates_dead_feeds(
    engine: AsyncEngine, server: SiteServer
) -> None:
    seeded = await seed_rollout(engine)
    u = server.url

    def site(slug: str, head_links: str, body_links: str = "") -> str:
        server.route(f"/{slug}/", page(homepage(slug.title(), head_links, body_links)))
        return u(f"/{slug}/")

    full = site(
        "full",
        f'<link rel="alternate" type="application/rss+xml" href="{u("/full/feed.xml")}">',
        '<a href="/full/events.ics">Calendar</a><a href="/full/news">News</a>',
    )
    server.route("/full/feed.xml", page(rss("Full", u("/full/")), 200, "application/rss+xml"))
    server.route("/full/events.ics", page(ical("Full events"), 200, "text/calendar"))
    server.route(
        "/full/news",
        page(
            "<html><head><title>News</title></head><body>"
            "<article><h2><a href='/full/news/1'>Opening</a></h2></article></body></html>"
        ),
    )
    blog = site("blog", '<link rel="alternate" type="application/atom+xml" href="atom">')
    server.route("/blog/atom", page(atom("Blog", u("/blog/")), 200, "application/atom+xml"))
    empty = site("empty", '<link rel="alternate" type="application/rss+xml" href="feed">')
    server.route("/empty/feed", page(rss("Empty", u("/empty/"), items=0), 200, "text/xml"))
    bad = site("bad", '<link rel="alternate" type="application/rss+xml" href="feed">')
    server.route("/bad/feed", page("<rss><channel><title>oops", 200, "text/xml"))
    gone = site("gone", '<link rel="alternate" type="application/rss+xml" href="feed">')

    ids = {
        name: await add_business(seeded, f"p-{name}", name.title(), website=url)
        for name, url in {
            "full": full,
            "blog": blog,
            "empty": empty,
            "bad": bad,
            "gone": gone,
        }.items()
    }
    phases = Phases(seeded, settings_for(server.hostport, scan_feed_paths=[]))
    try:
        await phases.run_scan()
        first = await phases.run_news()
        second = await phases.run_news()
        assert first == second
        assert first["news_sources_created"] == 2
        assert first["collection_methods"] == 4
        assert await _community_count(seeded) == 2
        sources = await _sources(seeded)
        assert set(sources) == {ids["full"], ids["blog"]}
        assert sources[ids["full"]] == (
            True,
            {
                ("rss", u("/full/feed.xml"), True),
                ("ical", u("/full/events.ics"), True),
                ("html", u("/full/news"), True),
            },
        )
        assert sources[ids["blog"]] == (True, {("atom", u("/blog/atom"), True)})

        # The blog's feed dies: its method and source are switched off, never deleted,
        # and the community's count follows exactly.
        server.route("/blog/atom", page("gone", 410))
        third = await phases.run_news()
        assert third["news_sources_created"] == 1
        assert await _community_count(seeded) == 1
        assert (await _sources(seeded))[ids["blog"]] == (
            False,
            {("atom", u("/blog/atom"), False)},
        )
    finally:
        await phases.fetcher.aclose()
    async with seeded.sessions() as session:
        phase_rows = (
            await session.execute(select(CommunityRolloutPhase.phase, CommunityRolloutPhase.status))
        ).all()
    assert sorted(tuple(r) for r in phase_rows) == [(2, "completed"), (3, "completed")]


# --------------------------------------------------------------------------------------
# Phases 2 and 3 on the emulator's hosted sites
# --------------------------------------------------------------------------------------

EXPECTED_STATUS = {
    "plain": ScanStatus.OK,
    "rss": ScanStatus.OK,
    "atom": ScanStatus.OK,
    "ical": ScanStatus.OK,
    "news": ScanStatus.OK,
    "blog": ScanStatus.OK,
    "full": ScanStatus.OK,
    "invalid_html": ScanStatus.OK,
    "redirect_chain": ScanStatus.OK,
    "robots_disallow": ScanStatus.ROBOTS_DISALLOWED,
    "slow": ScanStatus.TIMEOUT,
    "broken_500": ScanStatus.HTTP_ERROR,
    "broken_reset": ScanStatus.BROKEN,
    "redirect_loop": ScanStatus.REDIRECT_LOOP,
    "huge": ScanStatus.TOO_LARGE,
    "redirect_private": ScanStatus.BLOCKED,
    "private_uri": ScanStatus.BLOCKED,
}


async def test_phases_2_and_3_on_emulator_sites_match_the_ground_truth(
    engine: AsyncEngine, sim: Sim
) -> None:
    seeded = await seed_rollout(engine)
    sim.configure(site_slow_s=5.0)
    truth = sim.community(seeded.community_id)["businesses"]
    one_per_kind: dict[str, dict[str, Any]] = {}
    for business in truth:
        kind = business["site_kind"]
        if kind is not None and kind not in one_per_kind:
            one_per_kind[kind] = business
    assert set(one_per_kind) == set(EXPECTED_STATUS), "the emulator has a new site kind"
    ids = {
        kind: await add_business(seeded, b["place_id"], b["name"], website=b["website_uri"])
        for kind, b in one_per_kind.items()
    }
    sim_host = sim.base_url.removeprefix("http://")
    phases = Phases(seeded, settings_for(sim_host))
    try:
        scan_counts = [await phases.run_scan(), await phases.run_scan()]
        news_counts = [await phases.run_news(), await phases.run_news()]
    finally:
        await phases.fetcher.aclose()
    assert scan_counts[0] == scan_counts[1]
    assert news_counts[0] == news_counts[1]

    async with seeded.sessions() as session:
        scans = {s.business_id: s for s in (await session.scalars(select(WebsiteScan))).all()}
    for kind, expected in EXPECTED_STATUS.items():
        scan = scans[ids[kind]]
        assert scan.status == expected.value, (kind, scan.error)
        site = one_per_kind[kind]["site"]
        if expected is ScanStatus.OK:
            found_feeds = {f["url"] for f in scan.found["feeds"]}
            assert {f["url"] for f in site["feeds"]} <= found_feeds, kind
            assert {c["url"] for c in site["calendars"]} <= {c["url"] for c in scan.found["ical"]}
            assert set(site["news_pages"]) <= {p["url"] for p in scan.found["news_pages"]}, kind

    # Every feed, calendar and news page of the ground truth became a collection method of
    # a reachable site, and nothing else did.
    expected_methods: dict[int, set[tuple[str, str]]] = {}
    for kind, business in one_per_kind.items():
        site = business["site"]
        if EXPECTED_STATUS[kind] is not ScanStatus.OK:
            continue
        methods = {(f["type"], f["url"]) for f in site["feeds"]}
        methods |= {("ical", c["url"]) for c in site["calendars"]}
        methods |= {("html", url) for url in site["news_pages"]}
        if methods:
            expected_methods[ids[kind]] = methods
    sources = await _sources(seeded)
    assert {b: {(m, u) for m, u, _ in methods} for b, (_, methods) in sources.items()} == (
        expected_methods
    )
    assert news_counts[0]["news_sources_created"] == len(expected_methods)
    assert await _community_count(seeded) == len(expected_methods)
