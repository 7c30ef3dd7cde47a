"""explanations compressed with lz4 on PostgreSQL

Every decision stores its full explanation (10-25 KB of JSON). PostgreSQL compresses such
values with pglz by default; lz4 costs about a third of the insert time at nearly the same
size. Needs PostgreSQL 14 or newer built with lz4; elsewhere (SQLite, or a server without
lz4) this revision changes nothing.

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


def _lz4_available(bind: sa.Connection) -> bool:
    if bind.dialect.name != "postgresql" or (bind.dialect.server_version_info or (0,)) < (14,):
        return False
    # The server lists lz4 among default_toast_compression's values only when built with it.
    row = bind.execute(sa.text("SELECT enumvals FROM pg_settings "
                               "WHERE name = 'default_toast_compression'")).first()
    return row is not None and "lz4" in (row[0] or [])


def _set(method: str) -> None:
    bind = op.get_bind()
    if _lz4_available(bind):
        for table, column in COLUMNS:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION {method}")


def upgrade() -> None:
    _set("lz4")


def downgrade() -> None:
    _set("pglz")
