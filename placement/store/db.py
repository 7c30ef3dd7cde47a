"""Database engines and sessions: SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from placement.jsoncodec import dumps_str, loads

DEFAULT_URL = "sqlite:///placement.db"


def normalize_url(url: str) -> str:
    """Use the psycopg 3 driver for plain postgresql:// URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def utcnow() -> datetime:
    """Timezone-aware UTC now."""
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes: they were written as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _sqlite_engine(url: str, immediate: bool) -> Engine:
    eng = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60},
                        pool_size=8, max_overflow=16, json_serializer=dumps_str,
                        json_deserializer=loads)

    @event.listens_for(eng, "connect")
    def _connect(dbapi_conn: Any, _: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(eng, "begin")
    def _begin(conn: Any) -> None:
        # Writers take the database lock up front, so two writers never deadlock on upgrade.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return eng


@dataclass
class Database:
    """Engines and session factories for one database URL."""

    url: str
    engine: Engine
    read_engine: Engine
    writes: sessionmaker[Session]
    reads: sessionmaker[Session]

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that may write; committed on success, rolled back on error."""
        with self.writes() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction."""
        with self.reads() as session, session.begin():
            yield session

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read-only transaction whose statements all see one state of the store, for a
        sum read in several statements (PostgreSQL: REPEATABLE READ; a SQLite read
        transaction is one snapshot already)."""
        with self.reads() as session, session.begin():
            if self.dialect == "postgresql":
                session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()


def ping(session: Session) -> None:
    """One round trip (`SELECT 1`); raises when the database does not answer."""
    session.execute(text("SELECT 1"))


def open_database(url: str = DEFAULT_URL) -> Database:
    """Engines for `url`; nothing is created or migrated here."""
    url = normalize_url(url)
    if is_sqlite(url):
        write_eng = _sqlite_engine(url, immediate=True)
        read_eng = _sqlite_engine(url, immediate=False)
    else:
        # No pre-ping (a round trip per checkout); stale connections are recycled instead and
        # a failed statement surfaces as 503 with Retry-After. LIFO keeps the few connections
        # in use hot (their prepared statements and caches) instead of rotating through all.
        write_eng = create_engine(url, pool_size=20, max_overflow=20, pool_recycle=300,
                                  pool_use_lifo=True,
                                  json_serializer=dumps_str, json_deserializer=loads)
        read_eng = write_eng
    return Database(url, write_eng, read_eng,
                    sessionmaker(write_eng, expire_on_commit=False),
                    sessionmaker(read_eng, expire_on_commit=False))
