"""discovery_sightings and discovery_purchases: phase 1's probe-then-buy (cover) strategy

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "discovery_sightings",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("run_key", sa.String(length=64), nullable=False),
        sa.Column("community_rollout_id", sa.BigInteger(), nullable=False),
        sa.Column("task_key", sa.Text(), nullable=False),
        sa.Column("page_number", sa.Integer(), nullable=False),
        sa.Column("paid", sa.Boolean(), nullable=False),
        sa.Column("task", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("place_ids", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.ForeignKeyConstraint(
            ["community_rollout_id"], ["community_rollouts.id"],
            name=op.f("fk_discovery_sightings_community_rollout_id_community_rollouts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_discovery_sightings")),
        sa.UniqueConstraint(
            "run_key", "task_key", "page_number", "paid",
            name=op.f("uq_discovery_sightings_run_key_task_key_page_number_paid"),
        ),
    )  # fmt: skip
    op.create_index(
        op.f("ix_discovery_sightings_community_rollout_id"),
        "discovery_sightings",
        ["community_rollout_id"],
    )
    op.create_table(
        "discovery_purchases",
        sa.Column("run_key", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("community_rollout_id", sa.BigInteger(), nullable=False),
        sa.Column("task", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("place_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.CheckConstraint("(task IS NULL) <> (place_id IS NULL)",
                           name=op.f("ck_discovery_purchases_search_or_details")),
        sa.CheckConstraint("pages >= 1", name=op.f("ck_discovery_purchases_pages_positive")),
        sa.ForeignKeyConstraint(
            ["community_rollout_id"], ["community_rollouts.id"],
            name=op.f("fk_discovery_purchases_community_rollout_id_community_rollouts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_key", "seq", name=op.f("pk_discovery_purchases")),
    )  # fmt: skip
    op.create_index(
        op.f("ix_discovery_purchases_community_rollout_id"),
        "discovery_purchases",
        ["community_rollout_id"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_discovery_purchases_community_rollout_id"), table_name="discovery_purchases"
    )
    op.drop_table("discovery_purchases")
    op.drop_index(
        op.f("ix_discovery_sightings_community_rollout_id"), table_name="discovery_sightings"
    )
    op.drop_table("discovery_sightings")
