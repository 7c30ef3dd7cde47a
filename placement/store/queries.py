"""Read queries for the API: workload listing with cursor pagination, events, capacity."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from placement.errors import FieldProblem, InvalidRequestError
from placement.store.db import as_utc
from placement.store.tables import CapacityRow, DecisionRow, EventRow, WorkloadRow


@dataclass(frozen=True)
class WorkloadFilter:
    team: str | None = None
    kind: str | None = None
    phase: str | None = None
    site: str | None = None
    action: str | None = None


def encode_cursor(row: WorkloadRow) -> str:
    created = as_utc(row.created_at)
    assert created is not None
    raw = json.dumps([created.isoformat(), str(row.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, wid = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(created, str) or not isinstance(wid, str):
            raise ValueError("cursor fields must be strings")
        return datetime.fromisoformat(created), uuid.UUID(wid)
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidRequestError([FieldProblem(("query", "cursor"), "malformed cursor",
                                                "pass next_cursor from the previous page")]
                                  ) from exc


def list_workloads(session: Session, *, filt: WorkloadFilter, limit: int,
                   cursor: str | None) -> tuple[list[WorkloadRow], str | None]:
    """Newest first; `cursor` continues after the last row of the previous page."""
    q = select(WorkloadRow)
    for col, value in ((WorkloadRow.team, filt.team), (WorkloadRow.kind, filt.kind),
                       (WorkloadRow.phase, filt.phase), (WorkloadRow.site, filt.site),
                       (WorkloadRow.action, filt.action)):
        if value is not None:
            q = q.where(col == value)
    if cursor:
        created, wid = decode_cursor(cursor)
        if session.bind is not None and session.bind.dialect.name == "sqlite":
            created = created.replace(tzinfo=None)
        q = q.where(or_(WorkloadRow.created_at < created,
                        and_(WorkloadRow.created_at == created, WorkloadRow.id < wid)))
    rows = list(session.scalars(q.order_by(WorkloadRow.created_at.desc(),
                                           WorkloadRow.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1]) if more and rows else None


def events_of(session: Session, *, workload_id: uuid.UUID) -> list[EventRow]:
    return list(session.scalars(select(EventRow).where(EventRow.workload_id == workload_id)
                                .order_by(EventRow.id)))


def capacity(session: Session) -> list[CapacityRow]:
    return list(session.scalars(select(CapacityRow).order_by(CapacityRow.site,
                                                             CapacityRow.gpu_type)))


LIVE_PHASES = ("placed", "running")


@dataclass(frozen=True)
class Totals:
    """Estimated USD and egress GB of the placements decided in a window."""

    placements: int
    usd: float
    egress_gb: float


def estimate_totals(session: Session, *, since: datetime, team: str | None) -> Totals:
    """Sum the stored decisions' estimates (place and burst) since `since`, in SQL."""
    est = DecisionRow.explanation["estimates"]
    q = (select(func.count(DecisionRow.id),
                func.coalesce(func.sum(est["total_usd"].as_float()), 0.0),
                func.coalesce(func.sum(est["egress_gb"].as_float()), 0.0))
         .join(WorkloadRow, WorkloadRow.id == DecisionRow.workload_id)
         .where(DecisionRow.action.in_(("place", "burst")), DecisionRow.created_at >= since))
    if team is not None:
        q = q.where(WorkloadRow.team == team)
    n, usd, gb = session.execute(q).one()
    return Totals(int(n), float(usd), float(gb))


def active_bursts(session: Session, *, team: str | None
                  ) -> list[tuple[WorkloadRow, DecisionRow]]:
    """Workloads running on burst (cloud) capacity now, with the decision that put them there."""
    q = (select(WorkloadRow, DecisionRow).join(DecisionRow,
                                               DecisionRow.id == WorkloadRow.decision_id)
         .where(WorkloadRow.action == "burst", WorkloadRow.phase.in_(LIVE_PHASES))
         .order_by(WorkloadRow.created_at.desc()))
    if team is not None:
        q = q.where(WorkloadRow.team == team)
    return [(w, d) for w, d in session.execute(q).all()]
