"""servings per (workload, site): a fleet is served from several sites, one row each

The table gets its own key (`id`, the workload's id for the rows already stored, which stay as
they are), a unique (workload_id, site) and a `replicas` column (a fleet member's replicas;
null: the spec's). The table is copied rather than altered so that SQLite and PostgreSQL take
the same steps. Downgrading keeps one row per workload (the one keyed by its id, else the
first site by name).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 17:00:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
COMMON = ("workload_id", "site", "namespace", "name", "model", "version", "status", "endpoint",
          "metrics_url", "message", "attempts", "next_attempt_at", "claimed_until",
          "claim_token", "ready_at", "updated_at")


def _columns() -> list[sa.Column[Any]]:
    return [
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
    ]


def _swap(new: str) -> None:
    """Replace `servings` by the table `new` (already filled), keeping the index name."""
    op.drop_index("ix_servings_status_next", table_name="servings")
    op.drop_table("servings")
    op.rename_table(new, "servings")
    op.create_index("ix_servings_status_next", "servings", ["status", "next_attempt_at"])


def upgrade() -> None:
    op.create_table(
        "servings_by_site",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workload_id", sa.Uuid(), nullable=False),
        *_columns(),
        sa.Column("replicas", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_servings_by_site"),
        sa.ForeignKeyConstraint(["workload_id"], ["workloads.id"],
                                name="fk_servings_by_site_workload"),
        sa.UniqueConstraint("workload_id", "site", name="uq_servings_workload_site"),
    )
    columns = ", ".join(COMMON)
    op.execute(f"INSERT INTO servings_by_site (id, {columns}) "
               f"SELECT workload_id, {columns} FROM servings")
    _swap("servings_by_site")


def downgrade() -> None:
    op.create_table(
        "servings_one",
        sa.Column("workload_id", sa.Uuid(), nullable=False),
        *_columns(),
        sa.PrimaryKeyConstraint("workload_id", name="pk_servings_one"),
        sa.ForeignKeyConstraint(["workload_id"], ["workloads.id"],
                                name="fk_servings_one_workload"),
    )
    columns = ", ".join(COMMON)
    op.execute(f"INSERT INTO servings_one ({columns}) "
               f"SELECT {columns} FROM servings s WHERE s.id = s.workload_id OR ("
               "NOT EXISTS (SELECT 1 FROM servings k WHERE k.id = k.workload_id "
               "AND k.workload_id = s.workload_id) "
               "AND s.site = (SELECT MIN(m.site) FROM servings m "
               "WHERE m.workload_id = s.workload_id))")
    _swap("servings_one")
