"""Fleets in the store: the served fleets an autoscaling pass reads, and a fleet's new size
recorded (its decision, event and reservations) with the GPUs it gains or frees moved by the
one guarded update."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from placement.store.capacity import give_back, take_gpus
from placement.store.db import utcnow
from placement.store.tables import DecisionRow, EventRow, ReservationRow, WorkloadRow


@dataclass(frozen=True)
class ServedFleet:
    """A fleet being served: its workload, document and the decision that sized it."""

    workload_id: uuid.UUID
    decision_id: uuid.UUID
    document: dict[str, Any]
    fleet: dict[str, Any]


def served_fleets(s: Session, *, kinds: tuple[str, ...], phases: tuple[str, ...]
                  ) -> list[ServedFleet]:
    """Service workloads in `phases` whose current decision is a fleet."""
    out = []
    for wid, did, document, explanation in s.execute(
            select(WorkloadRow.id, WorkloadRow.decision_id, WorkloadRow.document,
                   DecisionRow.explanation)
            .join(DecisionRow, DecisionRow.id == WorkloadRow.decision_id)
            .where(WorkloadRow.kind.in_(kinds), WorkloadRow.phase.in_(phases),
                   WorkloadRow.action.in_(("place", "burst")))):
        fleet = (explanation or {}).get("fleet")
        if fleet and did is not None:
            out.append(ServedFleet(wid, did, document, fleet))
    return out


def resize(s: Session, *, row: WorkloadRow, decision: dict[str, Any], event: dict[str, Any],
           held: list[dict[str, Any]]) -> int:
    """Record a fleet's new size in the caller's transaction: its reservations replaced by
    `held`, the workload pointed at `decision` (its phase kept: a running fleet stays
    running), and per (site, GPU type) only the net change moved, in the one sorted order
    every guarded update follows (CapacityConflict when a gain is not free: the transaction
    rolls back and the fleet keeps its size). Returns the GPUs freed."""
    now = utcnow()
    net: dict[tuple[str, str], int] = defaultdict(int)
    for old in s.scalars(select(ReservationRow).where(
            ReservationRow.workload_id == row.id, ReservationRow.released_at.is_(None))):
        old.released_at = now
        net[(old.site, old.gpu_type)] -= old.count
    for new in held:
        net[(new["site"], new["gpu_type"])] += new["count"]
    s.flush()
    s.execute(insert(DecisionRow), [decision])
    s.execute(insert(EventRow), [event])
    if held:
        s.execute(insert(ReservationRow), held)
    row.site, row.action, row.decision_id = decision["site"], decision["action"], decision["id"]
    freed = 0
    for (site, gpu), n in sorted(net.items()):
        if n > 0:
            take_gpus(s, site=site, gpu=gpu, n=n)
        elif n < 0:
            give_back(s, site=site, gpu=gpu, n=-n)
            freed -= n
    return freed
