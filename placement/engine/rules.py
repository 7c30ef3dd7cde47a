"""Policy resolution: which rules match a workload and what they set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from placement.model import Burst, Dataset, Policy, Rule, SiteSelector, Weights
from placement.model.policy import FleetSettings
from placement.model.workload import Workload


@dataclass(frozen=True)
class Constraint:
    """A require or forbid selector and the rule it came from."""

    rule: str
    mode: Literal["require", "forbid"]
    selector: SiteSelector


@dataclass(frozen=True)
class EffectiveRule:
    """What the policy says for one workload.

    Constraints accumulate from every matching rule, so a compliance rule cannot be bypassed by
    ordering; weights, max wait and burst come from the first matching rule that sets each.
    """

    name: str | None
    weights: Weights
    max_wait_hours: float
    burst: Burst
    burst_rule: str | None
    constraints: tuple[Constraint, ...]
    matched: tuple[str, ...]
    service_horizon_hours: float
    fleet: FleetSettings | None = None  # services only: served from several sites
    fleet_rule: str | None = None


def matches(rule: Rule, wl: Workload, datasets: dict[str, Dataset]) -> bool:
    """True when every field the rule's match gives fits the workload."""
    m = rule.match
    spec = wl.spec
    if m.kinds and spec.kind not in m.kinds:
        return False
    if m.teams and spec.team not in m.teams:
        return False
    if any(wl.metadata.labels.get(k) != v for k, v in m.labels.items()):
        return False
    if m.data_classifications:
        classes = {datasets[d.name].spec.classification for d in spec.datasets
                   if d.name in datasets}
        if not classes.intersection(m.data_classifications):
            return False
    return True


def resolve(policy: Policy, wl: Workload, datasets: dict[str, Dataset]) -> EffectiveRule:
    """The effective settings for `wl` under `policy`."""
    d = policy.spec.defaults
    weights: tuple[Weights, str] | None = None
    max_wait: float | None = None
    burst: tuple[Burst, str] | None = None
    fleet: tuple[FleetSettings, str] | None = None
    constraints: list[Constraint] = []
    matched: list[str] = []
    for rule in policy.spec.rules:
        if not matches(rule, wl, datasets):
            continue
        matched.append(rule.name)
        if rule.require is not None:
            constraints.append(Constraint(rule.name, "require", rule.require))
        if rule.forbid is not None:
            constraints.append(Constraint(rule.name, "forbid", rule.forbid))
        if weights is None and rule.weights is not None:
            weights = (rule.weights, rule.name)
        if max_wait is None and rule.max_wait_hours is not None:
            max_wait = rule.max_wait_hours
        if burst is None and rule.burst is not None:
            burst = (rule.burst, rule.name)
        if fleet is None and rule.fleet is not None and wl.spec.is_service:
            fleet = (rule.fleet, rule.name)
    primary = weights[1] if weights else (matched[0] if matched else None)
    return EffectiveRule(
        name=primary,
        weights=weights[0] if weights else d.weights,
        max_wait_hours=d.max_wait_hours if max_wait is None else max_wait,
        burst=burst[0] if burst else d.burst,
        burst_rule=burst[1] if burst else None,
        constraints=tuple(constraints),
        matched=tuple(matched),
        service_horizon_hours=d.service_horizon_hours,
        fleet=fleet[0] if fleet else None,
        fleet_rule=fleet[1] if fleet else None,
    )
