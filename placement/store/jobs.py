"""The `job_runs` work rows: placed job workloads to adopt (or re-adopt once requeued),
cancelled ones marked for removal, and a claimed run for the job actuator to change."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from placement.store.tables import BurstRow, DecisionRow, JobRunRow, WorkloadRow
from placement.store.work import owned, workload_of

JobRunRecord = JobRunRow  # a claimed job run, changed in the caller's transaction


def placed_jobs(s: Session, *, kinds: Collection[str]
                ) -> list[tuple[uuid.UUID, str | None, dict[str, Any], str | None]]:
    """(id, site, document, run status or None) of placed job workloads (a burst once its
    capacity is ready)."""
    return [(wid, site, document, status) for wid, site, document, status in s.execute(
        select(WorkloadRow.id, WorkloadRow.site, WorkloadRow.document, JobRunRow.status)
        .outerjoin(JobRunRow, JobRunRow.workload_id == WorkloadRow.id)
        .outerjoin(BurstRow, BurstRow.workload_id == WorkloadRow.id)
        .where(WorkloadRow.kind.in_(kinds), WorkloadRow.phase == "placed",
               or_(WorkloadRow.action == "place",
                   (WorkloadRow.action == "burst") & (BurstRow.status == "ready"))))]


def add_run(s: Session, *, workload_id: uuid.UUID, deadline_hours: float | None,
            fields: dict[str, Any]) -> None:
    """A new run row (IntegrityError at commit when another replica adopted it first)."""
    s.add(JobRunRow(workload_id=workload_id, interruptions=0, staged_bytes=0,
                    deadline_hours=deadline_hours, **fields))


def restart_requeued(s: Session, *, workload_id: uuid.UUID, fields: dict[str, Any]) -> None:
    """A requeued run, placed again, starts over with `fields`."""
    s.execute(update(JobRunRow).where(JobRunRow.workload_id == workload_id,
                                      JobRunRow.status == "requeued").values(**fields))


def mark_cancelled(s: Session, *, statuses: tuple[str, ...], phases: tuple[str, ...],
                   now: datetime) -> None:
    """Runs in `statuses` of workloads in `phases` go to `removing`, due now."""
    s.execute(update(JobRunRow).where(
        JobRunRow.status.in_(statuses),
        JobRunRow.workload_id.in_(select(WorkloadRow.id).where(WorkloadRow.phase.in_(phases))))
        .values(status="removing", attempts=0, next_attempt_at=now,
                message="workload cancelled; deleting the Job"))


def detached_run(s: Session, *, workload_id: uuid.UUID
                 ) -> tuple[JobRunRow, WorkloadRow, DecisionRow | None] | None:
    """The run, its workload and the workload's decision, detached; None when one is gone."""
    row, wrow = s.get(JobRunRow, workload_id), s.get(WorkloadRow, workload_id)
    drow = s.get(DecisionRow, wrow.decision_id) if wrow and wrow.decision_id else None
    if row is None or wrow is None:
        return None
    s.expunge_all()
    return row, wrow, drow


def claimed(s: Session, *, workload_id: uuid.UUID, token: str) -> JobRunRow | None:
    """The run, locked, while this worker's claim holds; None once it lapsed."""
    row: JobRunRow | None = owned(s, JobRunRow, workload_id, token)
    return row


def claimed_and_locked(s: Session, *, workload_id: uuid.UUID, token: str
                       ) -> tuple[JobRunRow | None, WorkloadRow | None]:
    """The run (if still claimed by this worker) and its workload, both locked."""
    return claimed(s, workload_id=workload_id, token=token), workload_of(
        s, workload_id=workload_id, lock=True)


def get_run(s: Session, *, workload_id: uuid.UUID) -> JobRunRow | None:
    """The workload's run row, or None."""
    return s.get(JobRunRow, workload_id)
