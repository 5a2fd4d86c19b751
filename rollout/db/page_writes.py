"""A bought phase 1 page written in one statement (issue #16).

The statement holds every row the answer brings, as data-modifying common table
expressions: the billed request's log row (rollout/db/usage.py), the page's ids under the
exploration (`discovery_sightings`), for a paid page its places and their region links
(rollout/db/businesses.py), and the answer kept as already stored, with its outcome, for a
retry to return (rollout/db/answers.py). A statement is atomic: either all of it is written
or none, so the log row is never lost to a failure of the rest; when it fails, the caller
falls back to logging and keeping the answer first (activities/billing.py), then storing it.

Written one by one, with a transaction each, these rows cost a Places activity about twenty
round trips to Postgres; this is one statement in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from rollout.db.answers import STORED_ANSWER_CTE, stored_answer_parameters
from rollout.db.businesses import UPSERT_CTES, upsert_parameters
from rollout.db.usage import USAGE_CTE, BilledRequest, usage_parameters
from rollout.places.models import Place

_SIGHTING_CTE = """
    sighting AS (
        INSERT INTO discovery_sightings (run_key, community_rollout_id, task_key, page_number,
                                         paid, task, place_ids)
        VALUES (:sighting_run_key, :sighting_community_rollout_id, :sighting_task_key,
                :sighting_page_number, :sighting_paid, CAST(:sighting_task AS jsonb),
                CAST(:sighting_place_ids AS text[]))
        ON CONFLICT (run_key, task_key, page_number, paid)
        DO UPDATE SET place_ids = excluded.place_ids
    )
"""


@dataclass(frozen=True)
class PageSighting:
    """The page's ids, kept under the exploration's key (a retry replaces them)."""

    run_key: str
    task_key: str
    page_number: int
    paid: bool
    task: dict[str, Any]  # the SearchTask as JSON, to buy the page later


@dataclass(frozen=True)
class PageStore:
    """Where a paid page's places go: inserted or refreshed, linked to the region."""

    community_id: int
    region_id: int
    enriched: bool = True


def _statement(sighting: bool, store: bool) -> TextClause:
    ctes = [USAGE_CTE]
    if sighting:
        ctes.append(_SIGHTING_CTE)
    if store:
        ctes.append(UPSERT_CTES)
    new_in_region = "(SELECT count(*) FROM linked)" if store else "0"
    ctes.append(STORED_ANSWER_CTE.format(new_in_region=new_in_region))
    return text(f"WITH {','.join(ctes)} SELECT {new_in_region}")


# Four fixed texts, so SQLAlchemy compiles each once and asyncpg prepares each once per
# connection.
_STATEMENTS = {(s, p): _statement(s, p) for s in (False, True) for p in (False, True)}


async def write_bought_page(
    session: AsyncSession,
    billed: BilledRequest,
    *,
    request_id: str,
    places: Sequence[Place],
    next_page_token: str | None,
    sighting: PageSighting | None,
    store: PageStore | None,
) -> int:
    """Write the page's rows in one statement; returns how many of its places the region
    did not have yet (0 unless `store`)."""
    assert billed.community_rollout_id is not None
    with_sighting = sighting is not None and bool(places)
    with_store = store is not None and bool(places)
    params: dict[str, object] = {
        **usage_parameters(billed),
        **stored_answer_parameters(
            request_id,
            billed.community_rollout_id,
            sku=billed.sku,
            cost=billed.cost,
            next_page_token=next_page_token,
            result_count=len(places),
        ),
    }
    if with_sighting:
        assert sighting is not None
        params.update(
            sighting_run_key=sighting.run_key,
            sighting_community_rollout_id=billed.community_rollout_id,
            sighting_task_key=sighting.task_key,
            sighting_page_number=sighting.page_number,
            sighting_paid=sighting.paid,
            sighting_task=json.dumps(sighting.task),
            sighting_place_ids=[p.id for p in places],
        )
    if with_store:
        assert store is not None
        params.update(
            upsert_parameters(
                places,
                community_id=store.community_id,
                region_id=store.region_id,
                enriched=store.enriched,
            )
        )
    result = await session.execute(_STATEMENTS[with_sighting, with_store], params)
    return int(result.scalar_one())
