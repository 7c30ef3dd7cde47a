"""decisions.candidate_columns: every candidate of a decision as packed columns

A decision's explanation now stores the Decision's fields without its candidates; the
candidates are stored beside it, packed (placement.engine.explain.Columns), and worded when
read. Rows stored before keep their candidates in the explanation and a null here; reads
return them as they are. Downgrading drops the column: decisions stored since then lose their
per-candidate detail (their fields, the chosen candidate's estimates included, stay).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("candidate_columns", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("candidate_columns")
