"""community_rollouts.retry_count dropped: nothing ever wrote it (Temporal's retry policies
count attempts, and the activity's attempt number is in the workflow history)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_column("community_rollouts", "retry_count")


def downgrade() -> None:
    op.add_column(
        "community_rollouts",
        sa.Column("retry_count", sa.Integer(), server_default="0", nullable=False),
    )
