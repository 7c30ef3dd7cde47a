"""An offline lower bound on cost: a MILP over time windows that knows every arrival ahead.

Each workload goes to exactly one candidate (binary x[w, r]) among those the policy's hard
rules allow: require/forbid constraints, network boundaries, GPUs installed or quota large
enough, cloud only where the workload's burst rule allows it and spot only where it allows
spot; services only where their p99 meets the SLO (when any candidate does). A candidate costs
what the replay bills for the same choice, or less: its GPU price x the hours billed (a job in
the cloud: provisioning or data move, then the run with the replay's own seeded spot
interruptions; a service window: its run time, as it may be warm) plus its egress. Capacity
holds per window: the GPU-hours placed on a (site, GPU type) fit in its GPUs (or quota) x the
window length, counting each workload in the windows it occupies when started on arrival
(order within a window is free).

A workload the rules keep on-prem (no cloud candidate) may also wait: it has one more option,
at its cheapest on-prem cost, outside the capacity rows (it queues; nothing else can take it).
The bound is the MILP's dual bound (HiGHS via scipy.optimize.milp), so it stays a bound when
the time limit stops the search. It is a bound for the policy whose rules it uses, over the
workloads given (run.py gives those the policy placed: a rejected workload costs nothing). It
assumes work starts on arrival: holding jobs back until on-prem GPUs free up can beat it (a
negative gap says so).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import LinearConstraint, milp
from scipy.sparse import coo_matrix

from placement.engine import Engine
from placement.engine.compiled import SPOT
from placement.engine.context import DecisionContext
from placement.simulate.baselines import hard_rules
from placement.simulate.replay import spot_hours
from placement.simulate.synth import SimWorkload

# Measured here: Philly's first 40,000 jobs are 343,695 variables, built and solved to
# optimality in 20 s with 0.6 GB. The cap keeps memory bounded on far larger traces.
MAX_VARIABLES = 1_000_000


@dataclass(frozen=True)
class Bound:
    """The lower bound and how it was reached."""

    usd: float | None  # None: no bound (infeasible or not solved)
    status: str
    gap: float | None  # the solver's own relative gap between its best plan and the bound
    workloads: int  # workloads in the model (those with at least one candidate)
    variables: int
    seconds_limit: float


def _billed_hours(ctx: DecisionContext, idx: np.ndarray, sw: SimWorkload,
                  seed: int) -> np.ndarray:
    """Hours the replay bills on each candidate: a job in the cloud from its request (the
    provisioning and the data move) to its end, with the replay's own spot interruptions
    (the same seeded draws); a service window only its run time (it may be warm)."""
    hours = np.full(len(idx), float(ctx.hours))
    if sw.workload.spec.is_service:
        return hours
    site = ctx.site[idx]
    for j in np.flatnonzero(ctx.kind[idx] == SPOT):
        hours[j] = spot_hours(float(ctx.hours), float(ctx.ci.spot_rate[site[j]]), sw,
                              ctx.rule.burst.restart_overhead_minutes / 60, seed)[0]
    lead = np.maximum(ctx.transfer_hours[idx], ctx.ci.provision_h[site])
    billed: np.ndarray = np.where(ctx.is_cloud[idx], lead + hours, hours)
    return billed


@dataclass(frozen=True)
class Model:
    """The MILP's candidates and constraints, priced both ways (built once, solved per view)."""

    gpu_usd: np.ndarray  # per variable: GPU $ as the replay bills it
    onprem: np.ndarray  # per variable: an on-prem GPU (free when the fleet is sunk)
    egress_usd: np.ndarray
    constraints: LinearConstraint | None
    workloads: int


def build(engine: Engine, workloads: list[SimWorkload], *, window_h: float | None = None,
          seed: int = 0) -> Model:
    """The bound's model for these workloads on this inventory under the engine's policy."""
    ci = engine.ci
    longest = max((w.workload.spec.duration_hours or 0.0) for w in workloads) or 1.0
    span = max(w.arrival_h + (w.workload.spec.duration_hours or longest) for w in workloads)
    width = window_h or max(span / 48, 0.25)
    n_windows = int(np.ceil(span / width)) + 1
    gpu_usd: list[np.ndarray] = []
    onprem: list[np.ndarray] = []
    egress: list[np.ndarray] = []
    var_w: list[int] = []
    var_group: list[int] = []
    var_gpus: list[int] = []
    modeled = 0
    for k, sw in enumerate(workloads):
        ctx = engine.context(sw.workload)
        ok, _, _ = hard_rules(ctx)
        burst = ctx.rule.burst
        ok &= ~ctx.is_cloud | burst.allowed
        if burst.spot == "never":
            ok &= ctx.kind != SPOT
        if sw.workload.spec.is_service and sw.workload.spec.latency is not None:
            meets = ok & (ctx.p99_ms <= sw.workload.spec.latency.p99_slo_ms)
            ok = meets if meets.any() else ok
        idx = np.flatnonzero(ok)
        if not len(idx):
            continue
        modeled += 1
        gpu = ctx.usd_per_hour[idx] * _billed_hours(ctx, idx, sw, seed)
        local = ~ctx.is_cloud[idx]
        gpu_usd.append(gpu)
        onprem.append(local)
        egress.append(ctx.egress_usd[idx])
        var_w.extend([k] * len(idx))
        var_group.extend(ctx.group[idx].tolist())
        var_gpus.extend([ctx.gpus_needed] * len(idx))
        if local.all():  # it may queue: its cheapest on-prem option (in either view), outside
            best = sorted({int(np.argmin(gpu + ctx.egress_usd[idx])),  # capacity
                           int(np.argmin(ctx.egress_usd[idx]))})
            gpu_usd.append(gpu[best])
            onprem.append(local[best])
            egress.append(ctx.egress_usd[idx][best])
            var_w.extend([k] * len(best))
            var_group.extend([-1] * len(best))
            var_gpus.extend([0] * len(best))
    n = len(var_w)
    model = Model(np.concatenate(gpu_usd) if n else np.zeros(0),
                  np.concatenate(onprem) if n else np.zeros(0, dtype=bool),
                  np.concatenate(egress) if n else np.zeros(0), None, modeled)
    if n == 0 or n > MAX_VARIABLES:
        return model
    vw = np.array(var_w)
    arrival = np.array([workloads[k].arrival_h for k in vw])
    hours = np.array([workloads[k].workload.spec.duration_hours or longest for k in vw])
    rows_, cols_, vals_ = [], [], []
    # exactly one candidate per modeled workload
    _, w_row = np.unique(vw, return_inverse=True)
    rows_.append(w_row)
    cols_.append(np.arange(n))
    vals_.append(np.ones(n))
    n_assign = int(w_row.max()) + 1
    # GPU-hours per (group, window)
    first = (arrival // width).astype(np.int64)
    last = ((arrival + hours) // width).astype(np.int64)
    groups = np.array(var_group)
    gpus = np.array(var_gpus, dtype=float)
    for span_k in range(int((last - first).max()) + 1):
        live = (first + span_k <= last) & (groups >= 0)
        t = first[live] + span_k
        lo = np.maximum(arrival[live], t * width)
        hi = np.minimum(arrival[live] + hours[live], (t + 1) * width)
        rows_.append(n_assign + groups[live] * n_windows + t)
        cols_.append(np.flatnonzero(live))
        vals_.append(gpus[live] * np.clip(hi - lo, 0, None))
    rows = np.concatenate(rows_)
    a = coo_matrix((np.concatenate(vals_), (rows, np.concatenate(cols_))),
                   shape=(n_assign + len(ci.group_site) * n_windows, n)).tocsr()
    used = np.unique(rows[rows >= n_assign])
    cap = np.repeat(ci.group_capacity.astype(float), n_windows) * width
    keep = np.r_[np.arange(n_assign), used]
    lb = np.r_[np.ones(n_assign), np.full(len(used), -np.inf)]
    ub = np.r_[np.ones(n_assign), cap[used - n_assign]]
    return replace(model, constraints=LinearConstraint(a[keep], lb, ub))


def solve(model: Model, *, onprem_sunk: bool = False, time_limit_s: float = 60.0) -> Bound:
    """The bound of a built model. With `onprem_sunk`, on-prem GPU-hours cost nothing (the
    fleet is paid for either way: add its cost to compare with `total_with_fleet_usd`); else
    they cost their amortized price (compare with `total_usd`)."""
    n, modeled = len(model.gpu_usd), model.workloads
    if n == 0:
        return Bound(None, "no workload has a candidate", None, 0, 0, time_limit_s)
    if model.constraints is None:
        return Bound(None, f"not computed: {n:,} variables, over {MAX_VARIABLES:,}; bound a "
                     "part of the trace with --limit", None, modeled, n, time_limit_s)
    gpu = np.where(model.onprem, 0.0, model.gpu_usd) if onprem_sunk else model.gpu_usd
    res = milp(gpu + model.egress_usd, integrality=np.ones(n), bounds=(0, 1),
               constraints=model.constraints,
               options={"time_limit": time_limit_s, "disp": False})
    dual = getattr(res, "mip_dual_bound", None)
    if res.status == 0:  # solved to HiGHS's gap: its dual bound is the bound, not its plan
        usd = float(dual) if dual is not None and np.isfinite(dual) else float(res.fun)
        return Bound(min(usd, float(res.fun)), "optimal", getattr(res, "mip_gap", 0.0),
                     modeled, n, time_limit_s)
    if dual is not None and np.isfinite(dual):
        gap = getattr(res, "mip_gap", None)
        return Bound(float(dual), f"time limit ({res.message})",
                     float(gap) if gap is not None and np.isfinite(gap) else None,
                     modeled, n, time_limit_s)
    return Bound(None, str(res.message), None, modeled, n, time_limit_s)


def lower_bound(engine: Engine, workloads: list[SimWorkload], *, window_h: float | None = None,
                time_limit_s: float = 60.0, seed: int = 0, onprem_sunk: bool = False) -> Bound:
    """The MILP lower bound on total $ (GPU + egress) for these workloads (see `solve`)."""
    if not workloads:
        return Bound(0.0, "empty", 0.0, 0, 0, time_limit_s)
    return solve(build(engine, workloads, window_h=window_h, seed=seed),
                 onprem_sunk=onprem_sunk, time_limit_s=time_limit_s)
