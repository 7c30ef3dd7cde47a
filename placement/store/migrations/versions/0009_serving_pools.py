"""servings.pools: a fleet member site's replicas per (GPU type, capacity)

A site of a fleet may serve with spot and on-demand replicas, or with two GPU types: each
(gpu_type, capacity) gets its own Deployment, on the nodes that have them. Null for the rows
stored before (one Deployment, as they were applied).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 19:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("servings") as table:
        table.add_column(sa.Column("pools", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("servings") as table:
        table.drop_column("pools")
