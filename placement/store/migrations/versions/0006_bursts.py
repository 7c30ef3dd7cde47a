"""bursts: cloud capacity provisioned per workload (one Pulumi stack each) and its spend

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "bursts",
        sa.Column("workload_id", sa.Uuid(), sa.ForeignKey("workloads.id"), primary_key=True),
        sa.Column("stack", sa.String(80), nullable=False, unique=True),
        sa.Column("team", sa.String(63), nullable=False),
        sa.Column("site", sa.String(63), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("usd_per_hour", sa.Double(), nullable=False),
        sa.Column("budget_usd", sa.Double(), nullable=True),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("spent_usd", sa.Double(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("claimed_until", TS, nullable=True),
        sa.Column("claim_token", sa.String(32), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("ready_at", TS, nullable=True),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_bursts_status_next", "bursts", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_bursts_status_next", table_name="bursts")
    op.drop_table("bursts")
