"""Workload lifecycle: submit (decide + reserve atomically), transitions, release, re-queue."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy.orm import Session

from placement.control.auth import Principal
from placement.control.runtime import Runtime
from placement.engine import Engine, Outcome
from placement.engine.compiled import ONPREM
from placement.engine.explain import DecisionRecord, split_record
from placement.engine.replan import replan
from placement.errors import (
    ConflictError,
    FieldProblem,
    InvalidRequestError,
    NotFoundError,
    PlacementError,
)
from placement.metrics import BYTES_PER_GB
from placement.model import Workload
from placement.store import transitions as store
from placement.store.capacity import CapacityConflict
from placement.store.db import utcnow

if TYPE_CHECKING:
    from placement.store.tables import ReservationRow, WorkloadRow

log = logging.getLogger("placement.control.lifecycle")
DecisionData = DecisionRecord  # a decision as the service stores it (Engine.record)
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


def event(session: Session, workload_id: uuid.UUID, kind: str, message: str,
          **detail: Any) -> None:
    """Append to the workload's event log (never updated or deleted)."""
    store.add_event(session, workload_id=workload_id, kind=kind, message=message, detail=detail)


def decision_rows(workload_id: uuid.UUID, decision: DecisionData, out: Outcome, now: datetime
                  ) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """The rows a decision adds: the decision, its event and, for place/burst, its
    reservations (one per fleet member for a fleet, else one; none for queue/reject).
    The explanation is stored as the decision's fields and its candidates' packed columns
    (rendered when read: placement.engine.explain.render)."""
    action, did = decision["action"], uuid.uuid4()
    fields, columns = split_record(decision)
    drow = {"id": did, "workload_id": workload_id, "action": action, "site": decision["site"],
            "policy_version": decision["policy_version"], "explanation": fields,
            "candidate_columns": columns, "created_at": now}
    ev = {"workload_id": workload_id, "at": now, "type": PHASE_OF_ACTION[action],
          "message": decision["summary"],
          "detail": {"decision_id": str(did), "policy_version": decision["policy_version"]}}
    if action not in ("place", "burst"):
        return drow, ev, []
    finish = (decision["estimates"] or {}).get("finish_hours")
    end = now + timedelta(hours=finish) if finish is not None else None
    fleet = decision.get("fleet")
    wanted = ([(m["site"], m["gpu_type"], m["gpus"]) for m in fleet["members"]] if fleet
              else [(decision["site"], decision["gpu_type"], out.ctx.gpus_needed)])
    held = [{"id": uuid.uuid4(), "workload_id": workload_id, "site": site, "gpu_type": gpu,
             "count": count, "created_at": now, "released_at": None, "expected_end_at": end}
            for site, gpu, count in wanted]
    return drow, ev, held


def record_decision(session: Session, row: WorkloadRow, decision: DecisionData,
                    out: Outcome) -> None:
    """A new decision for a stored workload (re-queue): rows added, GPUs taken last, every
    fleet member's or none (CapacityConflict rolls the transaction back)."""
    drow, ev, held = decision_rows(row.id, decision, out, utcnow())
    store.add_decision(session, row=row, decision=drow, event=ev, held=held,
                       phase=PHASE_OF_ACTION[decision["action"]])


def check_references(engine: Engine, wl: Workload) -> None:
    """InvalidRequestError naming each dataset or client location the inventory lacks."""
    ci = engine.ci
    problems = [FieldProblem(("spec", "datasets", i, "name"), f"unknown dataset {d.name!r}",
                             "create the dataset first or correct the name")
                for i, d in enumerate(wl.spec.datasets) if d.name not in ci.dataset_index]
    if wl.spec.latency is not None:
        problems += [FieldProblem(("spec", "latency", "clients", i, "location"),
                                  f"unknown client location {c.location!r}",
                                  "create the client location first or correct the name")
                     for i, c in enumerate(wl.spec.latency.clients)
                     if c.location not in ci.client_index]
    if problems:
        raise InvalidRequestError(problems)


def decide(rt: Runtime, engine: Engine, wl: Workload) -> tuple[DecisionData, Outcome]:
    t0 = time.perf_counter()
    out = engine.decide(wl)
    decision = engine.record(out)
    rt.metrics.decision_seconds.observe(time.perf_counter() - t0)
    return decision, out


def count_decision(rt: Runtime, decision: DecisionData, engine: Engine) -> None:
    kind, site, est = "none", decision["site"], decision["estimates"]
    if site:
        kind = "cloud" if engine.ci.is_cloud[engine.ci.site_index[site]] else "onprem"
    rt.metrics.decisions.labels(decision["action"], kind).inc()
    if decision["action"] in ("place", "burst") and est:
        rt.metrics.estimated_usd.labels(kind).inc(est["total_usd"])
        rt.metrics.egress_bytes.labels(kind).inc(est["egress_gb"] * BYTES_PER_GB)


def _load(s: Session, workload_id: uuid.UUID, who: Principal, lock: bool = False) -> WorkloadRow:
    row = store.load(s, workload_id=workload_id, lock=lock)
    if row is None:
        raise NotFoundError("workload", str(workload_id))
    who.require_team(row.team)
    return row


def active_reservations(s: Session, row: WorkloadRow) -> list[ReservationRow]:
    """The workload's reservations not yet released."""
    return store.holds_of(s, workload_id=row.id)


def free_gpus(s: Session, held: list[ReservationRow]) -> int:
    """Release reservations; returns GPUs freed. Capacity rows are updated last (short locks)."""
    return store.release_holds(s, holds=held)


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
        held = active_reservations(s, row) if to in FREES_GPUS else []
        row.phase = to
        event(s, row.id, to, message or f"{to} by {who.role}",
              gpus_freed=sum(r.count for r in held))
        freed = free_gpus(s, held)
    if freed:
        rt.invalidate_capacity()
        request_requeue(rt)
    return row


def requeue(rt: Runtime, limit: int = 100) -> int:
    """Re-decide queued workloads (priority, then age); returns how many left the queue.

    Safe to run in several processes at once: each workload is locked (SKIP LOCKED) and its
    phase re-checked inside the transaction.
    """
    with rt.db.read() as s:
        ids = store.queued_ids(s, limit=limit)
    budget = rt.policy.spec.replan
    if budget is not None and len(ids) > 1:
        planned = replan_queue(rt, ids, budget.time_budget_seconds)
        if planned is not None:
            return planned
    moved = 0
    for wid in ids:
        try:
            with rt.db.write() as s:
                row = store.load(s, workload_id=wid, skip_locked=True)
                if row is None or row.phase != "queued":
                    continue
                engine = rt.engine(s, fresh=True)
                wl = Workload.model_validate(row.document)
                decision, out = decide(rt, engine, wl)
                if decision["action"] == "queue":
                    continue
                record_decision(s, row, decision, out)
                moved += 1
        except CapacityConflict:
            rt.metrics.capacity_conflicts.inc()
            continue
        except PlacementError as exc:  # e.g. a dataset was deleted since submission
            with rt.db.write() as s:
                row = store.load(s, workload_id=wid)
                if row is not None and row.phase == "queued":
                    row.phase = "rejected"
                    event(s, wid, "rejected", f"re-evaluation failed: {exc}")
            continue
        count_decision(rt, decision, engine)
    return moved


def replan_queue(rt: Runtime, ids: list[uuid.UUID], time_budget_s: float) -> int | None:
    """Re-plan the queued workloads `ids` together (placement.engine.replan): decide each on
    one capacity snapshot, let HiGHS choose which start where, then record each chosen
    decision under the same guarded update as any other (a group that filled up meanwhile
    refuses it, and the workload stays queued). None when there is no plan in the time budget
    or a workload cannot be decided (the caller then re-decides one at a time)."""
    with rt.db.read() as s:
        engine = rt.engine(s, fresh=True)
        queued = [(row.id, Workload.model_validate(row.document), row.priority)
                  for row in (store.load(s, workload_id=wid) for wid in ids)
                  if row is not None and row.phase == "queued"]
    try:
        outcomes = [engine.decide(wl) for _, wl, _ in queued]
    except PlacementError:
        return None
    plan = replan(outcomes, [prio for _, _, prio in queued], time_budget_s)
    if plan is None:
        log.warning("no re-plan of %d queued workloads within %.2f s: re-deciding them one "
                    "at a time", len(queued), time_budget_s)
        return None
    moved = 0
    for k, pos in sorted(plan.chosen.items()):
        out = outcomes[k]
        chosen = replace(out, chosen=pos,
                         action="burst" if out.ctx.kind[pos] != ONPREM else "place")
        decision = engine.record(chosen)
        rank = int(np.flatnonzero(out.ranking == pos)[0]) + 1
        decision["summary"] += (
            f"; re-planned with {plan.workloads} queued workload(s) together (HiGHS, "
            f"{plan.status}): candidate {rank} of {len(out.ranking)} here")
        try:
            with rt.db.write() as s:
                row = store.load(s, workload_id=queued[k][0], skip_locked=True)
                if row is None or row.phase != "queued":
                    continue
                record_decision(s, row, decision, chosen)
        except CapacityConflict:
            rt.metrics.capacity_conflicts.inc()
            continue
        count_decision(rt, decision, engine)
        moved += 1
    rt.invalidate_capacity()
    return moved


def request_requeue(rt: Runtime) -> None:
    """GPUs were freed: have the queue re-evaluated (by the process's requeuer when it runs
    one, else now)."""
    if rt.on_release is not None:
        rt.on_release()
    else:
        requeue(rt)


class Requeuer:
    """A background thread per process that re-evaluates the queue when GPUs are freed.

    Requests coalesce: many releases in a burst cause one pass, off the request path. A pass
    also runs every `period` seconds, so releases seen by other replicas are picked up too.
    """

    def __init__(self, rt: Runtime, period: float = 30.0, coalesce: float = 0.1) -> None:
        self.rt = rt
        self.period = period
        self.coalesce = coalesce
        self.wake = threading.Event()
        self.stopped = threading.Event()
        self.passes = 0
        self.thread = threading.Thread(target=self._run, name="placement-requeue", daemon=True)

    def start(self) -> Requeuer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        self.wake.set()
        self.thread.join(timeout=10)

    def _run(self) -> None:
        while not self.stopped.is_set():
            self.wake.wait(self.period)
            if self.stopped.wait(self.coalesce):  # let a burst of releases gather first
                return
            self.wake.clear()
            try:
                requeue(self.rt)
            except Exception:  # keep the thread alive through outages; next pass retries
                log.exception("re-evaluating the queue failed")
            self.passes += 1
