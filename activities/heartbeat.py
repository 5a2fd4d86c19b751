"""Periodic heartbeats for long phase activities."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import Any

from temporalio import activity


class Heartbeater:
    """Heartbeat `details()` every `interval_s` while the `async with` block runs.

    A ticker rather than heartbeats at each step: a step can take a site's whole deadline
    (30 s), and the server must still hear from the activity well within heartbeat_timeout.
    The details are the resume point, so a retry continues where this attempt stopped.
    """

    def __init__(self, details: Callable[[], Any], interval_s: float) -> None:
        self._details = details
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            activity.heartbeat(self._details())
            await asyncio.sleep(self._interval)

    async def __aenter__(self) -> Heartbeater:
        self._task = asyncio.create_task(self._tick())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if exc_type is None:
            activity.heartbeat(self._details())
