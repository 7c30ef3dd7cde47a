"""Request and response schemas (XCreate / XPublic)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from placement.model import Decision


class DecisionPublic(BaseModel):
    id: uuid.UUID
    workload_id: uuid.UUID | None
    created_at: datetime | None
    decision: Decision


class WorkloadPublic(BaseModel):
    id: uuid.UUID
    name: str
    team: str
    kind: str
    phase: str
    action: str | None
    site: str | None
    created_at: datetime
    updated_at: datetime
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
    next_attempt_at: datetime | None
    ready_at: datetime | None
    updated_at: datetime


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
    started_at: datetime | None
    finished_at: datetime | None
    estimated: Quantities = Field(description="From the decision: hours, GPU USD, egress GB.")
    actual: Quantities = Field(description="Run time, hours x billed USD/hour, GB staged.")
    updated_at: datetime


class WorkloadPage(BaseModel):
    items: list[WorkloadPublic]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page.")


class TransitionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phase: Literal["running", "succeeded", "failed"]
    message: str = ""


class EventPublic(BaseModel):
    id: int
    at: datetime
    type: str
    message: str
    detail: dict[str, Any]


class InventoryPublic(BaseModel):
    id: uuid.UUID
    name: str
    document: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class ReloadPublic(BaseModel):
    """The last time the GitOps directory was read, and the latest failure (if any)."""

    ok: bool = Field(description="The last attempt loaded (or found unchanged) a valid bundle.")
    checked_at: datetime
    version: str | None = Field(description="Active version after the attempt.")
    last_error: str | None = Field(description="Every problem of the latest invalid bundle "
                                   "(file:line, field, fix); it never replaced the active one.")
    last_error_at: datetime | None


class PolicyPublic(BaseModel):
    version: str = Field(description="git:<commit> for a clean checkout, else sha256:<hash>.")
    name: str
    rules: list[dict[str, Any]]
    defaults: dict[str, Any]
    scales: dict[str, Any]
    source: str | None = Field(default=None, description="The GitOps directory.")
    reload: ReloadPublic | None = None


class Problem(BaseModel):
    """Error body: what went wrong and, per field, how to fix it."""

    detail: str
    errors: list[dict[str, Any]] = Field(default_factory=list)
