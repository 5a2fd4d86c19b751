"""robots.txt: fetched once per origin, cached, honoured for every request (RFC 9309).

What an answer means (RFC 9309 section 2.3.1):
- 2xx: the rules apply (an empty or unparsable file allows everything);
- 4xx (401/403 included): "unavailable", we may crawl anything; except 429, which asks us
  to slow down rather than saying there is no file, so it counts as unreachable (as it
  does for Googlebot);
- 5xx: "unreachable", we must assume everything is disallowed;
- network failure, timeout, refused by the SSRF guard: the site itself cannot be fetched, so
  the error is the site's error (raised to the caller and cached like an answer, so a dead
  host costs one timeout per scan rather than one per page).
Redirects of robots.txt are followed like any fetch (at most SCAN_MAX_REDIRECTS); more
than that is "unavailable" (section 2.3.1.2).

The rules are read by Protego (wildcards `*` and `$`, the longest match winning with Allow
taking ties, groups of the same agent merged, percent-encoding normalised). Which group
applies is decided here, by RFC 9309 section 2.2.1 rather than Protego's own matching:
the crawler's product token (the leading letters, `_` and `-` of its User-Agent) must
equal a group's user-agent token, case-insensitively, or the `*` group applies. Protego
would also take a group named by a prefix or any word of the header ("User-agent: state"
for "StatewideRolloutBot/0.1 (...)") and would miss "User-agent: StatewideRolloutBot/0.1".
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from protego import Protego

ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309 section 2.5: parse at least 500 KiB

# RFC 9309 section 2.2.1: a product token is made of letters, "_" and "-".
_TOKEN = re.compile(r"[A-Za-z_-]+")
# The spellings of a user-agent line that Protego reads as one ("User-agent:", "useragent",
# "User agent foo"), so that both sides agree on where the groups are.
_AGENT_LINE = re.compile(r"\s*user[- ]?agent(?:\s*:|\s)([^#]*)", re.IGNORECASE)
# Asked of Protego when no group names our token: only the "*" group can match it.
_ANY_AGENT = "*"


def product_token(user_agent: str) -> str:
    """The crawler's name to look up in robots.txt, lowercased ("" when there is none)."""
    match = _TOKEN.match(user_agent.strip())
    return match.group(0).lower() if match else ""


def _group_token(value: str) -> str:
    """A user-agent line's value as RFC 9309 compares it: "*", a product token, or ""."""
    value = value.strip()
    # "* " followed by more is still the catch-all, as in Google's reference parser.
    if value == "*" or (value.startswith("*") and value[1].isspace()):
        return _ANY_AGENT
    return product_token(value)


def _normalise_agents(text: str) -> tuple[str, frozenset[str]]:
    """`text` with every user-agent value reduced to its token, and the tokens named.

    "User-agent: FooBot/2.1" becomes "user-agent: foobot", so that Protego merges it with
    "User-agent: foobot" and finds it by the bare token. A value with no token (a version
    alone, "*bot") keeps its line, empty, so that it still ends the previous group, but
    names a group no crawler matches.
    """
    lines: list[str] = []
    names: set[str] = set()
    for line in text.splitlines():
        match = _AGENT_LINE.match(line)
        if match is not None:
            name = _group_token(match.group(1))
            if name and name != _ANY_AGENT:
                names.add(name)
            line = f"user-agent: {name}"
        lines.append(line)
    return "\n".join(lines), frozenset(names)


@dataclass(frozen=True, slots=True)
class RobotsRules:
    parser: Protego | None = None
    agents: frozenset[str] = field(default_factory=frozenset)
    allow_all: bool = False
    disallow_all: bool = False
    note: str = ""

    def _group(self, user_agent: str) -> str:
        token = product_token(user_agent)
        return token if token in self.agents else _ANY_AGENT

    def allows(self, user_agent: str, url: str) -> bool:
        if self.disallow_all:
            return False
        if self.allow_all or self.parser is None:
            return True
        return self.parser.can_fetch(url, self._group(user_agent))

    def crawl_delay(self, user_agent: str) -> float:
        if self.parser is None:
            return 0.0
        delay = self.parser.crawl_delay(self._group(user_agent))
        return delay if delay is not None else 0.0


def parse_robots(text: str) -> RobotsRules:
    normalised, agents = _normalise_agents(text)
    return RobotsRules(parser=Protego.parse(normalised), agents=agents, note="robots.txt")


def rules_for_status(status_code: int, body: bytes) -> RobotsRules:
    if 200 <= status_code < 300:
        # utf-8-sig: a byte order mark would otherwise hide the first user-agent line.
        return parse_robots(body.decode("utf-8-sig", "replace"))
    if 400 <= status_code < 500 and status_code != 429:
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
