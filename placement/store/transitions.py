"""Writes of the workload lifecycle: the row locked for a transition, events, reservations held
and given back, and a new decision recorded for a stored workload. The control layer decides
what happens; these functions are how it is stored."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from placement.store.capacity import give_back, take_gpus
from placement.store.db import utcnow
from placement.store.tables import DecisionRow, EventRow, ReservationRow, WorkloadRow


def add_event(s: Session, *, workload_id: uuid.UUID, kind: str, message: str,
              detail: dict[str, Any]) -> None:
    """Append to the workload's event log (never updated or deleted)."""
    s.add(EventRow(workload_id=workload_id, type=kind, message=message, detail=detail))


def load(s: Session, *, workload_id: uuid.UUID, lock: bool = False,
         skip_locked: bool = False) -> WorkloadRow | None:
    """The workload's row (locked for update when `lock`; None when absent or, with
    `skip_locked`, locked by another transaction)."""
    q = select(WorkloadRow).where(WorkloadRow.id == workload_id)
    if lock or skip_locked:
        q = q.with_for_update(skip_locked=skip_locked)
    return s.scalar(q)


def queued_ids(s: Session, *, limit: int) -> list[uuid.UUID]:
    """Queued workloads, highest priority first, then oldest."""
    return list(s.scalars(select(WorkloadRow.id).where(WorkloadRow.phase == "queued")
                          .order_by(WorkloadRow.priority.desc(), WorkloadRow.created_at)
                          .limit(limit)))


def holds_of(s: Session, *, workload_id: uuid.UUID) -> list[ReservationRow]:
    """The workload's reservations not yet released."""
    return list(s.scalars(select(ReservationRow).where(
        ReservationRow.workload_id == workload_id, ReservationRow.released_at.is_(None))))


def release_holds(s: Session, *, holds: list[ReservationRow]) -> int:
    """Mark reservations released and give their GPUs back (capacity rows last: short locks);
    returns the GPUs freed."""
    for res in holds:
        res.released_at = utcnow()
    s.flush()
    for res in holds:
        give_back(s, site=res.site, gpu=res.gpu_type, n=res.count)
    return sum(r.count for r in holds)


def add_decision(s: Session, *, row: WorkloadRow, decision: dict[str, Any], event: dict[str, Any],
                 held: dict[str, Any] | None, phase: str) -> None:
    """A new decision for a stored workload: its rows added, the workload pointed at it, and
    its GPUs taken last (the guarded update)."""
    s.execute(insert(DecisionRow), [decision])
    row.phase, row.site, row.action = phase, decision["site"], decision["action"]
    row.decision_id = decision["id"]
    s.execute(insert(EventRow), [event])
    if held is not None:
        s.execute(insert(ReservationRow), [held])
        take_gpus(s, site=held["site"], gpu=held["gpu_type"], n=held["count"])
