"""Alembic environment: runs migrations on the engine handed over by placement.store.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, text

from placement.store.tables import Base

config = context.config
target_metadata = Base.metadata
_LOCK_KEY = 7_311_202_611  # pg advisory lock id for migrations


def run_migrations_online() -> None:
    engine: Engine = config.attributes["engine"]
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # Two replicas starting together must not both run the same migration.
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
            connection.commit()
        try:
            context.configure(connection=connection, target_metadata=target_metadata,
                              render_as_batch=connection.dialect.name == "sqlite")
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
                connection.commit()


run_migrations_online()
