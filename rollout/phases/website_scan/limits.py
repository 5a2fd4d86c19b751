"""Concurrency limits of the scanner: a global cap and a per-host cap, plus Crawl-delay.

A request takes its host's slot first and the global slot second, so requests queued behind
a busy host never hold global slots that requests to other hosts could use. The limiter
also records the peak concurrency it has let through per host; the benchmark and the tests
read it to show that no host ever saw more than its limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Host:
    semaphore: asyncio.Semaphore
    users: int = 0  # holders and waiters; the entry is dropped when it reaches 0
    active: int = 0
    next_start: float = 0.0  # monotonic time before which no request may start (Crawl-delay)


@dataclass(slots=True)
class LimiterStats:
    peak_global: int = 0
    peak_per_host: dict[str, int] = field(default_factory=dict)
    requests: int = 0

    @property
    def peak_any_host(self) -> int:
        return max(self.peak_per_host.values(), default=0)


class HostLimiter:
    def __init__(self, global_limit: int, per_host_limit: int, *, track_hosts: int = 100_000):
        if global_limit < 1 or per_host_limit < 1:
            raise ValueError("limits must be >= 1")
        self.global_limit = global_limit
        self.per_host_limit = per_host_limit
        self._global = asyncio.Semaphore(global_limit)
        self._hosts: dict[str, _Host] = {}
        self._active_global = 0
        self._track_hosts = track_hosts
        self.stats = LimiterStats()

    @asynccontextmanager
    async def slot(self, host: str, *, crawl_delay: float = 0.0) -> AsyncIterator[None]:
        key = host.lower()
        entry = self._hosts.get(key)
        if entry is None:
            entry = self._hosts[key] = _Host(asyncio.Semaphore(self.per_host_limit))
        entry.users += 1
        try:
            async with entry.semaphore:
                if crawl_delay > 0:
                    # Space request starts on this host; waiting here holds only the host's
                    # slot, which the delay means to hold back anyway.
                    now = time.monotonic()
                    start = max(now, entry.next_start)
                    entry.next_start = start + crawl_delay
                    if start > now:
                        await asyncio.sleep(start - now)
                async with self._global:
                    entry.active += 1
                    self._active_global += 1
                    self._record(key, entry.active)
                    try:
                        yield
                    finally:
                        entry.active -= 1
                        self._active_global -= 1
        finally:
            entry.users -= 1
            if entry.users == 0 and entry.next_start <= time.monotonic():
                # Bound memory over a statewide scan: idle hosts are forgotten.
                self._hosts.pop(key, None)

    def _record(self, key: str, active: int) -> None:
        stats = self.stats
        stats.requests += 1
        stats.peak_global = max(stats.peak_global, self._active_global)
        if key in stats.peak_per_host or len(stats.peak_per_host) < self._track_hosts:
            stats.peak_per_host[key] = max(stats.peak_per_host.get(key, 0), active)
