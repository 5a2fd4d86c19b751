"""A local file of billed requests that Postgres could not take when they were answered.

An answer Google bills must reach the usage log whatever fails after it. The log is written
the moment the answer arrives; if Postgres is unreachable then (and stays so through a few
quick retries), the request goes to this spool, one JSON line each, synced to disk, and the
worker writes the spool into the log as soon as Postgres answers again. Logging is keyed
by the request, so a line written twice (by the spool and by a retry) is logged once.

The spool lives on the worker's disk: give a production worker a persistent volume for it
(USAGE_SPOOL_PATH), or a worker replaced while Postgres is out loses what it spooled.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from rollout.db.errors import is_connection_error
from rollout.db.usage import BilledRequest, log_billed

log = logging.getLogger(__name__)


class UsageSpool:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, billed: BilledRequest) -> None:
        """Keep one billed request on disk (durable when this returns)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = billed.model_dump_json() + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        log.warning(
            "Postgres unreachable: billed request %s (%s, $%s) kept in %s until it answers",
            billed.request_key,
            billed.sku,
            billed.cost,
            self.path,
        )

    def _batches(self) -> list[Path]:
        """Files to write: any left by an interrupted flush, then the spool itself, moved
        aside first (atomically) so that appends meanwhile start a new spool."""
        pattern = f"{self.path.name}.flushing-*"
        batches = sorted(self.path.parent.glob(pattern)) if self.path.parent.exists() else []
        if self.path.exists():
            batch = self.path.with_name(
                f"{self.path.name}.flushing-{os.getpid()}-{time.monotonic_ns()}"
            )
            self.path.rename(batch)
            batches.append(batch)
        return batches

    def pending(self) -> int:
        """How many spooled requests wait (spool and interrupted batches)."""
        files = [self.path] if self.path.exists() else []
        if self.path.parent.exists():
            files += self.path.parent.glob(f"{self.path.name}.flushing-*")
        return sum(1 for f in files for line in f.read_text().splitlines() if line.strip())

    async def flush(self, sessions: async_sessionmaker[AsyncSession]) -> int:
        """Log every spooled request and remove what was logged; returns how many new rows
        the log got. Raises (keeping the files) while Postgres is still unreachable; a line
        the log refuses for another reason stays spooled, and is said so, for an operator."""
        written = 0
        for batch in self._batches():
            try:
                lines = [line for line in batch.read_text().splitlines() if line.strip()]
            except FileNotFoundError:  # another worker on this spool wrote it meanwhile
                continue
            try:
                batch_written = 0  # counted once its transaction commits
                async with sessions.begin() as session:
                    for line in lines:
                        billed = BilledRequest.model_validate_json(line)
                        batch_written += await log_billed(session, billed)
                written += batch_written
            except Exception as exc:
                if is_connection_error(exc):
                    raise
                written += await self._one_by_one(sessions, lines, exc)
            batch.unlink(missing_ok=True)
        if written:
            log.info("wrote %d spooled billed requests to the usage log", written)
        return written

    async def _one_by_one(
        self, sessions: async_sessionmaker[AsyncSession], lines: list[str], first: Exception
    ) -> int:
        """A batch the log refused: each line on its own, the refused ones spooled again."""
        log.error("a spooled batch was refused (%s); writing it line by line", first)
        written = 0
        for line in lines:
            try:
                async with sessions.begin() as session:
                    written += await log_billed(session, BilledRequest.model_validate_json(line))
            except Exception as exc:
                if is_connection_error(exc):
                    raise
                log.error("spooled billed request kept, the log refuses it: %s (%s)", line, exc)
                with self.path.open("a") as spool:
                    spool.write(line + "\n")
        return written


async def flush_forever(
    spool: UsageSpool, sessions: async_sessionmaker[AsyncSession], every_s: float = 30.0
) -> None:
    """The worker's background task: write the spool into the log now and every `every_s`,
    saying once per outage that it cannot yet."""
    waiting = False
    while True:
        try:
            await spool.flush(sessions)
            waiting = False
        except Exception as exc:
            if not waiting:
                log.warning("%d billed requests wait in %s: %s", spool.pending(), spool.path, exc)
            waiting = True
        await asyncio.sleep(every_s)
