"""Work rows several service replicas share: claimed one at a time with a guarded update and a
token, so a worker whose claim lapsed (it was slow, or died) never writes over the next one.
The actuators hold these rows (and their workloads') by the aliases below, never the ORM
module."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import inspect, or_, select, update
from sqlalchemy.orm import Session

from placement.store.db import Database
from placement.store.tables import DecisionRow, WorkloadRow

WorkloadRecord = WorkloadRow  # a workload's row, for a caller mutating it in its transaction
DecisionRecord = DecisionRow


def key_of(table: Any) -> Any:
    """The column a work row is claimed by: its primary key (the workload's id, or for a
    serving, its own: a fleet is served from several sites, one row each)."""
    (column,) = inspect(table).primary_key
    return column


def claim_next(db: Database, table: Any, statuses: tuple[str, ...], skipped: set[uuid.UUID],
               now: Callable[[], datetime], claim_s: float) -> tuple[uuid.UUID, str] | None:
    """Claim the row due first (status in `statuses`, next_attempt_at passed, unclaimed or its
    claim lapsed) that is not in `skipped`; (its key, token), or None when none is due."""
    key = key_of(table)
    while True:
        at = now()
        due = (table.status.in_(statuses), table.next_attempt_at <= at,
               or_(table.claimed_until.is_(None), table.claimed_until < at))
        with db.read() as s:
            wid = s.scalar(select(key).where(*due, key.not_in(skipped))
                           .order_by(table.next_attempt_at).limit(1))
        if wid is None:
            return None
        token = uuid.uuid4().hex
        with db.write() as s:
            won = s.execute(update(table).where(key == wid, *due).values(
                claim_token=token, claimed_until=at + timedelta(seconds=claim_s)))
        if won.rowcount == 1:  # type: ignore[attr-defined]
            return wid, token
        skipped.add(wid)  # another replica took it


def owned(s: Session, table: Any, wid: uuid.UUID, token: str) -> Any:
    """The row, locked, while this worker's claim holds; None once it lapsed."""
    row = s.scalar(select(table).where(key_of(table) == wid).with_for_update())
    return row if row is not None and row.claim_token == token else None


def release(row: Any) -> None:
    """Give the claim up (the row is due again when its next_attempt_at says)."""
    row.claim_token, row.claimed_until = None, None


def work_due(db: Database, table: Any, statuses: tuple[str, ...],
             now: Callable[[], datetime], claim_s: float,
             work: Callable[[uuid.UUID, str], None], log: logging.Logger,
             limit: int = 200) -> int:
    """Claim due rows one at a time and work each; returns how many were worked. Claiming one
    at a time keeps a slow row from holding claims on rows not reached yet; a failure in one
    row (the database, mid-row) is logged and its claim lapses, so it is retried later."""
    done, skipped = 0, set[uuid.UUID]()
    while done < limit:
        claim = claim_next(db, table, statuses, skipped, now, claim_s)
        if claim is None:
            break
        skipped.add(claim[0])
        try:
            work(*claim)
        except Exception:
            log.exception("%s %s: pass failed", table.__tablename__, claim[0])
        done += 1
    return done


def retry_wait(attempts: int, permanent: bool, base_s: float, max_s: float) -> timedelta:
    """How long a failed row waits: exponential from `base_s` to `max_s`; a permanent failure
    (a spec or inventory problem) waits `max_s`, in case someone fixes it meanwhile."""
    if permanent:
        return timedelta(seconds=max_s)
    return timedelta(seconds=min(max_s, base_s * 2 ** max(0, attempts - 1)))


def record_failure(row: Any, *, attempts: int, retry_at: datetime, message: str) -> None:
    """A failed attempt on a row this worker owns (see `owned`): counted, the claim released,
    the next attempt scheduled."""
    release(row)
    row.attempts, row.next_attempt_at, row.message = attempts, retry_at, message


def detached(s: Session, *, table: Any, workload_id: uuid.UUID) -> tuple[Any, WorkloadRow] | None:
    """The work row and its workload, detached (to work outside a transaction); None if gone."""
    row, wrow = s.get(table, workload_id), s.get(WorkloadRow, workload_id)
    if row is None or wrow is None:
        return None
    s.expunge_all()
    return row, wrow


def workload_of(s: Session, *, workload_id: uuid.UUID, lock: bool = False) -> WorkloadRow | None:
    """The workload's row in the caller's session (locked for update when `lock`)."""
    if not lock:
        return s.get(WorkloadRow, workload_id)
    return s.scalar(select(WorkloadRow).where(WorkloadRow.id == workload_id).with_for_update())
