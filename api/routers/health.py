"""Liveness, readiness and the Prometheus exposition."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from api.deps import RuntimeDep
from api.errors import responses
from api.schemas import Readiness
from placement.store.db import ping
from placement.store.inventory import capacity

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="health-live")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, response_model_exclude_none=True,
            operation_id="health-ready", responses={
    503: {"model": Readiness, "description": "Not ready: the database does not answer "
          "(`reason` says why)."}})
def readyz(rt: RuntimeDep) -> Any:
    """Ready when the database answers and a policy is loaded."""
    try:
        with rt.db.read() as s:
            ping(s)
    except Exception as exc:  # any failure to reach the database means not ready
        return JSONResponse({"status": "unavailable", "reason": f"database: {exc}"[:300]},
                            status_code=503)
    ready: dict[str, Any] = {"status": "ready", "policy_version": rt.policy_version}
    if rt.inventory_skipped:
        ready["inventory_skipped"] = rt.inventory_skipped
    return ready


@router.get("/metrics", response_class=Response, operation_id="metrics",
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text format."},
                       **responses(503)})
def metrics(rt: RuntimeDep) -> Response:
    """Prometheus text format; capacity gauges are read from the store at scrape time."""
    with rt.db.read() as s:
        for row in capacity(s):
            rt.metrics.gpus_reserved.labels(row.site, row.gpu_type).set(row.reserved)
            rt.metrics.gpus_free.labels(row.site, row.gpu_type).set(row.total - row.reserved)
    return Response(rt.metrics.exposition(), media_type="text/plain; version=0.0.4")
