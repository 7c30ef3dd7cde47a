"""Alembic, driven from code: upgrade, downgrade and the check the service runs at start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from placement.errors import PlacementError
from placement.store.db import Database

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class SchemaOutOfDateError(PlacementError):
    """The database schema is not at the code's head revision."""

    def __init__(self, current: str | None, head: str) -> None:
        self.current = current
        self.head = head
        super().__init__(
            f"database schema is at revision {current or 'none (empty database)'}, the code "
            f"needs {head}; run `placement db upgrade` or start with migrations enabled")


def alembic_config(db: Database) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", db.url.replace("%", "%%"))
    cfg.attributes["engine"] = db.engine
    return cfg


def head_revision(db: Database) -> str:
    head = ScriptDirectory.from_config(alembic_config(db)).get_current_head()
    assert head is not None
    return head


def current_revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(db: Database, revision: str = "head") -> None:
    """Migrate up (idempotent; concurrent callers on PostgreSQL take turns)."""
    command.upgrade(alembic_config(db), revision)


def downgrade(db: Database, revision: str = "base") -> None:
    command.downgrade(alembic_config(db), revision)


def ensure_schema(db: Database, migrate: bool) -> None:
    """Upgrade to head, or when `migrate` is False refuse a database that is not at head."""
    if migrate:
        upgrade(db)
        return
    current, head = current_revision(db), head_revision(db)
    if current != head:
        raise SchemaOutOfDateError(current, head)
