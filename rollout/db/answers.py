"""Billed phase 1 answers kept until stored (places_answers), so a retry never buys twice."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from rollout.db.models import PlacesAnswer
from rollout.places.models import Place


class KeptAnswer(BaseModel):
    """One bought answer: its places until they are stored, then the page's outcome."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    community_rollout_id: int
    sku: str
    cost: Decimal
    places: list[dict[str, Any]] = []
    next_page_token: str | None = None
    result_count: int
    new_in_region: int | None = None  # set once stored

    @property
    def stored(self) -> bool:
        return self.new_in_region is not None

    @classmethod
    def of(
        cls,
        request_id: str,
        community_rollout_id: int,
        *,
        sku: str,
        cost: Decimal,
        places: tuple[Place, ...] | list[Place],
        next_page_token: str | None,
    ) -> KeptAnswer:
        return cls(
            request_id=request_id,
            community_rollout_id=community_rollout_id,
            sku=sku,
            cost=cost,
            places=[p.model_dump(mode="json", by_alias=True, exclude_none=True) for p in places],
            next_page_token=next_page_token,
            result_count=len(places),
        )

    def parsed_places(self) -> list[Place]:
        return [Place.model_validate(p) for p in self.places]


async def keep(session: AsyncSession, answer: KeptAnswer) -> None:
    """Keep a bought answer (a no-op when this request's answer is already kept)."""
    await session.execute(
        insert(PlacesAnswer)
        .values(
            request_id=answer.request_id,
            community_rollout_id=answer.community_rollout_id,
            sku=answer.sku,
            cost=answer.cost,
            places=answer.places,
            next_page_token=answer.next_page_token,
            result_count=answer.result_count,
        )
        .on_conflict_do_nothing(index_elements=[PlacesAnswer.request_id])
    )


_LOAD = select(
    PlacesAnswer.community_rollout_id,
    PlacesAnswer.sku,
    PlacesAnswer.cost,
    PlacesAnswer.places,
    PlacesAnswer.next_page_token,
    PlacesAnswer.result_count,
    PlacesAnswer.new_in_region,
).where(PlacesAnswer.request_id == bindparam("request_id"))


async def autocommit(session: AsyncSession) -> AsyncConnection:
    """The session's connection without a transaction, for a single read: one round trip
    instead of three (BEGIN, the statement, ROLLBACK). Call it first in a fresh session."""
    return await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


async def load(session: AsyncSession, request_id: str) -> KeptAnswer | None:
    """The answer an earlier attempt of this activity kept, if any (one round trip: every
    Places activity asks this before buying, and nearly always hears no)."""
    conn = await autocommit(session)
    row = (await conn.execute(_LOAD, {"request_id": request_id})).first()
    if row is None:
        return None
    return KeptAnswer(
        request_id=request_id,
        community_rollout_id=row.community_rollout_id,
        sku=row.sku,
        cost=row.cost,
        places=row.places or [],
        next_page_token=row.next_page_token,
        result_count=row.result_count,
        new_in_region=row.new_in_region,
    )


# A bought answer stored in the same statement as its places (rollout/db/page_writes.py):
# kept as stored at once (no places: they are in `businesses`), with its outcome, for a
# retry to return. `{new_in_region}` is the statement's count of new region links.
STORED_ANSWER_CTE = """
    answer AS (
        INSERT INTO places_answers (request_id, community_rollout_id, sku, cost, places,
                                    next_page_token, result_count, new_in_region)
        VALUES (:answer_request_id, :answer_community_rollout_id, :answer_sku,
                CAST(:answer_cost AS numeric), NULL, :answer_next_page_token,
                :answer_result_count, {new_in_region})
        ON CONFLICT (request_id) DO NOTHING
    )
"""


def stored_answer_parameters(
    request_id: str,
    community_rollout_id: int,
    *,
    sku: str,
    cost: Decimal,
    next_page_token: str | None,
    result_count: int,
) -> dict[str, object]:
    """The bound values of STORED_ANSWER_CTE."""
    return {
        "answer_request_id": request_id,
        "answer_community_rollout_id": community_rollout_id,
        "answer_sku": sku,
        "answer_cost": cost,
        "answer_next_page_token": next_page_token,
        "answer_result_count": result_count,
    }


async def mark_stored(session: AsyncSession, request_id: str, new_in_region: int) -> None:
    """The answer's places are in `businesses`: drop the copy, keep the outcome."""
    await session.execute(
        update(PlacesAnswer)
        .where(PlacesAnswer.request_id == request_id)
        .values(places=None, new_in_region=new_in_region)
    )


async def forget(session: AsyncSession, community_rollout_id: int) -> None:
    """A community's phase 1 is done: no activity of it will retry."""
    await session.execute(
        delete(PlacesAnswer).where(PlacesAnswer.community_rollout_id == community_rollout_id)
    )
