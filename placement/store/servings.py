"""The `servings` work rows: service workloads to adopt, ended ones marked for removal, a
claimed row for the serving actuator to change, and the ready servings' metrics to scrape."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from placement.store.tables import BurstRow, ServingRow, WorkloadRow
from placement.store.work import detached, owned, workload_of

ServingRecord = ServingRow  # a claimed serving row, changed in the caller's transaction


@dataclass(frozen=True)
class ScrapeTarget:
    """A ready serving's Triton metrics URL, by site and model."""

    site: str
    model: str
    metrics_url: str


def unserved(s: Session, *, kinds: Collection[str], phases: tuple[str, ...]
             ) -> list[tuple[uuid.UUID, str | None, dict[str, Any]]]:
    """(id, site, document) of placed service workloads without a serving row (a burst once
    its capacity is ready)."""
    return [(wid, site, document) for wid, site, document in s.execute(
        select(WorkloadRow.id, WorkloadRow.site, WorkloadRow.document)
        .outerjoin(BurstRow, BurstRow.workload_id == WorkloadRow.id)
        .where(WorkloadRow.kind.in_(kinds), WorkloadRow.phase.in_(phases),
               or_(WorkloadRow.action == "place",
                   (WorkloadRow.action == "burst") & (BurstRow.status == "ready")),
               WorkloadRow.id.not_in(select(ServingRow.workload_id))))]


def add_serving(s: Session, *, workload_id: uuid.UUID, site: str, namespace: str, name: str,
                model: str, now: datetime) -> None:
    """A new pending serving row (IntegrityError at commit when another replica adopted it)."""
    s.add(ServingRow(workload_id=workload_id, site=site, namespace=namespace, name=name,
                     model=model, status="pending", attempts=0,
                     message="waiting to be served", next_attempt_at=now))


def mark_ended(s: Session, *, phases: tuple[str, ...], now: datetime) -> None:
    """Servings of workloads in `phases` (ended) go to `removing`, due now."""
    s.execute(update(ServingRow).where(
        ServingRow.status.not_in(("removing", "removed")),
        ServingRow.workload_id.in_(select(WorkloadRow.id).where(WorkloadRow.phase.in_(phases))))
        .values(status="removing", attempts=0, next_attempt_at=now,
                message="workload ended; removing"))


def ready_with_documents(s: Session) -> list[tuple[ServingRow, dict[str, Any]]]:
    """Ready serving rows (in the caller's session) with their workloads' documents."""
    return [(row, document) for row, document in s.execute(
        select(ServingRow, WorkloadRow.document)
        .join(WorkloadRow, WorkloadRow.id == ServingRow.workload_id)
        .where(ServingRow.status == "ready"))]


def detached_serving(s: Session, *, workload_id: uuid.UUID
                     ) -> tuple[ServingRow, WorkloadRow] | None:
    """The serving row and its workload, detached; None when either is gone."""
    return detached(s, table=ServingRow, workload_id=workload_id)


def claimed(s: Session, *, workload_id: uuid.UUID, token: str) -> ServingRow | None:
    """The serving row, locked, while this worker's claim holds; None once it lapsed."""
    row: ServingRow | None = owned(s, ServingRow, workload_id, token)
    return row


def claimed_with_workload(s: Session, *, workload_id: uuid.UUID, token: str
                          ) -> tuple[ServingRow | None, WorkloadRow | None]:
    """The serving row (while still claimed) and its workload, in the caller's session."""
    return claimed(s, workload_id=workload_id, token=token), workload_of(
        s, workload_id=workload_id)


def scrape_targets(s: Session) -> list[ScrapeTarget]:
    """The ready servings that report a metrics URL."""
    return [ScrapeTarget(site, model, url) for site, model, url in s.execute(
        select(ServingRow.site, ServingRow.model, ServingRow.metrics_url)
        .where(ServingRow.status == "ready", ServingRow.metrics_url.is_not(None)))
        if url is not None]
