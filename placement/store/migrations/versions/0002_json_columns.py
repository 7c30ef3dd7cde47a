"""JSON documents on PostgreSQL: lz4 compression, no planner statistics

Every decision stores its full explanation (10-25 KB of JSON). PostgreSQL compresses such
values with pglz by default; lz4 costs about a third of the insert time at nearly the same
size (needs PostgreSQL 14 or newer built with lz4). No query filters or sorts on these
columns, so ANALYZE skips them (statistics target 0) instead of decompressing sampled rows.
On SQLite this revision changes nothing.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 13:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = (("decisions", "explanation"), ("workloads", "document"))
NO_STATISTICS = (*COLUMNS, ("events", "detail"))


def _lz4_available(bind: sa.Connection) -> bool:
    if bind.dialect.name != "postgresql" or (bind.dialect.server_version_info or (0,)) < (14,):
        return False
    # The server lists lz4 among default_toast_compression's values only when built with it.
    row = bind.execute(sa.text("SELECT enumvals FROM pg_settings "
                               "WHERE name = 'default_toast_compression'")).first()
    return row is not None and "lz4" in (row[0] or [])


def _set(method: str, statistics: int) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    if _lz4_available(bind):
        for table, column in COLUMNS:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION {method}")
    for table, column in NO_STATISTICS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET STATISTICS {statistics}")


def upgrade() -> None:
    _set("lz4", 0)


def downgrade() -> None:
    _set("pglz", -1)  # -1: the server's default_statistics_target
