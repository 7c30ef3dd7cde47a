"""Decisions with their full explanation, and dry-run previews."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from api.deps import PrincipalDep, RuntimeDep
from api.routers.workloads import check_references, decision_public
from api.schemas import DecisionPublic, WorkloadCreate
from placement.errors import NotFoundError
from placement.model import Decision, Workload
from placement.store.tables import DecisionRow, WorkloadRow

router = APIRouter(tags=["decisions"])


@router.get("/v1/decisions/{decision_id}", response_model=DecisionPublic)
def get_decision(decision_id: uuid.UUID, rt: RuntimeDep, who: PrincipalDep) -> DecisionPublic:
    """Every candidate's raw values, scores and weights, or the filter that rejected it."""
    with rt.db.read() as s:
        row = s.get(DecisionRow, decision_id)
        owner = s.get(WorkloadRow, row.workload_id) if row else None
    if row is None or owner is None:
        raise NotFoundError("decision", str(decision_id))
    who.require_team(owner.team)
    return decision_public(row)


@router.post("/v1/placements/preview", response_model=Decision)
def preview(body: WorkloadCreate, rt: RuntimeDep, who: PrincipalDep) -> Decision:
    """Decide against the current state and store nothing (a dry run)."""
    who.require_team(body.spec.team)
    wl = Workload.model_validate(body.model_dump())
    check_references(rt, wl)
    with rt.db.read() as s:
        engine = rt.engine(s)
    return engine.place(wl)
