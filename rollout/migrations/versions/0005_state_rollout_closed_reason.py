"""state_rollouts.closed_reason: why a rollout was closed outside its workflow (reconcile)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("state_rollouts", sa.Column("closed_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("state_rollouts", "closed_reason")
