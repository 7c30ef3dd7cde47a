"""A service's published routing table: for each client location, the sites its requests go to
and their weights, as the decision planned them (a fleet's routing table; else the one site),
with the sites whose serving fails or is being removed drained: a location's weights are
renormalized over its sites still healthy, and a location with none left says so. A site
still starting (pending, not yet adopted) takes traffic once it is ready where the location
has a site serving already (a fleet scaled out to a new site: its cold start)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from placement.errors import ConflictError
from placement.model.workload import SERVICE_KINDS, WorkloadSpec
from placement.store.servings import SiteServing, site_statuses
from placement.store.tables import DecisionRow, WorkloadRow

# A site serving in one of these takes no traffic: retrying and failed are failing to serve
# (or to roll a new version), removing and removed are going away.
DRAINED = frozenset({"retrying", "failed", "removing", "removed"})
# A site in one of these serves now (rolling: the old version serves while the new one loads).
SERVING = frozenset({"ready", "rolling"})


@dataclass(frozen=True)
class Target:
    """A site a location's requests go to, its share, what they see there and its serving."""

    site: str
    weight: float
    p99_latency_ms: float | None
    status: str


@dataclass(frozen=True)
class RouteView:
    """One client location's entry: where its requests go, which sites were drained."""

    location: str
    demand_rps: float
    targets: list[Target]
    drained: list[str]
    note: str | None


@dataclass(frozen=True)
class RoutingView:
    """A service workload's routing table as published."""

    workload_id: uuid.UUID
    name: str
    policy_version: str
    routes: list[RouteView]

    def as_json(self) -> dict[str, Any]:
        """The table as the API and the operator publish it."""
        return {"workload": str(self.workload_id), "name": self.name,
                "policy_version": self.policy_version,
                "routes": [{"location": r.location, "demand_rps": r.demand_rps,
                            "targets": [{"site": t.site, "weight": t.weight,
                                         "p99_latency_ms": t.p99_latency_ms,
                                         "status": t.status} for t in r.targets],
                            "drained": list(r.drained), "note": r.note} for r in self.routes]}


Planned = tuple[str, float, list[tuple[str, float, float | None]]]  # location, rps, targets


def site_status(serving: SiteServing | None) -> str:
    """A site's serving as the routing table names it: `unserved` before the actuator adopted
    it, `rolling` while a new version goes on where an old one serves, else the row's
    status (pending, ready, retrying, failed, removing, removed)."""
    if serving is None:
        return "unserved"
    if serving.status == "pending" and serving.version is not None:
        return "rolling"
    return serving.status


def drain(location: str, demand_rps: float,
          planned: Sequence[tuple[str, float, float | None]], status: dict[str, str]
          ) -> RouteView:
    """One location's route with its drained sites taken out and the weights renormalized
    over the healthy ones."""
    drained = [site for site, _, _ in planned if status.get(site, "unserved") in DRAINED]
    healthy = [(site, w, ms) for site, w, ms in planned if site not in drained]
    serving = [(site, w, ms) for site, w, ms in healthy
               if status.get(site, "unserved") in SERVING]
    warming = [site for site, _, _ in healthy if status.get(site, "unserved") not in SERVING]
    if serving and warming:  # a site still starting (a cold start) gets traffic once ready
        healthy = serving
    else:
        warming = []
    total = sum(w for _, w, _ in healthy)
    gone = ", ".join(f"{site} ({status.get(site)})" for site in drained)
    if not healthy or total <= 0:
        why = (f"no healthy site left: {gone}" if drained
               else "no site serves this location")
        return RouteView(location, demand_rps, [], drained,
                         f"{why}; its requests have nowhere to go")
    targets = [Target(site, w / total, ms, status.get(site, "unserved"))
               for site, w, ms in healthy]
    held = [f"drained {gone}"] if drained else []
    if warming:
        held.append("starting (cold start, traffic once ready): " + ", ".join(
            f"{site} ({status.get(site, 'unserved')})" for site in warming))
    note = (f"{'; '.join(held)}; weights renormalized over "
            f"{', '.join(t.site for t in targets)}") if held else None
    return RouteView(location, demand_rps, targets, drained, note)


def planned_routes(row: WorkloadRow, explanation: dict[str, Any]) -> list[Planned]:
    """The decision's routing: a fleet's table, else every client location to the one site
    at the decision's p99 (none while the workload has no site)."""
    fleet = explanation.get("fleet")
    if fleet:
        return [(str(r["location"]), float(r["demand_rps"]),
                 [(str(t["site"]), float(t["weight"]), t.get("p99_latency_ms"))
                  for t in r["targets"]]) for r in fleet["routing"]]
    from placement.engine.fleet import location_demand

    p99 = (explanation.get("estimates") or {}).get("p99_latency_ms")
    spec = WorkloadSpec.model_validate(row.document["spec"])
    to = [(row.site, 1.0, p99)] if row.site is not None else []
    return [(location, rps, list(to)) for location, rps in location_demand(spec)]


def routing_of(s: Session, *, workload_id: uuid.UUID) -> RoutingView | None:
    """The workload's routing table as published now; None when no such workload is stored,
    ConflictError for a job (it serves no requests)."""
    row = s.get(WorkloadRow, workload_id)
    if row is None:
        return None
    if row.kind not in SERVICE_KINDS:
        raise ConflictError(f"workload {row.name} is a {row.kind} job and serves no requests: "
                            "only services (inference, rag) have a routing table; read the "
                            f"job's run with GET /v1/workloads/{workload_id}")
    decision = s.get(DecisionRow, row.decision_id) if row.decision_id is not None else None
    explanation = dict(decision.explanation) if decision is not None else {}
    status = {x.site: site_status(x) for x in site_statuses(s, workload_id=workload_id)}
    planned = planned_routes(row, explanation)
    for _, _, targets in planned:
        for site, _, _ in targets:
            status.setdefault(site, "unserved")
    routes = [drain(location, rps, targets, status) for location, rps, targets in planned]
    if row.site is None and not explanation.get("fleet"):
        routes = [RouteView(r.location, r.demand_rps, [], [],
                            f"the workload is {row.phase}: no site serves it")
                  for r in routes]
    return RoutingView(row.id, row.name, decision.policy_version if decision else "", routes)
