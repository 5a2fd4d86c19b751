"""Which businesses belong to a community, for phases 2-6.

Phase 1 upserts businesses by place id (`businesses.community_id` keeps the community that
found a place first) and links each to the region it was found in (`business_region`). A
business belongs to a community when either says so: a place in the overlap of two towns'
regions is scanned, verified and seeded for both, which is idempotent because every later
row is keyed by business, not by community.
"""

from __future__ import annotations

from sqlalchemy import Select, or_, select

from rollout.db.models import Business, BusinessRegion, CommunityRegion


def community_business_ids(community_id: int) -> Select[int]:
    linked = (
        select(BusinessRegion.business_id)
        .join(CommunityRegion, CommunityRegion.region_id == BusinessRegion.region_id)
        .where(CommunityRegion.community_id == community_id)
    )
    return select(Business.id).where(
        or_(Business.community_id == community_id, Business.id.in_(linked))
    )
