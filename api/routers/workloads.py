"""Workloads: submit (the response carries the decision), read, list, transitions, release."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Response

from api.deps import PrincipalDep, RuntimeDep
from api.schemas import (
    DecisionPublic,
    EventPublic,
    TransitionCreate,
    WorkloadCreate,
    WorkloadPage,
    WorkloadPublic,
)
from placement import lifecycle
from placement.errors import FieldProblem, InvalidRequestError, NotFoundError
from placement.model import Decision, Workload
from placement.store.queries import WorkloadFilter, events_of, list_workloads
from placement.store.tables import DecisionRow, WorkloadRow

router = APIRouter(prefix="/v1/workloads", tags=["workloads"])
Phase = Literal["submitted", "placed", "queued", "rejected", "running", "succeeded", "failed",
                "cancelled", "released"]
Kind = Literal["inference", "rag", "training", "finetune", "batch"]


def decision_public(row: DecisionRow) -> DecisionPublic:
    return DecisionPublic(id=row.id, workload_id=row.workload_id, created_at=row.created_at,
                          decision=Decision.model_validate(row.explanation))


def workload_public(row: WorkloadRow, decision: DecisionRow | None = None) -> WorkloadPublic:
    return WorkloadPublic(
        id=row.id, name=row.name, team=row.team, kind=row.kind, phase=row.phase,
        action=row.action, site=row.site, created_at=row.created_at, updated_at=row.updated_at,
        spec=row.document["spec"], decision=decision_public(decision) if decision else None)


def check_references(rt: RuntimeDep, wl: Workload) -> None:
    """422 naming each dataset or client location that does not exist."""
    with rt.db.read() as s:
        ci = rt.engine(s).ci
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


@router.post("", response_model=WorkloadPublic, status_code=201)
def submit(body: WorkloadCreate, rt: RuntimeDep, who: PrincipalDep, response: Response,
           idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None
           ) -> WorkloadPublic:
    """Submit a workload; it is decided and, when placed, its GPUs reserved in one transaction.

    With an `Idempotency-Key` header a retry returns the first result (200) instead of a
    second workload.
    """
    who.require_team(body.spec.team)
    wl = Workload.model_validate(body.model_dump())
    check_references(rt, wl)
    row, drow, created = lifecycle.submit(rt, workload=wl, idempotency_key=idempotency_key)
    if not created:
        response.status_code = 200
    return workload_public(row, drow)


@router.get("", response_model=WorkloadPage)
def list_all(rt: RuntimeDep, who: PrincipalDep, team: str | None = None,
             kind: Kind | None = None, phase: Phase | None = None, site: str | None = None,
             limit: Annotated[int, Query(ge=1, le=200)] = 50,
             cursor: str | None = None) -> WorkloadPage:
    """Newest first, filtered; members see only their team."""
    if not who.is_admin:
        if team is not None:
            who.require_team(team)
        team = who.team
    with rt.db.read() as s:
        rows, nxt = list_workloads(s, filt=WorkloadFilter(team, kind, phase, site), limit=limit,
                                   cursor=cursor)
    return WorkloadPage(items=[workload_public(r) for r in rows], next_cursor=nxt)


def _get(rt: RuntimeDep, who: PrincipalDep, workload_id: uuid.UUID) -> WorkloadRow:
    with rt.db.read() as s:
        row = s.get(WorkloadRow, workload_id)
    if row is None:
        raise NotFoundError("workload", str(workload_id))
    who.require_team(row.team)
    return row


@router.get("/{workload_id}", response_model=WorkloadPublic)
def get_one(workload_id: uuid.UUID, rt: RuntimeDep, who: PrincipalDep) -> WorkloadPublic:
    """The workload with its latest decision."""
    row = _get(rt, who, workload_id)
    with rt.db.read() as s:
        drow = s.get(DecisionRow, row.decision_id) if row.decision_id else None
    return workload_public(row, drow)


@router.get("/{workload_id}/events", response_model=list[EventPublic])
def events(workload_id: uuid.UUID, rt: RuntimeDep, who: PrincipalDep) -> list[EventPublic]:
    """The append-only event log."""
    _get(rt, who, workload_id)
    with rt.db.read() as s:
        return [EventPublic(id=e.id, at=e.at, type=e.type, message=e.message, detail=e.detail)
                for e in events_of(s, workload_id=workload_id)]


@router.post("/{workload_id}/transitions", response_model=WorkloadPublic)
def transition(workload_id: uuid.UUID, body: TransitionCreate, rt: RuntimeDep,
               who: PrincipalDep) -> WorkloadPublic:
    """running (from placed), succeeded (from running), failed (from placed or running)."""
    return workload_public(lifecycle.transition(rt, workload_id=workload_id, to=body.phase,
                                                who=who, message=body.message))


@router.post("/{workload_id}/cancel", response_model=WorkloadPublic)
def cancel(workload_id: uuid.UUID, rt: RuntimeDep, who: PrincipalDep) -> WorkloadPublic:
    """Cancel a live workload; its GPUs are freed and queued workloads re-evaluated."""
    return workload_public(lifecycle.transition(rt, workload_id=workload_id, to="cancelled",
                                                who=who))


@router.post("/{workload_id}/release", response_model=WorkloadPublic)
def release(workload_id: uuid.UUID, rt: RuntimeDep, who: PrincipalDep) -> WorkloadPublic:
    """Free the workload's GPUs (phase `released`); queued workloads are re-evaluated."""
    return workload_public(lifecycle.transition(rt, workload_id=workload_id, to="released",
                                                who=who))
