"""Phase 2: SSRF guard, robots.txt, bounded fetching, discovery, feeds, and the activity.

Every server here is a SiteServer on 127.0.0.1 (or 127.0.0.2) and a free port. Private and
metadata URLs are only ever handed to the guard, which must refuse them before connecting:
a spy network backend proves that no connection was even attempted.
"""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import itertools
from collections.abc import AsyncIterator
from typing import Any

import httpcore
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import ActivityEnvironment

from activities.website_scan import WebsiteScanActivities
from rollout.db.models import CommunityRolloutPhase, WebsiteScan
from rollout.phase_settings import PhaseSettings
from rollout.phases.news_sources.feeds import (
    FeedError,
    parse_feed,
    parse_html_listing,
    parse_ical,
    sniff,
)
from rollout.phases.website_scan.errors import FetchError, ScanStatus
from rollout.phases.website_scan.fetcher import WebFetcher
from rollout.phases.website_scan.limits import HostLimiter
from rollout.phases.website_scan.links import discover
from rollout.phases.website_scan.robots import RobotsCache, RobotsRules
from rollout.phases.website_scan.scanner import scan_site
from rollout.phases.website_scan.ssrf import (
    AddressPolicy,
    BlockedAddressError,
    IPAddress,
    blocked_reason,
)
from tests.support.phase_fixtures import (
    SiteServer,
    add_business,
    atom,
    broken,
    drip,
    fetcher_for,
    garbage,
    homepage,
    huge,
    ical,
    page,
    redirect,
    rss,
    seed_rollout,
    slow,
)

UA_TOKEN = "StatewideRolloutBot"


def settings_for(*allow: str, **overrides: Any) -> PhaseSettings:
    values: dict[str, Any] = {
        "scan_allow_hosts": list(allow),
        "scan_timeout_s": 0.5,
        "scan_site_deadline_s": 4.0,
        "scan_max_bytes": 200_000,
        "scan_max_concurrency": 8,
        "scan_per_host_concurrency": 2,
        "phase_heartbeat_s": 0.2,
        "scan_max_crawl_delay_s": 0.0,
    }
    values.update(overrides)
    return PhaseSettings(**values)


class SpyBackend(httpcore.AsyncNetworkBackend):
    """Records every connection the guard lets through, then connects for real."""

    def __init__(self) -> None:
        self.connects: list[tuple[str, int]] = []
        self.real = httpcore.AnyIOBackend()

    async def connect_tcp(  # type: ignore[override]
        self, host: str, port: int, **kwargs: Any
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        assert ipaddress.ip_address(host).is_loopback, f"test tried to reach {host}"
        return await self.real.connect_tcp(host, port, **kwargs)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeResolver:
    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        self.asked.append(host)
        if host not in self.table:
            raise OSError("name not known")
        return [ipaddress.ip_address(a) for a in self.table[host]]


@pytest.fixture
async def server() -> AsyncIterator[SiteServer]:
    async with SiteServer() as srv:
        yield srv


# --------------------------------------------------------------------------------------
# SSRF guard
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "169.254.1.1",
        "100.64.0.1",
        "100.100.100.200",
        "168.63.129.16",
        "0.0.0.0",  # noqa: S104 - an address to refuse, not one to bind
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "2002:a00:1::",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "file:///etc/passwd",
        "http://user:pw@example.com/",
        "http://example.com:22/",
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://localhost/",
        "http://app.localhost/",
        "http://metadata.google.internal/computeMetadata/v1/",
    ],
)
def test_urls_refused_on_their_face(url: str) -> None:
    import httpx

    with pytest.raises(BlockedAddressError):
        AddressPolicy().check_url(httpx.URL(url))


async def test_dns_answers_are_vetted_and_one_bad_address_refuses_the_host() -> None:
    resolver = FakeResolver(
        {
            "evil.test": ["10.1.2.3"],
            "mixed.test": ["93.184.216.34", "127.0.0.1"],
            "public.test": ["93.184.216.34"],
            "meta.test": ["169.254.169.254"],
        }
    )
    policy = AddressPolicy(resolver=resolver)
    for host in ("evil.test", "mixed.test", "meta.test"):
        with pytest.raises(BlockedAddressError, match="resolves to"):
            await policy.vetted_addresses(host, 80)
    # Only vetted here, never connected to: no test sends traffic off this machine.
    assert await policy.vetted_addresses("public.test", 80) == [
        ipaddress.ip_address("93.184.216.34")
    ]
    with pytest.raises(httpcore.ConnectError):
        await policy.vetted_addresses("nowhere.test", 80)


async def test_an_allowed_network_excuses_only_its_own_addresses() -> None:
    resolver = FakeResolver(
        {
            "lab.test": ["10.9.0.5"],
            "half.test": ["10.9.0.5", "10.1.2.3"],
            "public-and-lab.test": ["93.184.216.34", "10.9.0.6"],
        }
    )
    policy = AddressPolicy(["10.9.0.0/16"], resolver=resolver)
    assert await policy.vetted_addresses("lab.test", 80) == [ipaddress.ip_address("10.9.0.5")]
    assert len(await policy.vetted_addresses("public-and-lab.test", 80)) == 2
    # One allowed address does not let the name's other, private, addresses through.
    with pytest.raises(BlockedAddressError, match=r"resolves to 10\.1\.2\.3"):
        await policy.vetted_addresses("half.test", 80)


def test_scan_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCAN_ALLOW_HOSTS", "127.0.0.1:8765, sim.local")
    monkeypatch.setenv("SCAN_FEED_PATHS", '["/feed", "/news/rss"]')
    monkeypatch.setenv("SCAN_PER_HOST_CONCURRENCY", "3")
    settings = PhaseSettings(_env_file=None)
    assert settings.scan_allow_hosts == ["127.0.0.1:8765", "sim.local"]
    assert settings.scan_feed_paths == ["/feed", "/news/rss"]
    assert settings.scan_per_host_concurrency == 3
    assert PhaseSettings(_env_file=None, scan_allow_hosts=[]).scan_allow_hosts == []
    monkeypatch.setenv("SCAN_FEED_PATHS", "feed")
    with pytest.raises(ValueError, match="must start with /"):
        PhaseSettings(_env_file=None)


def test_allow_list_entries() -> None:
    policy = AddressPolicy(["127.0.0.1:8080", "sim.local", "10.9.0.0/16", "[::1]:9000"])
    assert policy.host_allowed("127.0.0.1", 8080)
    assert not policy.host_allowed("127.0.0.1", 8081)
    assert policy.host_allowed("sim.local", 1234)
    assert policy.host_allowed("10.9.3.4", 80)
    assert policy.host_allowed("::1", 9000)
    assert not policy.host_allowed("10.8.0.1", 80)


async def test_private_targets_are_refused_before_any_connection(server: SiteServer) -> None:
    spy = SpyBackend()
    server.route("/to-private", redirect("http://10.0.0.1/admin"))
    server.route("/to-metadata", redirect("http://169.254.169.254/latest/meta-data/iam/"))
    server.route("/to-localhost", redirect(f"http://localhost:{server.port}/"))
    server.route("/to-mapped", redirect("http://[::ffff:7f00:1]/"))
    resolver = FakeResolver({"rebind.test": ["10.0.0.7"]})
    settings = settings_for(server.hostport)
    policy = AddressPolicy(settings.scan_allow_hosts, resolver=resolver)
    async with WebFetcher(settings, policy=policy, network_backend=spy) as fetcher:
        for url in (
            "http://10.0.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://192.168.0.1:8080/",
            "http://rebind.test/",
            f"http://127.0.0.1:{server.port + 1}/",  # loopback, but not the allowed port
            server.url("/to-private"),
            server.url("/to-metadata"),
            server.url("/to-localhost"),
            server.url("/to-mapped"),
        ):
            with pytest.raises(FetchError) as caught:
                await fetcher.fetch(url)
            assert caught.value.status is ScanStatus.BLOCKED, url
    # The only connections made were to the allow-listed server itself.
    assert {c for c in spy.connects} == {("127.0.0.1", server.port)}
    assert resolver.asked == ["rebind.test"]


async def test_loopback_server_needs_the_allow_list(server: SiteServer) -> None:
    server.route("/", page(homepage("Home")))
    async with fetcher_for(settings_for()) as fetcher:
        outcome = await scan_site(fetcher, server.url("/"))
    assert outcome.status is ScanStatus.BLOCKED
    assert server.requests == []


# --------------------------------------------------------------------------------------
# Fetching: redirects, timeouts, size cap, broken servers, robots.txt
# --------------------------------------------------------------------------------------


async def test_redirects_loops_and_limits(server: SiteServer) -> None:
    for i in range(1, 7):
        server.route(f"/r{i}", redirect(f"/r{i + 1}", 301))
    server.route("/r7", page(homepage("Seventh")))
    server.route("/loop-a", redirect("/loop-b"))
    server.route("/loop-b", redirect(server.url("/loop-a")))
    async with fetcher_for(settings_for(server.hostport)) as fetcher:
        ok = await fetcher.fetch(server.url("/r2"))  # exactly 5 redirects: allowed
        assert ok.status_code == 200
        assert ok.redirects == 5
        assert ok.final_url == server.url("/r7")
        with pytest.raises(FetchError) as too_many:
            await fetcher.fetch(server.url("/r1"))
        assert too_many.value.status is ScanStatus.TOO_MANY_REDIRECTS
        with pytest.raises(FetchError) as loop:
            await fetcher.fetch(server.url("/loop-a"))
        assert loop.value.status is ScanStatus.REDIRECT_LOOP
    assert server.hits("/r7") == 1  # the 6-redirect chain stopped before /r7


async def test_no_cookies_are_kept_or_sent(server: SiteServer) -> None:
    async def set_cookie(request: Any, writer: asyncio.StreamWriter) -> None:
        from tests.support.phase_fixtures import head

        writer.write(
            head(200, {"Set-Cookie": "session=abc; Path=/", "Content-Type": "text/html"}, 0)
        )

    server.route("/a", set_cookie)
    server.route("/b", page(homepage("B")))
    async with fetcher_for(settings_for(server.hostport)) as fetcher:
        await fetcher.fetch(server.url("/a"))
        await fetcher.fetch(server.url("/b"))
    assert all("cookie" not in r.headers for r in server.requests)


async def test_bad_servers(server: SiteServer) -> None:
    server.route("/slow", slow(3.0, page(homepage("Slow"))))
    server.route("/drip", drip(10_000, 0.05))
    server.route("/broken", broken())
    server.route("/garbage", garbage())
    server.route("/error", page("oops", 503))
    server.route("/huge", huge(40_000_000))
    bomb = gzip.compress(b"<html><head><title>Bomb</title></head>" + b"\0" * 30_000_000)

    async def gzip_bomb(request: Any, writer: asyncio.StreamWriter) -> None:
        from tests.support.phase_fixtures import head

        writer.write(
            head(200, {"Content-Type": "text/html", "Content-Encoding": "gzip"}, len(bomb)) + bomb
        )

    server.route("/bomb", gzip_bomb)
    async with fetcher_for(settings_for(server.hostport)) as fetcher:
        outcomes = await asyncio.gather(
            *(
                scan_site(fetcher, server.url(p), deadline_s=4.0)
                for p in ("/slow", "/drip", "/broken", "/garbage", "/error", "/huge", "/bomb")
            )
        )
    statuses = [o.status for o in outcomes]
    assert statuses == [
        ScanStatus.TIMEOUT,
        ScanStatus.TIMEOUT,  # each read is quick; the per-request deadline ends it
        ScanStatus.BROKEN,
        ScanStatus.BROKEN,
        ScanStatus.HTTP_ERROR,
        ScanStatus.TOO_LARGE,
        ScanStatus.TOO_LARGE,
    ]
    assert outcomes[4].http_status == 503
    assert outcomes[5].found["title"] == "Huge"  # the prefix was still searched
    assert outcomes[6].found["title"] == "Bomb"
    assert all(o.elapsed_s < 4.5 for o in outcomes)


async def test_robots_txt_is_honoured(server: SiteServer) -> None:
    async with SiteServer(host="127.0.0.2") as other, SiteServer() as third:
        server.route(
            "/robots.txt",
            page(f"User-agent: {UA_TOKEN}\nDisallow: /private\n", content_type="text/plain"),
        )
        server.route("/private/page", page(homepage("Private")))
        server.route("/public", page(homepage("Public")))
        other.route("/robots.txt", page("User-agent: *\nDisallow: /\n", content_type="text/plain"))
        other.route("/", page(homepage("Closed")))
        third.route("/robots.txt", page("down", 503))
        third.route("/", page(homepage("Unknown")))
        settings = settings_for(server.hostport, other.hostport, third.hostport)
        async with fetcher_for(settings) as fetcher:
            assert (await scan_site(fetcher, server.url("/public"))).status is ScanStatus.OK
            blocked = await scan_site(fetcher, server.url("/private/page"))
            assert blocked.status is ScanStatus.ROBOTS_DISALLOWED
            assert (await scan_site(fetcher, other.url("/"))).status is (
                ScanStatus.ROBOTS_DISALLOWED
            )
            # RFC 9309: a 5xx robots.txt means "assume everything is disallowed".
            assert (await scan_site(fetcher, third.url("/"))).status is (
                ScanStatus.ROBOTS_DISALLOWED
            )
            # robots.txt is fetched once per origin.
            await scan_site(fetcher, server.url("/public"))
        assert server.hits("/robots.txt") == 1
        assert server.hits("/private/page") == 0
        assert other.hits("/") == 0
        assert all(r.headers["user-agent"].startswith(UA_TOKEN) for r in server.requests)


async def test_per_host_and_global_limits_hold(server: SiteServer) -> None:
    async with SiteServer(host="127.0.0.2") as other:
        for srv in (server, other):
            srv.latency_s = 0.15
            srv.default = page(homepage("Site"))
        settings = settings_for(
            server.hostport,
            other.hostport,
            scan_max_concurrency=3,
            scan_per_host_concurrency=2,
            scan_feed_paths=[],
        )
        async with fetcher_for(settings) as fetcher:
            outcomes = await asyncio.gather(
                *(
                    scan_site(fetcher, s.url(f"/site-{i}"))
                    for i in range(10)
                    for s in (server, other)
                )
            )
            assert all(o.status is ScanStatus.OK for o in outcomes)
            assert fetcher.stats.peak_any_host <= 2
            assert fetcher.stats.peak_global <= 3
        # What the servers saw agrees with what the limiter let through.
        assert max(server.peak.values()) == 2
        assert max(other.peak.values()) <= 2
        assert max(server.peak.values()) + max(other.peak.values()) >= 3


async def test_robots_cache_loads_once_and_forgets_failures_sooner() -> None:
    loads: list[str] = []

    async def loader(origin: str) -> RobotsRules:
        loads.append(origin)
        await asyncio.sleep(0.01)
        if "down" in origin:
            raise FetchError(ScanStatus.TIMEOUT, "no answer")
        return RobotsRules(allow_all=True)

    cache = RobotsCache(loader, ttl_s=60, error_ttl_s=0.05)
    await asyncio.gather(*(cache.rules_for("http://up:80") for _ in range(5)))
    for _ in range(3):
        with pytest.raises(FetchError):
            await cache.rules_for("http://down:80")
    assert loads == ["http://up:80", "http://down:80"]
    await asyncio.sleep(0.06)
    await cache.rules_for("http://up:80")
    with pytest.raises(FetchError):
        await cache.rules_for("http://down:80")
    assert loads == ["http://up:80", "http://down:80", "http://down:80"]


async def test_crawl_delay_spaces_requests() -> None:
    limiter = HostLimiter(10, 10)
    starts: list[float] = []

    async def one() -> None:
        async with limiter.slot("h", crawl_delay=0.1):
            starts.append(asyncio.get_running_loop().time())

    await asyncio.gather(*(one() for _ in range(4)))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(gap >= 0.09 for gap in gaps)


# --------------------------------------------------------------------------------------
# Discovery and parsing
# --------------------------------------------------------------------------------------

HOMEPAGE = """<!doctype html><html><head><title> Joe's  Diner </title>
<base href="https://joes.example/">
<link rel="alternate" type="application/rss+xml" title="News" href="/feed.xml">
<link rel="alternate" type="application/atom+xml" href="https://joes.example/atom">
<link rel="stylesheet" href="/style.css">
<link rel="alternate" type="text/calendar" href="events.ics">
</head><body>
<a href="/blog/">Our Blog</a> <a href="/events">What's on</a> <a href="webcal://joes.example/cal.ics">Subscribe</a>
<a href="https://other.example/news">Elsewhere news</a> <a href="mailto:joe@example.com">Mail</a>
<a href="/press-releases">Press</a> <a href="/menu">Menu</a> <a href="/feed.xml">RSS</a>
</body></html>"""


def test_discovery_finds_feeds_calendars_and_pages() -> None:
    found = discover(HOMEPAGE, "https://www.joes.example/")
    assert found.title == "Joe's Diner"
    assert [(c.url, c.kind) for c in found.feeds] == [
        ("https://joes.example/feed.xml", "rss"),
        ("https://joes.example/atom", "atom"),
    ]
    assert [c.url for c in found.ical] == [
        "https://joes.example/events.ics",
        "https://joes.example/cal.ics",
    ]
    assert [c.url for c in found.event_pages] == ["https://joes.example/events"]
    assert [c.url for c in found.news_pages] == [
        "https://joes.example/blog/",
        "https://joes.example/press-releases",
    ]


def test_feed_parsing() -> None:
    parsed = parse_feed(rss("Joe's", "https://joes.example").encode(), "https://joes.example/f")
    assert (parsed.kind, parsed.title, parsed.item_count, parsed.problem) == (
        "rss",
        "Joe's",
        3,
        None,
    )
    parsed = parse_feed(atom("Blog", "https://b.example").encode(), "https://b.example/atom")
    assert (parsed.kind, parsed.item_count, parsed.items[0].link) == (
        "atom",
        2,
        "https://b.example/post-0",
    )
    rdf = (
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
        'xmlns="http://purl.org/rss/1.0/"><channel><title>R</title><link>https://r.example/'
        "</link></channel><item><title>A</title><link>https://r.example/a</link></item></rdf:RDF>"
    )
    assert parse_feed(rdf.encode(), "https://r.example/").problem is None
    empty = parse_feed(rss("Empty", "https://e.example", items=0).encode(), "https://e.example")
    assert empty.problem == "no items"
    with pytest.raises(FeedError):
        parse_feed(b"<html><body>not a feed</body></html>", "https://x.example")
    with pytest.raises(FeedError):
        parse_feed(b"<rss><channel>", "https://x.example")
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><rss><channel><title>&lol2;</title>'
        b"</channel></rss>"
    )
    with pytest.raises(FeedError):
        parse_feed(bomb, "https://x.example")


def test_ical_and_html_listing_parsing() -> None:
    cal = parse_ical(ical("Town events").encode(), "https://t.example/cal.ics")
    assert (cal.title, cal.item_count, cal.link, cal.problem) == (
        "Town events",
        2,
        "https://t.example/cal.ics",
        None,
    )
    folded = (
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:Long\r\n  name\r\nEND:VEVENT\r\nEND:VCALENDAR"
    )
    assert parse_ical(folded.encode(), "https://t.example/c.ics").items[0].title == "Long name"
    with pytest.raises(FeedError):
        parse_ical(b"<html></html>", "https://t.example/c.ics")
    listing = parse_html_listing(
        "<html><head><title>News</title></head><body><article><h2><a href='/n/1'>First</a>"
        "</h2></article><h3><a href='/n/2'>Second</a></h3><a href='/about'>About</a></body>",
        "https://t.example/news",
    )
    assert [i.link for i in listing.items] == ["https://t.example/n/1", "https://t.example/n/2"]
    assert sniff(b"\xef\xbb\xbf<?xml version='1.0'?><rss>") == "rss"
    assert sniff(b"BEGIN:VCALENDAR") == "ical"


# --------------------------------------------------------------------------------------
# The phase 2 activity on real Postgres
# --------------------------------------------------------------------------------------


def _publishing_site(server: SiteServer, slug: str) -> str:
    base = f"/sites/{slug}"
    server.route(
        f"{base}/",
        page(
            homepage(
                slug,
                f'<link rel="alternate" type="application/rss+xml" href="{base}/feed.xml">',
                f'<a href="{base}/events.ics">Calendar</a><a href="{base}/news">News</a>',
            )
        ),
    )
    server.route(f"{base}/feed.xml", page(rss(slug, server.url(base)), 200, "application/rss+xml"))
    server.route(f"{base}/events.ics", page(ical(slug), 200, "text/calendar"))
    return server.url(f"{base}/")


def bad_sites(server: SiteServer, other: SiteServer) -> dict[str, tuple[str, ScanStatus]]:
    """Name -> (website, expected status), one per bad case of the issue. `other` is a
    second origin whose only feed is at /feed, found by probing."""
    other.route("/", page(homepage("Probe")))
    other.route("/feed", page(atom("Probe", other.url("/")), 200, "text/xml"))
    server.route("/sites/plain/", page(homepage("Plain")))
    server.route("/sites/slow/", slow(5.0, page(homepage("Slow"))))
    server.route("/sites/broken/", broken())
    server.route("/sites/loop/", redirect("/sites/loop2/"))
    server.route("/sites/loop2/", redirect("/sites/loop/"))
    server.route("/sites/huge/", huge(30_000_000))
    server.route("/sites/to-private/", redirect("http://10.10.10.10/"))
    server.route("/sites/gone/", page("gone", 410))
    return {
        "feeds": (_publishing_site(server, "feeds"), ScanStatus.OK),
        "probe": (other.url("/"), ScanStatus.OK),
        "plain": (server.url("/sites/plain/"), ScanStatus.OK),
        "slow": (server.url("/sites/slow/"), ScanStatus.TIMEOUT),
        "broken": (server.url("/sites/broken/"), ScanStatus.BROKEN),
        "loop": (server.url("/sites/loop/"), ScanStatus.REDIRECT_LOOP),
        "huge": (server.url("/sites/huge/"), ScanStatus.TOO_LARGE),
        "private": ("http://192.168.1.20/", ScanStatus.BLOCKED),
        "metadata": ("http://169.254.169.254/latest/meta-data/", ScanStatus.BLOCKED),
        "to-private": (server.url("/sites/to-private/"), ScanStatus.BLOCKED),
        "gone": (server.url("/sites/gone/"), ScanStatus.HTTP_ERROR),
        "bad-url": ("http://exa mple.com/", ScanStatus.INVALID_URL),
    }


async def _phase_rows(engine: AsyncEngine, cr_id: int) -> list[tuple[int, str, int]]:
    from sqlalchemy.ext.asyncio import AsyncSession

    async with AsyncSession(engine) as session:
        rows = await session.execute(
            select(
                CommunityRolloutPhase.phase,
                CommunityRolloutPhase.status,
                CommunityRolloutPhase.attempts,
            ).where(CommunityRolloutPhase.community_rollout_id == cr_id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_phase2_scans_every_case_and_is_idempotent(
    engine: AsyncEngine, server: SiteServer
) -> None:
    seeded = await seed_rollout(engine)
    other = await SiteServer(host="127.0.0.2").__aenter__()
    sites = bad_sites(server, other)
    ids = {
        name: await add_business(seeded, f"place-{name}", name.title(), website=url)
        for name, (url, _) in sites.items()
    }
    await add_business(seeded, "place-nosite", "No Site", website=None)
    settings = settings_for(server.hostport, other.hostport, scan_site_deadline_s=3.0)
    acts = WebsiteScanActivities(seeded.sessions, settings, fetcher_for(settings))
    env = ActivityEnvironment()
    beats: list[tuple[Any, ...]] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    try:
        first = await env.run(acts.scan_websites, seeded.phase_input())
        requests_after_first = len(server.requests)
        first_beats = list(beats)
        second = await env.run(acts.scan_websites, seeded.phase_input())
    finally:
        await acts.aclose()
        await other.__aexit__(None, None, None)

    assert first.counts == second.counts
    assert first.counts["websites_scanned"] == len(sites)
    assert first.counts["websites_blocked"] == 3
    assert first.counts["websites_publishing"] == 2  # "feeds" and the probed feed of "probe"
    assert len(server.requests) == requests_after_first  # the second run fetched nothing
    # The last heartbeat of the first run covers every business: a retry would skip them all.
    assert first_beats[-1][0]["after_id"] == max(ids.values())

    async with seeded.sessions() as session:
        scans = {s.business_id: s for s in (await session.scalars(select(WebsiteScan))).all()}
    assert len(scans) == len(sites)
    for name, (_, expected) in sites.items():
        assert scans[ids[name]].status == expected.value, (name, scans[ids[name]].error)
    feeds = scans[ids["feeds"]].found
    assert [f["url"] for f in feeds["feeds"]] == [server.url("/sites/feeds/feed.xml")]
    assert [c["url"] for c in feeds["ical"]] == [server.url("/sites/feeds/events.ics")]
    assert [p["url"] for p in feeds["news_pages"]] == [server.url("/sites/feeds/news")]
    assert scans[ids["probe"]].found["feeds"][0]["via"] == "probe"
    assert scans[ids["to-private"]].final_url == "http://10.10.10.10/"  # where it pointed
    assert "10.10.10.10" in (scans[ids["to-private"]].error or "")
    assert await _phase_rows(engine, seeded.community_rollout_id) == [(2, "completed", 2)]


async def test_phase2_resumes_from_heartbeat_details(
    engine: AsyncEngine, server: SiteServer
) -> None:
    seeded = await seed_rollout(engine)
    server.default = page(homepage("Site"))
    ids = [
        await add_business(seeded, f"p{i}", f"Shop {i}", website=server.url(f"/shop-{i}/"))
        for i in range(6)
    ]
    settings = settings_for(server.hostport, scan_feed_paths=[])
    acts = WebsiteScanActivities(seeded.sessions, settings, fetcher_for(settings))
    env = ActivityEnvironment()
    # A retry: the previous attempt's last heartbeat said the first three were done.
    import dataclasses

    env.info = dataclasses.replace(
        env.info, attempt=2, heartbeat_details=[{"after_id": ids[2], "scanned": 3, "total": 6}]
    )
    try:
        result = await env.run(acts.scan_websites, seeded.phase_input())
    finally:
        await acts.aclose()
    fetched = sorted(r.path for r in server.requests if r.path.startswith("/shop-"))
    assert fetched == ["/shop-3/", "/shop-4/", "/shop-5/"]
    assert result.counts["websites_scanned"] == 3
