"""New submissions in the store: a batch's rows inserted in one transaction (pipelined on
PostgreSQL) with its guarded capacity updates, and the lookups around it (retries by
Idempotency-Key, which rows of a batch a failed COMMIT left stored)."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from sqlalchemy import Table, insert, select, tuple_
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from placement.jsoncodec import dumps_str
from placement.store.capacity import TAKE_PG, check_taken, take_gpus, take_params
from placement.store.tables import DecisionRow, EventRow, ReservationRow, WorkloadRow

Row = dict[str, Any]


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


def _columns(model: Any) -> list[str]:
    return [c.key for c in _table(model).columns if c.autoincrement is not True]


_WORKLOAD_COLUMNS = _columns(WorkloadRow)
_DECISION_COLUMNS = _columns(DecisionRow)
_EVENT_COLUMNS = _columns(EventRow)
_RESERVATION_COLUMNS = _columns(ReservationRow)


def _json_insert(model: Any, columns: list[str]) -> tuple[str, str | None]:
    """PostgreSQL: all rows of a table in one statement from one JSON array (encoded by
    orjson in C; the server turns it into rows), far less client CPU than a parameter per
    value. A decision's explanation comes apart, one text per row, so the server parses it
    once, as the json column's input, not also as part of the array; its packed candidates
    (bytes) come apart too, as one bytea per row."""
    table = _table(model)
    cols = ", ".join(columns)
    if model is not DecisionRow:
        return (f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM "
                f"json_populate_recordset(NULL::{table.name}, %s::json)"), None
    picked = ", ".join("e.x::json" if c == "explanation" else "e.c" if c == "candidate_columns"
                       else f"r.{c}" for c in columns)
    return (f"INSERT INTO {table.name} ({cols}) SELECT {picked} FROM "
            f"json_populate_recordset(NULL::{table.name}, %s::json) WITH ORDINALITY AS r "
            "JOIN unnest(%b::text[], %b::bytea[]) WITH ORDINALITY AS e(x, c, n) "
            "ON e.n = r.ordinality"), "explanation"


_INSERTS = [_json_insert(m, cols)
            for m, cols in ((WorkloadRow, _WORKLOAD_COLUMNS), (DecisionRow, _DECISION_COLUMNS),
                            (EventRow, _EVENT_COLUMNS), (ReservationRow, _RESERVATION_COLUMNS))]


def _write_pipelined(s: Session, tables: list[list[dict[str, Any]]],
                     need: list[tuple[tuple[str, str], int]]) -> None:
    """PostgreSQL: every insert and guarded update of the batch in one pipeline (one round
    trip instead of one per statement); the caller's transaction commits it."""
    raw = s.connection().connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    takes: list[psycopg.Cursor[Any]] = []
    try:
        with raw.pipeline(), raw.cursor() as cur:
            for (sql, apart), rows in zip(_INSERTS, tables, strict=True):
                if not rows:
                    continue
                if apart is None:
                    cur.execute(sql, (dumps_str(rows),))
                else:  # the explanation and the packed candidates go beside the rows
                    texts = [dumps_str(r[apart]) for r in rows]
                    packed = [r["candidate_columns"] for r in rows]
                    cur.execute(sql, (dumps_str([{**r, apart: None, "candidate_columns": None}
                                                 for r in rows]), texts, packed))
            for (site, gpu), n in need:
                take = raw.cursor()
                take.execute(TAKE_PG, take_params(site=site, gpu=gpu, n=n))
                takes.append(take)
    except psycopg.IntegrityError as exc:
        raise IntegrityError(_INSERTS[0][0], None, exc) from exc
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:  # the connection broke
        raise OperationalError(_INSERTS[0][0], None, exc) from exc
    except psycopg.Error as exc:  # a value the server refused (range, encoding, a CHECK)
        raise DBAPIError(_INSERTS[0][0], None, exc) from exc
    for take, ((site, gpu), _) in zip(takes, need, strict=True):
        check_taken(take.rowcount, site=site, gpu=gpu)


def insert_new(s: Session, *, postgresql: bool, tables: list[list[Row]],
               need: list[tuple[tuple[str, str], int]]) -> None:
    """Insert a batch's workloads, decisions, events and reservations (`tables`, in that
    order), then take each (site, GPU type)'s GPUs with the guarded update, in `need`'s order
    (one order everywhere: no deadlocks); CapacityConflict when one is short."""
    if postgresql:
        _write_pipelined(s, tables, need)
        return
    workloads, decisions, events, held = tables
    conn = s.connection()  # Core executemany: no ORM bookkeeping for rows never reused
    conn.execute(insert(_table(WorkloadRow)), workloads)  # parents first
    conn.execute(insert(_table(DecisionRow)), decisions)
    conn.execute(insert(_table(EventRow)), events)
    if held:
        conn.execute(insert(_table(ReservationRow)), held)
    for (site, gpu), n in need:
        take_gpus(s, site=site, gpu=gpu, n=n)


def stored_ids(s: Session, *, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these workload ids are stored."""
    return set(s.scalars(select(WorkloadRow.id).where(WorkloadRow.id.in_(ids))))


def by_keys(s: Session, *, keys: list[tuple[str, str]]
            ) -> dict[tuple[str, str], tuple[Row, Row | None]]:
    """Stored workloads (and their decisions) by (team, Idempotency-Key), as column dicts."""
    found: dict[tuple[str, str], tuple[Row, Row | None]] = {}
    rows = s.scalars(select(WorkloadRow).where(
        tuple_(WorkloadRow.team, WorkloadRow.idempotency_key).in_(keys))).all()
    for row in rows:
        assert row.idempotency_key is not None
        drow = s.get(DecisionRow, row.decision_id) if row.decision_id else None
        found[(row.team, row.idempotency_key)] = (row.columns(),
                                                  drow.columns() if drow else None)
    return found
