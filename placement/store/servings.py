"""The `servings` work rows, one per (workload, site): service workloads to adopt (a fleet on
each member site), ended ones marked for removal, a claimed row for the serving actuator to
change, each site's serving status, and the ready servings' metrics to scrape."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from placement.store.tables import BurstRow, DecisionRow, ServingRow, WorkloadRow
from placement.store.work import owned, workload_of

ServingRecord = ServingRow  # a claimed serving row, changed in the caller's transaction
ENDED = ("removing", "removed")


@dataclass(frozen=True)
class ScrapeTarget:
    """A ready serving's Triton metrics URL, by site, model and workload (each workload's
    servers are its own, so requests read there are that workload's demand)."""

    site: str
    model: str
    metrics_url: str
    workload_id: str


@dataclass(frozen=True)
class Seat:
    """A site the workload is to be served on; `replicas` is a fleet member's (None: the
    spec's, a workload served from one site)."""

    site: str
    replicas: int | None = None


@dataclass(frozen=True)
class Unserved:
    """A placed service workload without serving rows, and the sites to serve it on."""

    workload_id: uuid.UUID
    document: dict[str, Any]
    seats: list[Seat]
    fleet: bool


@dataclass(frozen=True)
class SiteServing:
    """How far serving got on one site of a workload."""

    site: str
    status: str
    version: int | None
    replicas: int | None
    endpoint: str | None
    message: str


def serving_id(workload_id: uuid.UUID, site: str, fleet: bool) -> uuid.UUID:
    """A serving row's key: the workload's id when it is served from one site (as it was
    before fleets), else one derived from the workload and the member site."""
    return uuid.uuid5(workload_id, site) if fleet else workload_id


def seats_of(site: str | None, explanation: dict[str, Any] | None) -> list[Seat]:
    """The decision's fleet member sites with their replicas, else its one site (none if
    none)."""
    fleet = (explanation or {}).get("fleet")
    if fleet:  # one seat per site: members sharing it (GPU types, spot and on-demand) add up
        replicas: dict[str, int] = {}
        for m in fleet["members"]:
            replicas[str(m["site"])] = replicas.get(str(m["site"]), 0) + int(m["replicas"])
        return [Seat(name, n) for name, n in sorted(replicas.items())]
    return [Seat(site)] if site is not None else []


def unserved(s: Session, *, kinds: Collection[str], phases: tuple[str, ...]) -> list[Unserved]:
    """Placed service workloads without a serving row, with the sites their decisions serve
    them on: a burst once its capacity is ready; a fleet at once (its cloud members run on
    node pools their sites have, no burst is provisioned for it)."""
    out = []
    for wid, site, action, document, explanation, burst in s.execute(
            select(WorkloadRow.id, WorkloadRow.site, WorkloadRow.action, WorkloadRow.document,
                   DecisionRow.explanation, BurstRow.status)
            .outerjoin(BurstRow, BurstRow.workload_id == WorkloadRow.id)
            .outerjoin(DecisionRow, DecisionRow.id == WorkloadRow.decision_id)
            .where(WorkloadRow.kind.in_(kinds), WorkloadRow.phase.in_(phases),
                   WorkloadRow.action.in_(("place", "burst")),
                   WorkloadRow.id.not_in(select(ServingRow.workload_id)))):
        fleet = bool((explanation or {}).get("fleet"))
        if action == "burst" and not fleet and burst != "ready":
            continue
        out.append(Unserved(wid, document, seats_of(site, explanation), fleet))
    return out


@dataclass(frozen=True)
class Resized:
    """A served fleet whose decision's members differ from its serving rows (it was
    autoscaled): its rows (in the caller's session, any status) and the sites it wants."""

    workload_id: uuid.UUID
    document: dict[str, Any]
    rows: list[ServingRow]
    seats: list[Seat]


def resized_fleets(s: Session, *, phases: tuple[str, ...]) -> list[Resized]:
    """Fleets in `phases` with serving rows whose live sites and replicas are not their
    current decision's members (a site added, dropped or resized)."""
    grouped: dict[uuid.UUID, tuple[dict[str, Any], dict[str, Any], list[ServingRow]]] = {}
    for row, document, explanation in s.execute(
            select(ServingRow, WorkloadRow.document, DecisionRow.explanation)
            .join(WorkloadRow, WorkloadRow.id == ServingRow.workload_id)
            .join(DecisionRow, DecisionRow.id == WorkloadRow.decision_id)
            .where(WorkloadRow.phase.in_(phases), ServingRow.replicas.is_not(None))
            .order_by(ServingRow.workload_id, ServingRow.site)):
        grouped.setdefault(row.workload_id, (document, explanation or {}, []))[2].append(row)
    out = []
    for wid, (document, explanation, rows) in grouped.items():
        if not explanation.get("fleet"):
            continue
        seats = seats_of(None, explanation)
        live = {r.site: r.replicas for r in rows if r.status not in ENDED}
        if live != {seat.site: seat.replicas for seat in seats}:
            out.append(Resized(wid, document, rows, seats))
    return out


def add_serving(s: Session, *, workload_id: uuid.UUID, site: str, namespace: str, name: str,
                model: str, now: datetime, replicas: int | None = None,
                fleet: bool = False) -> None:
    """A new pending serving row for one site (IntegrityError at commit when another replica
    adopted the workload first)."""
    s.add(ServingRow(id=serving_id(workload_id, site, fleet), workload_id=workload_id,
                     site=site, namespace=namespace, name=name, model=model,
                     replicas=replicas, status="pending", attempts=0,
                     message="waiting to be served", next_attempt_at=now))


def mark_ended(s: Session, *, phases: tuple[str, ...], now: datetime) -> None:
    """Servings of workloads in `phases` (ended) go to `removing`, due now."""
    s.execute(update(ServingRow).where(
        ServingRow.status.not_in(ENDED),
        ServingRow.workload_id.in_(select(WorkloadRow.id).where(WorkloadRow.phase.in_(phases))))
        .values(status="removing", attempts=0, next_attempt_at=now,
                message="workload ended; removing"))


def live_with_documents(s: Session) -> list[tuple[dict[str, Any], list[ServingRow]]]:
    """Per workload with a ready serving: its document and its serving rows that are not
    being removed (in the caller's session), by site name."""
    ready = select(ServingRow.workload_id).where(ServingRow.status == "ready")
    grouped: dict[uuid.UUID, tuple[dict[str, Any], list[ServingRow]]] = {}
    for row, document in s.execute(
            select(ServingRow, WorkloadRow.document)
            .join(WorkloadRow, WorkloadRow.id == ServingRow.workload_id)
            .where(ServingRow.workload_id.in_(ready), ServingRow.status.not_in(ENDED))
            .order_by(ServingRow.workload_id, ServingRow.site)):
        grouped.setdefault(row.workload_id, (document, []))[1].append(row)
    return list(grouped.values())


def detached_serving(s: Session, *, serving: uuid.UUID
                     ) -> tuple[ServingRow, WorkloadRow] | None:
    """The serving row and its workload, detached; None when either is gone."""
    row = s.get(ServingRow, serving)
    wrow = s.get(WorkloadRow, row.workload_id) if row is not None else None
    if row is None or wrow is None:
        return None
    s.expunge_all()
    return row, wrow


def claimed(s: Session, *, serving: uuid.UUID, token: str) -> ServingRow | None:
    """The serving row, locked, while this worker's claim holds; None once it lapsed."""
    row: ServingRow | None = owned(s, ServingRow, serving, token)
    return row


def claimed_with_workload(s: Session, *, serving: uuid.UUID, token: str
                          ) -> tuple[ServingRow | None, WorkloadRow | None]:
    """The serving row (while still claimed) and its workload, in the caller's session."""
    row = claimed(s, serving=serving, token=token)
    return row, (workload_of(s, workload_id=row.workload_id) if row is not None else None)


def others(s: Session, *, row: ServingRow) -> list[ServingRow]:
    """The other sites' serving rows of the row's workload, by site name."""
    return list(s.scalars(select(ServingRow).where(
        ServingRow.workload_id == row.workload_id, ServingRow.id != row.id)
        .order_by(ServingRow.site)))


def site_statuses(s: Session, *, workload_id: uuid.UUID) -> list[SiteServing]:
    """Each site's serving of the workload (none before the actuator adopted it), by site."""
    return [SiteServing(r.site, r.status, r.version, r.replicas, r.endpoint, r.message)
            for r in s.scalars(select(ServingRow).where(ServingRow.workload_id == workload_id)
                               .order_by(ServingRow.site))]


def scrape_targets(s: Session) -> list[ScrapeTarget]:
    """The ready servings that report a metrics URL."""
    return [ScrapeTarget(site, model, url, str(wid)) for site, model, url, wid in s.execute(
        select(ServingRow.site, ServingRow.model, ServingRow.metrics_url,
               ServingRow.workload_id)
        .where(ServingRow.status == "ready", ServingRow.metrics_url.is_not(None)))
        if url is not None]
