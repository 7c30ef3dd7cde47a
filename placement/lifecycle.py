"""Workload lifecycle: submit (decide + reserve atomically), transitions, release, re-queue."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from placement.auth import Principal
from placement.engine import Engine, Outcome
from placement.errors import ConflictError, NotFoundError, PlacementError
from placement.model import Decision, Workload
from placement.runtime import Runtime
from placement.store.tables import (
    CapacityRow,
    DecisionRow,
    EventRow,
    ReservationRow,
    WorkloadRow,
    utcnow,
)

LIVE = frozenset({"submitted", "placed", "queued", "running"})
ALLOWED: dict[str, frozenset[str]] = {
    "running": frozenset({"placed"}),
    "succeeded": frozenset({"running"}),
    "failed": frozenset({"placed", "running"}),
    "cancelled": LIVE,
    "released": frozenset({"placed", "running", "succeeded", "failed"}),
}
FREES_GPUS = frozenset({"succeeded", "failed", "cancelled", "released"})
PHASE_OF_ACTION = {"place": "placed", "burst": "placed", "queue": "queued", "reject": "rejected"}
MAX_ATTEMPTS = 8


class CapacityConflict(PlacementError):
    """Another transaction reserved the GPUs this decision counted on; decide again."""


def event(session: Session, workload_id: uuid.UUID, kind: str, message: str,
          **detail: Any) -> None:
    """Append to the workload's event log (never updated or deleted)."""
    session.add(EventRow(workload_id=workload_id, type=kind, message=message, detail=detail))


def _reserve(session: Session, row: WorkloadRow, decision: Decision, out: Outcome) -> None:
    assert decision.site and decision.gpu_type and out.chosen is not None
    n = out.ctx.gpus_needed
    done = session.execute(
        update(CapacityRow)
        .where(CapacityRow.site == decision.site, CapacityRow.gpu_type == decision.gpu_type,
               CapacityRow.reserved + n <= CapacityRow.total)
        .values(reserved=CapacityRow.reserved + n))
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise CapacityConflict(f"{decision.site} {decision.gpu_type} changed")
    est = decision.estimates
    end = None
    if est is not None and est.finish_hours is not None:
        end = utcnow() + timedelta(hours=est.finish_hours)
    session.add(ReservationRow(workload_id=row.id, site=decision.site,
                               gpu_type=decision.gpu_type, count=n, expected_end_at=end))


def record_decision(session: Session, row: WorkloadRow, decision: Decision,
                    out: Outcome) -> DecisionRow:
    """Store the decision, reserve GPUs for place/burst (guarded), set the phase, log events."""
    if decision.action in ("place", "burst"):
        _reserve(session, row, decision, out)
    drow = DecisionRow(id=uuid.uuid4(), workload_id=row.id, action=decision.action,
                       site=decision.site, policy_version=decision.policy_version,
                       explanation=decision.model_dump(mode="json"))
    session.add(drow)
    row.phase = PHASE_OF_ACTION[decision.action]
    row.site, row.action, row.decision_id = decision.site, decision.action, drow.id
    event(session, row.id, row.phase, decision.summary, decision_id=str(drow.id),
          policy_version=decision.policy_version)
    return drow


def _decide(rt: Runtime, engine: Engine, wl: Workload) -> tuple[Decision, Outcome]:
    t0 = time.perf_counter()
    out = engine.decide(wl)
    decision = engine.explain(out)
    rt.metrics.decision_seconds.observe(time.perf_counter() - t0)
    return decision, out


def _count(rt: Runtime, decision: Decision, engine: Engine) -> None:
    kind = "none"
    if decision.site:
        kind = "cloud" if engine.ci.is_cloud[engine.ci.site_index[decision.site]] else "onprem"
    rt.metrics.decisions.labels(decision.action, kind).inc()
    if decision.action in ("place", "burst") and decision.estimates:
        rt.metrics.estimated_usd.labels(kind).inc(decision.estimates.total_usd)
        rt.metrics.egress_gb.labels(kind).inc(decision.estimates.egress_gb)


def _existing(rt: Runtime, team: str, key: str) -> tuple[WorkloadRow, DecisionRow | None] | None:
    with rt.db.read() as s:
        row = s.scalar(select(WorkloadRow).where(WorkloadRow.team == team,
                                                 WorkloadRow.idempotency_key == key))
        if row is None:
            return None
        return row, s.get(DecisionRow, row.decision_id) if row.decision_id else None


def submit(rt: Runtime, *, workload: Workload, idempotency_key: str | None = None
           ) -> tuple[WorkloadRow, DecisionRow | None, bool]:
    """Decide and record atomically. Returns (workload, decision, created).

    A retried submission with the same Idempotency-Key (per team) returns the first result.
    """
    team = workload.spec.team
    for _ in range(MAX_ATTEMPTS):
        if idempotency_key is not None and (found := _existing(rt, team, idempotency_key)):
            return found[0], found[1], False
        try:
            with rt.db.write() as s:
                engine = rt.engine(s)
                decision, out = _decide(rt, engine, workload)
                row = WorkloadRow(id=uuid.uuid4(), name=workload.name, team=team,
                                  kind=workload.spec.kind, priority=workload.spec.priority,
                                  phase="submitted", document=workload.model_dump(mode="json"),
                                  idempotency_key=idempotency_key)
                s.add(row)
                s.flush()
                event(s, row.id, "submitted", f"submitted by team {team}")
                drow = record_decision(s, row, decision, out)
        except CapacityConflict:
            rt.metrics.capacity_conflicts.inc()
            continue
        except IntegrityError:
            if idempotency_key is not None and (found := _existing(rt, team, idempotency_key)):
                return found[0], found[1], False
            raise
        _count(rt, decision, engine)
        return row, drow, True
    raise ConflictError("GPUs kept being taken by concurrent submissions; retry the request")


def _load(s: Session, workload_id: uuid.UUID, who: Principal, lock: bool = False) -> WorkloadRow:
    q = select(WorkloadRow).where(WorkloadRow.id == workload_id)
    row = s.scalar(q.with_for_update() if lock else q)
    if row is None:
        raise NotFoundError("workload", str(workload_id))
    who.require_team(row.team)
    return row


def free_gpus(s: Session, row: WorkloadRow) -> int:
    """Release the workload's active reservation; returns GPUs freed."""
    held = s.scalars(select(ReservationRow).where(ReservationRow.workload_id == row.id,
                                                  ReservationRow.released_at.is_(None))).all()
    for res in held:
        res.released_at = utcnow()
        s.execute(update(CapacityRow)
                  .where(CapacityRow.site == res.site, CapacityRow.gpu_type == res.gpu_type)
                  .values(reserved=CapacityRow.reserved - res.count))
    return sum(r.count for r in held)


def transition(rt: Runtime, *, workload_id: uuid.UUID, to: str, who: Principal,
               message: str = "") -> WorkloadRow:
    """Move a workload to `to` if the lifecycle allows it; frees GPUs where it should."""
    if to not in ALLOWED:
        raise ConflictError(f"unknown phase {to!r}; use one of {sorted(ALLOWED)}")
    with rt.db.write() as s:
        row = _load(s, workload_id, who, lock=True)
        if row.phase not in ALLOWED[to]:
            raise ConflictError(f"workload is {row.phase}; it can become {to} only from "
                                f"{', '.join(sorted(ALLOWED[to]))}")
        freed = free_gpus(s, row) if to in FREES_GPUS else 0
        row.phase = to
        event(s, row.id, to, message or f"{to} by {who.role}", gpus_freed=freed)
    if freed:
        requeue(rt)
    return row


def requeue(rt: Runtime, limit: int = 100) -> int:
    """Re-decide queued workloads (priority, then age); returns how many left the queue."""
    with rt.db.read() as s:
        ids = list(s.scalars(select(WorkloadRow.id).where(WorkloadRow.phase == "queued")
                             .order_by(WorkloadRow.priority.desc(), WorkloadRow.created_at)
                             .limit(limit)))
    moved = 0
    for wid in ids:
        try:
            with rt.db.write() as s:
                row = s.scalar(select(WorkloadRow).where(WorkloadRow.id == wid)
                               .with_for_update(skip_locked=True))
                if row is None or row.phase != "queued":
                    continue
                engine = rt.engine(s)
                wl = Workload.model_validate(row.document)
                decision, out = _decide(rt, engine, wl)
                if decision.action == "queue":
                    continue
                record_decision(s, row, decision, out)
                moved += 1
        except CapacityConflict:
            rt.metrics.capacity_conflicts.inc()
            continue
        except PlacementError as exc:  # e.g. a dataset was deleted since submission
            with rt.db.write() as s:
                row = s.get(WorkloadRow, wid)
                if row is not None and row.phase == "queued":
                    row.phase = "rejected"
                    event(s, wid, "rejected", f"re-evaluation failed: {exc}")
            continue
        _count(rt, decision, engine)
    return moved
