"""Alembic upgrade and downgrade on SQLite and PostgreSQL; the start-up schema check."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from placement.store.db import Database, open_database
from placement.store.migrate import (
    SchemaOutOfDateError,
    current_revision,
    downgrade,
    ensure_schema,
    head_revision,
    upgrade,
)
from placement.store.tables import Base


def test_upgrade_downgrade_upgrade(db_url: str) -> None:
    db = open_database(db_url)
    try:
        upgrade(db)
        assert current_revision(db) == head_revision(db)
        tables = set(inspect(db.engine).get_table_names())
        assert set(Base.metadata.tables) <= tables
        downgrade(db, "base")
        assert current_revision(db) is None
        assert not set(Base.metadata.tables) & set(inspect(db.engine).get_table_names())
        upgrade(db)
        upgrade(db)  # idempotent
        assert current_revision(db) == head_revision(db)
        if db.dialect == "postgresql":  # the server here has lz4 (Debian builds it in)
            assert _compression(db, "decisions", "explanation") == "l"
            downgrade(db, "0001")
            assert _compression(db, "decisions", "explanation") == "p"
    finally:
        db.dispose()


def _compression(db: Database, table: str, column: str) -> str:
    with db.engine.connect() as conn:
        return str(conn.execute(text(
            "SELECT attcompression FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) "
            "AND attname = :c"), {"t": table, "c": column}).scalar_one())


def test_service_refuses_an_unmigrated_database_when_told_not_to_migrate(db_url: str) -> None:
    db = open_database(db_url)
    try:
        with pytest.raises(SchemaOutOfDateError, match="placement db upgrade"):
            ensure_schema(db, migrate=False)
        ensure_schema(db, migrate=True)
        ensure_schema(db, migrate=False)
    finally:
        db.dispose()


def test_migrations_match_the_models(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    db = open_database(db_url)
    try:
        upgrade(db)
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], "tables.py changed without a migration"
    finally:
        db.dispose()
