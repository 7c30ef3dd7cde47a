"""Request and response schemas (XCreate / XPublic)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from placement.model import Decision
from placement.model.common import GpuType
from placement.model.gpus import KNOWN_GPU_TYPES


def timestamp(value: datetime | None) -> str | None:
    """The one timestamp format of every response: RFC 3339 in UTC with microseconds and `Z`
    (`2026-12-02T16:07:51.085449Z`); a naive value (SQLite's) was written as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.isoformat(timespec="microseconds") + "Z"
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")[:-6] + "Z"  # without "+00:00"


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Timestamp = Annotated[datetime, AfterValidator(_utc), PlainSerializer(timestamp, return_type=str),
                      WithJsonSchema({"type": "string", "format": "date-time",
                                      "examples": ["2026-12-02T16:07:51.085449Z"]})]


GPU_TYPE = next(m.description for m in getattr(GpuType, "__metadata__", ())
                if getattr(m, "description", None))


def document_gpu_types(node: Any) -> None:
    """Every GPU type field of the document lists the known types as its `enum` (the models
    check them in code, which JSON Schema cannot see)."""
    if isinstance(node, dict):
        if node.get("description") == GPU_TYPE and node.get("type") == "string":
            node["enum"] = list(KNOWN_GPU_TYPES)
        for value in node.values():
            document_gpu_types(value)
    elif isinstance(node, list):
        for value in node:
            document_gpu_types(value)


class DecisionPublic(BaseModel):
    id: uuid.UUID
    workload_id: uuid.UUID | None
    created_at: Timestamp | None
    decision: Decision


class WorkloadPublic(BaseModel):
    id: uuid.UUID
    name: str
    team: str
    kind: str
    phase: str
    action: str | None
    site: str | None
    created_at: Timestamp
    updated_at: Timestamp
    spec: dict[str, Any]
    decision: DecisionPublic | None = None
    serving: ServingPublic | None = None
    job: JobRunPublic | None = None


class ServingPublic(BaseModel):
    """Triton serving of an inference or RAG workload (present once the actuator took it)."""

    status: Literal["pending", "retrying", "failed", "ready", "removing", "removed"] = Field(
        description="ready: Triton serves the model at `endpoint`; retrying/failed: see "
        "`message` and the event log.")
    site: str
    namespace: str | None
    name: str = Field(description="Name of the Deployment and Service on the site's cluster.")
    model: str
    version: int | None = Field(description="Model version being served.")
    endpoint: str | None = Field(description="Triton's HTTP endpoint (KServe v2 protocol).")
    message: str
    attempts: int
    next_attempt_at: Timestamp | None
    ready_at: Timestamp | None
    updated_at: Timestamp


class Quantities(BaseModel):
    hours: float | None
    usd: float | None
    egress_gb: float | None


class JobRunPublic(BaseModel):
    """A training, fine-tuning or batch job's run on its cluster."""

    status: Literal["pending", "retrying", "submitted", "running", "succeeded", "failed",
                    "requeued", "removing", "removed"] = Field(
        description="requeued: interrupted on spot and decided again; see the event log.")
    site: str
    namespace: str | None
    name: str = Field(description="Name of the Job on the site's cluster.")
    message: str
    attempts: int
    interruptions: int
    started_at: Timestamp | None
    finished_at: Timestamp | None
    estimated: Quantities = Field(description="From the decision: hours, GPU USD, egress GB.")
    actual: Quantities = Field(description="Run time, hours x billed USD/hour, GB staged.")
    updated_at: Timestamp


RouteStatus = Literal["unserved", "pending", "rolling", "ready", "retrying", "failed",
                      "removing", "removed"]


class RouteTargetPublic(BaseModel):
    """A site a client location's requests go to."""

    site: str
    weight: float = Field(description="Share of the location's requests; the weights of a "
                          "location sum to 1 over its sites still healthy.")
    p99_latency_ms: float | None = Field(description="RTT + service time + RAG lookups, ms, "
                                         "as the decision estimated it.")
    status: RouteStatus = Field(description="The site's serving: unserved (not adopted yet), "
                                "pending, rolling (a new version goes on, the old one serves), "
                                "ready.")


class RoutePublic(BaseModel):
    """One client location's entry in the routing table."""

    location: str
    demand_rps: float
    targets: list[RouteTargetPublic]
    drained: list[str] = Field(description="Sites the decision routed this location to that "
                               "take nothing now: their serving is retrying, failed, removing "
                               "or removed.")
    note: str | None = Field(description="What was drained, or why the location has no "
                             "target left.")


class RoutingPublic(BaseModel):
    """A service's routing table as published: the decision's (a fleet's routing, else
    every client location to its one site), failing sites drained."""

    workload: uuid.UUID
    name: str
    policy_version: str
    routes: list[RoutePublic]


class WorkloadPage(BaseModel):
    items: list[WorkloadPublic]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page.")


class TransitionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phase: Literal["running", "succeeded", "failed"]
    message: str = ""


class EventPublic(BaseModel):
    id: int
    at: Timestamp
    type: str
    message: str
    detail: dict[str, Any]


class InventoryPublic(BaseModel):
    id: uuid.UUID
    name: str
    document: dict[str, Any]
    created_at: Timestamp
    updated_at: Timestamp


class ReloadPublic(BaseModel):
    """The last time the GitOps directory was read, and the latest failure (if any)."""

    ok: bool = Field(description="The last attempt loaded (or found unchanged) a valid bundle.")
    checked_at: Timestamp
    version: str | None = Field(description="Active version after the attempt.")
    last_error: str | None = Field(description="Every problem of the latest invalid bundle "
                                   "(file:line, field, fix); it never replaced the active one.")
    last_error_at: Timestamp | None


class PolicyPublic(BaseModel):
    version: str = Field(description="git:<commit> for a clean checkout, else sha256:<hash>.")
    name: str
    rules: list[dict[str, Any]]
    defaults: dict[str, Any]
    scales: dict[str, Any]
    source: str | None = Field(default=None, description="The GitOps directory.")
    reload: ReloadPublic | None = None


class Readiness(BaseModel):
    """Whether this replica serves: the database answers and a policy is loaded."""

    status: Literal["ready", "unavailable"]
    policy_version: str | None = None
    reason: str | None = Field(default=None, description="Why it is not ready.")
    inventory_skipped: list[str] | None = Field(
        default=None, description="Stored inventory documents that no longer load.")


class FieldError(BaseModel):
    """One invalid field (or header, query or path parameter) and how to fix it."""

    location: Literal["body", "query", "path", "header", "cookie"] = Field(
        description="Where the field is: the body or a parameter.")
    field: str = Field(description="The field's path in the body (`spec.gpu.count`; empty for "
                       "the whole body), or the parameter's name.")
    pointer: str | None = Field(description="RFC 6901 JSON pointer into the body "
                                "(`#/spec/gpu/count`); null for parameters.")
    loc: list[str | int] = Field(description="The location and path as one list, as FastAPI "
                                 "writes it (`[\"body\", \"spec\", \"gpu\", \"count\"]`).")
    detail: str = Field(description="What is wrong.")
    type: str = Field(description="A stable code for the kind of error (`missing`, `int_type` "
                      "...).")
    fix: str = Field(description="How to fix it.")


class Problem(BaseModel):
    """Every error body: RFC 9457 problem details (`application/problem+json`), with the
    field errors in `errors`."""

    type: str = Field(default="about:blank", description="A URI for the kind of problem; "
                      "`about:blank`: the status says it.")
    title: str = Field(description="The HTTP status's phrase.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong and how to fix it, in words.")
    instance: str | None = Field(description="The request path this problem occurred on.")
    errors: list[FieldError] = Field(default_factory=list, description="Every invalid field, "
                                     "each with its location and how to fix it.")
