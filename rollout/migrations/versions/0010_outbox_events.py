"""platform_outbox.event, version, next_attempt_at, claimed_until: update and tombstone
events in order, delivered by the outbox relay with backoff (rollout/phases/seeding/)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "platform_outbox",
        sa.Column("event", sa.String(16), server_default="upsert", nullable=False),
    )
    op.add_column(
        "platform_outbox",
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
    )
    op.add_column(
        "platform_outbox",
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "platform_outbox",
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_check_constraint(
        op.f("ck_platform_outbox_event_word"),
        "platform_outbox",
        "event IN ('upsert', 'tombstone')",
    )
    op.create_index(
        "ix_platform_outbox_due",
        "platform_outbox",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'failed')"),
    )


def downgrade() -> None:
    op.drop_index("ix_platform_outbox_due", table_name="platform_outbox")
    op.drop_constraint(op.f("ck_platform_outbox_event_word"), "platform_outbox", type_="check")
    op.drop_column("platform_outbox", "claimed_until")
    op.drop_column("platform_outbox", "next_attempt_at")
    op.drop_column("platform_outbox", "version")
    op.drop_column("platform_outbox", "event")
