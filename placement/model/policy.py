"""Policy documents: ordered rules with constraints, weights, wait limits and burst settings."""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from placement.model.common import MAX_HOURS, MAX_USD, Document, Labels, Name, Strict, Text
from placement.model.inventory import Classification
from placement.model.workload import WorkloadKind

CRITERIA: tuple[str, ...] = ("latency", "data_gravity", "cost", "wait")  # built in
CRITERION_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
_PLUGIN_CRITERIA: set[str] = set()  # criteria score plugins add (register_criterion)


def register_criterion(name: str) -> None:
    """Let policies weigh a criterion a score plugin adds (the plugin registry calls this for
    every criterion it registers)."""
    if not CRITERION_NAME.fullmatch(name):
        raise ValueError(f"criterion name {name!r}: use lower-case letters, digits and "
                         "underscores, starting with a letter")
    _PLUGIN_CRITERIA.add(name)


def known_criteria() -> tuple[str, ...]:
    """Every criterion a policy may weigh: the built-in four, then the plugins' (sorted)."""
    return CRITERIA + tuple(sorted(_PLUGIN_CRITERIA - set(CRITERIA)))


class SiteSelector(Strict):
    """Selects sites by type, labels (all must match) or name (any)."""

    site_types: list[Literal["onprem", "cloud"]] = Field(default_factory=list)
    labels: Labels = Field(default_factory=dict)
    sites: list[Name] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_empty(self) -> SiteSelector:
        if not (self.site_types or self.labels or self.sites):
            raise ValueError("a selector needs at least one of site_types, labels or sites")
        return self


class Match(Strict):
    """Which workloads a rule applies to; every field given must match (empty = any)."""

    kinds: list[WorkloadKind] = Field(default_factory=list)
    teams: list[Name] = Field(default_factory=list)
    labels: Labels = Field(default_factory=dict)
    data_classifications: list[Classification] = Field(
        default_factory=list, description="Matches when any dataset read has one of these."
    )


class Weights(Strict):
    """Relative importance of each score criterion (any non-negative scale). Besides the four
    built-in criteria, a key may name a criterion a score plugin adds (its CRITERION): the
    engine refuses a policy that weighs a criterion it does not score."""

    model_config = ConfigDict(extra="allow", json_schema_extra={
        "additionalProperties": {"type": "number", "minimum": 0,
                                 "description": "A plugin's criterion, by its name."}})

    latency: float = Field(default=0, ge=0)
    data_gravity: float = Field(default=0, ge=0)
    cost: float = Field(default=0, ge=0)
    wait: float = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _some_weight(self) -> Weights:
        for name, value in self.plugin_weights().items():
            if not CRITERION_NAME.fullmatch(name):
                raise ValueError(f"weight {name!r}: a criterion name is lower-case letters, "
                                 "digits and underscores, starting with a letter")
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                    math.isfinite(value) and value >= 0):
                raise ValueError(f"weight {name!r} must be a finite number >= 0, not {value!r}")
        if not any(v > 0 for v in self.all().values()):
            raise ValueError("at least one weight must be above 0")
        return self

    def plugin_weights(self) -> dict[str, float]:
        """The weights of criteria beyond the built-in four."""
        return dict(self.__pydantic_extra__ or {})

    def all(self) -> dict[str, float]:
        """Every weight by criterion, the built-in four first."""
        return {**{c: float(getattr(self, c)) for c in CRITERIA}, **self.plugin_weights()}


class Burst(Strict):
    """When a workload may go to a cloud region, and how it is bought."""

    allowed: bool = False
    when: Literal["always", "onprem_unavailable", "onprem_unavailable_or_near_data"] = Field(
        default="onprem_unavailable",
        description="onprem_unavailable: only when no on-prem site can start within max wait. "
        "onprem_unavailable_or_near_data: also a cloud candidate whose total $ (GPUs + egress) "
        "is below what moving the data to the on-prem site costs (on-prem GPUs are paid for "
        "already): the data lives in or near that region.",
    )
    spot: Literal["never", "when_deadline_allows", "always"] = "never"
    spot_slack_factor: float = Field(
        default=2.0, ge=1, description="Spot needs deadline slack of this many expected overheads."
    )
    restart_overhead_minutes: float = Field(
        default=10, ge=0, description="Time to get back to work after a spot interruption."
    )
    max_usd_per_hour: float | None = Field(default=None, gt=0, description="Cap on burst $/hour.")
    max_spot_interruptions: int = Field(
        default=2, ge=0, description="After this many spot interruptions of one workload, "
        "its next placement is on-demand or on-prem only.")


class FleetSettings(Strict):
    """Serve a service from several sites at once, sized and routed by where its clients are
    (placement.engine.fleet): within the SLO for every client location, at the least cost."""

    target_utilization: float = Field(
        default=0.7, gt=0, le=1, description="Replicas are sized so that each serves at most "
        "this share of its capacity (room for bursts and for queueing within the SLO).")
    max_sites: int = Field(default=8, ge=1, le=64,
                           description="Most sites one fleet spreads over.")
    spot_max_share: float = Field(
        default=0.5, gt=0, le=1, description="Most of one location's demand a single spot "
        "site may carry: spot replicas spread over failure domains, the rest on on-demand or "
        "on-prem fallback.")
    cold_start_minutes: float = Field(
        default=5, ge=0, le=MAX_HOURS * 60, description="Time a new replica takes to serve "
        "(image pull, model load); spot replicas lose it after each interruption.")
    scale_in_utilization: float = Field(
        default=0.4, ge=0, lt=1, description="Autoscaling: a site's replicas shrink only once "
        "they run below this share of their capacity, and then to what their traffic needs "
        "at target_utilization (hysteresis: no flapping on a dip).")
    time_budget_seconds: float = Field(
        default=0.05, gt=0, le=60, description="HiGHS's time for one fleet plan; without a "
        "solution by then, the greedy plan (cheapest site per request within the SLO).")
    optimality_gap: float = Field(
        default=0.01, ge=0, le=0.5, description="A plan within this share of the least cost "
        "possible is taken (the LP relaxation rounded up when it is that close to the LP's "
        "bound, else the MILP to this relative gap).")

    @model_validator(mode="after")
    def _hysteresis(self) -> FleetSettings:
        if self.scale_in_utilization >= self.target_utilization:
            raise ValueError("scale_in_utilization must be below target_utilization, or the "
                             "fleet would grow and shrink on every change; lower it")
        return self


class Rule(Strict):
    """One ordered policy rule."""

    name: Name
    description: Text | None = None
    match: Match = Field(default_factory=Match)
    require: SiteSelector | None = Field(default=None, description="Sites must match this.")
    forbid: SiteSelector | None = Field(default=None, description="Sites must not match this.")
    weights: Weights | None = None
    max_wait_hours: float | None = Field(default=None, ge=0, le=MAX_HOURS)
    burst: Burst | None = None
    fleet: FleetSettings | None = Field(
        default=None, description="Services: serve from several sites sized by their client "
        "locations' demand (absent: one site with the requested replicas).")


class Scales(Strict):
    """Indifference scales for normalization: differences well below these barely matter."""

    latency_ms: float = Field(default=0, ge=0)
    data_gravity_hours: float = Field(default=0.25, ge=0)
    cost_usd: float = Field(default=0, ge=0)
    wait_hours: float = Field(default=0.25, ge=0)


class Defaults(Strict):
    """Settings used when no matching rule sets them."""

    weights: Weights = Field(
        default_factory=lambda: Weights(latency=1, data_gravity=1, cost=1, wait=1)
    )
    max_wait_hours: float = Field(default=1.0, ge=0, le=MAX_HOURS)
    overdue_release_hours: float = Field(
        default=1.0, gt=0, le=MAX_HOURS, description="GPUs held by work past its expected "
        "end (still not released) are assumed back this many hours from now: their true end "
        "is unknown, and they are never counted as free.")
    burst: Burst = Field(default_factory=Burst)
    service_horizon_hours: float = Field(
        default=720, gt=0, description="Hours over which a service's cost is estimated."
    )


class OpportunityCost(Strict):
    """Price on-prem GPU-hours at what they are worth to work that can only run there: bid
    prices from the duals of an LP over the recent arrivals (placement.engine.shadow)."""

    window_hours: float = Field(
        default=24, gt=0, le=MAX_HOURS, description="Arrivals over this many past hours are "
        "the demand the LP expects over as many hours ahead.")
    every_minutes: float = Field(default=15, gt=0, le=MAX_HOURS * 60,
                                 description="How often the bid prices are recomputed.")


class Replan(Strict):
    """Re-plan the queue together (placement.engine.replan) instead of one at a time."""

    time_budget_seconds: float = Field(
        default=1.0, gt=0, le=60, description="HiGHS's time for one plan; without a solution "
        "by then, the queue is re-decided one workload at a time.")


class PolicySpec(Strict):
    """Defaults, normalization scales and the ordered rules."""

    defaults: Defaults = Field(default_factory=Defaults)
    scales: Scales = Field(default_factory=Scales)
    opportunity_cost: OpportunityCost | None = Field(
        default=None, description="On-prem GPU-hours cost their amortized price plus a bid "
        "price for the work only on-prem can run (absent: the amortized price alone).")
    replan: Replan | None = Field(
        default=None, description="When GPUs free up, re-plan the queued workloads together "
        "with an exact solver (absent: re-decide them one at a time, priority then age).")
    rules: list[Rule] = Field(default_factory=list)
    team_budgets: dict[Text, Annotated[float, Field(gt=0, le=MAX_USD)]] = Field(
        default_factory=dict, description="USD each team may spend on cloud bursts per "
        "calendar month (UTC); a burst that would go over is not chosen.")

    @model_validator(mode="after")
    def _unique_rules(self) -> PolicySpec:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} appears twice; rename one")
            seen.add(rule.name)
        return self


class Policy(Document):
    """A policy document."""

    kind: Literal["Policy"] = "Policy"
    spec: PolicySpec = Field(default_factory=PolicySpec)

