"""The fleet policies the request-level replay compares, each a plan of replicas and routes.

Every policy answers one question per service and window: given each client location's
requests/s, which replicas where, and which share of each location's requests goes to each.
The answer is always a `FleetPlan` (placement.engine.fleet), so the replay, the autoscaler
(`scale`) and the bill treat every policy alike. Replica capacity is `replica_rps` (the one
rule), prices are the engine's billing, candidates and SLO checks are the engine's filters:
- `engine-fleet`: `Engine.decide` under the bundle's fleet rule (a FleetMiss: the ordinary
  one-site decision stands, sized as `single-site` sizes it);
- `single-site`: today's path, `Engine.decide_single`, all demand on the chosen site with
  replicas for the total at the target utilization; when no single site meets the SLO for
  every location, the site it picks with the SLO lifted (one site serves everyone, as now);
- `nearest-site`: each location to its lowest-p99 qualifying site (RTT + service + lookups;
  ties by price), sized per location (`plan_fleet` restricted to those candidates);
- `skyserve-like`: cloud only, spot spread over regions with on-demand fallback
  (`plan_fleet` over cloud rows);
- `all-cloud-on-demand`: `plan_fleet` over cloud on-demand rows;
- `price-only`: the cheapest single site (GPUs + egress) with the latency SLO ignored.
The baselines other than `single-site` see the cloud as a SkyServe-like system would: their
engine's fleet rule bursts `always` (on-prem first is the engine's own policy, not theirs).
When a baseline's fleet finds no plan, it keeps its previous plan (else one site).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from placement.engine import Engine
from placement.engine.compiled import ON_DEMAND, ONPREM
from placement.engine.fleet import FleetPlan, Member, plan_fleet, replica_rps
from placement.engine.outcome import Bools, Outcome
from placement.model import Inventory, Policy, Workload
from placement.model.common import MAX_MS
from placement.model.policy import FleetSettings
from placement.model.workload import ClientRef

NAMES = ("engine-fleet", "single-site", "nearest-site", "skyserve-like",
         "all-cloud-on-demand", "price-only")


@dataclass
class Service:
    """One fleet service of the bundle and what the replay reads of it once."""

    workload: Workload
    settings: FleetSettings
    restart_h: float  # a spot replica's restart after an interruption (the burst rule's)
    rps: float  # replica_rps
    slots: int  # requests one replica holds at once: replica_rps x the p99 service seconds
    lookup_ms: np.ndarray  # per site, RAG lookups x RTT to the index
    lookup_usd_per_request: np.ndarray  # per site
    bulk_usd: np.ndarray  # per site, one-off data move
    od_usd_per_hour: dict[str, float]  # per location: cheapest on-demand replica in its SLO


@dataclass
class Setup:
    """The engines the policies ask and the services they serve."""

    engine: Engine  # the bundle's policy
    cloud: Engine  # the same, the fleet rule bursting always (the baselines' view)
    services: list[Service]
    locations: list[str]
    longitude: dict[str, float]


Policy_ = Callable[[Setup, Service, Workload, FleetPlan | None], tuple[FleetPlan | None, str]]


def _bursting_always(policy: Policy) -> Policy:
    rules = []
    for r in policy.spec.rules:
        if r.fleet is not None and r.burst is not None:
            r = r.model_copy(update={"burst": r.burst.model_copy(update={"when": "always"})})
        rules.append(r)
    return policy.model_copy(update={"spec": policy.spec.model_copy(update={"rules": rules})})


def _probe(wl: Workload, location: str) -> Workload:
    spec = wl.spec
    assert spec.latency is not None
    lat = spec.latency.model_copy(update={"clients": [ClientRef(location=location)]})
    return wl.model_copy(update={"spec": spec.model_copy(update={"latency": lat,
                                                                  "requests_per_s": 1.0})})


def _service(engine: Engine, cloud: Engine, wl: Workload) -> Service:
    out = engine.decide_single(wl)
    settings = out.rule.fleet
    if settings is None or wl.spec.latency is None:
        raise ValueError(f"workload {wl.metadata.name} is not under a fleet rule; label it for "
                         "the policy's fleet rule or pick another service")
    burst = out.rule.burst
    ci = engine.ci
    one = engine.context(_probe(wl, wl.spec.latency.clients[0].location))
    price = engine.billing(wl.spec.gpu.count).usd_per_hour
    od_rows = np.flatnonzero((ci.row_kind == ON_DEMAND) & np.isin(
        ci.row_gpu, [ci.gpu_index[t] for t in wl.spec.gpu.types if t in ci.gpu_index]))
    od: dict[str, float] = {}
    for c in wl.spec.latency.clients:
        probe = cloud.decide_single(_probe(wl, c.location))
        ok = probe.considered & (probe.ctx.kind == ON_DEMAND)
        rows = probe.ctx.rows[ok] if ok.any() else od_rows
        od[c.location] = float(price[rows].min()) if len(rows) else math.nan
    rps = replica_rps(wl.spec)
    lat = wl.spec.latency
    return Service(wl, settings, (burst.restart_overhead_minutes if burst else 0.0) / 60, rps,
                   max(1, round(rps * lat.service_time_p99_ms / 1000)),
                   np.asarray(one.data.lookup_ms, dtype=float),
                   np.asarray(one.data.lookup_egress_usd_per_hour, dtype=float) / 3600,
                   np.asarray(one.data.egress_usd, dtype=float), od)


def setup(inventory: Inventory, policy: Policy, version: str, services: list[Workload]) -> Setup:
    """The engines and services of one replay (each service planned on an empty snapshot)."""
    engine = Engine(inventory, policy, version)
    cloud = Engine(inventory, _bursting_always(policy), version + "+burst-always")
    svcs = [_service(engine, cloud, wl) for wl in services]
    locations = sorted({c.location for s in svcs for c in (s.workload.spec.latency.clients
                                                           if s.workload.spec.latency else [])})
    lon = {c.name: c.spec.location.lon for c in inventory.client_locations}
    return Setup(engine, cloud, svcs, locations, {loc: lon[loc] for loc in locations})


def window_doc(svc: Service, demand: dict[str, float]) -> Workload:
    """The service document for one window: each client's requests/s as measured."""
    spec = svc.workload.spec
    assert spec.latency is not None
    clients = [c.model_copy(update={"requests_per_s": demand.get(c.location, 0.0)})
               for c in spec.latency.clients]
    lat = spec.latency.model_copy(update={"clients": clients})
    return svc.workload.model_copy(update={"spec": spec.model_copy(update={
        "latency": lat, "requests_per_s": sum(demand.values())})})


def one_site(engine: Engine, svc: Service, wl: Workload, out: Outcome, pos: int,
             method: str) -> FleetPlan:
    """All demand on candidate `pos` of `out`, replicas for the total at the target
    utilization (at least the document's replicas)."""
    spec = wl.spec
    total = spec.requests_per_s
    reps = max(spec.replicas, math.ceil(total / (svc.rps * svc.settings.target_utilization)))
    ctx = out.ctx
    row = int(ctx.rows[pos])
    billing = engine.billing(spec.gpu.count)
    price = float(billing.usd_per_hour[row])
    member = Member(pos, row, int(ctx.site[pos]), int(ctx.group[pos]), int(ctx.kind[pos]),
                    int(billing.instance[row]), reps, reps * spec.gpu.count, svc.rps, total,
                    price * reps, 0.0)
    assert spec.latency is not None
    locs = tuple(c.location for c in spec.latency.clients)
    demand = tuple(float(c.requests_per_s or 0.0) for c in spec.latency.clients)
    routes = np.array(demand, dtype=float).reshape(-1, 1)
    return FleetPlan((member,), locs, demand, routes, np.full((len(locs), 1), np.nan), (),
                     price * reps, 0.0, method, None)


def _lifted(wl: Workload) -> Workload:
    spec = wl.spec
    assert spec.latency is not None
    lat = spec.latency.model_copy(update={"p99_slo_ms": MAX_MS})
    return wl.model_copy(update={"spec": spec.model_copy(update={"latency": lat})})


def single_site(s: Setup, svc: Service, wl: Workload, prev: FleetPlan | None
                ) -> tuple[FleetPlan | None, str]:
    out = s.engine.decide_single(wl)
    note = ""
    if out.chosen is None:
        out, note = s.engine.decide_single(_lifted(wl)), "no single site meets the SLO"
    if out.chosen is None:
        return None, "rejected"
    return one_site(s.engine, svc, wl, out, out.chosen, "single-site"), note


def engine_fleet(s: Setup, svc: Service, wl: Workload, prev: FleetPlan | None
                 ) -> tuple[FleetPlan | None, str]:
    out = s.engine.decide(wl)
    if isinstance(out.fleet, FleetPlan):
        return out.fleet, ""
    plan, _ = single_site(s, svc, wl, prev)
    return plan, f"fleet miss: {getattr(out.fleet, 'reason', 'no fleet')}"


def _fleet_with(allow: Callable[[Outcome], Bools]) -> Policy_:
    def policy(s: Setup, svc: Service, wl: Workload, prev: FleetPlan | None
               ) -> tuple[FleetPlan | None, str]:
        base = s.cloud.decide_single(wl)
        got = plan_fleet(s.cloud, wl, base, svc.settings, allow=allow)
        if isinstance(got, FleetPlan):
            return got, ""
        if prev is not None:
            return prev, f"fleet miss, previous plan kept: {got.reason}"
        return price_only(s, svc, wl, prev)[0], f"fleet miss, one site: {got.reason}"
    return policy


def _nearest(out: Outcome) -> Bools:
    ok = out.considered
    if not ok.any():
        return ok
    p99 = np.where(ok, out.ctx.p99_ms, np.inf)
    got: Bools = ok & (p99 <= p99.min() + 1e-9)
    return got


def price_only(s: Setup, svc: Service, wl: Workload, prev: FleetPlan | None
               ) -> tuple[FleetPlan | None, str]:
    spec = wl.spec
    need = max(spec.replicas, math.ceil(spec.requests_per_s / (
        svc.rps * svc.settings.target_utilization)))
    lifted = _lifted(wl)
    lifted = lifted.model_copy(update={"spec": lifted.spec.model_copy(update={"replicas": need})})
    out = s.cloud.decide_single(lifted)
    idx = np.flatnonzero(out.considered)
    if not len(idx):
        return None, "rejected"
    pos = int(idx[np.argmin(out.ctx.total_usd[idx])])
    return one_site(s.cloud, svc, wl, out, pos, "price-only"), ""


POLICIES: dict[str, Policy_] = {
    "engine-fleet": engine_fleet,
    "single-site": single_site,
    "nearest-site": _fleet_with(_nearest),
    "skyserve-like": _fleet_with(lambda o: o.ctx.kind != ONPREM),
    "all-cloud-on-demand": _fleet_with(lambda o: o.ctx.kind == ON_DEMAND),
    "price-only": price_only,
}
