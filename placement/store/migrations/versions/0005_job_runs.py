"""job_runs: training and batch jobs on their clusters, estimates beside actuals

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 16:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "job_runs",
        sa.Column("workload_id", sa.Uuid(), sa.ForeignKey("workloads.id"), primary_key=True),
        sa.Column("site", sa.String(63), nullable=False),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("interruptions", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("claimed_until", TS, nullable=True),
        sa.Column("claim_token", sa.String(32), nullable=True),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("staged_bytes", sa.BigInteger(), nullable=False),
        sa.Column("estimated_hours", sa.Double(), nullable=True),
        sa.Column("estimated_usd", sa.Double(), nullable=True),
        sa.Column("estimated_egress_gb", sa.Double(), nullable=True),
        sa.Column("actual_hours", sa.Double(), nullable=True),
        sa.Column("actual_usd", sa.Double(), nullable=True),
        sa.Column("usd_per_hour", sa.Double(), nullable=True),
        sa.Column("deadline_hours", sa.Double(), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_job_runs_status_next", "job_runs", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_job_runs_status_next", table_name="job_runs")
    op.drop_table("job_runs")
