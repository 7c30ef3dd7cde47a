"""SQLAlchemy 2.0 typed tables. Every change here needs an Alembic migration."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Defined beside as_utc; imported here for the rows' defaults and re-exported for older callers.
from placement.store.db import utcnow as utcnow


class Base(DeclarativeBase):
    """Declarative base of every table."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON, datetime: DateTime(timezone=True)}

    def columns(self) -> dict[str, Any]:
        """The row as a plain dict of its column values."""
        return {c.key: getattr(self, c.key) for c in self.__table__.columns}


class InventoryDoc:
    """Columns shared by sites, datasets and client locations: a name and the whole document."""

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    document: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SiteRow(InventoryDoc, Base):
    __tablename__ = "sites"
    site_type: Mapped[str] = mapped_column(String(16))


class DatasetRow(InventoryDoc, Base):
    __tablename__ = "datasets"


class ClientLocationRow(InventoryDoc, Base):
    __tablename__ = "client_locations"


class InventoryVersion(Base):
    """One row; bumped in the same transaction as any inventory change (engine cache key)."""

    __tablename__ = "inventory_version"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class CapacityRow(Base):
    """GPUs per (site, GPU type) and how many are reserved; guarded updates keep it <= total."""

    __tablename__ = "capacity"
    __table_args__ = (
        CheckConstraint("reserved >= 0 AND reserved <= total", name="ck_capacity_reserved"),
    )
    site: Mapped[str] = mapped_column(String(63), primary_key=True)
    gpu_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    total: Mapped[int] = mapped_column(Integer)
    reserved: Mapped[int] = mapped_column(Integer, default=0)


class PolicyBundleRow(Base):
    __tablename__ = "policy_bundles"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    version: Mapped[str] = mapped_column(String(80), unique=True)
    content: Mapped[dict[str, Any]]
    source: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(default=False)
    loaded_at: Mapped[datetime] = mapped_column(default=utcnow)


class WorkloadRow(Base):
    __tablename__ = "workloads"
    __table_args__ = (
        UniqueConstraint("team", "idempotency_key", name="uq_workloads_team_idempotency_key"),
        Index("ix_workloads_team_phase", "team", "phase"),
        Index("ix_workloads_phase_created", "phase", "created_at"),
    )
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(63))
    team: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    phase: Mapped[str] = mapped_column(String(16))
    site: Mapped[str | None] = mapped_column(String(63), nullable=True)
    action: Mapped[str | None] = mapped_column(String(16), nullable=True)
    document: Mapped[dict[str, Any]]
    decision_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DecisionRow(Base):
    __tablename__ = "decisions"
    __table_args__ = (Index("ix_decisions_created_at", "created_at"),)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    workload_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workloads.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    site: Mapped[str | None] = mapped_column(String(63), nullable=True)
    policy_version: Mapped[str] = mapped_column(String(80))
    explanation: Mapped[dict[str, Any]]  # the Decision's fields but its candidates
    # every candidate, packed (placement.engine.explain.Columns); null for rows stored
    # before it, whose explanation holds its candidates
    candidate_columns: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReservationRow(Base):
    __tablename__ = "reservations"
    __table_args__ = (Index("ix_reservations_active", "released_at"),)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    workload_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workloads.id"), index=True)
    site: Mapped[str] = mapped_column(String(63))
    gpu_type: Mapped[str] = mapped_column(String(32))
    count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expected_end_at: Mapped[datetime | None] = mapped_column(nullable=True)
    released_at: Mapped[datetime | None] = mapped_column(nullable=True)


class ApiTokenRow(Base):
    __tablename__ = "api_tokens"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    team: Mapped[str | None] = mapped_column(String(63), nullable=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # The token's first characters (e.g. "plc_AbCd12"), to tell tokens apart in a list; null
    # for tokens stored before it was kept.
    prefix: Mapped[str | None] = mapped_column(String(16), nullable=True)


class UiSessionRow(Base):
    """A dashboard login: the cookie holds a random session id, stored here only hashed,
    bound to the token it was opened with. Logging out deletes the row; so does revoking
    the token; past `expires_at` it is refused (and swept on a later login)."""

    __tablename__ = "ui_sessions"
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_tokens.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class EventRow(Base):
    """Append-only log per workload: rows are inserted, never updated or deleted."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    workload_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workloads.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    type: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


def _workload_id(context: Any) -> Any:
    """A serving row's default id: its workload's (one serving per workload)."""
    return context.get_current_parameters()["workload_id"]


class ServingRow(Base):
    """Where and how Triton serves a service workload on one site (a fleet: one row per
    member site), and how far the actuator got there."""

    __tablename__ = "servings"
    __table_args__ = (Index("ix_servings_status_next", "status", "next_attempt_at"),
                      UniqueConstraint("workload_id", "site", name="uq_servings_workload_site"))
    # The workload's id when it is served from one site; a fleet member's: see
    # placement.store.servings.serving_id.
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=_workload_id)
    workload_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workloads.id"))
    site: Mapped[str] = mapped_column(String(63))
    replicas: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: the spec's
    namespace: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(63))
    model: Mapped[str] = mapped_column(String(63))
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)  # version serving now
    # pending -> ready | retrying | failed (retried); removing -> removed
    status: Mapped[str] = mapped_column(String(16))
    endpoint: Mapped[str | None] = mapped_column(Text, nullable=True)
    metrics_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(nullable=True)
    claim_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    ready_at: Mapped[datetime | None] = mapped_column(nullable=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class JobRunRow(Base):
    """A job workload's run on its cluster: where, how far, and what it really took."""

    __tablename__ = "job_runs"
    __table_args__ = (Index("ix_job_runs_status_next", "status", "next_attempt_at"),)
    workload_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workloads.id"), primary_key=True)
    site: Mapped[str] = mapped_column(String(63))
    namespace: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(63))
    # pending -> submitted -> running -> succeeded | failed; retrying (before submission);
    # interrupted -> requeued (decided again, waiting to be placed); removing -> removed
    status: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    interruptions: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(nullable=True)
    claim_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    staged_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    estimated_hours: Mapped[float | None] = mapped_column(nullable=True)
    estimated_usd: Mapped[float | None] = mapped_column(nullable=True)
    estimated_egress_gb: Mapped[float | None] = mapped_column(nullable=True)
    actual_hours: Mapped[float | None] = mapped_column(nullable=True)
    actual_usd: Mapped[float | None] = mapped_column(nullable=True)
    usd_per_hour: Mapped[float | None] = mapped_column(nullable=True)
    deadline_hours: Mapped[float | None] = mapped_column(nullable=True)  # as first submitted
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class BurstRow(Base):
    """Cloud capacity provisioned for one workload's burst: one Pulumi stack, its cost."""

    __tablename__ = "bursts"
    __table_args__ = (Index("ix_bursts_status_next", "status", "next_attempt_at"),)
    workload_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workloads.id"), primary_key=True)
    stack: Mapped[str] = mapped_column(String(80), unique=True)  # never two stacks per burst
    team: Mapped[str] = mapped_column(String(63))
    site: Mapped[str] = mapped_column(String(63))
    # requested -> provisioning -> ready -> draining -> destroyed | failed
    status: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text, default="")
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the stack's BurstConfig
    outputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    usd_per_hour: Mapped[float] = mapped_column(default=0.0)
    budget_usd: Mapped[float | None] = mapped_column(nullable=True)
    expires_at: Mapped[datetime] = mapped_column()
    spent_usd: Mapped[float] = mapped_column(default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(nullable=True)
    claim_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ready_at: Mapped[datetime | None] = mapped_column(nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(nullable=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
