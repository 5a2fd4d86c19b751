"""businesses.places_purged_at, place_id_checked_at and the business_field_sources view:
Google's storage terms kept (rollout/retention.py)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# One row per stored value of a business and where it came from: `google` (Places, with the
# time it was fetched), `website` (the business's own home page, with the schema.org or meta
# source of each value and the time of the scan). The columns are listed here rather than
# read from the models so that this revision stays what it was when the models change; a
# later revision that drops or retypes one of them recreates the view. A JSON value that
# is not an object (the JSON null, a list) reads as no fields rather than failing the view.
_VIEW = """
CREATE VIEW business_field_sources AS
SELECT b.id AS business_id, f.field, 'google'::text AS source, f.detail, f.as_of
FROM businesses b
CROSS JOIN LATERAL (VALUES
    ('place_id', 'place id',
     greatest(b.place_id_checked_at, b.places_fetched_at, b.first_seen_at), true),
    ('name', 'places', b.places_fetched_at, b.name IS NOT NULL),
    ('formatted_address', 'places', b.places_fetched_at, b.formatted_address IS NOT NULL),
    ('latitude', 'places', b.places_fetched_at, b.latitude IS NOT NULL),
    ('longitude', 'places', b.places_fetched_at, b.longitude IS NOT NULL),
    ('primary_type', 'places', b.places_fetched_at, b.primary_type IS NOT NULL),
    ('types', 'places', b.places_fetched_at, cardinality(b.types) > 0),
    ('business_status', 'places', b.places_fetched_at, b.business_status IS NOT NULL),
    ('website_uri', 'places', b.places_fetched_at, b.website_uri IS NOT NULL),
    ('national_phone_number', 'places', b.places_fetched_at,
     b.national_phone_number IS NOT NULL),
    ('google_maps_uri', 'places', b.places_fetched_at, b.google_maps_uri IS NOT NULL),
    ('pure_service_area_business', 'places', b.places_fetched_at,
     b.pure_service_area_business IS NOT NULL),
    ('rating', 'places', b.places_fetched_at, b.rating IS NOT NULL),
    ('user_rating_count', 'places', b.places_fetched_at, b.user_rating_count IS NOT NULL)
) AS f(field, detail, as_of, present)
WHERE f.present
UNION ALL
SELECT b.id, 'enrichment.' || e.key, 'google', 'place details',
       coalesce(b.enriched_at, b.places_fetched_at)
FROM businesses b
CROSS JOIN LATERAL jsonb_each(
    CASE WHEN jsonb_typeof(b.enrichment) = 'object' THEN b.enrichment ELSE '{}' END
) AS e
UNION ALL
SELECT b.id, 'website_profile.' || w.key, 'website', w.value ->> 'source', b.website_profile_at
FROM businesses b
CROSS JOIN LATERAL jsonb_each(
    CASE WHEN jsonb_typeof(b.website_profile -> 'fields') = 'object'
         THEN b.website_profile -> 'fields' ELSE '{}' END
) AS w
"""


def upgrade() -> None:
    op.add_column(
        "businesses", sa.Column("places_purged_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "businesses", sa.Column("place_id_checked_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute(_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW business_field_sources")
    op.drop_column("businesses", "place_id_checked_at")
    op.drop_column("businesses", "places_purged_at")
