"""Resume points for phases that work through a community's businesses in id order.

Work finishes out of order (sites answer at their own pace), so "the last id done" is not a
safe resume point. The watermark is: every id at or below it is done and committed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


class Watermark:
    def __init__(self, ids: Sequence[int], start: int = 0) -> None:
        self._ids = sorted(ids)
        self._done: set[int] = set()
        self._cursor = 0
        self.value = start

    def done(self, ids: Iterable[int]) -> int:
        self._done.update(ids)
        while self._cursor < len(self._ids) and self._ids[self._cursor] in self._done:
            self._cursor += 1
        if self._cursor:
            self.value = max(self.value, self._ids[self._cursor - 1])
        return self.value


def resume_point(details: Sequence[Any], key: str = "after_id") -> int:
    """The watermark in the last heartbeat's details (0 when absent or unreadable: a
    retry then starts over, which the phases' idempotent writes make safe)."""
    if not details:
        return 0
    last = details[-1]
    if isinstance(last, dict):
        value = last.get(key, 0)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return 0
