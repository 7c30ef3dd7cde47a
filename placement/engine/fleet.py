"""Fleets: one service served from several sites, sized and routed by where its clients are.

A service under a rule with `fleet:` settings is not placed on one site. For each client
location the engine's own filters and estimates say which candidates qualify and what a
replica there costs and sees:
- a probe decision per location, with that location as the only client: every filter runs as
  for any decision (GPU types, residency, network boundaries, quota, budget, the burst rule)
  and the latency SLO is checked from that location alone (RTT + service time + RAG lookups x
  RTT to the index);
- a candidate qualifies for a location when it qualifies for one replica or for the replicas
  the location's whole demand needs (the burst gate opens where on-prem cannot take it all).

Then one assignment (HiGHS MILP, time budget) chooses replicas per candidate and routes each
location's requests/s to qualifying candidates:
    minimize   sum_r price_r x_r + sum_s egress_s z_s + sum_(l,r) lookup$_r y_lr
    subject to sum_r y_lr = demand_l                      every location is served in full
               sum_l y_lr <= usable_rps_r x_r             replicas sized for what they get
               sum_(r in g) gpus x_r <= free_g            the GPUs each (site, type) has free
               x_r <= M z_s(r),  sum_s z_s <= max_sites   bulk data moves once per site used
               y_lr <= spot_max_share x demand_l (spot)  spot spread over failure domains
               sum_r x_r >= spec.replicas
with price_r the candidate's billed $/h per replica (spot restarts included) plus its bid price
(the cost criterion's opportunity cost), egress_s the bulk data move amortized over the
service horizon, and usable_rps_r = replica_rps x target_utilization x availability (a spot
replica is down for its cold start and restart after each interruption: over-provisioning
sized by the interruption rate). With the replicas fixed, one LP then routes each location to
its nearest replicas among the routings that cost no more (p99 breaks ties only). Without a
solution in the time budget, the greedy plan: each location in turn (largest demand first)
fills the cheapest qualifying candidates per usable request/s. Where replicas are many
against the locations, the LP relaxation rounded up is tried first and taken when it is
within `optimality_gap` of the LP's bound.

Queueing at a replica is kept within the SLO by the target utilization, not modelled here; the
request-level simulator (placement.simulate.fleets) measures it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from placement.engine import highs
from placement.engine.compiled import ONPREM, SPOT
from placement.model.policy import FleetSettings
from placement.model.workload import ClientRef, Workload, WorkloadSpec

if TYPE_CHECKING:
    from placement.engine.context import Billing
    from placement.engine.outcome import Outcome
    from placement.signals import Observed

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
Bools = NDArray[np.bool_]



class Engine(Protocol):
    """What planning a fleet reads of the engine (placement.engine.engine.Engine)."""

    @property
    def observed(self) -> Observed | None: ...

    def decide_single(self, wl: Workload) -> Outcome: ...

    def billing(self, n: int) -> Billing: ...


MIN_SERVICE_MS = 1.0  # a declared service time below this is read as this (capacity finite)
NO_DEMAND_RPS = 1e-6  # a location with no demand given still needs a replica within the SLO
SHORTLIST_SITES = 4  # the MILP sees at least this many sites' candidates per location


def replica_rps(spec: WorkloadSpec, service_ms: float | None = None) -> float:
    """Requests/s one replica serves: the declared `latency.replica_rps`, else Little's law
    with the p99 service time as every request's time (a floor): requests in flight (model
    instances per GPU x GPUs, x max_batch_size with batching) / service seconds. `service_ms`:
    a measured service time (Triton's, at the site) instead of the declared one."""
    lat = spec.latency
    if lat is None:
        raise ValueError("only a service (with latency) has a replica capacity")
    if lat.replica_rps is not None:
        return lat.replica_rps
    ms = lat.service_time_p99_ms if service_ms is None or math.isnan(service_ms) else service_ms
    serving = spec.serving
    in_flight = 1
    if serving is not None:
        per_gpu = serving.instances_per_gpu if serving.instance_kind == "gpu" else 1
        in_flight = per_gpu * (spec.gpu.count if serving.instance_kind == "gpu" else 1)
        if serving.max_batch_size > 0 and serving.dynamic_batching:
            in_flight *= serving.max_batch_size
    return in_flight / (max(ms, MIN_SERVICE_MS) / 1000.0)


def location_demand(spec: WorkloadSpec) -> list[tuple[str, float]]:
    """(location, requests/s) per client: the client's own `requests_per_s`, else its share
    (normalized over the clients without their own rate) of the service's `requests_per_s`
    left after the clients with their own."""
    lat = spec.latency
    if lat is None:
        return []
    given = sum(c.requests_per_s for c in lat.clients if c.requests_per_s is not None)
    rest = [c for c in lat.clients if c.requests_per_s is None]
    shares = sum(c.share for c in rest)
    left = max(spec.requests_per_s - given, 0.0)
    return [(c.location, c.requests_per_s if c.requests_per_s is not None
             else left * c.share / shares) for c in lat.clients]


@dataclass(frozen=True)
class Member:
    """One candidate of the fleet with replicas: indexes into the base outcome and inventory."""

    pos: int  # candidate position in the base outcome
    row: int  # CompiledInventory candidate row
    site: int
    group: int
    kind: int
    instance: int  # -1 on-prem
    replicas: int
    gpus: int
    replica_rps: float
    routed_rps: float
    usd_per_hour: float
    opportunity_usd_per_hour: float


@dataclass(frozen=True)
class Option:
    """What one location sees at one candidate (qualifying or not)."""

    pos: int
    p99_ms: float
    usd_per_hour: float  # per replica, price + bid
    reason: str  # "" when it qualifies


@dataclass(frozen=True)
class LocationView:
    """What one location's one-replica probe saw; the explanation's options are built from it
    when the decision is explained (a decision the simulator only acts on never pays it)."""

    probe: Outcome
    qualified: Bools
    p99_ms: Floats
    usd_per_hour: Floats  # per replica, price + bid

    def options(self) -> tuple[Option, ...]:
        """Every candidate with its p99, $/h per replica and, unless it qualifies, the first
        rule it fails; qualifying ones first, then by price and p99."""
        out = self.probe
        reasons = _first_reasons(out, ~self.qualified)
        return tuple(sorted(
            (Option(k, p99, usd, reasons[k]) for k, (p99, usd) in enumerate(zip(
                self.p99_ms.tolist(), self.usd_per_hour.tolist(), strict=True))),
            key=lambda o: (o.reason != "", o.usd_per_hour, o.p99_ms)))


@dataclass(frozen=True)
class FleetPlan:
    """The fleet: members, each location's routes (requests/s per member) and the story."""

    members: tuple[Member, ...]
    locations: tuple[str, ...]
    demand_rps: tuple[float, ...]
    routes: Floats  # locations x members, requests/s
    p99_ms: Floats  # locations x members (nan where the location may not go)
    views: tuple[LocationView, ...]  # per location: what its probe saw
    usd_per_hour: float  # billed, members' GPUs + amortized bulk egress + lookups
    egress_usd: float  # bulk moves, one-off
    method: str
    rule: str | None
    best_effort: tuple[bool, ...] = ()  # per location: no candidate meets the SLO from it
    limits: Limits | None = None  # what it was planned within (None: a fleet built by hand)
    spend: Spend | None = None  # what it holds and spends, as the limits read it

    @functools.cached_property
    def options(self) -> tuple[tuple[Option, ...], ...]:
        """Per location: every candidate, best first (built on first read)."""
        return tuple(v.options() for v in self.views)

    @property
    def action(self) -> str:
        return "burst" if any(m.kind != ONPREM for m in self.members) else "place"

    @property
    def largest(self) -> Member:
        return max(self.members, key=lambda m: (m.replicas, m.routed_rps, -m.site))


@dataclass(frozen=True)
class FleetMiss:
    """No fleet serves every location within the SLO now; the reason names the location."""

    reason: str


@dataclass(frozen=True)
class _Table:
    """Candidates (over the base outcome's positions) that some location may use."""

    pos: Ints
    price: Floats  # $/h per replica, price + bid
    billed: Floats  # $/h per replica, billed
    bid: Floats
    usable: Floats  # usable requests/s per replica
    rps: Floats  # replica_rps
    gpus_per_replica: int
    max_rep: Ints
    group: Ints
    site: Ints
    spot: Bools
    lookup_usd_h_per_rps: Floats
    egress_usd: Floats  # bulk, per site of the candidate
    allowed: Bools  # locations x candidates
    p99: Floats  # locations x candidates
    cloud: Bools
    limits: Limits


@dataclass(frozen=True)
class Limits:
    """What a whole fleet must stay within. The MILP holds them as rows (_solve); every other
    check (the greedy plan, hysteresis in scale(), the route story) asks broken()."""

    max_sites: int
    group_gpus: tuple[tuple[int, int], ...]  # (group, GPUs free to the fleet)
    hours: float  # the service horizon the dollar limits are counted over
    budget_usd: float | None  # the workload's: everything billed (GPUs, lookups, bulk egress)
    burst_cap_usd_h: float | None  # the burst rule's cap on the cloud members' GPU $/h
    team_left_usd: float | None  # the team's burst budget left: cloud GPUs, their lookups and
    # the bulk moves into cloud sites

    def broken(self, spend: Spend) -> str | None:
        """The first limit `spend` passes, in words; None when it holds to all."""
        def over(value: float, limit: float) -> bool:
            return value > limit + 1e-9 * max(1.0, abs(limit))

        if spend.sites > self.max_sites:
            return f"the fleet's limit of {self.max_sites} site(s) (fleet.max_sites)"
        room = dict(self.group_gpus)
        for g, n in spend.gpus:
            if n > room.get(g, n):
                return f"the GPUs free there ({room[g]})"
        h = self.hours
        if self.budget_usd is not None and over(
                (spend.gpu_usd_h + spend.lookups_usd_h) * h + spend.egress_usd, self.budget_usd):
            return f"the workload's budget of ${self.budget_usd:,.2f} (budget_usd)"
        if self.burst_cap_usd_h is not None and over(spend.cloud_gpu_usd_h,
                                                     self.burst_cap_usd_h):
            return (f"the burst cap of ${self.burst_cap_usd_h:,.2f}/h over the fleet's cloud "
                    "members")
        if self.team_left_usd is not None and over(
                (spend.cloud_gpu_usd_h + spend.cloud_lookups_usd_h) * h + spend.cloud_egress_usd,
                self.team_left_usd):
            return f"the team's burst budget left (${self.team_left_usd:,.2f})"
        return None


@dataclass(frozen=True)
class Spend:
    """What a fleet holds and spends, as Limits reads it (billed dollars, no bid prices)."""

    sites: int
    gpus: tuple[tuple[int, int], ...]  # (group, GPUs held)
    gpu_usd_h: float
    lookups_usd_h: float
    egress_usd: float  # bulk moves, once per site
    cloud_gpu_usd_h: float
    cloud_lookups_usd_h: float
    cloud_egress_usd: float

    def plus(self, *, group: int, gpus: int, usd_h: float, cloud: bool, new_site: bool = False,
             egress_usd: float = 0.0) -> Spend:
        """With `gpus` more GPUs in `group` costing `usd_h` more (at a new site: its bulk
        data move, `egress_usd`, too)."""
        held = dict(self.gpus)
        held[group] = held.get(group, 0) + gpus
        move = egress_usd if new_site else 0.0
        return replace(self, sites=self.sites + int(new_site), gpus=tuple(sorted(held.items())),
                       gpu_usd_h=self.gpu_usd_h + usd_h,
                       cloud_gpu_usd_h=self.cloud_gpu_usd_h + (usd_h if cloud else 0.0),
                       egress_usd=self.egress_usd + move,
                       cloud_egress_usd=self.cloud_egress_usd + (move if cloud else 0.0))


def _spend(t: _Table, x: Floats, routes: Floats) -> Spend:
    """The Spend of replicas `x` per candidate of `t`, routed as `routes` (L x K)."""
    used = x > 0
    gpus: dict[int, int] = {}
    for k in np.flatnonzero(used).tolist():
        gpus[int(t.group[k])] = gpus.get(int(t.group[k]), 0) + int(x[k]) * t.gpus_per_replica
    lookups = routes.sum(axis=0) * t.lookup_usd_h_per_rps
    first = np.unique(t.site[used], return_index=True)[1]  # bulk data moves once per site
    egress = t.egress_usd[used][first]
    return Spend(len(first), tuple(sorted(gpus.items())), float(t.billed @ x),
                 float(lookups.sum()), float(egress.sum()),
                 float(t.billed[t.cloud] @ x[t.cloud]), float(lookups[t.cloud].sum()),
                 float((egress * t.cloud[used][first]).sum()))


def _probe(wl: Workload, client: ClientRef, replicas: int) -> Workload:
    spec = wl.spec
    assert spec.latency is not None
    lat = spec.latency.model_copy(update={"clients": [ClientRef(location=client.location)]})
    return wl.model_copy(update={"spec": spec.model_copy(update={
        "latency": lat, "replicas": replicas, "requests_per_s": 1.0, "budget_usd": None})})


def _table(engine: Engine, wl: Workload, base: Outcome, settings: FleetSettings,
           demand: list[tuple[str, float]],
           allow: Callable[[Outcome], Bools] | None
           ) -> tuple[_Table, list[LocationView], list[bool]]:
    spec = wl.spec
    assert spec.latency is not None
    ctx = base.ctx
    n = ctx.n
    count = spec.gpu.count
    hours = ctx.hours
    clients = {c.location: c for c in spec.latency.clients}
    seen = engine.observed.service_for(wl) if engine.observed is not None else None
    if seen is None:  # the declared capacity everywhere
        rps = np.full(n, replica_rps(spec))
    else:  # per site where Triton measured it (once per site, not per candidate)
        per_site = {s: replica_rps(spec, float(seen[s])) for s in np.unique(ctx.site).tolist()}
        rps = np.array([per_site[s] for s in ctx.site.tolist()])
    allowed = np.zeros((len(demand), n), dtype=bool)
    p99 = np.full((len(demand), n), np.nan)
    views: list[LocationView] = []
    best_effort: list[bool] = []
    one: Outcome | None = None
    for li, (loc, rate) in enumerate(demand):
        need = max(1, math.ceil(rate / (float(rps.max()) * settings.target_utilization)))
        qualified = np.zeros(n, dtype=bool)
        for reps in sorted({1, need}):
            if reps > 1 and one is not None and not _gated(one):
                break  # more replicas can only fail more (capacity, wait): nothing to add
            out = engine.decide_single(_probe(wl, clients[loc], reps))
            ok = out.considered & ~((out.ctx.kind == ONPREM) & (out.ctx.wait_hours > 0))
            if allow is not None:
                ok &= allow(out)
            qualified |= ok
            if reps == 1:
                one = out
                p99[li] = out.ctx.p99_ms
        assert one is not None
        if not qualified.any():  # best effort: the lowest p99 that fails nothing but the SLO
            qualified = _best_effort(one, allow)
            best_effort.append(bool(qualified.any()))
        else:
            best_effort.append(False)
        allowed[li] = qualified
        c1 = one.ctx
        views.append(LocationView(one, qualified, p99[li],
                                  (c1.gpu_usd + c1.opportunity_usd) / hours))
    assert one is not None
    c1 = one.ctx  # one replica: billed per replica, spot restarts included
    billed = c1.gpu_usd / hours
    bid = c1.opportunity_usd / hours
    avail = np.ones(n)
    down_h = settings.cold_start_minutes / 60 + c1.rule.burst.restart_overhead_minutes / 60
    spot = c1.kind == SPOT
    avail[spot] = 1.0 / (1.0 + c1.spot_rate[spot] * down_h)
    usable = rps * settings.target_utilization * avail
    free = np.maximum(ctx.free_gpus, 0)
    lookup = c1.data.lookup_egress_usd_per_hour[c1.site]  # $/h per request/s (1 rps probe)
    keep = np.flatnonzero(allowed.any(axis=0) & (free >= count))
    room = {int(g): int(f) // count * count for g, f in zip(ctx.group[keep].tolist(),
                                                            free[keep].tolist(), strict=True)}
    limits = Limits(settings.max_sites, tuple(sorted(room.items())), hours, spec.budget_usd,
                    c1.rule.burst.max_usd_per_hour,
                    None if ctx.team_budget_usd is None
                    else ctx.team_budget_usd - ctx.team_spent_usd)
    t = _Table(keep, billed[keep] + bid[keep], billed[keep], bid[keep], usable[keep],
               rps[keep], count, free[keep] // count, ctx.group[keep], ctx.site[keep],
               spot[keep], lookup[keep], ctx.data.egress_usd[ctx.site[keep]],
               allowed[:, keep], p99[:, keep], ctx.is_cloud[keep], limits)
    return t, views, best_effort


# The built-in filters under which a probe with more replicas can only fail more candidates,
# except the burst gate (it opens where on-prem cannot take the whole demand)
_MONOTONE = frozenset({"constraints", "boundary", "capacity", "wait", "deadline", "budget",
                       "latency", "burst"})


def _gated(out: Outcome) -> bool:
    """Whether a probe with more replicas may qualify candidates the one-replica probe `out`
    did not: its burst gate held one back, or a filter not known to only tighten runs."""
    names = out.filter_names
    if not set(names) <= _MONOTONE or "burst" not in names:
        return True
    return bool(out.fails[names.index("burst")].any())


def _best_effort(out: Outcome, allow: Callable[[Outcome], Bools] | None) -> Bools:
    """A location no candidate serves within the SLO: the candidates with the lowest p99
    among those that fail the latency filter alone (every other rule holds), so the fleet
    still serves it, as well as it can, and the other locations within the SLO."""
    names = out.filter_names
    if "latency" not in names:
        return np.zeros(out.ctx.n, dtype=bool)
    k = names.index("latency")
    others = np.delete(out.fails, k, axis=0).any(axis=0)
    ok: Bools = out.fails[k] & ~others & ~((out.ctx.kind == ONPREM) & (out.ctx.wait_hours > 0))
    if allow is not None:
        ok &= allow(out)
    if not ok.any():
        return ok
    p99 = out.ctx.p99_ms
    best: Bools = ok & (p99 <= float(p99[ok].min()) + 1e-9)
    return best


def _first_reasons(out: Outcome, which: Bools) -> list[str]:
    """Per candidate of a probe ("" where `which` is False): the first rule it fails, as
    "filter: reason" (each filter's reasons worded together), else why it was not used."""
    words = [""] * out.ctx.n
    fails = out.fails
    failed = fails.any(axis=0)
    first = np.argmax(fails, axis=0) if len(fails) else np.zeros(out.ctx.n, dtype=np.int64)
    for f in np.unique(first[which & failed]).tolist():
        ks = np.flatnonzero(which & failed & (first == f))
        name = out.filter_names[f]
        for k, text in zip(ks.tolist(), out.filter_results[f].reasons().texts(ks), strict=True):
            words[k] = f"{name}: {text}"
    for k in np.flatnonzero(which & ~failed).tolist():
        words[k] = "not considered" if not out.considered[k] else "would have to wait for GPUs"
    return words


def _subset(t: _Table, keep: Ints) -> _Table:
    return _Table(t.pos[keep], t.price[keep], t.billed[keep], t.bid[keep], t.usable[keep],
                  t.rps[keep], t.gpus_per_replica, t.max_rep[keep], t.group[keep],
                  t.site[keep], t.spot[keep], t.lookup_usd_h_per_rps[keep],
                  t.egress_usd[keep], t.allowed[:, keep], t.p99[:, keep], t.cloud[keep],
                  t.limits)


def _shortlist(t: _Table, demand: Floats, hours: float) -> Ints:
    """Per location, its cheapest qualifying candidates per usable request/s (bulk egress
    amortized over the horizon as if one replica carried it) until they could carry twice its
    demand over at least SHORTLIST_SITES sites, and its nearest one: the MILP's candidates.
    When these admit no plan, the full set is solved."""
    per_rps = (t.price + t.egress_usd / hours) / t.usable + t.lookup_usd_h_per_rps
    keep = np.zeros(len(t.pos), dtype=bool)
    for li in range(len(demand)):
        ok = np.flatnonzero(t.allowed[li])
        if not len(ok):
            continue
        order = ok[np.lexsort((t.p99[li, ok], per_rps[ok]))]
        room = np.cumsum(t.max_rep[order] * t.usable[order])
        sites = np.cumsum(np.r_[True, t.site[order][1:] != t.site[order][:-1]])
        enough = (room >= 2 * max(float(demand[li]), NO_DEMAND_RPS)) & (sites >= SHORTLIST_SITES)
        upto = int(np.argmax(enough)) + 1 if enough.any() else len(order)
        keep[order[:upto]] = True
        keep[ok[np.argmin(t.p99[li, ok])]] = True
    got: Ints = np.flatnonzero(keep)
    return got


def _solve(t: _Table, demand: Floats, settings: FleetSettings, min_replicas: int,
           hours: float, cap_sites: bool = False
           ) -> tuple[Floats, Floats, str] | None:
    """(replicas per candidate, routes L x K, method) or None when no plan exists. The cap on
    sites is a constraint only where a plan without it went over (`cap_sites`): its site
    binaries make the MILP several times slower, and it rarely binds."""
    nl, nk = t.allowed.shape
    lim = t.limits
    budget = lim.budget_usd
    pairs = np.argwhere(t.allowed)  # (location, candidate)
    sites, site_of = np.unique(t.site, return_inverse=True)
    # replicas a candidate could ever need: all demand on it, or the floor on replicas
    top = np.minimum(t.max_rep, np.ceil(max(float(demand.sum()), NO_DEMAND_RPS) / t.usable)
                     + min_replicas).astype(float)
    site_egress = t.egress_usd[np.unique(site_of, return_index=True)[1]] / hours
    # a site-used binary only where bulk data moves or the number of sites is capped
    need_z = bool((site_egress > 0).any()) or (cap_sites and len(sites) > lim.max_sites)
    ns, npairs = len(sites) if need_z else 0, len(pairs)
    nx, nz = nk, ns
    nv = nx + nz + npairs
    ix, iz, iy = 0, nx, nx + nz
    need = np.maximum(demand, NO_DEMAND_RPS)  # a location without demand: a replica too
    cost = np.concatenate([t.price, site_egress if need_z else np.zeros(0),
                           t.lookup_usd_h_per_rps[pairs[:, 1]]])
    rows: list[tuple[dict[int, float], float, float]] = []
    for here, most in _spot_shares(t, pairs, need, settings):
        if len(here) > 1:  # one pair alone: its variable's upper bound holds it
            rows.append(({iy + int(p): 1.0 for p in here}, -np.inf, most))
    for li in range(nl):
        mine = np.flatnonzero(pairs[:, 0] == li)
        rows.append(({iy + int(p): 1.0 for p in mine}, demand[li], demand[li]))
        if demand[li] <= NO_DEMAND_RPS:  # its route must land on a replica within the SLO
            rows.append(({ix + int(k): 1.0 for k in np.flatnonzero(t.allowed[li])}, 1.0,
                         np.inf))
    for k in range(nk):
        into = np.flatnonzero(pairs[:, 1] == k)
        coef = {iy + int(p): 1.0 for p in into}
        coef[ix + k] = -float(t.usable[k])
        rows.append((coef, -np.inf, 0.0))
        if need_z:
            rows.append(({ix + k: 1.0, iz + int(site_of[k]): -float(top[k])}, -np.inf, 0.0))
    for g in np.unique(t.group).tolist():
        ks = np.flatnonzero(t.group == g)
        if len(ks) > 1:
            rows.append(({ix + int(k): float(t.gpus_per_replica) for k in ks}, -np.inf,
                         float(t.max_rep[ks[0]] * t.gpus_per_replica)))
    if need_z:
        rows.append(({iz + s: 1.0 for s in range(ns)}, -np.inf, float(lim.max_sites)))
    rows.append(({ix + k: 1.0 for k in range(nk)}, float(min_replicas), np.inf))
    if budget is not None:  # billed dollars, as the budget filter counts (no bid prices)
        billed = np.concatenate([t.billed, site_egress if need_z else np.zeros(0)])
        rows.append(({i: float(billed[i]) * hours for i in range(nx + nz)}
                     | {iy + p: float(t.lookup_usd_h_per_rps[pairs[p, 1]]) * hours
                        for p in range(npairs)}, -np.inf, budget))
    # The budget filter's burst limits hold for the fleet's cloud members together: the burst
    # rule's $/h cap, and the team's monthly burst budget left (GPUs and lookups over the
    # horizon; each member's bulk move is in its probe's own check).
    cloud = np.flatnonzero(t.cloud)
    if lim.burst_cap_usd_h is not None and len(cloud):
        rows.append(({ix + int(k): float(t.billed[k]) for k in cloud}, -np.inf,
                     lim.burst_cap_usd_h))
    if lim.team_left_usd is not None and len(cloud):
        cloud_site = np.zeros(ns, dtype=bool)
        if need_z:  # bulk egress into the cloud sites, once each (the filter counts it too)
            cloud_site[np.unique(site_of[t.cloud])] = True
        rows.append(({ix + int(k): float(t.billed[k]) * hours for k in cloud}
                     | {iz + int(z): float(site_egress[z]) * hours
                        for z in np.flatnonzero(cloud_site)}
                     | {iy + p: float(t.lookup_usd_h_per_rps[pairs[p, 1]]) * hours
                        for p in range(npairs) if t.cloud[pairs[p, 1]]}, -np.inf,
                     lim.team_left_usd))
    a = np.zeros((len(rows), nv))
    lo, hi = np.empty(len(rows)), np.empty(len(rows))
    for r, (coef, low, high) in enumerate(rows):
        for i, v in coef.items():
            a[r, i] = v
        lo[r], hi[r] = low, high
    upper = np.concatenate([top, np.ones(nz),
                            np.where(t.spot[pairs[:, 1]],
                                     settings.spot_max_share * need[pairs[:, 0]], np.inf)])
    budget_s, gap = settings.time_budget_seconds, settings.optimality_gap
    got: tuple[Floats, str] | None = None
    # The LP relaxation first where rounding can be close (replicas many against the
    # locations): its replicas rounded up keep every route within capacity; when that plan is
    # feasible and within the optimality gap of the LP's bound (which no integer plan beats),
    # it is the answer.
    if settings.optimality_gap * float(need.sum()) / float(t.usable.max()) >= nl:
        lp = highs.solve(cost, a, lo, hi, np.zeros(nv), upper, time_limit=budget_s)
        if lp.x is None and lp.status == 2:
            return None
        if lp.x is not None and lp.fun is not None:
            rounded = lp.x.copy()
            rounded[ix:ix + nx] = np.ceil(rounded[ix:ix + nx] - 1e-9)
            if nz:
                used = np.zeros(nz)
                np.maximum.at(used, site_of, (rounded[ix:ix + nx] > 0).astype(float))
                rounded[iz:iz + nz] = used
            row = a @ rounded
            slack = 1e-7 * (1 + np.abs(row))
            bound = float(lp.fun)
            if (np.all(row >= lo - slack) and np.all(row <= hi + slack) and float(
                    cost @ rounded) <= bound + settings.optimality_gap * abs(bound) + 1e-12):
                got = rounded, (f"lp relaxation rounded up (HiGHS; within "
                          f"{settings.optimality_gap:.0%} of the bound)")
    if got is None:
        integrality = np.concatenate([np.ones(nx + nz), np.zeros(npairs)])
        res = highs.solve(cost, a, lo, hi, np.zeros(nv), upper, integrality=integrality,
                          time_limit=budget_s, gap=gap)
        if res.x is None:
            return None if res.status == 2 else _greedy(t, demand, settings, min_replicas)
        got = res.x, "milp (HiGHS)" if res.status == 0 else "milp (HiGHS, time budget)"
    sol, method = got
    x = np.round(sol[ix:ix + nx])
    routes = np.zeros((nl, nk))
    routes[pairs[:, 0], pairs[:, 1]] = np.maximum(sol[iy:], 0.0)
    routes = _nearest_routes(t, pairs, x, routes, need, settings)
    for li in np.flatnonzero(demand <= NO_DEMAND_RPS).tolist():  # routed to its nearest
        ks = np.flatnonzero(t.allowed[li] & (x > 0))
        if len(ks) and routes[li].sum() <= 0:
            routes[li, ks[np.argmin(t.p99[li, ks])]] = NO_DEMAND_RPS
    return x, routes, method


def _spot_shares(t: _Table, pairs: Ints, need: Floats, settings: FleetSettings
                 ) -> list[tuple[Ints, float]]:
    """The spot share as rows: per (location, spot site), the (location, candidate) pairs
    whose requests/s together may not pass spot_max_share of the location's demand (a site,
    whatever GPU types it offers spot)."""
    out = []
    spot = t.spot[pairs[:, 1]]
    for li in np.unique(pairs[spot, 0]).tolist():
        mine = spot & (pairs[:, 0] == li)
        for site in np.unique(t.site[pairs[mine, 1]]).tolist():
            here = np.flatnonzero(mine & (t.site[pairs[:, 1]] == site))
            out.append((here, settings.spot_max_share * float(need[li])))
    return out


def _each_to_its_best(t: _Table, p: Ints, x: Floats, routes: Floats, need: Floats,
                      cost: Floats, settings: FleetSettings) -> Floats | None:
    """The routing LP's optimum without the LP where the replicas' capacity does not bind:
    each location alone fills its cheapest pairs first, within each pair's replicas and the
    spot share per site (caps nested per site: the greedy order is optimal for one location).
    When those fills fit every member's capacity together, no routing costs less; else None
    (the LP decides)."""
    out = np.zeros_like(routes)
    cap = t.usable * x
    for li in range(t.allowed.shape[0]):
        left = float(need[li]) if routes[li].sum() > 0 else 0.0
        spot_left: dict[int, float] = {}
        mine = np.flatnonzero(p[:, 0] == li)
        for j in mine[np.argsort(cost[mine], kind="stable")].tolist():
            if left <= 1e-12:
                break
            k = int(p[j, 1])
            take = min(left, float(cap[k]))
            if t.spot[k]:
                site = int(t.site[k])
                room = spot_left.setdefault(site, settings.spot_max_share * float(need[li]))
                take = min(take, room)
                spot_left[site] = room - take
            out[li, k] += take
            left -= take
        if left > 1e-9 * max(1.0, float(need[li])):
            return None
    if np.any(out.sum(axis=0) > cap + 1e-9 * np.maximum(1.0, cap)):
        return None
    return out


def _nearest_routes(t: _Table, pairs: Ints, x: Floats, routes: Floats, need: Floats,
                    settings: FleetSettings) -> Floats:
    """With the replicas fixed, route each location to its nearest replicas among routings
    that cost no more (lookups' egress first, p99 only to break ties): one LP, run only where
    some location could go to two members."""
    live = x[pairs[:, 1]] > 0
    per_loc = np.bincount(pairs[live, 0], minlength=t.allowed.shape[0])
    if not (per_loc > 1).any():
        return routes
    p = pairs[live]
    lookup = t.lookup_usd_h_per_rps[p[:, 1]]
    p99 = np.nan_to_num(t.p99[p[:, 0], p[:, 1]]) / need[p[:, 0]]
    scale = (1e-4 * float(lookup[lookup > 0].min()) / max(float(p99.max()), 1e-12)
             if (lookup > 0).any() else 1.0)
    fast = _each_to_its_best(t, p, x, routes, need, lookup + scale * p99, settings)
    if fast is not None:
        return fast
    nl, nk, n = t.allowed.shape[0], len(x), len(p)
    a = np.zeros((nl + nk + nl * len(np.unique(t.site)), n))
    lo, hi = [], []
    r = 0
    for li in range(nl):
        a[r, p[:, 0] == li] = 1.0
        lo.append(float(need[li]) if routes[li].sum() > 0 else 0.0)
        hi.append(lo[-1])
        r += 1
    for k in range(nk):
        a[r, p[:, 1] == k] = 1.0
        lo.append(-np.inf)
        hi.append(float(t.usable[k] * x[k]))
        r += 1
    for here, most in _spot_shares(t, p, need, settings):  # the spot share holds here too
        a[r, here] = 1.0
        lo.append(-np.inf)
        hi.append(most)
        r += 1
    res = highs.solve(lookup + scale * p99, a[:r], np.array(lo), np.array(hi), np.zeros(n),
                      np.full(n, np.inf), time_limit=settings.time_budget_seconds)
    if res.x is None:
        return routes
    out = np.zeros_like(routes)
    out[p[:, 0], p[:, 1]] = np.maximum(res.x, 0.0)
    return out


def _greedy(t: _Table, demand: Floats, settings: FleetSettings, min_replicas: int
            ) -> tuple[Floats, Floats, str] | None:
    """Each location, largest demand first, fills the cheapest qualifying candidates per
    usable request/s (replicas already there first)."""
    nl, nk = t.allowed.shape
    x = np.zeros(nk)
    routes = np.zeros((nl, nk))
    free = {int(g): int(t.max_rep[np.flatnonzero(t.group == g)[0]]) for g in np.unique(t.group)}
    per_rps = t.price / t.usable
    for li in np.argsort(-demand, kind="stable").tolist():
        left = max(float(demand[li]), NO_DEMAND_RPS)
        for k in np.lexsort((t.p99[li], per_rps)).tolist():
            if left <= 0:
                break
            if not t.allowed[li, k]:
                continue
            cap = (settings.spot_max_share * max(float(demand[li]), NO_DEMAND_RPS)
                   - float(routes[li, t.spot & (t.site == t.site[k])].sum())
                   if t.spot[k] else math.inf)  # per site, whatever GPU types it offers
            room = x[k] * t.usable[k] - routes[:, k].sum()
            take = min(left, cap, max(room, 0.0))
            if take < left and take < cap:
                more = min(math.ceil((min(left, cap) - take) / t.usable[k]), free[int(t.group[k])])
                x[k] += more
                free[int(t.group[k])] -= more
                take = min(left, cap, x[k] * t.usable[k] - routes[:, k].sum())
            if take > 0:
                routes[li, k] += take
                left -= take
        if left > 1e-9:
            return None
    short = min_replicas - int(x.sum())
    for k in np.argsort(t.price, kind="stable").tolist():  # the floor, where GPUs are free
        if short <= 0:
            break
        more = min(short, free[int(t.group[k])])
        x[k] += more
        free[int(t.group[k])] -= more
        short -= more
    if short > 0 or t.limits.broken(_spend(t, x, routes)) is not None:
        return None  # the same limits the MILP holds to
    return x, routes, "greedy"


def plan_fleet(engine: Engine, wl: Workload, base: Outcome, settings: FleetSettings, *,
               rule: str | None = None, allow: Callable[[Outcome], Bools] | None = None
               ) -> FleetPlan | FleetMiss:
    """The fleet for `wl` against `engine`'s snapshot. `base` is the engine's ordinary decision
    of `wl` (its candidates are the fleet's). `allow`: a further mask over a probe's candidates
    (a baseline's own restriction; None for the engine)."""
    spec = wl.spec
    demand = location_demand(spec)
    if not demand:
        return FleetMiss("a fleet serves client locations; the workload lists none")
    t, views, best_effort = _table(engine, wl, base, settings, demand, allow)
    d = np.array([r for _, r in demand])
    for li, (loc, _) in enumerate(demand):
        if not t.allowed[li].any():
            options = views[li].options()
            why = f"; nearest: {_nearest(options, base)}" if options else ""
            return FleetMiss(f"no site can serve {loc} now{why}")
    hours = base.ctx.hours
    short = _shortlist(t, d, hours)
    got = None
    for table in (_subset(t, short), t) if len(short) < len(t.pos) else (t,):
        got = _solve(table, d, settings, spec.replicas, hours)
        if got is not None and len(np.unique(table.site[got[0] > 0])) > settings.max_sites:
            got = _solve(table, d, settings, spec.replicas, hours, cap_sites=True)
        if got is not None:
            t = table
            break
    if got is None:
        return FleetMiss("no fleet serves every location's demand within the SLO with the "
                         "GPUs free now (or within the budget)")
    x, routes, method = got
    used = np.flatnonzero(x > 0)
    members = []
    for k in used.tolist():
        pos = int(t.pos[k])
        ctx = base.ctx
        reps = int(x[k])
        members.append(Member(pos, int(ctx.rows[pos]), int(t.site[k]), int(t.group[k]),
                              int(ctx.kind[pos]), _instance(engine, ctx, pos, spec.gpu.count),
                              reps, reps * t.gpus_per_replica, float(t.rps[k]),
                              float(routes[:, k].sum()), float(t.billed[k]) * reps,
                              float(t.bid[k]) * reps))
    sites_used = np.unique(t.site[used])
    egress = float(base.ctx.data.egress_usd[sites_used].sum())
    lookups = float((routes[:, used].sum(axis=0) * t.lookup_usd_h_per_rps[used]).sum())
    usd_h = sum(m.usd_per_hour for m in members) + lookups + egress / hours
    return FleetPlan(tuple(members), tuple(loc for loc, _ in demand),
                     tuple(float(v) for v in d), routes[:, used], t.p99[:, used],
                     tuple(views), usd_h, egress, method, rule,
                     tuple(best_effort), t.limits, _spend(t, x, routes))


def _instance(engine: Engine, ctx: Any, pos: int, count: int) -> int:
    billing = engine.billing(count)
    return int(billing.instance[ctx.rows[pos]])


def _nearest(options: tuple[Option, ...] | list[Option], base: Outcome) -> str:
    ranked = sorted((o for o in options if not math.isnan(o.p99_ms)), key=lambda o: o.p99_ms)
    if not ranked:
        return "no candidate offers the GPU type"
    o = ranked[0]
    name = base.ctx.ci.site_names[int(base.ctx.site[o.pos])]
    return f"{name} (p99 {o.p99_ms:.1f} ms): {o.reason or 'qualifies'}"


def scale(previous: dict[int, int], plan: FleetPlan, settings: FleetSettings) -> FleetPlan:
    """Autoscaling with hysteresis. `previous`: replicas per candidate row now. Scale-out
    follows the plan (it went first where it is cheapest within the SLO). A member the plan
    wants smaller shrinks only when its replicas now would run below `scale_in_utilization`,
    and then to what its traffic needs at the target utilization: a dip does not flap
    replicas, and scale-in releases the GPUs it frees."""
    members = []
    for m in plan.members:
        before = previous.get(m.row, 0)
        reps = m.replicas
        if 0 < reps < before:
            if m.routed_rps / (before * m.replica_rps) >= settings.scale_in_utilization:
                reps = before
            else:
                reps = max(reps, math.ceil(m.routed_rps / (
                    m.replica_rps * settings.target_utilization)))
        if reps != m.replicas:
            f = reps / m.replicas
            m = Member(m.pos, m.row, m.site, m.group, m.kind, m.instance, reps,
                       m.gpus // m.replicas * reps, m.replica_rps, m.routed_rps,
                       m.usd_per_hour * f, m.opportunity_usd_per_hour * f)
        members.append(m)
    usd = plan.usd_per_hour + sum(
        n.usd_per_hour - o.usd_per_hour for n, o in zip(members, plan.members, strict=True))
    # Replicas kept for hysteresis must still fit the limits the plan held to (the GPUs free
    # per site and GPU type, where spot and on-demand share a cloud quota; the dollar limits).
    spend = plan.spend
    if spend is not None:
        for n, o in zip(members, plan.members, strict=True):
            if n.replicas != o.replicas:
                spend = spend.plus(group=n.group, gpus=n.gpus - o.gpus,
                                   usd_h=n.usd_per_hour - o.usd_per_hour, cloud=n.kind != ONPREM)
        if plan.limits is not None and plan.limits.broken(spend) is not None:
            return plan  # no room to keep them: the plan's own size
    return replace(plan, members=tuple(members), usd_per_hour=usd, spend=spend)


def _site_name(base: Outcome, pos: int) -> str:
    return base.ctx.ci.site_names[int(base.ctx.site[pos])]


def _label(base: Outcome, pos: int) -> str:
    """`site capacity GPU` of a candidate."""
    c = base.ctx
    kind = ("on-prem", "on-demand", "spot")[int(c.kind[pos])]
    return f"{_site_name(base, pos)} {kind} {c.ci.gpu_names[int(c.ci.row_gpu[c.rows[pos]])]}"


def _why_not_more(plan: FleetPlan, base: Outcome, pos: int, li: int,
                  settings: FleetSettings | None) -> str:
    """Why the plan gives a qualifying candidate no more of location `li`'s demand."""
    k = next((k for k, m in enumerate(plan.members) if m.pos == pos), None)
    if plan.limits is not None and plan.spend is not None:  # would one more replica fit?
        probe = plan.views[li].probe.ctx
        kind = int(base.ctx.kind[pos])
        more = plan.spend.plus(
            group=int(base.ctx.group[pos]), gpus=base.ctx.workload.spec.gpu.count,
            usd_h=float(probe.gpu_usd[pos]) / probe.hours, cloud=kind != ONPREM,
            new_site=int(base.ctx.site[pos]) not in {m.site for m in plan.members},
            egress_usd=float(base.ctx.data.egress_usd[int(base.ctx.site[pos])]))
        limit = plan.limits.broken(more)
        if limit is not None:
            return (f"is {'not used' if k is None else 'held to its replicas'}: one more "
                    f"replica there would pass {limit}")
    if int(base.ctx.kind[pos]) == SPOT and settings is not None:
        share = f"{settings.spot_max_share:.0%}"
        if k is not None and float(plan.routes[li, k]) >= (
                settings.spot_max_share * plan.demand_rps[li] - 1e-9):
            return f"carries its spot limit ({share} of the location's demand)"
        if k is None:
            return (f"is not used: a spot site carries at most {share} of a location's "
                    "demand (spread over failure domains), and the plan costs less without it")
    if k is None:
        return "is not used: the plan costs less without it"
    return "serves other locations with its replicas: the plan costs less in total this way"


def _route_story(plan: FleetPlan, base: Outcome, li: int, slo: float,
                 settings: FleetSettings | None = None) -> tuple[str, list[dict[str, Any]]]:
    """Why location `li` goes where it goes, and the candidates it could have used instead
    (its nearest and its cheapest), each with its reason."""
    routes = plan.routes[li]
    used = {plan.members[k].pos for k in np.flatnonzero(routes > 0).tolist()}
    opts = plan.options[li]
    by_pos = {o.pos: o for o in opts}
    qualifying = [o for o in opts if not o.reason]
    parts: list[str] = []
    main = max(used, key=lambda p: float(routes[[m.pos for m in plan.members].index(p)]))
    o = by_pos[main]
    cheaper = [q for q in qualifying if q.usd_per_hour < o.usd_per_hour - 1e-12]
    if li < len(plan.best_effort) and plan.best_effort[li]:
        parts.append(f"no candidate meets the {slo:g} ms SLO from here: served best effort "
                     f"on {_label(base, main)}, the lowest p99 ({o.p99_ms:.1f} ms) among the "
                     "candidates every other rule allows")
    elif not cheaper:
        parts.append(f"{_label(base, main)} is the cheapest candidate within the {slo:g} ms "
                     f"SLO (p99 {o.p99_ms:.1f} ms, ${o.usd_per_hour:,.2f}/h per replica)")
    else:
        parts.append(f"{_label(base, main)} (p99 {o.p99_ms:.1f} ms, ${o.usd_per_hour:,.2f}/h "
                     f"per replica): the cheaper {_label(base, cheaper[0].pos)} "
                     f"{_why_not_more(plan, base, cheaper[0].pos, li, settings)}")
    if len(used) > 1:
        parts.append(f"split over {len(used)} candidates: "
                     + ", ".join(f"{_label(base, p)} {float(routes[k]):g} req/s"
                                 for k, p in enumerate(m.pos for m in plan.members)
                                 if p in used))
    used_sites = {int(base.ctx.site[p]) for p in used}
    by_p99 = sorted((q for q in opts if not math.isnan(q.p99_ms)), key=lambda q: q.p99_ms)
    nearest = next((q for q in by_p99 if int(base.ctx.site[q.pos]) not in used_sites), None)
    alternatives: list[dict[str, Any]] = []
    shown: set[int] = set()
    picks = ([nearest] if nearest is not None and nearest.p99_ms < o.p99_ms else []) + [
        q for q in qualifying if q.pos not in used and q.usd_per_hour < o.usd_per_hour][:2]
    for q in picks:
        if q.pos in shown:
            continue
        shown.add(q.pos)
        reason = q.reason or _why_not_more(plan, base, q.pos, li, settings).removeprefix("is ")
        if q is nearest:
            reason = f"nearer (p99 {q.p99_ms:.1f} ms): {reason}"
        alternatives.append({"site": _site_name(base, q.pos),
                             "p99_latency_ms": round(q.p99_ms, 3),
                             "usd_per_hour_per_replica": round(q.usd_per_hour, 4),
                             "reason": f"{_label(base, q.pos)}: {reason}"})
    return "; ".join(parts), alternatives


def fleet_dict(plan: FleetPlan, base: Outcome, capacity_names: tuple[str, ...],
               gpu_names: list[str], inst_names: list[str]) -> dict[str, Any]:
    """The plan shaped exactly like `placement.model.decision.Fleet` (JSON-ready)."""
    spec = base.ctx.workload.spec
    assert spec.latency is not None
    members = []
    for m in plan.members:
        members.append({
            "site": base.ctx.ci.site_names[m.site],
            "gpu_type": gpu_names[int(base.ctx.ci.row_gpu[m.row])],
            "capacity": capacity_names[m.kind],
            "instance_type": inst_names[m.instance] if m.instance >= 0 else None,
            "replicas": m.replicas, "gpus": m.gpus, "replica_rps": round(m.replica_rps, 4),
            "routed_rps": round(m.routed_rps, 6),
            "utilization": round(m.routed_rps / (m.replicas * m.replica_rps), 4),
            "usd_per_hour": round(m.usd_per_hour, 4),
            "opportunity_usd_per_hour": round(m.opportunity_usd_per_hour, 4)})
    routing = []
    for li, loc in enumerate(plan.locations):
        total = float(plan.routes[li].sum())
        by_site: dict[str, tuple[float, float]] = {}  # one target per site: its members
        for k in np.flatnonzero(plan.routes[li] > 0).tolist():  # (GPU types, spot and
            site = str(members[k]["site"])                      # on-demand) share it
            w = float(plan.routes[li, k]) / total if total > 0 else 1.0
            got = by_site.get(site, (0.0, -math.inf))
            by_site[site] = (got[0] + w, max(got[1], float(plan.p99_ms[li, k])))
        targets = [{"site": site, "weight": round(w, 6), "p99_latency_ms": round(p99, 3)}
                   for site, (w, p99) in by_site.items()]
        why, alternatives = _route_story(plan, base, li, spec.latency.p99_slo_ms,
                                         base.rule.fleet)
        routing.append({"location": loc, "demand_rps": round(plan.demand_rps[li], 6),
                        "within_slo": not (li < len(plan.best_effort)
                                           and plan.best_effort[li]),
                        "targets": targets, "why": why, "alternatives": alternatives})
    return {"members": members, "routing": routing,
            "usd_per_hour": round(plan.usd_per_hour, 4),
            "demand_rps": round(sum(plan.demand_rps), 6), "method": plan.method,
            "rule": plan.rule}
