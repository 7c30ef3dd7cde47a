"""Decisions with their full explanation, and dry-run previews."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Response

from api.deps import PrincipalDep, RuntimeDep
from api.errors import AUTH, WRITE, responses
from api.routers.workloads import EXAMPLES, decision_public, reply
from api.schemas import DecisionPublic
from placement.control.lifecycle import check_references
from placement.errors import NotFoundError
from placement.model import Decision, Workload
from placement.store import workloads as store

router = APIRouter(tags=["decisions"])


@router.get("/v1/decisions/{decision_id}", response_model=DecisionPublic,
            operation_id="decisions-get", responses=responses(*AUTH, 403, 404, 422))
def get_decision(decision_id: uuid.UUID, rt: RuntimeDep, who: PrincipalDep) -> DecisionPublic:
    """Every candidate's raw values, scores and weights, or the filter that rejected it."""
    with rt.db.read() as s:
        row = store.get_decision(s, decision_id=decision_id)
        owner = store.get_workload(s, workload_id=row.workload_id, team=None) if row else None
    if row is None or owner is None:
        raise NotFoundError("decision", str(decision_id))
    who.require_team(owner.team)
    return decision_public(row)


@router.post("/v1/placements/preview", response_model=Decision,
             operation_id="placements-preview", responses=responses(*WRITE))
def preview(body: Annotated[Workload, Body(openapi_examples=EXAMPLES)], rt: RuntimeDep,
            who: PrincipalDep) -> Response:
    """Decide against the current state and store nothing (a dry run)."""
    who.require_team(body.spec.team)
    with rt.db.read() as s:
        engine = rt.engine(s)
    check_references(engine, body)
    return reply(engine.explain_dict(engine.decide(body)))
