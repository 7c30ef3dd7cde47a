"""Decision documents: the action, the chosen site, estimates and every candidate's story."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Action = Literal["place", "burst", "queue", "reject"]
Capacity = Literal["onprem", "on_demand", "spot"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Estimates(_Out):
    """What placing the workload on a candidate is expected to cost and take."""

    p99_latency_ms: float | None = Field(description="Worst client's p99, ms (services).")
    total_usd: float = Field(description="GPU cost plus egress, USD, over the run or horizon.")
    gpu_usd: float
    usd_per_hour: float = Field(description="Billed GPU USD per hour while running.")
    egress_gb: float
    egress_usd: float
    transfer_hours: float = Field(description="Time to move bulk data to the site.")
    wait_hours: float | None = Field(
        description="Expected delay before GPUs are available; None = no release expected."
    )
    finish_hours: float | None = Field(description="Jobs: expected hours until done.")
    gpu_hours: float = Field(description="GPU-hours billed, spot restarts included.")
    opportunity_usd: float = Field(
        default=0.0, description="On-prem: what its GPU-hours are worth to work only on-prem "
        "can run (bid price x GPU-hours), added to the cost criterion; not billed.")
    sources: dict[Literal["client_rtt", "lookup_rtt", "bandwidth", "egress", "spot_risk",
                          "opportunity"], str] = Field(
        default_factory=dict, description="Where each estimated number comes from: "
        "`measured`, or `estimated: <method>` (the worst client's RTT, the RTT to the data "
        "for lookups, the bandwidth and the egress price of the largest bulk move, the spot "
        "interruption rate behind a spot candidate's GPU-hours, the bid price behind "
        "opportunity_usd).")


class CriterionScore(_Out):
    """One criterion for one candidate: raw value, 0-100 score and weight."""

    raw: float | None
    unit: str
    score: float | None
    weight: float


class Candidate(_Out):
    """One (site, GPU type, capacity) option and why it won or lost."""

    site: str
    site_type: Literal["onprem", "cloud"]
    gpu_type: str | None
    capacity: Capacity | None
    instance_type: str | None = None
    feasible: bool
    rejected_by: str | None = None
    reason: str | None = None
    also_failed: list[str] = Field(default_factory=list)
    criteria: dict[str, CriterionScore] = Field(default_factory=dict)
    total_score: float | None = None
    rank: int | None = None
    estimates: Estimates | None = None


class SignalUse(_Out):
    """A live signal the decision consulted, and whether it was fresh enough to use."""

    site: str
    signal: Literal["free_gpus", "gpu_utilization_pct", "service_p99_ms",
                    "triton_service_p99_ms"] = Field(
        description="triton_service_p99_ms: measured on the Triton servers this service runs.")
    key: str | None = Field(description="GPU type (free_gpus) or model (service times).")
    status: Literal["fresh", "stale", "unavailable"]
    value: float | None
    age_s: float | None = Field(description="Seconds since the value was read.")
    error: str | None = Field(description="Why the latest read failed or returned nothing.")


class DataMoveOut(_Out):
    """A bulk dataset the chosen site lacks: the replica it is copied from, as priced."""

    dataset: str
    from_site: str = Field(description="The replica the engine priced cheapest to move "
                           "(egress USD, then transfer time); staging copies from it.")
    gb: float


class FleetMember(_Out):
    """One site of a fleet: its GPUs, how it is bought and how many replicas run there."""

    site: str
    gpu_type: str
    capacity: Capacity
    instance_type: str | None = None
    replicas: int = Field(ge=1)
    gpus: int = Field(ge=1, description="GPUs reserved at the site: replicas x gpu.count.")
    replica_rps: float = Field(description="Requests/s one replica serves.")
    routed_rps: float = Field(description="Requests/s the routing table sends here.")
    utilization: float = Field(description="routed_rps / (replicas x replica_rps).")
    usd_per_hour: float = Field(description="Billed USD per hour for these replicas "
                                "(spot restarts included; on-prem at its amortized price).")
    opportunity_usd_per_hour: float = Field(
        default=0.0, description="On-prem: the bid price of these GPU-hours (not billed).")


class RouteTarget(_Out):
    """Where one client location's requests go, and what they see there."""

    site: str
    weight: float = Field(description="Share of the location's requests (weights sum to 1).")
    p99_latency_ms: float = Field(description="RTT + service time + RAG lookups, ms.")


class RouteAlternative(_Out):
    """A site the location could have used, and why it did not (or not more)."""

    site: str
    p99_latency_ms: float | None
    usd_per_hour_per_replica: float | None
    reason: str


class Route(_Out):
    """One client location's entry in the routing table."""

    location: str
    demand_rps: float
    within_slo: bool = Field(default=True, description="False: no candidate meets the SLO "
                             "from this location; it is served best effort at the lowest "
                             "p99 every other rule allows.")
    targets: list[RouteTarget]
    why: str = Field(description="Why the location is served where it is.")
    alternatives: list[RouteAlternative] = Field(
        default_factory=list, description="The nearest site and the cheapest sites not "
        "used (or used less), each with its reason.")


class Fleet(_Out):
    """A service served from several sites: members, routing table and totals."""

    members: list[FleetMember]
    routing: list[Route]
    usd_per_hour: float
    demand_rps: float
    method: str = Field(description="How the plan was found: `milp (HiGHS)`, or `greedy` when "
                        "the solver had no plan within the time budget.")
    rule: str | None = Field(description="The policy rule whose fleet settings applied.")


class Decision(_Out):
    """The engine's answer for one workload."""

    workload: str
    action: Action
    site: str | None
    gpu_type: str | None
    capacity: Capacity | None
    instance_type: str | None
    summary: str
    estimates: Estimates | None
    rule: str | None = Field(description="Rule that set weights, wait and burst settings.")
    constraint_rules: list[str] = Field(description="Rules whose require/forbid applied.")
    policy_version: str
    signals: list[SignalUse] = Field(
        default_factory=list, description="Live signals consulted; stale or unavailable ones "
        "were replaced by the store's state.")
    candidates: list[Candidate]
    candidates_omitted: int = Field(
        default=0, ge=0, description="Candidates not shown here: a submission's reply shows "
        "the best few; GET /v1/decisions/{id} shows every one.")
    data_moves: list[DataMoveOut] = Field(
        default_factory=list, description="Bulk datasets to copy to the chosen site, and from "
        "where.")
    fleet: Fleet | None = Field(
        default=None, description="Services under a fleet rule: every site that serves it "
        "and the routing table; `site` is then the member with the most replicas.")
