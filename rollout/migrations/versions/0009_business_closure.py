"""businesses.closed_at, closed_reason, moved_to_place_id: what a retention run learned
about a place from Google (its id no longer found, closed for good, moved to another id)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 09:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("businesses", sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("businesses", sa.Column("closed_reason", sa.String(32), nullable=True))
    op.add_column("businesses", sa.Column("moved_to_place_id", sa.String(255), nullable=True))
    op.create_check_constraint(
        op.f("ck_businesses_closed_reason_word"),
        "businesses",
        "closed_reason IN ('not_found', 'closed_permanently', 'moved')",
    )
    op.create_check_constraint(
        op.f("ck_businesses_closed_together"),
        "businesses",
        "(closed_at IS NULL) = (closed_reason IS NULL)",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_businesses_closed_together"), "businesses", type_="check")
    op.drop_constraint(op.f("ck_businesses_closed_reason_word"), "businesses", type_="check")
    op.drop_column("businesses", "moved_to_place_id")
    op.drop_column("businesses", "closed_reason")
    op.drop_column("businesses", "closed_at")
