"""robots.txt: fetched once per origin, cached, honoured for every request (RFC 9309).

What an answer means (RFC 9309 section 2.3.1):
- 2xx: the rules apply (an empty or unparsable file allows everything);
- 4xx (401/403 included): "unavailable", we may crawl anything;
- 5xx: "unreachable", we must assume everything is disallowed;
- network failure, timeout, refused by the SSRF guard: the site itself cannot be fetched, so
  the error is the site's error (raised to the caller and cached like an answer, so a dead
  host costs one timeout per scan rather than one per page).
Redirects of robots.txt are followed like any fetch (at most SCAN_MAX_REDIRECTS).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.robotparser import RobotFileParser

ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309: parse at least 500 KiB


@dataclass(frozen=True, slots=True)
class RobotsRules:
    parser: RobotFileParser | None = None
    allow_all: bool = False
    disallow_all: bool = False
    note: str = ""

    def allows(self, user_agent: str, url: str) -> bool:
        if self.disallow_all:
            return False
        if self.allow_all or self.parser is None:
            return True
        return self.parser.can_fetch(user_agent, url)

    def crawl_delay(self, user_agent: str) -> float:
        if self.parser is None:
            return 0.0
        delay = self.parser.crawl_delay(user_agent)
        try:
            return max(float(delay), 0.0) if delay is not None else 0.0
        except (TypeError, ValueError):
            return 0.0


def parse_robots(text: str) -> RobotsRules:
    parser = RobotFileParser()
    parser.parse(text.splitlines())
    return RobotsRules(parser=parser, note="robots.txt")


def rules_for_status(status_code: int, body: bytes) -> RobotsRules:
    if 200 <= status_code < 300:
        return parse_robots(body.decode("utf-8", "replace"))
    if 400 <= status_code < 500:
        return RobotsRules(allow_all=True, note=f"robots.txt {status_code}: unavailable")
    return RobotsRules(disallow_all=True, note=f"robots.txt {status_code}: unreachable")


RobotsLoader = Callable[[str], Awaitable[RobotsRules]]


class RobotsCache:
    """Rules per origin ("https://host:port"), loaded once even under concurrent asks.

    Answers are kept `ttl_s`; failures (timeouts, refused connections) only `error_ttl_s`,
    long enough to spare one scan a timeout per page of a dead host, short enough that a
    host that was down for a minute is not written off for an hour.
    """

    def __init__(
        self,
        loader: RobotsLoader,
        *,
        ttl_s: float,
        error_ttl_s: float = 300.0,
        max_entries: int = 20_000,
    ) -> None:
        self._loader = loader
        self._ttl = ttl_s
        self._error_ttl = min(error_ttl_s, ttl_s)
        self._max = max_entries
        self._entries: dict[str, tuple[float, asyncio.Task[RobotsRules]]] = {}

    def _expired(self, entry: tuple[float, asyncio.Task[RobotsRules]], now: float) -> bool:
        expiry, task = entry
        if expiry < now:
            return True
        failed = task.done() and (task.cancelled() or task.exception() is not None)
        return failed and expiry - self._ttl + self._error_ttl < now

    async def rules_for(self, origin: str) -> RobotsRules:
        now = time.monotonic()
        entry = self._entries.get(origin)
        if entry is None or self._expired(entry, now):
            if len(self._entries) >= self._max:
                self._evict(now)
            task = asyncio.ensure_future(self._loader(origin))
            # A loader that failed is an answer too (see the module docstring); retrieving
            # the exception here keeps asyncio from logging it as never retrieved.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            entry = (now + self._ttl, task)
            self._entries[origin] = entry
        # shield: a caller that gives up (its site deadline) must not cancel the load that
        # other callers wait for.
        try:
            return await asyncio.shield(entry[1])
        except asyncio.CancelledError:
            if entry[1].cancelled():  # the load itself was cancelled: forget it
                self._entries.pop(origin, None)
            raise

    def _evict(self, now: float) -> None:
        for key in [k for k, (expiry, _) in self._entries.items() if expiry < now]:
            del self._entries[key]
        while len(self._entries) >= self._max:
            oldest = next(iter(self._entries))
            del self._entries[oldest]

    def clear(self) -> None:
        self._entries.clear()
