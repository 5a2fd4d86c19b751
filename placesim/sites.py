"""Business websites hosted by the emulator, for the website-scanning phase.

A business with a website gets one `SiteKind`, drawn from SITE_KIND_SHARES; the kind decides
what its site serves under /sites/<slug>/ and is in the ground truth (/sim/world), together
with what a polite, SSRF-safe scanner should find there (`site_truth`).

Good sites publish nothing (plain), an RSS 2.0 or Atom feed, an iCal event feed, a news or blog
page, or all of them. Bad ones are slow, broken (500, connection reset, invalid HTML), redirect
through a chain or in a loop, are huge, redirect to a private address, or list a private
address as their website. The emulator never contacts a private address: they only appear in
Location headers and websiteUri values.

All sites share the emulator's host, so the host's /robots.txt disallows every site whose slug
starts with "nobots-" (the robots_disallow kind); each site also answers
/sites/<slug>/robots.txt with its own rules.
"""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from placesim.world import Business


class SiteKind(StrEnum):
    PLAIN = "plain"
    RSS = "rss"
    ATOM = "atom"
    ICAL = "ical"
    NEWS = "news"
    BLOG = "blog"
    FULL = "full"  # RSS + iCal + news page
    ROBOTS_DISALLOW = "robots_disallow"  # has an RSS feed, but robots.txt forbids crawling
    SLOW = "slow"  # has an RSS feed, every response takes `site_slow_s`
    BROKEN_500 = "broken_500"
    BROKEN_RESET = "broken_reset"  # connection reset, no response
    INVALID_HTML = "invalid_html"
    REDIRECT_CHAIN = "redirect_chain"  # 3 redirects, then a home page with an RSS feed
    REDIRECT_LOOP = "redirect_loop"
    HUGE = "huge"  # a home page of HUGE_PAGE_BYTES, nothing to find
    REDIRECT_PRIVATE = "redirect_private"  # 302 to a private/metadata address
    PRIVATE_URI = "private_uri"  # websiteUri itself is a private address


# Shares among businesses that have a website (they sum to 1).
SITE_KIND_SHARES: tuple[tuple[SiteKind, float], ...] = (
    (SiteKind.PLAIN, 0.40),
    (SiteKind.RSS, 0.12),
    (SiteKind.ATOM, 0.05),
    (SiteKind.ICAL, 0.05),
    (SiteKind.NEWS, 0.08),
    (SiteKind.BLOG, 0.04),
    (SiteKind.FULL, 0.04),
    (SiteKind.ROBOTS_DISALLOW, 0.04),
    (SiteKind.SLOW, 0.03),
    (SiteKind.BROKEN_500, 0.02),
    (SiteKind.BROKEN_RESET, 0.02),
    (SiteKind.INVALID_HTML, 0.02),
    (SiteKind.REDIRECT_CHAIN, 0.03),
    (SiteKind.REDIRECT_LOOP, 0.01),
    (SiteKind.HUGE, 0.01),
    (SiteKind.REDIRECT_PRIVATE, 0.02),
    (SiteKind.PRIVATE_URI, 0.02),
)

# Private, link-local and metadata addresses: targets a scanner must refuse (SSRF).
PRIVATE_WEBSITES = (
    "http://192.168.1.20/",
    "http://10.0.0.1/",
    "http://172.16.5.4:8080/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd12:3456:789a::1]/",
)
PRIVATE_REDIRECTS = ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/admin")

HUGE_PAGE_BYTES = 5 * 1024 * 1024
FEED_ITEMS = 5
ROBOTS_TXT = "User-agent: *\nDisallow: /sites/nobots-\nDisallow: /sim/\nDisallow: /v1/\n"


def choose_site_kind(u: float) -> SiteKind:
    """The kind for a uniform draw u in [0, 1)."""
    total = 0.0
    for kind, share in SITE_KIND_SHARES:
        total += share
        if u < total:
            return kind
    return SITE_KIND_SHARES[-1][0]


def private_website(u: float) -> str:
    return PRIVATE_WEBSITES[int(u * len(PRIVATE_WEBSITES)) % len(PRIVATE_WEBSITES)]


_RSS_KINDS = {SiteKind.RSS, SiteKind.FULL, SiteKind.ROBOTS_DISALLOW, SiteKind.SLOW}


def site_truth(business: Business, base_url: str) -> dict[str, Any] | None:
    """What the business's site holds, for the ground truth: its kind and URLs of the feeds,
    event calendars and news pages a scanner should discover."""
    kind = business.site_kind
    if kind is None:
        return None
    site: dict[str, Any] = {
        "kind": kind.value,
        "url": business.website_uri(base_url),
        "robots_disallowed": kind is SiteKind.ROBOTS_DISALLOW,
        "feeds": [],
        "calendars": [],
        "news_pages": [],
    }
    if business.slug is None:
        return site
    root = f"{base_url}/sites/{business.slug}"
    if kind in _RSS_KINDS or kind is SiteKind.REDIRECT_CHAIN:
        site["feeds"].append({"type": "rss", "url": f"{root}/feed.xml"})
    if kind is SiteKind.ATOM:
        site["feeds"].append({"type": "atom", "url": f"{root}/atom.xml"})
    if kind in (SiteKind.ICAL, SiteKind.FULL):
        site["calendars"].append({"type": "ical", "url": f"{root}/events.ics"})
    if kind in (SiteKind.NEWS, SiteKind.FULL):
        site["news_pages"].append(f"{root}/news")
    if kind is SiteKind.BLOG:
        site["news_pages"].append(f"{root}/blog")
    if kind is SiteKind.REDIRECT_PRIVATE:
        site["redirect_to"] = _private_redirect(business)
    return site


def _private_redirect(business: Business) -> str:
    return PRIVATE_REDIRECTS[business.index % len(PRIVATE_REDIRECTS)]


# --------------------------------------------------------------------------------------
# Serving
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SitePage:
    """What to answer for a site request; `reset` aborts the connection instead."""

    status: int
    content_type: str = "text/html; charset=utf-8"
    body: bytes = b""
    location: str | None = None
    delay_s: float = 0.0
    reset: bool = False


def _html(title: str, body: str, head: str = "") -> bytes:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n{head}</head>\n<body>\n{body}\n</body>\n</html>\n"
    ).encode()


def _item_dates(count: int, today: dt.date) -> list[dt.datetime]:
    return [
        dt.datetime.combine(today - dt.timedelta(days=3 + 9 * i), dt.time(9, 30), dt.UTC)
        for i in range(count)
    ]


class SiteRenderer:
    """Renders one business's site. `root` is the absolute URL of /sites/<slug>."""

    def __init__(self, business: Business, root: str, today: dt.date) -> None:
        self.b = business
        self.root = root
        self.today = today
        self.kind = business.site_kind

    def page(self, subpath: str, *, slow_s: float) -> SitePage:
        kind = self.kind
        if kind is SiteKind.BROKEN_RESET:
            return SitePage(0, reset=True)
        if kind is SiteKind.BROKEN_500:
            return SitePage(500, body=_html("Error", "<h1>500 Internal Server Error</h1>"))
        if kind is SiteKind.REDIRECT_PRIVATE and subpath == "":
            return SitePage(302, location=_private_redirect(self.b))
        if kind is SiteKind.REDIRECT_LOOP and subpath in ("", "loop/a", "loop/b"):
            target = "loop/b" if subpath == "loop/a" else "loop/a"
            return SitePage(302, location=f"{self.root}/{target}")
        if kind is SiteKind.REDIRECT_CHAIN:
            chain = {"": (301, f"{self.root}/r/1"), "r/1": (302, "2"), "r/2": (307, "3")}
            if subpath in chain:
                status, location = chain[subpath]
                return SitePage(status, location=location)  # relative hops are valid too
            if subpath == "r/3":
                return SitePage(308, location=f"{self.root}/home")
        page = self._content(subpath)
        if kind is SiteKind.SLOW:
            return SitePage(
                page.status, page.content_type, page.body, page.location, delay_s=slow_s
            )
        return page

    def _content(self, subpath: str) -> SitePage:
        kind = self.kind
        home = "home" if kind is SiteKind.REDIRECT_CHAIN else ""
        if subpath == home:
            return self._home()
        if subpath == "robots.txt":
            rules = "Disallow: /" if kind is SiteKind.ROBOTS_DISALLOW else "Allow: /"
            return SitePage(200, "text/plain; charset=utf-8", f"User-agent: *\n{rules}\n".encode())
        if subpath in ("about", "contact"):
            return SitePage(200, body=_html(f"{subpath.title()} - {self.b.name}", self._contact()))
        feeds = kind in _RSS_KINDS or kind is SiteKind.REDIRECT_CHAIN
        if subpath == "feed.xml" and feeds:
            return SitePage(200, "application/rss+xml; charset=utf-8", self._rss())
        if subpath == "atom.xml" and kind is SiteKind.ATOM:
            return SitePage(200, "application/atom+xml; charset=utf-8", self._atom())
        if kind in (SiteKind.ICAL, SiteKind.FULL):
            if subpath == "events.ics":
                return SitePage(200, "text/calendar; charset=utf-8", self._ical())
            if subpath == "events":
                return SitePage(200, body=self._events_page())
        news = {SiteKind.NEWS: "news", SiteKind.FULL: "news", SiteKind.BLOG: "blog"}
        if kind in news and subpath == news[kind]:
            return SitePage(200, body=self._news_page(news[kind]))
        if kind in news and subpath.startswith(f"{news[kind]}/"):
            return SitePage(200, body=_html(self.b.name, f"<article><p>{subpath}</p></article>"))
        return SitePage(404, body=_html("Not found", "<h1>404 Not Found</h1>"))

    # -- pages ---------------------------------------------------------------------------

    def _home(self) -> SitePage:
        kind = self.kind
        name = html.escape(self.b.name)
        head = ""
        nav = [
            f'<a href="{self.root}/about">About</a>',
            f'<a href="{self.root}/contact">Contact</a>',
        ]
        if kind in _RSS_KINDS or kind is SiteKind.REDIRECT_CHAIN:
            head += (
                '<link rel="alternate" type="application/rss+xml" '
                f'title="{name} news" href="{self.root}/feed.xml">\n'
            )
        if kind is SiteKind.ATOM:
            head += (
                '<link rel="alternate" type="application/atom+xml" '
                f'title="{name} updates" href="{self.root}/atom.xml">\n'
            )
        if kind in (SiteKind.ICAL, SiteKind.FULL):
            head += (
                '<link rel="alternate" type="text/calendar" '
                f'title="{name} events" href="{self.root}/events.ics">\n'
            )
            nav.append(f'<a href="{self.root}/events">Events</a>')
        if kind in (SiteKind.NEWS, SiteKind.FULL):
            nav.append(f'<a href="{self.root}/news">News</a>')
        if kind is SiteKind.BLOG:
            nav.append(f'<a href="{self.root}/blog">Blog</a>')
        if kind is SiteKind.INVALID_HTML:
            garbage = (
                b"<html><head><title>" + self.b.name.encode() + b"<body><div><p>Welcome<<>>"
                b"<table><tr><td>\xff\xfe\x00broken</span></div></p></html"
            )
            return SitePage(200, body=garbage)
        body = (
            f"<header><h1>{name}</h1><nav>{' | '.join(nav)}</nav></header>\n"
            f"<main><p>Welcome to {name}, serving {html.escape(self.b.locality)} "
            f"since {1950 + self.b.index % 70}.</p>\n{self._contact()}</main>"
        )
        page = _html(self.b.name, body, head)
        if kind is SiteKind.HUGE:
            filler = b"<p>" + b"Lorem ipsum dolor sit amet. " * 36 + b"</p>\n"
            repeats = HUGE_PAGE_BYTES // len(filler) + 1
            page = page.replace(b"</main>", filler * repeats + b"</main>")
        return SitePage(200, body=page)

    def _contact(self) -> str:
        b = self.b
        return (
            f"<address>{html.escape(b.street_address)}, {html.escape(b.locality)}, "
            f"{b.state_code} {b.postal_code}<br>Phone: {b.national_phone}</address>"
        )

    def _rss(self) -> bytes:
        items = "".join(
            f"<item><title>{html.escape(self.b.name)} update {i + 1}</title>"
            f"<link>{self.root}/news/{i + 1}</link><guid>{self.root}/news/{i + 1}</guid>"
            f"<pubDate>{when.strftime('%a, %d %b %Y %H:%M:%S +0000')}</pubDate>"
            f"<description>News item {i + 1} from {html.escape(self.b.name)}.</description></item>"
            for i, when in enumerate(_item_dates(FEED_ITEMS, self.today))
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
            f"<title>{html.escape(self.b.name)}</title><link>{self.root}/</link>"
            f"<description>News from {html.escape(self.b.name)}</description>{items}"
            "</channel></rss>\n"
        ).encode()

    def _atom(self) -> bytes:
        dates = _item_dates(FEED_ITEMS, self.today)
        entries = "".join(
            f"<entry><title>{html.escape(self.b.name)} update {i + 1}</title>"
            f'<link href="{self.root}/news/{i + 1}"/><id>{self.root}/news/{i + 1}</id>'
            f"<updated>{when.strftime('%Y-%m-%dT%H:%M:%SZ')}</updated>"
            f"<summary>Update {i + 1}.</summary></entry>"
            for i, when in enumerate(dates)
        )
        return (
            '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
            f"<title>{html.escape(self.b.name)}</title><id>{self.root}/</id>"
            f'<link href="{self.root}/"/><updated>{dates[0].strftime("%Y-%m-%dT%H:%M:%SZ")}'
            f"</updated>{entries}</feed>\n"
        ).encode()

    def _ical(self) -> bytes:
        lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//placesim//events//EN"]
        for i in range(3):
            start = dt.datetime.combine(self.today + dt.timedelta(days=7 * (i + 1)), dt.time(18))
            lines += [
                "BEGIN:VEVENT",
                f"UID:{self.b.place_id}-{i}@placesim",
                f"DTSTAMP:{self.today.strftime('%Y%m%d')}T000000Z",
                f"DTSTART:{start.strftime('%Y%m%dT%H%M%S')}",
                f"DTEND:{(start + dt.timedelta(hours=2)).strftime('%Y%m%dT%H%M%S')}",
                f"SUMMARY:{self.b.name} event {i + 1}",
                f"LOCATION:{self.b.street_address}\\, {self.b.locality}",
                "END:VEVENT",
            ]
        lines.append("END:VCALENDAR")
        return ("\r\n".join(lines) + "\r\n").encode()

    def _events_page(self) -> bytes:
        head = f'<link rel="alternate" type="text/calendar" href="{self.root}/events.ics">\n'
        body = (
            f"<h1>Events at {html.escape(self.b.name)}</h1>"
            f'<p><a href="{self.root}/events.ics">Subscribe (iCal)</a></p>'
        )
        return _html(f"Events - {self.b.name}", body, head)

    def _news_page(self, section: str) -> bytes:
        articles = "".join(
            f'<article><h2><a href="{self.root}/{section}/{i + 1}">Update {i + 1}</a></h2>'
            f'<time datetime="{when.date().isoformat()}">{when.date().isoformat()}</time>'
            f"<p>News from {html.escape(self.b.name)}.</p></article>\n"
            for i, when in enumerate(_item_dates(FEED_ITEMS, self.today))
        )
        return _html(f"{section.title()} - {self.b.name}", f"<h1>{section.title()}</h1>{articles}")
