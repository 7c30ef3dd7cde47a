"""servings: where Triton serves each service workload and the actuator's progress

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "servings",
        sa.Column("workload_id", sa.Uuid(), sa.ForeignKey("workloads.id"), primary_key=True),
        sa.Column("site", sa.String(63), nullable=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("model", sa.String(63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=True),
        sa.Column("metrics_url", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("claimed_until", TS, nullable=True),
        sa.Column("claim_token", sa.String(32), nullable=True),
        sa.Column("ready_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_servings_status_next", "servings", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_servings_status_next", table_name="servings")
    op.drop_table("servings")
