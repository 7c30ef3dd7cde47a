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


def gpus_wanted(held: list[dict[str, Any]]) -> list[tuple[tuple[str, str], int]]:
    """GPUs per (site, GPU type) of reservation rows, in the one order every guarded update
    and every give-back goes through them (sorted: transactions that touch several capacity
    rows never wait on each other in a cycle)."""
    need: dict[tuple[str, str], int] = {}
    for res in held:
        key = (res["site"], res["gpu_type"])
        need[key] = need.get(key, 0) + res["count"]
    return sorted(need.items())


def release_holds(s: Session, *, holds: list[ReservationRow]) -> int:
    """Mark reservations released (all of a fleet's members) and give their GPUs back
    (capacity rows last, in the one sorted order: short locks, no deadlocks); returns the
    GPUs freed."""
    for res in holds:
        res.released_at = utcnow()
    s.flush()
    back = gpus_wanted([{"site": r.site, "gpu_type": r.gpu_type, "count": r.count}
                        for r in holds])
    for (site, gpu), n in back:
        give_back(s, site=site, gpu=gpu, n=n)
    return sum(n for _, n in back)


def add_decision(s: Session, *, row: WorkloadRow, decision: dict[str, Any], event: dict[str, Any],
                 held: list[dict[str, Any]], phase: str, replace_holds: bool = False) -> int:
    """A new decision for a stored workload: its rows added, the workload pointed at it, and
    its GPUs taken last, per (site, GPU type) in sorted order, by the guarded update: every
    reservation of a fleet or none (CapacityConflict; the caller's transaction rolls back).

    `replace_holds` (a fleet's new size): the workload's active reservations are released and
    replaced by `held`, and per (site, GPU type) only the net change moves, in the same
    sorted order. Returns the GPUs freed (0 unless replacing)."""
    net: dict[tuple[str, str], int] = {}
    if replace_holds:
        now = utcnow()
        for old in holds_of(s, workload_id=row.id):
            old.released_at = now
            net[(old.site, old.gpu_type)] = net.get((old.site, old.gpu_type), 0) - old.count
        s.flush()
    for key, n in gpus_wanted(held):
        net[key] = net.get(key, 0) + n
    s.execute(insert(DecisionRow), [decision])
    row.phase, row.site, row.action = phase, decision["site"], decision["action"]
    row.decision_id = decision["id"]
    s.execute(insert(EventRow), [event])
    if held:
        s.execute(insert(ReservationRow), held)
    freed = 0
    for (site, gpu), n in sorted(net.items()):
        if n > 0:
            take_gpus(s, site=site, gpu=gpu, n=n)
        elif n < 0:
            give_back(s, site=site, gpu=gpu, n=-n)
            freed -= n
    return freed
