"""Billed phase 1 answers kept until stored (places_answers), so a retry never buys twice."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

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


async def load(session: AsyncSession, request_id: str) -> KeptAnswer | None:
    row = await session.get(PlacesAnswer, request_id)
    if row is None:
        return None
    return KeptAnswer(
        request_id=row.request_id,
        community_rollout_id=row.community_rollout_id,
        sku=row.sku,
        cost=row.cost,
        places=row.places or [],
        next_page_token=row.next_page_token,
        result_count=row.result_count,
        new_in_region=row.new_in_region,
    )


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
