"""rollout_api_usage.outcome and places_answers: every billed request logged, none bought twice

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "rollout_api_usage",
        sa.Column("outcome", sa.String(length=16), server_default="ok", nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_rollout_api_usage_outcome_known"),
        "rollout_api_usage",
        "outcome IN ('ok', 'malformed', 'timeout')",
    )
    op.create_table(
        "places_answers",
        sa.Column("request_id", sa.String(length=255), nullable=False),
        sa.Column("community_rollout_id", sa.BigInteger(), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("cost", sa.Numeric(precision=14, scale=6), nullable=False),
        sa.Column("places", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("next_page_token", sa.Text(), nullable=True),
        sa.Column("result_count", sa.Integer(), nullable=False),
        sa.Column("new_in_region", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
        sa.ForeignKeyConstraint(
            ["community_rollout_id"], ["community_rollouts.id"],
            name=op.f("fk_places_answers_community_rollout_id_community_rollouts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_places_answers")),
    )  # fmt: skip
    op.create_index(
        op.f("ix_places_answers_community_rollout_id"), "places_answers", ["community_rollout_id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_places_answers_community_rollout_id"), table_name="places_answers")
    op.drop_table("places_answers")
    op.drop_constraint(
        op.f("ck_rollout_api_usage_outcome_known"), "rollout_api_usage", type_="check"
    )
    op.drop_column("rollout_api_usage", "outcome")
