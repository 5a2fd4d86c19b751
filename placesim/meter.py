"""Quotas, billing and counters of the emulator.

Quotas are per method (searchText, searchNearby, getPlace), as Google's are "per API method
per project". Per-minute is a sliding window of `quota_window_s` (60 s; shorter in tests);
per-day a fixed window that resets at midnight Pacific Time (UTC-8; Google resets daily
quotas at midnight PT; daylight saving is ignored). Only requests let through count; a
request refused with 429 uses no quota.

Billing charges each answered request at the list price of the SKU its field mask implies,
from the emulator's own SKU table (placesim.skus), not the client's pricing code, so the
project's cost log agrees with this bill only if the client prices requests as Google does.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from placesim.config import SimConfig
from placesim.skus import Method, SkuTable, default_sku_table

METHODS = tuple(method.value for method in Method)
_PACIFIC_OFFSET_S = 8 * 3600


@dataclass(frozen=True)
class QuotaRefusal:
    per_day: bool
    limit: int
    retry_after_s: int | None


class Meter:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        skus: SkuTable | None = None,
    ) -> None:
        self._clock = clock
        self._wall = wall
        self.skus = skus if skus is not None else default_sku_table()
        self.reset()

    def reset(self) -> None:
        self._minute: dict[str, deque[float]] = {m: deque() for m in METHODS}
        self._day: dict[str, tuple[int, int]] = {m: (self._day_number(), 0) for m in METHODS}
        self.requests: Counter[str] = Counter()  # every authenticated request, by method
        self.sku_requests: Counter[str] = Counter()
        self.sku_cost: dict[str, Decimal] = {}
        self.rate_limited: dict[str, Counter[str]] = {m: Counter() for m in METHODS}
        self.errors: Counter[str] = Counter()  # error answers by HTTP status
        self.faults: Counter[str] = Counter()  # injected: error, timeout, malformed

    def _day_number(self) -> int:
        return int((self._wall() - _PACIFIC_OFFSET_S) // 86_400)

    def admit(self, method: str, config: SimConfig) -> QuotaRefusal | None:
        """Count the request against its quotas, or say why it is refused."""
        self.requests[method] += 1
        today = self._day_number()
        day, used_today = self._day[method]
        if day != today:
            used_today = 0
        per_day = config.qpd_for(method)
        if per_day and used_today >= per_day:
            self.rate_limited[method]["per_day"] += 1
            return QuotaRefusal(per_day=True, limit=per_day, retry_after_s=None)
        now = self._clock()
        window = self._minute[method]
        while window and window[0] <= now - config.quota_window_s:
            window.popleft()
        if config.qpm and len(window) >= config.qpm:
            self.rate_limited[method]["per_minute"] += 1
            wait = max(window[0] + config.quota_window_s - now, 0.0)
            return QuotaRefusal(per_day=False, limit=config.qpm, retry_after_s=math.ceil(wait))
        window.append(now)
        self._day[method] = (today, used_today + 1)
        return None

    def bill(self, sku: str) -> None:
        self.sku_requests[sku] += 1
        self.sku_cost[sku] = self.sku_cost.get(sku, Decimal(0)) + self.skus.request_cost(sku)

    def snapshot(self) -> dict[str, Any]:
        total = sum(self.sku_cost.values(), Decimal(0))
        return {
            "skus": {
                sku: {"requests": count, "cost": str(self.sku_cost[sku])}
                for sku, count in sorted(self.sku_requests.items())
            },
            "total_requests": sum(self.sku_requests.values()),
            "total_cost": str(total),
            "requests": {m: self.requests[m] for m in METHODS},
            "rate_limited": {
                m: {"per_minute": c["per_minute"], "per_day": c["per_day"]}
                for m, c in self.rate_limited.items()
            },
            "rate_limited_total": sum(sum(c.values()) for c in self.rate_limited.values()),
            "errors": {str(status): n for status, n in sorted(self.errors.items())},
            "faults": dict(self.faults),
        }
