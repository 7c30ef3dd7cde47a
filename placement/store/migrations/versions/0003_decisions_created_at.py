"""index decisions by creation time (the dashboard's spend over the last day and month)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 15:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_decisions_created_at", "decisions", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_decisions_created_at", table_name="decisions")
