"""Workloads in the store, read as plain values: one for a caller, pages of them, their
decisions, events, serving and job run, the live ones and the GPUs held."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from placement.errors import FieldProblem, InvalidRequestError
from placement.store.db import as_utc
from placement.store.tables import (
    DecisionRow,
    EventRow,
    JobRunRow,
    ReservationRow,
    ServingRow,
    WorkloadRow,
)

LIVE_PHASES = ("placed", "running")


class RowView:
    """A frozen copy of every column of one row."""

    @classmethod
    def of(cls, row: Any) -> Self:
        """The view of a row (one a control function returned, for instance)."""
        return cls(**row.columns())

    def columns(self) -> dict[str, Any]:
        """The column values as a dict (the shape the JSON builders read)."""
        return dict(vars(self))


@dataclass(frozen=True)
class WorkloadView(RowView):
    """A stored workload: every column of its row."""

    id: uuid.UUID
    name: str
    team: str
    kind: str
    priority: int
    phase: str
    site: str | None
    action: str | None
    document: dict[str, Any]
    decision_id: uuid.UUID | None
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class DecisionView(RowView):
    """A stored decision with its whole explanation."""

    id: uuid.UUID
    workload_id: uuid.UUID
    action: str
    site: str | None
    policy_version: str
    explanation: dict[str, Any]  # the Decision's fields but its candidates (older rows: all)
    candidate_columns: bytes | None  # the candidates, packed (placement.engine.explain)
    created_at: datetime


@dataclass(frozen=True)
class EventView:
    """One entry of a workload's event log."""

    id: int
    at: datetime
    type: str
    message: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class ServingView:
    """Where Triton serves a workload and how far the actuator got."""

    status: str
    site: str
    namespace: str
    name: str
    model: str
    version: int | None
    endpoint: str | None
    message: str
    attempts: int
    next_attempt_at: datetime
    ready_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class JobRunView:
    """A job's run on its cluster, with its estimates and what it really took."""

    status: str
    site: str
    namespace: str
    name: str
    message: str
    attempts: int
    interruptions: int
    started_at: datetime | None
    finished_at: datetime | None
    staged_bytes: int
    estimated_hours: float | None
    estimated_usd: float | None
    estimated_egress_gb: float | None
    actual_hours: float | None
    actual_usd: float | None
    updated_at: datetime


@dataclass(frozen=True)
class HeldView:
    """GPUs a workload holds now (an unreleased reservation)."""

    workload_id: uuid.UUID
    site: str
    gpu_type: str
    count: int
    expected_end_at: datetime | None


@dataclass(frozen=True)
class WorkloadFilter:
    team: str | None = None
    kind: str | None = None
    phase: str | None = None
    site: str | None = None
    action: str | None = None


def encode_cursor(row: WorkloadRow | WorkloadView) -> str:
    """The page cursor that continues after `row`."""
    created = as_utc(row.created_at)
    assert created is not None
    raw = json.dumps([created.isoformat(), str(row.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """(created_at, id) of a cursor; InvalidRequestError when it is malformed."""
    try:
        created, wid = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(created, str) or not isinstance(wid, str):
            raise ValueError("cursor fields must be strings")
        return datetime.fromisoformat(created), uuid.UUID(wid)
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidRequestError([FieldProblem(("query", "cursor"), "malformed cursor",
                                                "pass next_cursor from the previous page")]
                                  ) from exc


def list_workloads(s: Session, *, filt: WorkloadFilter, limit: int,
                   cursor: str | None) -> tuple[list[WorkloadView], str | None]:
    """Newest first; `cursor` continues after the last row of the previous page."""
    q = select(WorkloadRow)
    for col, value in ((WorkloadRow.team, filt.team), (WorkloadRow.kind, filt.kind),
                       (WorkloadRow.phase, filt.phase), (WorkloadRow.site, filt.site),
                       (WorkloadRow.action, filt.action)):
        if value is not None:
            q = q.where(col == value)
    if cursor:
        created, wid = decode_cursor(cursor)
        if s.bind is not None and s.bind.dialect.name == "sqlite":
            created = created.replace(tzinfo=None)
        q = q.where(or_(WorkloadRow.created_at < created,
                        and_(WorkloadRow.created_at == created, WorkloadRow.id < wid)))
    rows = list(s.scalars(q.order_by(WorkloadRow.created_at.desc(),
                                     WorkloadRow.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return [WorkloadView.of(r) for r in rows], encode_cursor(rows[-1]) if more and rows else None


def get_workload(s: Session, *, workload_id: uuid.UUID, team: str | None
                 ) -> WorkloadView | None:
    """The workload, or None when there is none or it belongs to a team other than `team`."""
    row = s.get(WorkloadRow, workload_id)
    if row is None or (team is not None and row.team != team):
        return None
    return WorkloadView.of(row)


def find_by_key(s: Session, *, idempotency_key: str) -> WorkloadView | None:
    """The workload submitted with this idempotency key, if any."""
    row = s.scalar(select(WorkloadRow).where(WorkloadRow.idempotency_key == idempotency_key))
    return None if row is None else WorkloadView.of(row)


def set_serving_version(s: Session, *, idempotency_key: str, version: int) -> bool:
    """Put a new model version into the stored spec; False when no such workload is stored."""
    row = s.scalar(select(WorkloadRow).where(WorkloadRow.idempotency_key == idempotency_key))
    if row is None:
        return False
    document = dict(row.document)
    document["spec"] = {**document["spec"],
                        "serving": {**document["spec"]["serving"], "version": version}}
    row.document = document
    return True


def get_decision(s: Session, *, decision_id: uuid.UUID | None) -> DecisionView | None:
    """The decision with this id (None for no id or no such decision)."""
    row = s.get(DecisionRow, decision_id) if decision_id else None
    return None if row is None else DecisionView.of(row)


def list_events(s: Session, *, workload_id: uuid.UUID) -> list[EventView]:
    """The workload's event log, oldest first."""
    rows = s.scalars(select(EventRow).where(EventRow.workload_id == workload_id)
                     .order_by(EventRow.id))
    return [EventView(id=e.id, at=e.at, type=e.type, message=e.message, detail=e.detail)
            for e in rows]


def get_serving(s: Session, *, workload_id: uuid.UUID) -> ServingView | None:
    """How the workload is served, once the serving actuator took it (a fleet: on the
    decision's site, the member with the most replicas; every site's is in its routing)."""
    r = s.get(ServingRow, workload_id) or s.scalars(
        select(ServingRow).join(WorkloadRow, WorkloadRow.id == ServingRow.workload_id)
        .where(ServingRow.workload_id == workload_id)
        .order_by((ServingRow.site == WorkloadRow.site).desc(), ServingRow.site)).first()
    if r is None:
        return None
    return ServingView(status=r.status, site=r.site, namespace=r.namespace, name=r.name,
                       model=r.model, version=r.version, endpoint=r.endpoint,
                       message=r.message, attempts=r.attempts,
                       next_attempt_at=r.next_attempt_at, ready_at=r.ready_at,
                       updated_at=r.updated_at)


def get_job_run(s: Session, *, workload_id: uuid.UUID) -> JobRunView | None:
    """The workload's job run, once the job actuator took it."""
    r = s.get(JobRunRow, workload_id)
    if r is None:
        return None
    return JobRunView(status=r.status, site=r.site, namespace=r.namespace, name=r.name,
                      message=r.message, attempts=r.attempts, interruptions=r.interruptions,
                      started_at=r.started_at, finished_at=r.finished_at,
                      staged_bytes=r.staged_bytes, estimated_hours=r.estimated_hours,
                      estimated_usd=r.estimated_usd,
                      estimated_egress_gb=r.estimated_egress_gb, actual_hours=r.actual_hours,
                      actual_usd=r.actual_usd, updated_at=r.updated_at)


def in_phases(s: Session, *, phases: tuple[str, ...]) -> list[WorkloadView]:
    """The workloads in any of `phases`, oldest first."""
    rows = s.scalars(select(WorkloadRow).where(WorkloadRow.phase.in_(phases))
                     .order_by(WorkloadRow.created_at))
    return [WorkloadView.of(r) for r in rows]


def held_gpus(s: Session) -> list[HeldView]:
    """Every unreleased reservation: who holds how many GPUs where, until when."""
    rows = s.execute(select(ReservationRow.workload_id, ReservationRow.site,
                            ReservationRow.gpu_type, ReservationRow.count,
                            ReservationRow.expected_end_at)
                     .where(ReservationRow.released_at.is_(None)))
    return [HeldView(workload_id=w, site=site, gpu_type=gpu, count=n, expected_end_at=end)
            for w, site, gpu, n, end in rows]


def submitted_since(s: Session, *, since: datetime, limit: int) -> list[tuple[datetime,
                                                                              dict[str, Any]]]:
    """(submitted at, document) of the workloads submitted since `since`, oldest first, at most
    the `limit` newest (the recent demand bid prices are computed from)."""
    rows = s.execute(select(WorkloadRow.created_at, WorkloadRow.document)
                     .where(WorkloadRow.created_at >= since)
                     .order_by(WorkloadRow.created_at.desc()).limit(limit)).all()
    return [(as_utc(at) or at, doc) for at, doc in reversed(rows)]
