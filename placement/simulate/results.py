"""What a replay cost and how it served: the metrics per policy and their time series.

Every policy is judged on the same work. Work a policy leaves undone is charged, never free:
a rejected workload, a job that ends after its deadline (done, but not when it was needed: it
pays its run and the charge), and the part of a service window not served within its SLO
(the window started late, or its site's p99 misses the SLO) are *unmet work*, charged at what
doing it in the cloud on-demand would cost (`unmet_usd`: the cheapest on-demand offer in the
inventory, rules and quota ignored, billed as the replay bills a cold start, with provisioning
and the data's egress), so leaving work undone never costs less than doing it on-demand. A
missed deadline is not priced beyond that (no value of lateness is known): deadline misses
are a column of their own, and a rejected job with a deadline counts as one. A placed job
always finishes (queues drain after the last arrival); a job without a deadline is never
late, and its delay shows in its wait.

Money, three views, each with the unmet-work charge:
- `used_usd`: on-prem GPU-hours used x the site's amortized $/GPU-hour (the price the engine
  weighs) + cloud GPU-hours billed (from the request for capacity until the run ends,
  provisioning and spot restarts included) x the instance price + egress at the inventory's
  $/GB + the charge.
- `fleet_usd`: owned GPUs cost their amortized price used or idle: the whole on-prem fleet
  over the common horizon of the policies compared + cloud GPUs + egress + the charge.
- `avoidable_usd`: cloud GPUs + egress + the charge: the part a placement policy changes (the
  fleet is paid for whatever it does). Comparisons lead with this one.
A service window's requests count as within the SLO when its site's p99 (client RTT + service
time + RAG lookups) meets the SLO, for the part of the window it was running.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from placement.engine import Engine
from placement.engine.compiled import ON_DEMAND, ONPREM, SPOT, CompiledInventory
from placement.engine.shadow import work_value_usd_per_gpu_hour
from placement.model import Workload
from placement.model.workload import WorkloadSpec
from placement.simulate.replay import Run
from placement.simulate.synth import SimWorkload

Floats = np.ndarray
KINDS = {ONPREM: "onprem", ON_DEMAND: "on_demand", SPOT: "spot"}
LATE_EPS_H = 1e-9  # a job this close to its deadline made it


def late(hours_from_arrival: Floats | float, spec: WorkloadSpec) -> Any:
    """Whether a job that ends this many hours after its arrival missed its deadline
    (elementwise over an array; never late without a deadline)."""
    if spec.deadline_hours is None:
        return np.zeros(np.shape(hours_from_arrival), dtype=bool) if np.ndim(
            hours_from_arrival) else False
    return np.asarray(hours_from_arrival) > spec.deadline_hours + LATE_EPS_H


def within_slo(p99_ms: Floats | float, spec: WorkloadSpec) -> Any:
    """Whether a p99 meets the workload's SLO (elementwise over an array; a workload without
    one always does; NaN never does)."""
    if spec.latency is None:
        return np.ones(np.shape(p99_ms), dtype=bool) if np.ndim(p99_ms) else True
    return np.asarray(p99_ms) <= spec.latency.p99_slo_ms


def _pct(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 4) if len(values) else None


def horizon(runs: list[Run]) -> float:
    """Hours from the first arrival to the last arrival or end, whichever is later."""
    last = max((max(r.end_h, r.arrival_h) for r in runs), default=0.0)
    return last or 1.0


def fleet_usd(ci: CompiledInventory, hours: float) -> float:
    """The on-prem fleet's amortized cost over `hours`, used or idle."""
    onprem = ci.row_kind == ONPREM
    groups = ci.row_group[onprem]
    return float((ci.group_capacity[groups] * ci.row_unit_price[onprem]).sum()) * hours


def unmet_usd(engine: Engine, wl: Workload) -> float:
    """The charge for leaving all of a workload's work undone: what doing it in the cloud
    on-demand would cost, the cheapest way the inventory offers (rules and quota ignored),
    billed as the replay bills a cold start: its instances (whole instances) from the request,
    through provisioning or its data move, whichever is longer, to the end of the run, plus
    the egress of its data. Without any on-demand offer of its GPU types, its GPU-hours at
    `work_value_usd_per_gpu_hour` (the engine's value of work only on-prem can run, the same
    rule). `engine` holds no GPUs (the charge is the same for every
    policy)."""
    ctx = engine.context(wl)
    od = ctx.kind == ON_DEMAND
    if not od.any():
        return work_value_usd_per_gpu_hour(ctx.ci, wl.spec.gpu.types) * gpu_hours(wl)
    hours = wl.spec.duration_hours or 1.0
    lead = np.maximum(ctx.transfer_hours, ctx.ci.provision_h[ctx.site])
    cost = ctx.usd_per_hour * (lead + hours) + ctx.data.usd(ctx.site, hours)
    return float(cost[od].min())


def gpu_hours(wl: Workload) -> float:
    """The GPU-hours a workload asks for (a service: its window)."""
    spec = wl.spec
    return float(spec.gpu.count * spec.replicas * (spec.duration_hours or 1.0))


def served(run: Run, sw: SimWorkload) -> float:
    """The share of a workload's work done as asked: a job 1 if placed and done by its deadline
    (if any); a service window the part of the window it ran with its p99 within the SLO; 0
    if rejected."""
    if run.site < 0:
        return 0.0
    spec = sw.workload.spec
    if not spec.is_service:
        return 0.0 if late(run.end_h - run.arrival_h, spec) else 1.0
    if not within_slo(run.p99_ms, spec):
        return 0.0
    window = spec.duration_hours or 1.0
    return min(max((run.arrival_h + window - run.start_h) / window, 0.0), 1.0)


def unmet_charges(engine: Engine, workloads: list[SimWorkload]) -> Floats:
    """`unmet_usd` of each workload (the same for every policy: work it out once a replay)."""
    return np.array([unmet_usd(engine, sw.workload) for sw in workloads])


def metrics(runs: list[Run], workloads: list[SimWorkload], engine: Engine,
            horizon_h: float | None = None, charges: Floats | None = None) -> dict[str, Any]:
    """The summary metrics of one policy's replay (fleet costs over `horizon_h`, default its
    own horizon; give every policy compared the same one; `charges`: `unmet_charges`, when
    the caller has them already)."""
    ci = engine.ci
    site = np.array([r.site for r in runs], dtype=np.int64)
    kind = np.array([r.kind for r in runs], dtype=np.int64)
    placed = site >= 0
    gpus = np.array([r.gpus for r in runs], dtype=float)
    start = np.array([r.start_h for r in runs])
    end = np.array([r.end_h for r in runs])
    arrival = np.array([r.arrival_h for r in runs])
    gpu_usd = np.array([r.gpu_usd for r in runs])
    onprem = placed & (kind == ONPREM)
    cloud = placed & (kind != ONPREM)
    is_service = np.array([sw.workload.spec.is_service for sw in workloads], dtype=bool)
    out: dict[str, Any] = {
        "workloads": len(runs), "rejected": int((~placed).sum()),
        "onprem_amortized_usd": round(float(gpu_usd[onprem].sum()), 2),
        "cloud_gpu_usd": round(float(gpu_usd[cloud].sum()), 2),
        "egress_usd": round(sum(r.egress_usd for r in runs), 2),
        "egress_gb": round(sum(r.egress_gb for r in runs), 1),
    }
    asked = np.array([gpu_hours(sw.workload) for sw in workloads])
    done = np.array([served(r, sw) for r, sw in zip(runs, workloads, strict=True)])
    unmet = asked * (1 - done)
    charge = unmet_charges(engine, workloads) if charges is None else charges
    out["asked_gpu_hours"] = round(float(asked.sum()), 1)
    out["unmet_gpu_hours"] = round(float(unmet.sum()), 1)
    out["rejected_gpu_hours"] = round(float(asked[~placed].sum()), 1)
    out["unmet_usd"] = round(float((charge * (1 - done)).sum()), 2)
    avoidable = out["cloud_gpu_usd"] + out["egress_usd"] + out["unmet_usd"]
    out["avoidable_usd"] = round(avoidable, 2)
    out["used_usd"] = round(out["onprem_amortized_usd"] + avoidable, 2)
    out["slo_attainment"] = _slo(runs, workloads)
    jobs = placed & ~is_service
    waits = (start - arrival)[jobs]
    out["job_wait_p50_h"], out["job_wait_p99_h"] = _pct(waits, 50), _pct(waits, 99)
    out["deadline_misses"] = sum(
        1 for r, sw in zip(runs, workloads, strict=True)
        if not sw.workload.spec.is_service and sw.workload.spec.deadline_hours is not None
        and (r.site < 0 or late(r.end_h - r.arrival_h, sw.workload.spec)))
    out["gpu_hours_run"] = round(float(((end - start) * gpus)[placed].sum()), 1)
    billed = np.array([r.billed_h for r in runs])
    out["burst_gpu_hours"] = round(float((gpus * billed)[cloud].sum()), 1)
    out["spot_interruptions"] = sum(r.interruptions for r in runs)
    out["placements"] = {name: int((placed & (kind == k)).sum()) for k, name in KINDS.items()}
    span = horizon_h or horizon(runs)
    out["horizon_h"] = round(horizon(runs), 2)
    out["utilization"] = {}
    for s, name in enumerate(ci.site_names):
        if ci.is_cloud[s]:
            continue
        cap = float(ci.group_capacity[ci.group_site == s].sum())
        used = float(((end - start) * gpus)[onprem & (site == s)].sum())
        out["utilization"][name] = round(used / (cap * span), 4) if cap else None
    fleet = fleet_usd(ci, span)
    out["onprem_idle_usd"] = round(max(fleet - out["onprem_amortized_usd"], 0.0), 2)
    out["fleet_usd"] = round(fleet + avoidable, 2)
    return out


def _slo(runs: list[Run], workloads: list[SimWorkload]) -> float | None:
    """Requests served within the SLO, as a share of the services' requests."""
    total = met = 0.0
    for r, sw in zip(runs, workloads, strict=True):
        if sw.workload.spec.is_service and sw.workload.spec.latency is not None:
            total += sw.requests
            met += sw.requests * served(r, sw)
    return round(met / total, 5) if total else None


def timeline(runs: list[Run], ci: CompiledInventory, edges: np.ndarray) -> dict[str, Any]:
    """Per time bucket: USD spent (at start) and each on-prem site's GPU utilization."""
    start = np.array([r.start_h for r in runs])
    end = np.array([r.end_h for r in runs])
    site = np.array([r.site for r in runs], dtype=np.int64)
    usd = np.array([r.gpu_usd + r.egress_usd for r in runs])
    gpus = np.array([r.gpus for r in runs], dtype=float)
    placed = site >= 0
    bucket = np.clip(np.searchsorted(edges, start, side="right") - 1, 0, len(edges) - 2)
    cost = np.bincount(bucket[placed], weights=usd[placed], minlength=len(edges) - 1)
    util: dict[str, list[float]] = {}
    width = np.diff(edges)
    for s, name in enumerate(ci.site_names):
        if ci.is_cloud[s]:
            continue
        cap = float(ci.group_capacity[ci.group_site == s].sum())
        mine = placed & (site == s)
        lo, hi, n = start[mine][:, None], end[mine][:, None], gpus[mine][:, None]
        busy = np.zeros(len(width))
        for k in range(0, len(lo), 20000):  # GPU-hours overlapping each bucket, in chunks
            overlap = np.clip(np.minimum(hi[k:k + 20000], edges[1:]) -
                              np.maximum(lo[k:k + 20000], edges[:-1]), 0, None)
            busy += (overlap * n[k:k + 20000]).sum(axis=0)
        util[name] = (busy / (cap * width)).round(4).tolist() if cap else []
    return {"cumulative_usd": np.cumsum(cost).round(2).tolist(), "utilization": util}
