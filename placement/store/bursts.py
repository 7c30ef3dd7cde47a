"""The `bursts` work rows: burst decisions to adopt, a burst requested (or requested anew), and
a claimed burst for the burst actuator to change."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from placement.store.tables import BurstRow, DecisionRow, WorkloadRow
from placement.store.work import detached, owned, release

BurstRecord = BurstRow  # a burst row, detached or changed in the caller's transaction


def undecided_bursts(s: Session, *, phases: tuple[str, ...]
                     ) -> list[tuple[WorkloadRow, dict[str, Any]]]:
    """Workloads in `phases` with a `burst` decision and no live burst (a failed or destroyed
    one counts as none), with the decision's explanation; detached."""
    fresh = [(wrow, explanation) for wrow, explanation in s.execute(
        select(WorkloadRow, DecisionRow.explanation)
        .join(DecisionRow, DecisionRow.id == WorkloadRow.decision_id)
        .where(WorkloadRow.action == "burst", WorkloadRow.phase.in_(phases),
               WorkloadRow.id.not_in(select(BurstRow.workload_id).where(
                   BurstRow.status.not_in(("failed", "destroyed"))))))]
    s.expunge_all()
    return fresh


def request(s: Session, *, workload_id: uuid.UUID, fields: dict[str, Any]) -> bool:
    """A new burst row, or an ended unclaimed one requested anew (same stack name: one stack
    ever); False when a live one is there (IntegrityError at commit on a race)."""
    old = s.get(BurstRow, workload_id)
    if old is None:
        s.add(BurstRow(workload_id=workload_id, **fields))
    elif old.status in ("failed", "destroyed") and old.claim_token is None:
        for key, value in fields.items():
            setattr(old, key, value)
    else:
        return False
    return True


def detached_burst(s: Session, *, workload_id: uuid.UUID) -> tuple[BurstRow, WorkloadRow] | None:
    """The burst and its workload, detached; None when either is gone."""
    return detached(s, table=BurstRow, workload_id=workload_id)


def claimed(s: Session, *, workload_id: uuid.UUID, token: str) -> BurstRow | None:
    """The burst, locked, while this worker's claim holds; None once it lapsed."""
    row: BurstRow | None = owned(s, BurstRow, workload_id, token)
    return row


def set_claimed(s: Session, *, workload_id: uuid.UUID, token: str, fields: dict[str, Any],
                keep_claim: bool = False) -> BurstRow | None:
    """Set `fields` on the claimed burst (the claim released unless `keep_claim`); the row,
    flushed and detached, or None once the claim lapsed."""
    brow = claimed(s, workload_id=workload_id, token=token)
    if brow is None:
        return None
    for key, value in fields.items():
        setattr(brow, key, value)
    if not keep_claim:
        release(brow)
    s.flush()
    s.expunge(brow)
    return brow
