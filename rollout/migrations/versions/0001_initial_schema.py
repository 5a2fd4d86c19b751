"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-29 12:42:01.595988
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "communities",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("state_code", sa.String(length=2), nullable=False),
        sa.Column("latitude", sa.Double(), nullable=False),
        sa.Column("longitude", sa.Double(), nullable=False),
        sa.Column("population", sa.Integer(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=32), server_default="geonames", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "latitude BETWEEN -90 AND 90", name=op.f("ck_communities_latitude_range")
        ),
        sa.CheckConstraint(
            "longitude BETWEEN -180 AND 180", name=op.f("ck_communities_longitude_range")
        ),
        sa.CheckConstraint("population >= 0", name=op.f("ck_communities_population_non_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_communities")),
    )
    op.create_index(op.f("ix_communities_state_code"), "communities", ["state_code"], unique=False)
    op.create_table(
        "regions",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("slug", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("state_code", sa.String(length=2), nullable=False),
        sa.Column("kind", sa.String(length=32), server_default="community", nullable=False),
        sa.Column("center_latitude", sa.Double(), nullable=False),
        sa.Column("center_longitude", sa.Double(), nullable=False),
        sa.Column("radius_m", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("radius_m > 0", name=op.f("ck_regions_radius_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_regions")),
        sa.UniqueConstraint("slug", name=op.f("uq_regions_slug")),
    )
    op.create_index(op.f("ix_regions_state_code"), "regions", ["state_code"], unique=False)
    op.create_table(
        "state_rollouts",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("state_code", sa.String(length=2), nullable=False),
        sa.Column("state_name", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="planned", nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=False),
        sa.Column("total_communities", sa.Integer(), server_default="0", nullable=False),
        sa.Column("completed_communities", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failed_communities", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cancelled_communities", sa.Integer(), server_default="0", nullable=False),
        sa.Column("total_businesses", sa.Integer(), server_default="0", nullable=False),
        sa.Column("total_news_sources", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "total_cost", sa.Numeric(precision=14, scale=6), server_default="0", nullable=False
        ),
        sa.Column("budget_usd", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column(
            "settings",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("paused_reason", sa.Text(), nullable=True),
        sa.Column("initiated_by", sa.String(length=255), server_default="system", nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('planned', 'in_progress', 'paused', 'completed', 'cancelled', 'failed')",
            name=op.f("ck_state_rollouts_status_word"),
        ),
        sa.CheckConstraint(
            "budget_usd IS NULL OR budget_usd > 0", name=op.f("ck_state_rollouts_budget_positive")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_state_rollouts")),
    )
    op.create_index(
        op.f("ix_state_rollouts_state_code"), "state_rollouts", ["state_code"], unique=False
    )
    op.create_index(
        "uq_state_rollouts_active_state",
        "state_rollouts",
        ["state_code"],
        unique=True,
        postgresql_where=sa.text("status IN ('planned', 'in_progress', 'paused')"),
    )
    op.create_table(
        "businesses",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("place_id", sa.String(length=255), nullable=False),
        sa.Column("community_id", sa.BigInteger(), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("formatted_address", sa.Text(), nullable=True),
        sa.Column("latitude", sa.Double(), nullable=True),
        sa.Column("longitude", sa.Double(), nullable=True),
        sa.Column("primary_type", sa.String(length=100), nullable=True),
        sa.Column(
            "types", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("business_status", sa.String(length=32), nullable=True),
        sa.Column("website_uri", sa.Text(), nullable=True),
        sa.Column("national_phone_number", sa.String(length=64), nullable=True),
        sa.Column("google_maps_uri", sa.Text(), nullable=True),
        sa.Column("pure_service_area_business", sa.Boolean(), nullable=True),
        sa.Column("rating", sa.Numeric(precision=2, scale=1), nullable=True),
        sa.Column("user_rating_count", sa.Integer(), nullable=True),
        sa.Column("enrichment", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("enriched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "first_seen_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "last_seen_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("places_fetched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["community_id"],
            ["communities.id"],
            name=op.f("fk_businesses_community_id_communities"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_businesses")),
        sa.UniqueConstraint("place_id", name=op.f("uq_businesses_place_id")),
    )
    op.create_index(
        op.f("ix_businesses_community_id"), "businesses", ["community_id"], unique=False
    )
    op.create_index(
        op.f("ix_businesses_primary_type"), "businesses", ["primary_type"], unique=False
    )
    op.create_table(
        "community_region",
        sa.Column("community_id", sa.BigInteger(), nullable=False),
        sa.Column("region_id", sa.BigInteger(), nullable=False),
        sa.Column("is_primary", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.ForeignKeyConstraint(
            ["community_id"],
            ["communities.id"],
            name=op.f("fk_community_region_community_id_communities"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["region_id"],
            ["regions.id"],
            name=op.f("fk_community_region_region_id_regions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("community_id", "region_id", name=op.f("pk_community_region")),
    )
    op.create_index(
        op.f("ix_community_region_region_id"), "community_region", ["region_id"], unique=False
    )
    op.create_index(
        "uq_community_region_primary",
        "community_region",
        ["community_id"],
        unique=True,
        postgresql_where=sa.text("is_primary"),
    )
    op.create_table(
        "community_rollouts",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("state_rollout_id", sa.BigInteger(), nullable=False),
        sa.Column("community_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("is_priority", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="queued", nullable=False),
        sa.Column("current_phase", sa.SmallInteger(), nullable=True),
        sa.Column("failed_phase", sa.SmallInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("businesses_discovered", sa.Integer(), server_default="0", nullable=False),
        sa.Column("businesses_with_websites", sa.Integer(), server_default="0", nullable=False),
        sa.Column("news_sources_created", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "api_cost_estimate",
            sa.Numeric(precision=14, scale=6),
            server_default="0",
            nullable=False,
        ),
        sa.Column("retry_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("verification_report", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'processing', 'completed', 'failed', 'paused', 'cancelled')",
            name=op.f("ck_community_rollouts_status_word"),
        ),
        sa.CheckConstraint(
            "current_phase BETWEEN 1 AND 6", name=op.f("ck_community_rollouts_current_phase_range")
        ),
        sa.ForeignKeyConstraint(
            ["community_id"],
            ["communities.id"],
            name=op.f("fk_community_rollouts_community_id_communities"),
        ),
        sa.ForeignKeyConstraint(
            ["state_rollout_id"],
            ["state_rollouts.id"],
            name=op.f("fk_community_rollouts_state_rollout_id_state_rollouts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_community_rollouts")),
        sa.UniqueConstraint(
            "state_rollout_id",
            "community_id",
            name=op.f("uq_community_rollouts_state_rollout_id_community_id"),
        ),
    )
    op.create_index(
        op.f("ix_community_rollouts_community_id"),
        "community_rollouts",
        ["community_id"],
        unique=False,
    )
    op.create_index(
        "ix_community_rollouts_rollout_status",
        "community_rollouts",
        ["state_rollout_id", "status"],
        unique=False,
    )
    op.create_table(
        "business_region",
        sa.Column("business_id", sa.BigInteger(), nullable=False),
        sa.Column("region_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "first_seen_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["business_id"],
            ["businesses.id"],
            name=op.f("fk_business_region_business_id_businesses"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["region_id"],
            ["regions.id"],
            name=op.f("fk_business_region_region_id_regions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("business_id", "region_id", name=op.f("pk_business_region")),
    )
    op.create_index(
        op.f("ix_business_region_region_id"), "business_region", ["region_id"], unique=False
    )
    op.create_table(
        "community_rollout_phases",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("community_rollout_id", sa.BigInteger(), nullable=False),
        sa.Column("phase", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'completed', 'failed', 'skipped')",
            name=op.f("ck_community_rollout_phases_status_word"),
        ),
        sa.CheckConstraint(
            "phase BETWEEN 1 AND 6", name=op.f("ck_community_rollout_phases_phase_range")
        ),
        sa.ForeignKeyConstraint(
            ["community_rollout_id"],
            ["community_rollouts.id"],
            name=op.f("fk_community_rollout_phases_community_rollout_id_community_rollouts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_community_rollout_phases")),
        sa.UniqueConstraint(
            "community_rollout_id",
            "phase",
            name=op.f("uq_community_rollout_phases_community_rollout_id_phase"),
        ),
    )
    op.create_table(
        "news_sources",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("business_id", sa.BigInteger(), nullable=True),
        sa.Column("community_id", sa.BigInteger(), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("homepage_url", sa.Text(), nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["business_id"],
            ["businesses.id"],
            name=op.f("fk_news_sources_business_id_businesses"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["community_id"],
            ["communities.id"],
            name=op.f("fk_news_sources_community_id_communities"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_news_sources")),
        sa.UniqueConstraint("business_id", name=op.f("uq_news_sources_business_id")),
    )
    op.create_index(
        op.f("ix_news_sources_community_id"), "news_sources", ["community_id"], unique=False
    )
    op.create_table(
        "platform_outbox",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("entity_type", sa.String(length=32), nullable=False),
        sa.Column("entity_id", sa.BigInteger(), nullable=False),
        sa.Column("community_rollout_id", sa.BigInteger(), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "platform IN ('downtownguide', 'goeventcity', 'alphasite', 'crm')",
            name=op.f("ck_platform_outbox_platform_word"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')",
            name=op.f("ck_platform_outbox_status_word"),
        ),
        sa.ForeignKeyConstraint(
            ["community_rollout_id"],
            ["community_rollouts.id"],
            name=op.f("fk_platform_outbox_community_rollout_id_community_rollouts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_platform_outbox")),
        sa.UniqueConstraint(
            "platform",
            "entity_type",
            "entity_id",
            name=op.f("uq_platform_outbox_platform_entity_type_entity_id"),
        ),
    )
    op.create_index(
        op.f("ix_platform_outbox_community_rollout_id"),
        "platform_outbox",
        ["community_rollout_id"],
        unique=False,
    )
    op.create_index(
        "ix_platform_outbox_pending", "platform_outbox", ["platform", "status"], unique=False
    )
    op.create_table(
        "rollout_api_usage",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("request_key", sa.String(length=255), nullable=False),
        sa.Column("community_rollout_id", sa.BigInteger(), nullable=True),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("endpoint", sa.String(length=64), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("request_count", sa.Integer(), server_default="1", nullable=False),
        sa.Column("cost", sa.Numeric(precision=14, scale=6), nullable=False),
        sa.Column("result_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("http_status", sa.SmallInteger(), nullable=True),
        sa.Column(
            "requested_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("cost >= 0", name=op.f("ck_rollout_api_usage_cost_non_negative")),
        sa.CheckConstraint(
            "request_count >= 1", name=op.f("ck_rollout_api_usage_request_count_positive")
        ),
        sa.ForeignKeyConstraint(
            ["community_rollout_id"],
            ["community_rollouts.id"],
            name=op.f("fk_rollout_api_usage_community_rollout_id_community_rollouts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollout_api_usage")),
        sa.UniqueConstraint("request_key", name=op.f("uq_rollout_api_usage_request_key")),
    )
    op.create_index(
        op.f("ix_rollout_api_usage_community_rollout_id"),
        "rollout_api_usage",
        ["community_rollout_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_rollout_api_usage_requested_at"),
        "rollout_api_usage",
        ["requested_at"],
        unique=False,
    )
    op.create_table(
        "website_scans",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("business_id", sa.BigInteger(), nullable=False),
        sa.Column("community_rollout_id", sa.BigInteger(), nullable=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("final_url", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("http_status", sa.SmallInteger(), nullable=True),
        sa.Column(
            "found",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "scanned_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["business_id"],
            ["businesses.id"],
            name=op.f("fk_website_scans_business_id_businesses"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["community_rollout_id"],
            ["community_rollouts.id"],
            name=op.f("fk_website_scans_community_rollout_id_community_rollouts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_website_scans")),
        sa.UniqueConstraint("business_id", name=op.f("uq_website_scans_business_id")),
    )
    op.create_index(
        op.f("ix_website_scans_community_rollout_id"),
        "website_scans",
        ["community_rollout_id"],
        unique=False,
    )
    op.create_table(
        "collection_methods",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("news_source_id", sa.BigInteger(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("item_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "method IN ('rss', 'atom', 'ical', 'html')",
            name=op.f("ck_collection_methods_method_word"),
        ),
        sa.ForeignKeyConstraint(
            ["news_source_id"],
            ["news_sources.id"],
            name=op.f("fk_collection_methods_news_source_id_news_sources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_collection_methods")),
        sa.UniqueConstraint(
            "news_source_id",
            "method",
            "url",
            name=op.f("uq_collection_methods_news_source_id_method_url"),
        ),
    )


def downgrade() -> None:
    op.drop_table("collection_methods")
    op.drop_index(op.f("ix_website_scans_community_rollout_id"), table_name="website_scans")
    op.drop_table("website_scans")
    op.drop_index(op.f("ix_rollout_api_usage_requested_at"), table_name="rollout_api_usage")
    op.drop_index(op.f("ix_rollout_api_usage_community_rollout_id"), table_name="rollout_api_usage")
    op.drop_table("rollout_api_usage")
    op.drop_index("ix_platform_outbox_pending", table_name="platform_outbox")
    op.drop_index(op.f("ix_platform_outbox_community_rollout_id"), table_name="platform_outbox")
    op.drop_table("platform_outbox")
    op.drop_index(op.f("ix_news_sources_community_id"), table_name="news_sources")
    op.drop_table("news_sources")
    op.drop_table("community_rollout_phases")
    op.drop_index(op.f("ix_business_region_region_id"), table_name="business_region")
    op.drop_table("business_region")
    op.drop_index("ix_community_rollouts_rollout_status", table_name="community_rollouts")
    op.drop_index(op.f("ix_community_rollouts_community_id"), table_name="community_rollouts")
    op.drop_table("community_rollouts")
    op.drop_index(
        "uq_community_region_primary",
        table_name="community_region",
        postgresql_where=sa.text("is_primary"),
    )
    op.drop_index(op.f("ix_community_region_region_id"), table_name="community_region")
    op.drop_table("community_region")
    op.drop_index(op.f("ix_businesses_primary_type"), table_name="businesses")
    op.drop_index(op.f("ix_businesses_community_id"), table_name="businesses")
    op.drop_table("businesses")
    op.drop_index(
        "uq_state_rollouts_active_state",
        table_name="state_rollouts",
        postgresql_where=sa.text("status IN ('planned', 'in_progress', 'paused')"),
    )
    op.drop_index(op.f("ix_state_rollouts_state_code"), table_name="state_rollouts")
    op.drop_table("state_rollouts")
    op.drop_index(op.f("ix_regions_state_code"), table_name="regions")
    op.drop_table("regions")
    op.drop_index(op.f("ix_communities_state_code"), table_name="communities")
    op.drop_table("communities")
