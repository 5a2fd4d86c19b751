"""Scan one business website: homepage, discovery, feed probes -> a ScanOutcome.

The home page is read once for both of its uses: the links phase 3 follows to news
sources, and the business's own structured data phase 4 enriches it with."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpx

from rollout.phases.enrichment.site_profile import SiteProfile, extract_profile
from rollout.phases.news_sources.feeds import sniff
from rollout.phases.website_scan.errors import FetchError, ScanStatus
from rollout.phases.website_scan.fetcher import FEED_ACCEPT, FetchResult, WebFetcher
from rollout.phases.website_scan.links import Candidate, Discovery, discover

log = logging.getLogger(__name__)

# Probes only need the start of a document to tell a feed from a page.
PROBE_MAX_BYTES = 64 * 1024
# Parsing a large page in a worker thread keeps the event loop (heartbeats, other scans)
# responsive; small pages are parsed inline, where a thread hop would cost more than it saves.
THREAD_PARSE_BYTES = 128 * 1024


@dataclass(slots=True)
class ScanOutcome:
    url: str
    status: ScanStatus
    final_url: str | None = None
    http_status: int | None = None
    found: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    elapsed_s: float = 0.0

    @property
    def publishes(self) -> bool:
        return any(self.found.get(k) for k in ("feeds", "ical", "event_pages", "news_pages"))


def normalise_site_url(raw: str) -> str:
    """Places gives full URLs, but hand-entered data has "example.com" or " http://x "."""
    url = raw.strip()
    if not url:
        raise FetchError(ScanStatus.INVALID_URL, "empty website URL")
    if "://" not in url:
        url = "http://" + url
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise FetchError(ScanStatus.INVALID_URL, f"invalid URL {raw!r}: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise FetchError(ScanStatus.INVALID_URL, f"not an http(s) URL: {raw!r}")
    return str(parsed.copy_with(fragment=None))


def _read_home(text: str, url: str) -> tuple[Discovery, SiteProfile]:
    """What the home page links to (feeds, news pages) and what it says about the business
    (its structured data, for phase 4)."""
    return discover(text, url), extract_profile(text, url)


async def _read(result: FetchResult) -> tuple[Discovery, SiteProfile]:
    text = result.text()
    if len(result.body) > THREAD_PARSE_BYTES:
        return await asyncio.to_thread(_read_home, text, result.final_url)
    return _read_home(text, result.final_url)


async def scan_site(
    fetcher: WebFetcher,
    website: str,
    *,
    feed_paths: list[str] | tuple[str, ...] = (),
    deadline_s: float = 30.0,
) -> ScanOutcome:
    """Never raises for a site's faults: every failure is an outcome with a status."""
    started = time.monotonic()
    outcome = ScanOutcome(url=website, status=ScanStatus.ERROR)
    try:
        url = normalise_site_url(website)
        async with asyncio.timeout(deadline_s):
            home = await fetcher.fetch(url)
        outcome.final_url = home.final_url
        outcome.http_status = home.status_code
        if not home.ok:
            outcome.status = ScanStatus.HTTP_ERROR
            outcome.error = f"HTTP {home.status_code}"
            return outcome
        kind = sniff(home.body, home.content_type)
        if not home.is_html and kind in ("rss", "atom", "ical"):
            # The "website" is itself a feed (it happens with blog-only businesses).
            bucket = "ical" if kind == "ical" else "feeds"
            outcome.found = Discovery().to_json() | {
                bucket: [Candidate(home.final_url, kind, via="link").to_json()]
            }
            outcome.status = ScanStatus.OK
            return outcome
        if not home.is_html:
            outcome.status = ScanStatus.NOT_HTML
            outcome.error = f"content type {home.content_type or 'missing'}"
            return outcome
        found, profile = await _read(home)
        remaining = deadline_s - (time.monotonic() - started)
        if not found.feeds and feed_paths and remaining > 0:
            await _probe_feeds(fetcher, home.final_url, feed_paths, found, remaining)
        outcome.found = found.to_json()
        if not profile.empty or profile.malformed_blocks:
            outcome.found["profile"] = profile.to_json()
        if home.truncated:
            outcome.found["truncated"] = True
            outcome.status = ScanStatus.TOO_LARGE
            outcome.error = f"page larger than {fetcher.settings.scan_max_bytes} bytes"
        else:
            outcome.status = ScanStatus.OK
    except FetchError as exc:
        outcome.status = exc.status
        outcome.error = exc.message[:1000]
        outcome.http_status = exc.http_status
        outcome.final_url = exc.final_url or outcome.final_url
    except TimeoutError:
        outcome.status = ScanStatus.TIMEOUT
        outcome.error = f"site not scanned within {deadline_s:g}s"
    except Exception as exc:
        # One odd site must not fail the community's scan: record it and go on.
        log.exception("scanning %s failed unexpectedly", website)
        outcome.status = ScanStatus.ERROR
        outcome.error = f"{type(exc).__name__}: {exc}"[:1000]
    finally:
        outcome.elapsed_s = time.monotonic() - started
    return outcome


async def _probe_feeds(
    fetcher: WebFetcher,
    page_url: str,
    paths: list[str] | tuple[str, ...],
    found: Discovery,
    budget_s: float,
) -> None:
    """Try the usual feed locations next to the homepage; stop at the first feed.

    Paths are taken relative to the homepage's directory: /feed for a site at the root,
    /sites/joes/feed for one at /sites/joes/ (hosted site builders, the emulator). A probe
    failing says nothing about the site (most sites have no /feed), so probe errors are
    ignored, and the probes only get what is left of the site's deadline.
    """
    try:
        async with asyncio.timeout(budget_s):
            for path in paths:
                probe = urljoin(page_url, path.lstrip("/"))
                try:
                    result = await fetcher.fetch(
                        probe, max_bytes=PROBE_MAX_BYTES, accept=FEED_ACCEPT
                    )
                except FetchError:
                    continue
                kind = sniff(result.body, result.content_type) if result.ok else None
                if kind in ("rss", "atom"):
                    found.feeds.append(Candidate(result.final_url, kind, via="probe"))
                    return
    except TimeoutError:
        return
