"""state_rollouts.workflow_run_id: idempotent initiation across retries

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("state_rollouts", sa.Column("workflow_run_id", sa.String(64), nullable=True))
    op.create_unique_constraint(
        op.f("uq_state_rollouts_workflow_run_id"), "state_rollouts", ["workflow_run_id"]
    )


def downgrade() -> None:
    op.drop_constraint(op.f("uq_state_rollouts_workflow_run_id"), "state_rollouts", type_="unique")
    op.drop_column("state_rollouts", "workflow_run_id")
