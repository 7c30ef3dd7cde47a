"""Workloads: submit (the response carries the decision with its best candidates), read,
list, transitions, release."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import PrincipalDep, RuntimeDep, principal_of
from api.errors import AUTH, WRITE, bad_json, not_json, responses
from api.schemas import (
    DecisionPublic,
    EventPublic,
    RoutingPublic,
    TransitionCreate,
    WorkloadPage,
    WorkloadPublic,
    timestamp,
)
from placement import jsoncodec
from placement.control import lifecycle
from placement.control import submit as submission
from placement.control.runtime import Runtime
from placement.control.submit import Batcher
from placement.engine.explain import brief, render
from placement.errors import NotFoundError
from placement.model import Workload
from placement.model.common import NAME_PATTERN
from placement.store import workloads as store
from placement.store.routing import routing_of
from placement.store.workloads import (
    DecisionView,
    JobRunView,
    ServingView,
    WorkloadFilter,
    WorkloadView,
)

router = APIRouter(prefix="/v1/workloads", tags=["workloads"])
EXAMPLES = {"finetune": {"summary": "A fine-tuning job reading a dataset", "value": {
    "metadata": {"name": "vision-finetune"},
    "spec": {"kind": "finetune", "team": "vision", "gpu": {"types": ["A100-80GB"], "count": 8},
             "duration_hours": 12, "deadline_hours": 36,
             "datasets": [{"name": "product-images"}]}}}}
Phase = Literal["submitted", "placed", "queued", "rejected", "running", "succeeded", "failed",
                "cancelled", "released"]
Kind = Literal["inference", "rag", "training", "finetune", "batch"]
Action = Literal["place", "burst", "queue", "reject"]


_iso = timestamp


def decision_json(row: Mapping[str, Any] | DecisionView, full: bool = True) -> dict[str, Any]:
    """A stored decision with its candidates worded now from their packed columns: every one
    (`full`), or the best few (a submission's reply; `candidates_omitted` counts the rest)."""
    d = row.columns() if isinstance(row, DecisionView) else row
    explain = render if full else brief
    return {"id": str(d["id"]), "workload_id": str(d["workload_id"]),
            "created_at": _iso(d["created_at"]),
            "decision": explain(d["explanation"], d.get("candidate_columns"))}


def workload_json(row: Mapping[str, Any] | WorkloadView,
                  decision: Mapping[str, Any] | DecisionView | None = None,
                  full: bool = True) -> dict[str, Any]:
    """A workload (a stored one or the columns of a new one) with its decision, if given."""
    w = row.columns() if isinstance(row, WorkloadView) else row
    d = decision.columns() if isinstance(decision, DecisionView) else decision
    return {"id": str(w["id"]), "name": w["name"], "team": w["team"], "kind": w["kind"],
            "phase": w["phase"], "action": w["action"], "site": w["site"],
            "created_at": _iso(w["created_at"]), "updated_at": _iso(w["updated_at"]),
            "spec": w["document"]["spec"],
            "decision": decision_json(d, full) if d else None}


def decision_public(row: DecisionView) -> DecisionPublic:
    return DecisionPublic.model_validate(decision_json(row))


def reply(content: Any, status: int = 200) -> Response:
    """JSON from data the store already validated (no second validation pass)."""
    return Response(jsoncodec.dumps(content), status_code=status,
                    media_type="application/json")


IdempotencyKey = TypeAdapter(Annotated[str, Field(min_length=1, max_length=200)])
SUBMIT_DOC: dict[str, Any] = {
    "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                    "schema": IdempotencyKey.json_schema(),
                    "description": "A retry with the same key returns the first result."}],
    "requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Workload"}, "examples": EXAMPLES}}},
    "security": [{"bearer": []}],
}
# What a client does next with a submitted workload: the links from its reply (201 or 200)
# to the operations on it, which stateful clients and tests follow.
_BY_ID = {"workload_id": "$response.body#/id"}
LINKS: dict[str, Any] = {
    "GetWorkload": {"operationId": "workloads-get", "parameters": _BY_ID},
    "ListEvents": {"operationId": "workloads-events", "parameters": _BY_ID},
    "Transition": {"operationId": "workloads-transition", "parameters": _BY_ID},
    "Cancel": {"operationId": "workloads-cancel", "parameters": _BY_ID},
    "Release": {"operationId": "workloads-release", "parameters": _BY_ID},
    "GetRouting": {"operationId": "workloads-routing", "parameters": _BY_ID},
    "GetDecision": {"operationId": "decisions-get",
                    "parameters": {"decision_id": "$response.body#/decision/id"}},
}


def _invalid(errors: Sequence[Mapping[str, Any]], *where: str | int) -> RequestValidationError:
    """Pydantic's errors under `where` (body, header ...), as FastAPI reports them."""
    return RequestValidationError([{"loc": (*where, *e["loc"]), "msg": e["msg"],
                                    "type": e["type"]} for e in errors])


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False  # as FastAPI's strict content type: a body must say it is JSON
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/")
                                          and kind.endswith("+json"))


def read_workload(body: bytes, content_type: str | None) -> Workload:
    """The request body straight into the model (one JSON parse, one validation pass)."""
    if not _is_json(content_type):
        raise not_json(content_type)
    if not body:
        raise _invalid([{"loc": (), "msg": "Field required", "type": "missing"}], "body")
    try:
        return Workload.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    if any(e["type"] == "json_invalid" for e in errors):
        # Text Python's json reads (a lone surrogate, say) is validated field by field, so
        # the error names the field; text it cannot read either keeps the parser's line and
        # column.
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            raise bad_json(exc.doc, exc.pos, exc.msg) from None
        except ValueError:  # not UTF-8 at all
            raise _invalid(errors, "body") from None
        try:
            return Workload.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
    raise _invalid(errors, "body")


# The one door for submissions, kept cheap by hand: no dependency graph (the token is checked
# by `get_principal` itself, from its cache without a thread hop), the body parsed straight
# into the model, and the reply written from stored data without a second validation.
class RequestOnlyRoute(APIRoute):
    """A route whose endpoint takes the request alone and answers a Response: it is called
    directly, without FastAPI's per-request dependency solving (which has nothing to solve)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return cast(Callable[[Request], Coroutine[Any, Any, Response]], self.endpoint)


async def submit(request: Request) -> Response:
    """Submit a workload; it is decided and, when placed, its GPUs reserved in one transaction.

    With an `Idempotency-Key` header a retry returns the first result (200) instead of a
    second workload.
    """
    rt: Runtime = request.app.state.runtime
    headers = request.headers
    who = await principal_of(rt, request, headers.get("authorization"))
    key = headers.get("idempotency-key")
    if key is not None:
        try:
            IdempotencyKey.validate_python(key)
        except ValidationError as exc:
            raise _invalid(exc.errors(include_url=False), "header", "idempotency-key") from None
    body = read_workload(await request.body(), headers.get("content-type"))
    who.require_team(body.spec.team)
    batcher: Batcher | None = getattr(request.app.state, "batcher", None)
    if batcher is not None:  # wait on the batch without holding a thread
        row, drow, created = await asyncio.wrap_future(batcher.enqueue(body, key))
    else:
        row, drow, created = await run_in_threadpool(
            submission.submit, rt, workload=body, idempotency_key=key)
    return reply(workload_json(row, drow, full=False), 201 if created else 200)


def add_submit(app: FastAPI) -> None:
    """Register POST /v1/workloads on the app itself, first: the call pipelines make most is
    matched before every other route and skips the included routers' dispatch."""
    app.router.routes.insert(0, RequestOnlyRoute(
        "/v1/workloads", submit, methods=["POST"], response_model=WorkloadPublic,
        status_code=201, openapi_extra=SUBMIT_DOC, tags=["workloads"], name="submit",
        operation_id="workloads-submit",
        responses={201: {"description": "Submitted and decided.", "links": LINKS},
                   200: {"model": WorkloadPublic, "links": LINKS,
                         "description": "A retry with the same `Idempotency-Key`: the first "
                         "result."},
                   **responses(*WRITE)}))


@router.get("", response_model=WorkloadPage, operation_id="workloads-list",
            responses=responses(*AUTH, 403, 422))
def list_all(rt: RuntimeDep, who: PrincipalDep,
             team: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
             kind: Kind | None = None, phase: Phase | None = None,
             site: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
             action: Action | None = None,
             limit: Annotated[int, Query(ge=1, le=200)] = 50,
             cursor: Annotated[str | None, Query(
                 pattern=r"^[A-Za-z0-9_-]+={0,2}$", max_length=500,
                 description="`next_cursor` of the previous page (opaque: a made-up one is "
                 "refused with 422).")] = None) -> Response:
    """Newest first, filtered; members see only their team."""
    if not who.is_admin:
        if team is not None:
            who.require_team(team)
        team = who.team
    with rt.db.read() as s:
        rows, nxt = store.list_workloads(s, filt=WorkloadFilter(team, kind, phase, site, action),
                                         limit=limit, cursor=cursor)
    return reply({"items": [workload_json(r) for r in rows], "next_cursor": nxt})


def _get(rt: RuntimeDep, who: PrincipalDep, workload_id: uuid.UUID) -> WorkloadView:
    with rt.db.read() as s:
        row = store.get_workload(s, workload_id=workload_id, team=None)
    if row is None:
        raise NotFoundError("workload", str(workload_id))
    who.require_team(row.team)
    return row


@router.get("/{workload_id}", response_model=WorkloadPublic, operation_id="workloads-get",
            responses=responses(*AUTH, 403, 404, 422))
def get_one(workload_id: uuid.UUID, rt: RuntimeDep, who: PrincipalDep) -> Response:
    """The workload with its latest decision."""
    row = _get(rt, who, workload_id)
    with rt.db.read() as s:
        drow = store.get_decision(s, decision_id=row.decision_id)
        srow = store.get_serving(s, workload_id=row.id)
        jrow = store.get_job_run(s, workload_id=row.id)
    out = workload_json(row, drow)
    if srow is not None:
        out["serving"] = serving_json(srow)
    if jrow is not None:
        out["job"] = job_json(jrow)
    return reply(out)


def job_json(row: JobRunView) -> dict[str, Any]:
    """The job's run on its cluster, with actual hours, $ and staged GB beside the estimates."""
    return {"status": row.status, "site": row.site, "namespace": row.namespace or None,
            "name": row.name, "message": row.message, "attempts": row.attempts,
            "interruptions": row.interruptions, "started_at": _iso(row.started_at),
            "finished_at": _iso(row.finished_at),
            "estimated": {"hours": row.estimated_hours, "usd": row.estimated_usd,
                          "egress_gb": row.estimated_egress_gb},
            "actual": {"hours": row.actual_hours, "usd": row.actual_usd,
                       "egress_gb": row.staged_bytes / 1e9},
            "updated_at": _iso(row.updated_at)}


def serving_json(row: ServingView) -> dict[str, Any]:
    """Where Triton serves the workload and how far the actuator got."""
    return {"status": row.status, "site": row.site, "namespace": row.namespace or None,
            "name": row.name, "model": row.model, "version": row.version,
            "endpoint": row.endpoint, "message": row.message, "attempts": row.attempts,
            "next_attempt_at": _iso(row.next_attempt_at) if row.status != "ready" else None,
            "ready_at": _iso(row.ready_at), "updated_at": _iso(row.updated_at)}


@router.get("/{workload_id}/events", response_model=list[EventPublic],
            operation_id="workloads-events", responses=responses(*AUTH, 403, 404, 422))
def events(workload_id: uuid.UUID, rt: RuntimeDep, who: PrincipalDep) -> list[EventPublic]:
    """The append-only event log."""
    _get(rt, who, workload_id)
    with rt.db.read() as s:
        return [EventPublic(id=e.id, at=e.at, type=e.type, message=e.message, detail=e.detail)
                for e in store.list_events(s, workload_id=workload_id)]


@router.get("/{workload_id}/routing", response_model=RoutingPublic,
            operation_id="workloads-routing", responses=responses(*AUTH, 403, 404, 409, 422))
def routing(workload_id: uuid.UUID, rt: RuntimeDep, who: PrincipalDep) -> Response:
    """A service's routing table: per client location, the sites and weights its requests go
    to, failing or removed sites drained (weights renormalized over the healthy ones). A job
    has none (409)."""
    _get(rt, who, workload_id)
    with rt.db.read() as s:
        table = routing_of(s, workload_id=workload_id)
    if table is None:
        raise NotFoundError("workload", str(workload_id))
    return reply(table.as_json())


def _moved(rt: RuntimeDep, workload_id: uuid.UUID, to: str, who: PrincipalDep,
           message: str = "") -> WorkloadView:
    """Move the workload through its lifecycle; the workload as it is now."""
    return WorkloadView.of(lifecycle.transition(rt, workload_id=workload_id, to=to, who=who,
                                                message=message))


@router.post("/{workload_id}/transitions", response_model=WorkloadPublic,
             operation_id="workloads-transition", responses=responses(*WRITE, 404, 409))
def transition(workload_id: uuid.UUID, body: TransitionCreate, rt: RuntimeDep,
               who: PrincipalDep) -> Response:
    """running (from placed), succeeded (from running), failed (from placed or running)."""
    return reply(workload_json(_moved(rt, workload_id, body.phase, who, body.message)))


@router.post("/{workload_id}/cancel", response_model=WorkloadPublic,
             operation_id="workloads-cancel", responses=responses(*AUTH, 403, 404, 409, 422))
def cancel(workload_id: uuid.UUID, rt: RuntimeDep, who: PrincipalDep) -> Response:
    """Cancel a live workload; its GPUs are freed and queued workloads re-evaluated."""
    return reply(workload_json(_moved(rt, workload_id, "cancelled", who)))


@router.post("/{workload_id}/release", response_model=WorkloadPublic,
             operation_id="workloads-release", responses=responses(*AUTH, 403, 404, 409, 422))
def release(workload_id: uuid.UUID, rt: RuntimeDep, who: PrincipalDep) -> Response:
    """Free the workload's GPUs (phase `released`); queued workloads are re-evaluated."""
    return reply(workload_json(_moved(rt, workload_id, "released", who)))
