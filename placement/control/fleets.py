"""Autoscaling fleets: replicas per site follow the demand measured.

A pass (every `autoscale_seconds`, in a process that scrapes Triton) reads, for every fleet
being served, the requests/s its model received on each member site over the last scrape
interval (placement.actuators.triton.feed). Their sum is the fleet's demand now; each client
location's share of it is the share the workload declares (Triton sees requests per site, not
where they came from). Where every client location has a `requests_per_s_query` and the service
queries Prometheus, each location's requests/s is its query's value instead (from a gateway or
load balancer that sees where requests come from); a query that fails or gives no single value
falls back to Triton's rates, and the event says which was used. The engine plans the fleet
again for that demand, with the fleet's own GPUs counted as free for it, and
`placement.engine.fleet.scale` applies the hysteresis: scale-out follows the plan (it goes first
where it is cheapest within the SLO), a site shrinks only once its replicas run below
`scale_in_utilization`. A changed plan is recorded as a new decision of the workload, its phase
kept, with only the GPUs it gains or frees moved by the guarded update; a gain that is not free
any more leaves the fleet as it was. The serving actuator then resizes each member site's
Deployment, adds new sites and removes dropped ones; a new site gets traffic once it is ready
(the routing table drains sites not ready while the location has a ready one), which is the cold
start.

Without a fresh reading on every member site (no scrape yet, a site down, a model without
requests in the interval), a fleet is left as it is.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np

from placement.control.lifecycle import decision_rows, request_requeue
from placement.control.runtime import Runtime
from placement.engine import Engine
from placement.engine.compiled import CAPACITY_NAMES, CompiledInventory
from placement.engine.fleet import FleetPlan, location_demand, scale
from placement.errors import PlacementError
from placement.model import Workload
from placement.model.common import MAX_RATE
from placement.model.workload import SERVICE_KINDS, WorkloadSpec
from placement.signals import Observed, PrometheusClient, SignalError
from placement.store import fleets as store
from placement.store import transitions
from placement.store.capacity import CapacityConflict
from placement.store.db import utcnow
from placement.store.servings import site_statuses
from placement.store.spend import committed_ahead

log = logging.getLogger("placement.control.fleets")
SCALED_PHASES = ("placed", "running")


def demand_at(spec: WorkloadSpec, total_rps: float) -> WorkloadSpec:
    """`spec` with its client locations' demand summing to `total_rps`, each location's
    share as the spec declares it (its own requests/s, else its share)."""
    lat = spec.latency
    if lat is None:
        raise ValueError("only a service has client locations")
    declared = location_demand(spec)
    base = sum(rate for _, rate in declared)
    if base > 0:
        rates = [rate * total_rps / base for _, rate in declared]
    else:
        shares = sum(c.share for c in lat.clients)
        rates = [total_rps * c.share / shares for c in lat.clients]
    clients = [c.model_copy(update={"requests_per_s": r})
               for c, r in zip(lat.clients, rates, strict=True)]
    return spec.model_copy(update={"requests_per_s": total_rps,
                                   "latency": lat.model_copy(update={"clients": clients})})


def observed_rps(fleet: dict[str, Any], workload: str, rates: dict[tuple[str, str], float],
                 ready: set[str] | None = None) -> float | None:
    """The fleet's requests/s now: the sum over its member sites (each once, whatever GPU
    types or capacity kinds it serves with). A site not serving yet (`ready` leaves it out)
    takes no traffic and counts 0; None when a serving site has no fresh reading, or none
    serves."""
    sites = sorted({str(m["site"]) for m in fleet["members"]})
    serving = [site for site in sites if ready is None or site in ready]
    got = [rates.get((site, workload)) for site in serving]
    if not got or any(v is None for v in got):
        return None
    return float(sum(v for v in got if v is not None))


def demand_by_location(spec: WorkloadSpec, measured: dict[str, float]) -> WorkloadSpec:
    """`spec` with each client location's requests/s as measured (its own query's value)."""
    lat = spec.latency
    if lat is None:
        raise ValueError("only a service has client locations")
    clients = [c.model_copy(update={"requests_per_s": measured[c.location]})
               for c in lat.clients]
    return spec.model_copy(update={"requests_per_s": float(sum(measured.values())),
                                   "latency": lat.model_copy(update={"clients": clients})})


def per_location(client: PrometheusClient, spec: WorkloadSpec
                 ) -> tuple[dict[str, float] | None, str]:
    """Each client location's requests/s now from its `requests_per_s_query`, or None and
    why: a location without a query, a query that fails (SignalError: Prometheus down or
    slow), or one that does not give one sample between 0 and MAX_RATE."""
    lat = spec.latency
    if lat is None:
        return None, "not a service"
    got: dict[str, float] = {}
    for c in lat.clients:
        if c.requests_per_s_query is None:
            return None, f"location {c.location} has no requests_per_s_query"
        samples = client.query(c.requests_per_s_query)  # SignalError: the caller's
        if len(samples) != 1 or not 0 <= samples[0].value <= MAX_RATE:
            return None, (f"the query of {c.location} gave {len(samples)} sample(s), not "
                          f"one value from 0 to {MAX_RATE:g}")
        got[c.location] = samples[0].value
    return got, "PromQL per location"


def _row_of(ci: CompiledInventory, member: dict[str, Any]) -> int | None:
    """The candidate row of a decision's fleet member (None when the inventory lost it)."""
    group = ci.group_index(str(member["site"]), str(member["gpu_type"]))
    if group is None:
        return None
    kind = CAPACITY_NAMES.index(str(member["capacity"]))
    rows = np.flatnonzero((ci.row_group == group) & (ci.row_kind == kind))
    return int(rows[0]) if len(rows) else None


def _own_gpus_free(engine: Engine, holds: list[Any]) -> Observed:
    """The engine's live signals with the fleet's own GPUs counted free where a free-GPU
    reading exists (the reading sees them busy with the fleet's own replicas)."""
    observed = engine.observed
    assert observed is not None
    free = observed.free_gpus.copy()
    for hold in holds:
        group = engine.ci.group_index(hold.site, hold.gpu_type)
        if group is not None and not np.isnan(free[group]):
            free[group] += hold.count
    return replace(observed, free_gpus=free)


def _sizes(fleet: dict[str, Any]) -> list[tuple[str, str, str, int]]:
    members = fleet["members"]
    assert isinstance(members, list)
    return sorted((str(m["site"]), str(m["gpu_type"]), str(m["capacity"]), int(m["replicas"]))
                  for m in members)


class PrometheusDown(Exception):
    """A per-location query found Prometheus down or slow: the pass stops asking it."""


def rescale(rt: Runtime, served: store.ServedFleet, rates: dict[tuple[str, str], float],
            prometheus: PrometheusClient | None = None) -> bool:
    """Plan one served fleet again for the demand measured (per location by `prometheus`
    where the workload has queries, else on its sites by Triton); True when its size
    changed (a new decision recorded)."""
    wl = Workload.model_validate(served.document)
    if wl.spec.serving is None or wl.spec.latency is None:
        return False
    measured: dict[str, float] | None = None
    why = ""
    if prometheus is not None and wl.spec.latency.clients[0].requests_per_s_query:
        try:
            measured, why = per_location(prometheus, wl.spec)
        except SignalError as exc:  # down or slow: the rest of this pass does without it
            raise PrometheusDown(f"Prometheus did not answer ({exc})") from exc
    if measured is not None:  # where the requests come from, as the gateway counts them
        total = float(sum(measured.values()))
        now_spec = demand_by_location(wl.spec, measured)
        source = ("measured per location (PromQL: "
                  + ", ".join(f"{loc} {v:,.1f}" for loc, v in measured.items()) + ")")
    else:  # what Triton served on the member sites, spread by the declared mix
        if why:
            log.info("fleet %s: %s; Triton's rates instead", served.workload_id, why)
        with rt.db.read() as s:
            ready = {x.site for x in site_statuses(s, workload_id=served.workload_id)
                     if x.status == "ready"}
        got = observed_rps(served.fleet, str(served.workload_id), rates, ready)
        if got is None:
            return False
        total, now_spec = got, demand_at(wl.spec, got)
        source = "measured on the fleet's sites" + (f" ({why})" if why else "")
    now_wl = wl.model_copy(update={"spec": now_spec})
    with rt.db.write() as s:
        row = transitions.load(s, workload_id=served.workload_id, skip_locked=True)
        if row is None or row.phase not in SCALED_PHASES or row.decision_id != served.decision_id:
            return False  # changed meanwhile, or another worker has it
        engine = rt.engine(s, fresh=True)
        cap = replace(engine.cap, reserved=engine.cap.reserved.copy())
        holds = transitions.holds_of(s, workload_id=row.id)
        for hold in holds:  # its own GPUs: free for it
            group = engine.ci.group_index(hold.site, hold.gpu_type)
            if group is not None:
                cap.reserved[group] -= hold.count
        view = engine.with_capacity(cap)
        if engine.observed is not None:  # a free-GPU signal counts the fleet's own pods busy
            view = view.with_observed(_own_gpus_free(engine, holds))
        team = wl.spec.team
        if team in engine.team_spend:  # its own cloud $/h committed ahead: free for it too
            ahead = committed_ahead(served.fleet, now=utcnow())
            view = view.with_team_spend({**engine.team_spend,
                                         team: max(0.0, engine.team_spend[team] - ahead)})
        out = view.decide(now_wl)
        if not isinstance(out.fleet, FleetPlan) or out.rule.fleet is None:
            return False  # no fleet serves this demand now: keep what runs
        members = served.fleet["members"]
        assert isinstance(members, list)
        previous = {r: int(m["replicas"]) for m in members
                    if (r := _row_of(engine.ci, m)) is not None}
        out.fleet = scale(previous, out.fleet, out.rule.fleet)
        decision = view.record(out)
        assert decision["fleet"] is not None  # out.fleet is a plan
        if _sizes(decision["fleet"]) == _sizes(served.fleet):
            return False
        drow, ev, held = decision_rows(row.id, decision, out, utcnow())
        ev["type"] = "fleet_rescaled"
        ev["message"] = (f"{total:,.1f} requests/s {source} (planned for "
                         f"{served.fleet['demand_rps']:g}): {decision['summary']}")
        freed = transitions.add_decision(s, row=row, decision=drow, event=ev, held=held,
                                         phase=row.phase, replace_holds=True)
    rt.invalidate_capacity()
    rt.spend_changed()  # its cloud $/h changed
    if freed:
        request_requeue(rt)
    return True


def rescale_fleets(rt: Runtime) -> int:
    """One autoscaling pass over the served fleets; returns how many changed size. One
    fleet's failure is logged and never stops the others."""
    feed = rt.triton
    rates = feed.rates() if feed is not None else {}
    if not rates and rt.signals is None:
        return 0  # nothing measured: neither Triton nor Prometheus
    with rt.db.read() as s:
        fleets = store.served_fleets(s, kinds=tuple(SERVICE_KINDS), phases=SCALED_PHASES)
    changed = 0
    prometheus = rt.signals.client if rt.signals is not None else None
    for served in fleets:
        try:
            try:
                changed += rescale(rt, served, rates, prometheus)
            except PrometheusDown as exc:  # one timeout per pass at most, not one per fleet
                log.warning("autoscaling without per-location queries this pass: %s", exc)
                prometheus = None
                changed += rescale(rt, served, rates, None)
        except CapacityConflict:
            rt.metrics.capacity_conflicts.inc()
        except (PlacementError, ValueError) as exc:
            log.warning("autoscaling fleet %s failed: %s", served.workload_id, exc)
    return changed

