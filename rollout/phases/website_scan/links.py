"""Find what a business homepage publishes: feeds, calendars, event pages, news pages.

Parsing uses the standard library's html.parser (maintained with CPython, tolerant of the
broken markup small-business sites are made of, and free of native code). What counts:
- feeds: <link rel="alternate"> with an RSS/Atom type (the autodiscovery convention), then
  anchors whose target looks like a feed (/feed, *.rss, rss.xml, atom.xml, ...);
- iCal: <link type="text/calendar">, anchors to *.ics or webcal:// URLs;
- event pages and news pages: same-site anchors whose path or text names them (events,
  calendar / news, blog, press, updates).
Results are de-duplicated, made absolute (honouring <base href>) and capped per kind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

MAX_PER_KIND = 10

FEED_TYPES = {
    "application/rss+xml": "rss",
    "application/atom+xml": "atom",
    "application/rdf+xml": "rss",
    "application/x-rss+xml": "rss",
}
CALENDAR_TYPES = {"text/calendar", "application/ics", "text/x-vcalendar"}

_FEED_PATH = re.compile(
    r"(/feed/?$|/rss/?$|/atom/?$|\.rss$|\.atom$|/(rss|atom|feed|index)\.xml$|[?&]feed=)",
    re.IGNORECASE,
)
_ICS_PATH = re.compile(r"\.ics$|[?&](ical|ics)=|/ical/?$", re.IGNORECASE)
_EVENT_WORDS = re.compile(
    r"\b(events?|calendar|whats-on|what's on|happenings|upcoming|shows|schedule)\b", re.I
)
_NEWS_WORDS = re.compile(
    r"\b(news|blog|press|updates|announcements|articles|stories|newsroom)\b", re.I
)
_SKIP_SCHEMES = ("mailto:", "tel:", "javascript:", "data:", "sms:")


@dataclass(slots=True)
class Candidate:
    url: str
    kind: str | None = None  # rss | atom | ical | html
    title: str | None = None
    via: str = "link"  # link | anchor | probe

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"url": self.url, "via": self.via}
        if self.kind:
            data["kind"] = self.kind
        if self.title:
            data["title"] = self.title[:200]
        return data


@dataclass(slots=True)
class Discovery:
    title: str | None = None
    feeds: list[Candidate] = field(default_factory=list)
    ical: list[Candidate] = field(default_factory=list)
    event_pages: list[Candidate] = field(default_factory=list)
    news_pages: list[Candidate] = field(default_factory=list)

    @property
    def publishes(self) -> bool:
        return bool(self.feeds or self.ical or self.event_pages or self.news_pages)

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title[:300] if self.title else None,
            "feeds": [c.to_json() for c in self.feeds],
            "ical": [c.to_json() for c in self.ical],
            "event_pages": [c.to_json() for c in self.event_pages],
            "news_pages": [c.to_json() for c in self.news_pages],
        }


def _site_key(host: str) -> str:
    host = host.lower()
    return host[4:] if host.startswith("www.") else host


class _HomepageParser(HTMLParser):
    def __init__(self, page_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base = page_url
        self.links: list[dict[str, str]] = []
        self.anchors: list[tuple[str, str]] = []  # (href, text)
        self.title_parts: list[str] = []
        self._in_title = False
        self._anchor: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): (v or "") for k, v in attrs}
        if tag == "base" and values.get("href") and self.base:
            self.base = urljoin(self.base, values["href"].strip())
        elif tag == "link":
            self.links.append(values)
        elif tag == "a" and values.get("href"):
            self._close_anchor()
            self._anchor = (values["href"], [])
        elif tag == "title":
            self._in_title = True

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag == "a":
            self._close_anchor()

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._close_anchor()
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)
        if self._anchor is not None:
            self._anchor[1].append(data)

    def _close_anchor(self) -> None:
        if self._anchor is not None:
            href, text = self._anchor
            self.anchors.append((href, " ".join("".join(text).split())[:200]))
            self._anchor = None

    def close(self) -> None:
        super().close()
        self._close_anchor()


def _absolute(base: str, href: str) -> str | None:
    href = href.strip()
    if not href or href.startswith("#") or href.lower().startswith(_SKIP_SCHEMES):
        return None
    if href.lower().startswith("webcal://"):
        href = "https://" + href[len("webcal://") :]
    url = urldefrag(urljoin(base, href))[0]
    scheme = urlsplit(url).scheme.lower()
    return url if scheme in ("http", "https") else None


class _Collector:
    def __init__(self) -> None:
        self.seen: set[str] = set()

    def add(self, bucket: list[Candidate], candidate: Candidate) -> None:
        if candidate.url in self.seen or len(bucket) >= MAX_PER_KIND:
            return
        self.seen.add(candidate.url)
        bucket.append(candidate)


def discover(html: str, page_url: str) -> Discovery:
    """What the homepage at `page_url` (its final URL) links to."""
    parser = _HomepageParser(page_url)
    parser.feed(html)
    parser.close()
    base = parser.base
    site = _site_key(urlsplit(page_url).hostname or "")
    found = Discovery(title=" ".join("".join(parser.title_parts).split()) or None)
    collect = _Collector()

    for link in parser.links:
        rels = set(link.get("rel", "").lower().split())
        media = link.get("type", "").lower().split(";")[0].strip()
        url = _absolute(base, link.get("href", ""))
        if url is None:
            continue
        if "alternate" in rels and media in FEED_TYPES:
            collect.add(found.feeds, Candidate(url, FEED_TYPES[media], link.get("title")))
        elif media in CALENDAR_TYPES:
            collect.add(found.ical, Candidate(url, "ical", link.get("title")))

    for href, text in parser.anchors:
        raw = href.strip()
        url = _absolute(base, raw)
        if url is None:
            continue
        parts = urlsplit(url)
        path_and_query = parts.path + ("?" + parts.query if parts.query else "")
        if raw.lower().startswith("webcal://") or _ICS_PATH.search(path_and_query):
            collect.add(found.ical, Candidate(url, "ical", text or None, via="anchor"))
        elif _FEED_PATH.search(path_and_query):
            collect.add(found.feeds, Candidate(url, None, text or None, via="anchor"))
        elif _site_key(parts.hostname or "") == site and url.rstrip("/") != page_url.rstrip("/"):
            words = f"{parts.path.replace('-', ' ').replace('_', ' ')} {text}"
            if _EVENT_WORDS.search(words):
                collect.add(found.event_pages, Candidate(url, "html", text or None, "anchor"))
            elif _NEWS_WORDS.search(words):
                collect.add(found.news_pages, Candidate(url, "html", text or None, "anchor"))
    return found
