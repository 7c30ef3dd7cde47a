"""The engine's batch path: Engine.decide's choice for long streams of workloads, without its
per-decision overhead (the simulator replays a million of them).

A decision has two parts:
- What follows from the workload's shape: every field the engine reads except duration,
  deadline and budget (kind, team, labels, GPU types and count, datasets, clients,
  checkpointing, interruptions). The shape fixes the candidate rows and the filters that
  ignore capacity: GPUs installed, constraints, network boundaries, the latency SLO, and the
  burst rule's permissions, $/h cap and spot permission. It also fixes prices, the data move
  and latency. A `ShapeTable` holds the rows that pass those filters, with their numbers. The
  plugins' own code builds it (one DecisionContext), once per shape.
- What follows from the moment and the workload's own duration, deadline and budget: GPUs
  reserved, release times and the team's burst spend. One compiled kernel (numba) applies the
  remaining filters: quota, wait, deadline, budget, the burst gate and the spot deadline room.
  It normalizes the four criteria over the considered candidates and ranks them by
  Engine.decide's keys and tie-breaks, in the same floating-point operations, so the choice is
  the same, bit for bit (tests/test_batch.py compares the two on randomized states).

The batch path covers the default plugins, and any other SHAPE_ONLY filter (it runs the
plugin's own `filter` once per shape), without live signals; `unsupported` says why an engine
does not qualify, and `BatchEngine` refuses it with that reason (callers then use
Engine.decide). It gives the choice, not its explanation: the
explanation of any decision comes from Engine.decide.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numba
import numpy as np
from numpy.typing import NDArray

from placement.engine.compiled import ONPREM, SPOT
from placement.engine.context import DecisionContext
from placement.engine.engine import Engine, shape_key
from placement.engine.plugins.registry import default_filters, default_scores
from placement.engine.shadow import Demand, demand_of, work_value_usd_per_gpu_hour
from placement.model.workload import Workload

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]

ACTIONS = ("reject", "place", "queue", "burst")
WHEN = {"always": 0, "onprem_unavailable": 1, "onprem_unavailable_or_near_data": 2}
# Columns of ShapeTable.floats and .ints.
F_USD_H, F_FACTOR, F_EGRESS_USD, F_LOOKUP_USD_H, F_TRANSFER_H, F_P99, F_PROVISION_H = range(7)
F_EGRESS_GB, F_LOOKUP_GB_H, F_SPOT_RATE = 7, 8, 9
I_GROUP, I_KIND, I_RANK, I_CAPACITY, I_ROW, I_POS, I_SITE, I_BILLED = range(8)
# Slots of the kernel's parameter vector.
(P_HOURS, P_MAX_WAIT, P_DEADLINE, P_BUDGET, P_SPENT, P_ALLOWED, P_W_LAT, P_W_DG, P_W_COST,
 P_W_WAIT, P_WSUM, P_S_LAT, P_S_DG, P_S_COST, P_S_WAIT, P_WHEN, P_SPOT_ROOM, P_SLACK,
 P_DEADLINE_FILTER) = range(19)


@dataclass(frozen=True, slots=True)
class Pick:
    """The chosen candidate and its numbers, as Engine.decide's context has them."""

    pos: int  # position in Engine.context(wl).rows (Outcome.chosen)
    row: int  # candidate row of the compiled inventory
    action: str  # place, queue or burst
    site: int
    group: int
    kind: int  # ONPREM, ON_DEMAND or SPOT
    gpus: int  # GPUs the workload needs on the site
    billed_gpus: int
    hours: float  # the job's duration or the service's horizon
    run_hours: float  # spot restarts included
    wait_hours: float
    transfer_hours: float
    usd_per_hour: float
    egress_usd: float
    egress_gb: float
    p99_ms: float
    restart_hours: float  # the rule's restart overhead after a spot interruption
    spot_rate: float  # expected interruptions per hour there (instances x per-instance rate)

    @classmethod
    def of(cls, ctx: DecisionContext, pos: int, action: str) -> Pick:
        """The pick of candidate `pos` of a decision context (Engine.decide, a baseline)."""
        row = int(ctx.rows[pos])
        return cls(pos, row, action, int(ctx.site[pos]), int(ctx.group[pos]),
                   int(ctx.kind[pos]), ctx.gpus_needed, int(ctx.billing.billed_gpus[row]),
                   float(ctx.hours), float(ctx.run_hours[pos]), float(ctx.wait_hours[pos]),
                   float(ctx.transfer_hours[pos]), float(ctx.usd_per_hour[pos]),
                   float(ctx.egress_usd[pos]), float(ctx.egress_gb[pos]),
                   float(ctx.p99_ms[pos]), ctx.rule.burst.restart_overhead_minutes / 60,
                   float(ctx.spot_rate[pos]))


@dataclass(frozen=True)
class ShapeTable:
    """One workload shape's candidates that pass the capacity-blind filters, in row order."""

    floats: Floats  # m x 10 (F_* columns)
    ints: Ints  # m x 8 (I_* columns)
    onprem: Ints  # positions in this table of the on-prem candidates
    onprem_group: Ints
    onprem_capacity: Ints
    params: Floats  # the kernel's parameters except the workload's own (hours, deadline, ...)
    need: int
    horizon_hours: float
    restart_hours: float
    deadline_filter: bool  # a job: a deadline filters candidates
    spot_room: bool  # spot candidates need deadline room for restarts
    lists: tuple[list[float], ...]  # floats' columns as lists (scalar reads are cheaper)
    int_lists: tuple[list[int], ...]
    no_bid: Floats  # zeros: the kernel's bid prices when none are set


# The filters and criteria whose per-workload part the kernel below implements. Every other
# filter must be SHAPE_ONLY: the batch path runs its own `filter` once per shape.
KERNEL_FILTERS = ("capacity", "wait", "deadline", "budget", "burst")
KERNEL_SCORES = ("latency", "data_gravity", "cost", "wait")


def unsupported(engine: Engine) -> str | None:
    """Why the batch path cannot decide exactly as `engine.decide`, or None when it can: live
    signals, a filter that is neither SHAPE_ONLY nor one the kernel implements, a kernel filter
    missing or replaced, the burst gate not last, or other score plugins."""
    if engine.observed is not None:
        return "live signals are in use"
    kernel = {p.NAME: type(p) for p in default_filters() if p.NAME in KERNEL_FILTERS}
    for plugin in engine.filters:
        if not getattr(plugin, "SHAPE_ONLY", False) and kernel.get(plugin.NAME) is not type(
                plugin):
            return (f"filter {plugin.NAME!r} ({type(plugin).__name__}) is neither SHAPE_ONLY "
                    "nor implemented by the batch kernel")
    names = [p.NAME for p in engine.filters]
    types = {type(p) for p in engine.filters}
    missing = [n for n in KERNEL_FILTERS if kernel[n] not in types]
    if missing:
        return f"the kernel applies filters the engine lacks: {', '.join(missing)}"
    if names[-1] != "burst":
        return "the burst gate must run last"
    if [type(p) for p in engine.scores] != [type(p) for p in default_scores()]:
        return ("the kernel scores exactly the default criteria "
                f"({', '.join(KERNEL_SCORES)}); this engine has "
                f"{', '.join(p.CRITERION for p in engine.scores)}")
    return None


def supports(engine: Engine) -> bool:
    """True when the batch path decides exactly as `engine.decide` (see `unsupported`)."""
    return unsupported(engine) is None


class BatchUnsupportedError(ValueError):
    """An engine the batch path cannot mirror; the message names the plugin or setting."""


class BatchEngine:
    """Decides workloads against any capacity view of one engine (same inventory and policy)."""

    def __init__(self, engine: Engine) -> None:
        why = unsupported(engine)
        if why is not None:
            raise BatchUnsupportedError(
                f"the batch path needs the default plugins (or SHAPE_ONLY filters) and no live "
                f"signals: {why}; use Engine.decide, or give the plugin a kernel form")
        self.engine = engine
        self._tables: dict[tuple[Any, ...], ShapeTable] = {}
        self._shape_filters = [p for p in engine.filters if getattr(p, "SHAPE_ONLY", False)]
        self._values: dict[tuple[str, ...], float] = {}

    def table(self, wl: Workload) -> ShapeTable:
        """The workload's shape table (built on first use; unknown references raise as in
        Engine.decide)."""
        key = shape_key(wl, self.engine.reads)
        got = self._tables.get(key)
        if got is None:
            got = self._build(wl)
            self._tables[key] = got
        return got

    def _build(self, wl: Workload) -> ShapeTable:
        engine = self.engine
        ctx = engine.context(wl)
        ci, rule, spec = engine.ci, ctx.rule, wl.spec
        if rule.fleet is not None:
            raise BatchUnsupportedError(
                f"{wl.name}: the batch path places on one site; rule {rule.fleet_rule!r} "
                "serves this service as a fleet (placement.engine.fleet): use Engine.decide")
        burst = rule.burst
        need = ctx.gpus_needed
        cloud, spot = ctx.is_cloud, ctx.kind == SPOT
        keep = ci.group_capacity[ctx.group] >= need
        for plugin in self._shape_filters:  # the plugins' own code, once per shape
            keep &= plugin.filter(ctx).passed
        if not burst.allowed:
            keep &= ~cloud
        if burst.max_usd_per_hour is not None:
            keep &= ~(cloud & (ctx.usd_per_hour > burst.max_usd_per_hour))
        if burst.spot == "never" or spec.interruptions >= burst.max_spot_interruptions:
            keep &= ~spot
        pos = np.flatnonzero(keep)
        site = ctx.site[pos]
        d = ctx.data
        floats = np.column_stack([
            ctx.usd_per_hour[pos], (1.0 + ctx.spot_overhead)[pos], d.egress_usd[site],
            d.lookup_egress_usd_per_hour[site], ctx.transfer_hours[pos], ctx.p99_ms[pos],
            ci.provision_h[site], d.egress_gb[site], d.lookup_egress_gb_per_hour[site],
            ctx.spot_rate[pos],
        ]).astype(np.float64) if len(pos) else np.zeros((0, 10))
        rows = ctx.rows[pos]
        ints = np.column_stack([
            ctx.group[pos], ctx.kind[pos], engine._site_rank[site],
            ci.group_capacity[ctx.group[pos]], rows, pos, site, ctx.billing.billed_gpus[rows],
        ]).astype(np.int64) if len(pos) else np.zeros((0, 8), dtype=np.int64)
        floats, ints = np.ascontiguousarray(floats), np.ascontiguousarray(ints)
        onprem = np.flatnonzero(ints[:, I_KIND] == ONPREM)
        w = rule.weights
        lat_w = float(w.latency) if spec.latency is not None else 0.0
        dg_w = float(w.data_gravity) if any(r.access == "bulk" for r in spec.datasets) else 0.0
        weights = {"latency": lat_w, "data_gravity": dg_w, "cost": float(w.cost),
                   "wait": float(w.wait)}
        sc = engine.policy.spec.scales
        allowed = engine.policy.spec.team_budgets.get(spec.team)
        params = np.zeros(19)
        params[P_MAX_WAIT] = rule.max_wait_hours
        params[P_ALLOWED] = math.nan if allowed is None else allowed
        params[[P_W_LAT, P_W_DG, P_W_COST, P_W_WAIT]] = list(weights.values())
        params[P_WSUM] = sum(weights.values())
        params[[P_S_LAT, P_S_DG, P_S_COST, P_S_WAIT]] = [
            sc.latency_ms, sc.data_gravity_hours, sc.cost_usd, sc.wait_hours]
        params[P_WHEN] = WHEN[burst.when]
        params[P_SLACK] = burst.spot_slack_factor
        spot_room = burst.spot == "when_deadline_allows" and not (
            spec.interruptions >= burst.max_spot_interruptions)
        return ShapeTable(floats, ints, onprem, ints[onprem, I_GROUP].copy(),
                          ints[onprem, I_CAPACITY].copy(), params, need,
                          rule.service_horizon_hours, burst.restart_overhead_minutes / 60,
                          not spec.is_service, spot_room,
                          tuple(floats[:, k].tolist() for k in range(floats.shape[1])),
                          tuple(ints[:, k].tolist() for k in range(ints.shape[1])),
                          np.zeros(len(ints)))

    def demand(self, wl: Workload, at_h: float) -> Demand | None:
        """`wl`'s demand for on-prem GPUs (placement.engine.shadow), from its candidates that
        pass the capacity-blind rules."""
        t = self.table(wl)
        if not len(t.ints):
            return None
        spec = wl.spec
        hours = spec.duration_hours if spec.duration_hours else t.horizon_hours
        f = t.floats
        totals = f[:, F_USD_H] * (hours * f[:, F_FACTOR]) + f[:, F_EGRESS_USD] + \
            f[:, F_LOOKUP_USD_H] * hours
        types = tuple(spec.gpu.types)
        value = self._values.get(types)
        if value is None:
            value = self._values[types] = work_value_usd_per_gpu_hour(self.engine.ci, types)
        return demand_of(at_h, t.ints[:, I_KIND], t.ints[:, I_GROUP], totals, t.need, hours,
                         value)

    def decide(self, view: Engine, wl: Workload) -> Pick | None:
        """Engine.decide's choice for `wl` against `view` (this engine's inventory and policy
        under any capacity and team spend); None when it rejects."""
        t = self.table(wl)
        if not len(t.ints):
            return None
        spec = wl.spec
        hours = spec.duration_hours if spec.duration_hours else t.horizon_hours
        p = t.params.copy()
        p[P_HOURS] = hours
        p[P_DEADLINE] = math.nan if spec.deadline_hours is None else spec.deadline_hours
        p[P_BUDGET] = math.nan if spec.budget_usd is None else spec.budget_usd
        p[P_SPENT] = view.team_spend.get(spec.team, 0.0)
        p[P_DEADLINE_FILTER] = t.deadline_filter and spec.deadline_hours is not None
        p[P_SPOT_ROOM] = t.spot_room and bool(spec.deadline_hours)
        cap = view.cap
        waits = np.zeros(len(t.ints))
        deficit = t.need - (t.onprem_capacity - cap.reserved[t.onprem_group])
        short = deficit > 0
        if short.any():
            waits[t.onprem[short]] = cap.schedule.wait(t.onprem_group[short], deficit[short])
        bid = t.no_bid if cap.bid_price is None else np.where(
            t.ints[:, I_KIND] == ONPREM, cap.bid_price[t.ints[:, I_GROUP]], 0.0)
        i, action, wait = _kernel(t.floats, t.ints, cap.reserved, waits, p, t.need, bid)
        if action == 0:
            return None
        f, n = t.lists, t.int_lists
        run_h = hours * f[F_FACTOR][i]
        return Pick(n[I_POS][i], n[I_ROW][i], ACTIONS[action], n[I_SITE][i], n[I_GROUP][i],
                    n[I_KIND][i], t.need, n[I_BILLED][i], hours, run_h, wait,
                    f[F_TRANSFER_H][i], f[F_USD_H][i],
                    f[F_EGRESS_USD][i] + f[F_LOOKUP_USD_H][i] * hours,
                    f[F_EGRESS_GB][i] + f[F_LOOKUP_GB_H][i] * hours, f[F_P99][i],
                    t.restart_hours, f[F_SPOT_RATE][i])


def _score_py(v: float, best: float, scale: float) -> float:
    """normalize() for one considered value."""
    if not math.isfinite(v):
        return 0.0
    if scale > 0:
        return 100.0 * (best + scale) / (v + scale)
    if best > 0:
        return 100.0 * best / v
    return 100.0 if v <= 0 else 0.0


def _before_py(a0: float, a1: float, a2: float, a3: float, a4: float,
               b: tuple[float, float, float, float, float]) -> bool:
    """Lexicographic (a0..a4) < b: np.lexsort's order, the first key deciding first."""
    for x, y in ((a0, b[0]), (a1, b[1]), (a2, b[2]), (a3, b[3]), (a4, b[4])):
        if x < y:
            return True
        if y < x:
            return False
    return False


def _kernel_py(fl: Floats, it: Ints, reserved: Ints, onprem_wait: Floats, p: Floats,
               need: int, bid: Floats) -> tuple[int, int, float]:
    """(table position, action code, wait) of Engine.decide's choice; see the module doc.

    Mirrors, in order: Capacity, Wait, Deadline, Budget and BurstGate's filters (the others
    are in the table already), Engine.decide's queue-only fallback, normalize() and
    Engine._score's weighted total and lexsort keys. `bid` is each row's bid price per
    GPU-hour (0 in the cloud): the cost criterion and the gate's on-prem side add it x
    GPU-hours, as DecisionContext.cost_usd and when_gated do.
    """
    m = fl.shape[0]
    hours, max_wait, deadline = p[P_HOURS], p[P_MAX_WAIT], p[P_DEADLINE]
    budget, spent, allowed = p[P_BUDGET], p[P_SPENT], p[P_ALLOWED]
    dl_filter = p[P_DEADLINE_FILTER] > 0
    wait = np.empty(m)
    total = np.empty(m)
    cost = np.empty(m)
    start = np.empty(m)
    run_h = np.empty(m)
    egress = np.empty(m)
    ok7 = np.zeros(m, dtype=np.bool_)
    wait_ok = np.zeros(m, dtype=np.bool_)
    other_ok = np.zeros(m, dtype=np.bool_)  # every filter but wait (and, here, the gate)
    any_onprem = False
    cheapest_onprem = np.inf
    for i in range(m):
        cloud = it[i, I_KIND] != ONPREM
        short = need > it[i, I_CAPACITY] - reserved[it[i, I_GROUP]]
        if cloud:
            wait[i] = np.inf if short else fl[i, F_PROVISION_H]
        else:
            wait[i] = onprem_wait[i] if short else 0.0
        run_h[i] = hours * fl[i, F_FACTOR]
        egress[i] = fl[i, F_EGRESS_USD] + fl[i, F_LOOKUP_USD_H] * hours
        total[i] = fl[i, F_USD_H] * run_h[i] + egress[i]
        opp = bid[i] * (float(it[i, I_BILLED]) * run_h[i])
        cost[i] = total[i] + opp
        start[i] = max(wait[i], fl[i, F_TRANSFER_H])
        ok = not (cloud and short)
        if dl_filter and not start[i] + run_h[i] <= deadline:
            ok = False
        if not math.isnan(budget) and total[i] > budget:
            ok = False
        if cloud and not math.isnan(allowed) and spent + total[i] > allowed:
            ok = False
        other_ok[i] = ok
        wait_ok[i] = wait[i] <= max_wait
        ok7[i] = ok and wait_ok[i]
        if ok7[i] and not cloud:
            if not any_onprem or egress[i] + opp < cheapest_onprem:
                cheapest_onprem = egress[i] + opp
            any_onprem = True
    when = p[P_WHEN]
    considered = np.zeros(m, dtype=np.bool_)
    n_pass = 0
    for i in range(m):
        gate_ok = True
        if it[i, I_KIND] != ONPREM and when != 0 and any_onprem:
            gate_ok = when == 2 and total[i] < cheapest_onprem
        if it[i, I_KIND] == SPOT and p[P_SPOT_ROOM] > 0:
            slack_need = p[P_SLACK] * (run_h[i] - hours)
            if start[i] + hours + slack_need > deadline:
                gate_ok = False
        other_ok[i] = other_ok[i] and gate_ok
        considered[i] = ok7[i] and gate_ok
        if considered[i]:
            n_pass += 1
    queue_only = n_pass == 0
    if queue_only:
        for i in range(m):
            considered[i] = not wait_ok[i] and other_ok[i] and math.isfinite(wait[i])
    best_lat = best_dg = best_cost = best_wait = np.inf
    found = False
    for i in range(m):
        if considered[i]:
            found = True
            best_lat = min(best_lat, fl[i, F_P99])
            best_dg = min(best_dg, fl[i, F_TRANSFER_H])
            best_cost = min(best_cost, cost[i])
            best_wait = min(best_wait, wait[i])
    if not found:
        return -1, 0, 0.0
    w_lat, w_dg, w_cost, w_wait, wsum = (p[P_W_LAT], p[P_W_DG], p[P_W_COST], p[P_W_WAIT],
                                          p[P_WSUM])
    chosen = -1
    key = (0.0, 0.0, 0.0, 0.0, 0.0)
    for i in range(m):
        if not considered[i]:
            continue
        rank, kind = float(it[i, I_RANK]), float(it[i, I_KIND])
        if queue_only:
            k = (wait[i], total[i], rank, 0.0, 0.0)
        else:
            s = 0.0
            if w_lat > 0:
                s = s + w_lat * _score(fl[i, F_P99], best_lat, p[P_S_LAT])
            if w_dg > 0:
                s = s + w_dg * _score(fl[i, F_TRANSFER_H], best_dg, p[P_S_DG])
            if w_cost > 0:
                s = s + w_cost * _score(cost[i], best_cost, p[P_S_COST])
            if w_wait > 0:
                s = s + w_wait * _score(wait[i], best_wait, p[P_S_WAIT])
            if wsum > 0:
                s = s / wsum
            k = (-(np.rint(s * 1e9) / 1e9), total[i], wait[i], rank, kind)
        if chosen < 0 or _before(k[0], k[1], k[2], k[3], k[4], key):
            chosen, key = i, k
    cloud = it[chosen, I_KIND] != ONPREM
    action = 3 if cloud else (2 if queue_only or wait[chosen] > 0 else 1)
    return chosen, action, wait[chosen]


_score = numba.njit(cache=True)(_score_py)
_before = numba.njit(cache=True)(_before_py)
_kernel = cast(Callable[[Floats, Ints, Ints, Floats, Floats, int, Floats],
                        tuple[int, int, float]],
               numba.njit(cache=True)(_kernel_py))
