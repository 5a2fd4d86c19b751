"""Phase 4's own-website enrichment: each business takes the profile its site published.

Phase 2 read every home page and kept what the business says about itself
(`website_scans.found.profile`, rollout/phases/enrichment/site_profile.py); this copies the
latest one onto the business, where the platforms' payloads read it (phase 6). No request
is made: the pages were fetched once, in phase 2.
"""

from __future__ import annotations

from sqlalchemy import literal, update
from sqlalchemy.ext.asyncio import AsyncSession

from rollout.db.community_scope import community_business_ids
from rollout.db.models import Business, WebsiteScan


async def merge_site_profiles(session: AsyncSession, community_id: int) -> int:
    """Give each of the community's businesses the profile of its latest website scan;
    returns how many have one (a re-run writes the same values: idempotent)."""
    result = await session.execute(
        update(Business)
        .where(
            Business.id == WebsiteScan.business_id,
            Business.id.in_(community_business_ids(community_id)),
            WebsiteScan.found.has_key("profile"),
            # A page with only unreadable blocks has a profile of no fields.
            WebsiteScan.found["profile"]["fields"] != literal({}, WebsiteScan.found.type),
        )
        .values(
            website_profile=WebsiteScan.found["profile"],
            website_profile_at=WebsiteScan.scanned_at,
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
