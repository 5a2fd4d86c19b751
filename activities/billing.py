"""Every billed Places answer logged exactly once, whatever fails after it.

The log row is written the moment an answer arrives, in one transaction with the answer
itself when the caller keeps it for a retry (rollout/db/answers.py). When Postgres cannot
take it (after a few quick retries), the row goes to the worker's local spool, which the
worker writes into the log once Postgres answers, and the answer stays in this worker's
memory: a retry on this worker writes both first and uses the answer instead of buying it
again. (A retry on another worker buys it again, logged like any request: an answer is
Google content and a page of places, never a Temporal payload, so no heartbeat carries it.)
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from rollout.db import answers
from rollout.db.answers import KeptAnswer
from rollout.db.errors import is_connection_error
from rollout.db.usage import BilledRequest, UsageOutcome, log_billed
from rollout.db.usage_spool import UsageSpool
from rollout.places.errors import MalformedResponseError, PlacesError

# Answers bought while Postgres was out, by request id (bounded: an outage that outlasts
# this many purchases has long paused the rollout).
MAX_UNKEPT = 1000


def billed_failure(
    error: PlacesError, *, request_key: str, community_rollout_id: int | None, endpoint: str
) -> BilledRequest | None:
    """The log row of a failed request that Google bills (or may bill), else None."""
    if error.billed_sku is None or error.billed_cost is None:
        return None
    malformed = isinstance(error, MalformedResponseError)
    return BilledRequest(
        request_key=request_key,
        community_rollout_id=community_rollout_id,
        endpoint=endpoint,
        sku=error.billed_sku,
        cost=error.billed_cost,
        http_status=error.status_code,
        outcome=UsageOutcome.MALFORMED if malformed else UsageOutcome.TIMEOUT,
    )


def attempt_key(info: activity.Info) -> str:
    """The usage-log key of this attempt's request: each attempt is a request of its own."""
    return f"{info.workflow_run_id}/{info.activity_id}/{info.attempt}"


def request_id(info: activity.Info) -> str:
    """The activity, the same across its attempts: what a kept answer is found by."""
    return f"{info.workflow_run_id}/{info.activity_id}"


class BillingLog:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        spool: UsageSpool,
        retry_delays_s: Sequence[float] = (0.5, 1.0, 2.0),
    ) -> None:
        self.sessions = sessions
        self.spool = spool
        self.retry_delays_s = tuple(retry_delays_s)
        self._unkept: OrderedDict[str, tuple[BilledRequest, KeptAnswer]] = OrderedDict()

    async def record(self, billed: BilledRequest, answer: KeptAnswer | None = None) -> None:
        """Log `billed` (and keep `answer`) in one transaction; if Postgres is out, spool
        the row, hold the answer in memory and raise the database error."""
        delays = iter(self.retry_delays_s)
        while True:
            try:
                async with self.sessions.begin() as session:
                    await log_billed(session, billed)
                    if answer is not None:
                        await answers.keep(session, answer)
                return
            except Exception as exc:
                outage = is_connection_error(exc)
                delay = next(delays, None)
                if outage and delay is not None:
                    await asyncio.sleep(delay)
                    continue
                if not outage:
                    activity.logger.error(
                        "billed request %s (%s, $%s) not logged: %s",
                        billed.request_key,
                        billed.sku,
                        billed.cost,
                        exc,
                    )
                # Whatever the error: the spool keeps trying, so the money is not lost.
                self.spool.append(billed)
                if answer is not None:
                    self._unkept[answer.request_id] = (billed, answer)
                    while len(self._unkept) > MAX_UNKEPT:
                        self._unkept.popitem(last=False)
                raise

    async def keep_unkept(self, request_id: str) -> None:
        """Write the answer an earlier attempt of this activity bought on this worker and
        could not keep, which this attempt then finds kept (raises while Postgres is out)."""
        held = self._unkept.get(request_id)
        if held is not None:
            await self.record(*held)
            self._unkept.pop(request_id, None)
