"""The engine's batch path: Engine.decide's choice for long streams of workloads, without its
per-decision overhead (the simulator replays a million of them).

A decision has two parts:
- What follows from the workload's shape: every field the engine reads except duration,
  deadline and budget (see `shape_key`). It fixes the candidates, prices, the data move and
  latency, the filters and criteria that read nothing else (plugins with SHAPE_ONLY), and the
  rule's settings. A `ShapeTable` holds the candidates that pass those filters, with their
  numbers and those criteria's raw values: the plugins' own code computes them (one
  DecisionContext), once per shape.
- What follows from the moment and the workload's own duration, deadline and budget: GPUs
  reserved, release times, bid prices and the team's burst spend. The other filters and
  criteria run inside one compiled kernel (numba), which is generated from the engine's
  plugins: each such filter supplies its `rule` and each criterion its `value`, elementwise
  functions of named quantities (placement.engine.elementwise) that Engine.decide runs over
  arrays and the kernel for one candidate at a time. The kernel derives the quantities by the
  same formulas (QUANTITIES), applies the filters in the engine's order, falls back to queueing
  as Engine.decide does, normalizes and weighs the criteria and ranks by the same keys, so the
  choice is the same, bit for bit (tests/test_batch.py compares the two on randomized states).

The batch path runs any engine without live signals whose filters and criteria are SHAPE_ONLY
or have an elementwise form over the quantities below; `unsupported` says why one does not
qualify, and `BatchEngine` refuses it with that reason (callers then use Engine.decide). It
gives the choice, not its explanation: the explanation of any decision comes from
Engine.decide.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numba
import numpy as np
from numpy.typing import NDArray

from placement.engine import elementwise as ew
from placement.engine.compiled import ONPREM, SPOT
from placement.engine.context import (
    DecisionContext,
    deadline_applies,
    spot_room_applies,
    work_hours,
)
from placement.engine.engine import WAIT_FILTER, Engine, scale_of, shape_key, weight_of
from placement.engine.framework import FilterPlugin, ScorePlugin
from placement.engine.rules import EffectiveRule
from placement.engine.shadow import Demand, demand_of, work_value_usd_per_gpu_hour
from placement.model.workload import Workload

ew.use_numba()

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]

# Columns of ShapeTable.floats: per candidate, what the shape fixes (DecisionContext's
# attributes of these names), then the raw values of the SHAPE_ONLY criteria.
FLOAT_COLUMNS = ("usd_per_hour", "spot_overhead", "bulk_egress_usd", "lookup_usd_per_hour",
                 "transfer_hours", "provision_hours", "p99_ms", "spot_rate")
F_USD_H, F_OVERHEAD, F_BULK_USD, F_LOOKUP_USD_H, F_TRANSFER_H, F_PROVISION_H, F_P99, \
    F_SPOT_RATE = range(len(FLOAT_COLUMNS))
F_BULK_GB, F_LOOKUP_GB_H = len(FLOAT_COLUMNS), len(FLOAT_COLUMNS) + 1  # for the Pick's GB
F_CRITERIA = len(FLOAT_COLUMNS) + 2
I_GROUP, I_KIND, I_RANK, I_INSTALLED, I_ROW, I_POS, I_SITE, I_BILLED = range(8)

# The quantities a plugin's `rule` or `value` may read, as the kernel provides them. Per
# candidate (DecisionContext's attributes of these names; the kernel derives them in this
# order by the same formulas):
PER_CANDIDATE = ("is_cloud", "is_spot", "installed_gpus", "free_gpus", "short",
                 "queue_wait_hours", "wait_hours", "usd_per_hour", "spot_overhead", "run_hours",
                 "bulk_egress_usd", "lookup_usd_per_hour", "egress_usd", "total_usd",
                 "billed_gpus", "bid_usd_per_gpu_hour", "opportunity_usd", "cost_usd",
                 "transfer_hours", "provision_hours", "start_hours", "finish_hours", "p99_ms",
                 "spot_rate")
# Per workload: of its shape (read from the shape's DecisionContext once) ...
PER_SHAPE = ("gpus_needed", "max_wait_hours", "burst_cap_usd_per_hour", "bursting_allowed",
             "burst_when", "spot_never", "spot_slack_factor", "team_budget_usd")
# ... and its own (`_workload_values`):
PER_WORKLOAD = ("hours", "deadline_hours", "deadline_applies", "budget_usd",
                "spot_room_applies", "team_spent_usd")
# Over the candidates that pass every earlier filter (the burst gate reads them):
REDUCED = ("onprem_ok_any", "onprem_ok_min_usd")
QUANTITIES = PER_CANDIDATE + PER_SHAPE + PER_WORKLOAD + REDUCED


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
    """One workload shape's candidates that pass the SHAPE_ONLY filters, in row order."""

    floats: Floats  # m x (FLOAT_COLUMNS, bulk GB, lookup GB/h, SHAPE_ONLY criteria's raw)
    ints: Ints  # m x 8 (I_* columns)
    onprem: Ints  # positions in this table of the on-prem candidates
    onprem_group: Ints
    onprem_capacity: Ints
    params: Floats  # the kernel's parameters; the workload's own are set per decision
    need: int
    rule: EffectiveRule
    restart_hours: float
    lists: tuple[list[float], ...]  # floats' columns as lists (scalar reads are cheaper)
    int_lists: tuple[list[int], ...]
    no_bid: Floats  # zeros: the kernel's bid prices when none are set


def _params_of(formula: Callable[..., Any]) -> tuple[str, ...]:
    return tuple(inspect.signature(formula).parameters)


def _unknown(formula: Callable[..., Any]) -> list[str]:
    return [n for n in _params_of(formula) if n not in QUANTITIES]


def unsupported(engine: Engine) -> str | None:
    """Why the batch path cannot decide exactly as `engine.decide`, or None when it can: live
    signals, or a filter (criterion) that is not SHAPE_ONLY and has no `rule` (`value`) over
    the kernel's QUANTITIES."""
    if engine.observed is not None:
        return "live signals are in use"
    plugins: list[tuple[str, Any, str]] = [(f"filter {p.NAME!r}", p, "rule")
                                           for p in engine.filters]
    plugins += [(f"criterion {p.CRITERION!r}", p, "value") for p in engine.scores]
    for what, plugin, form in plugins:
        if getattr(plugin, "SHAPE_ONLY", False):
            continue
        formula = getattr(type(plugin), form, None)
        if formula is None:
            return (f"{what} ({type(plugin).__name__}) is not SHAPE_ONLY and has no "
                    f"elementwise `{form}` for the batch kernel")
        unknown = _unknown(formula)
        if unknown:
            return (f"{what} ({type(plugin).__name__}): its `{form}` reads "
                    f"{', '.join(unknown)}, which the batch kernel does not provide (it "
                    f"provides {', '.join(QUANTITIES)})")
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
                f"the batch path runs SHAPE_ONLY plugins and plugins with an elementwise form, "
                f"without live signals: {why}; use Engine.decide, or give the plugin its form")
        self.engine = engine
        self.kernel = kernel_for(engine.filters, engine.scores)
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
        rule = ctx.rule
        if rule.fleet is not None:
            raise BatchUnsupportedError(
                f"{wl.name}: the batch path places on one site; rule {rule.fleet_rule!r} "
                "serves this service as a fleet (placement.engine.fleet): use Engine.decide")
        keep = np.ones(ctx.n, dtype=bool)
        for plugin in self._shape_filters:  # the plugins' own code, once per shape
            keep &= plugin.filter(ctx).passed
        pos = np.flatnonzero(keep)
        d = self.kernel
        criteria = [np.asarray(p.score(ctx).raw, dtype=np.float64)
                    for p in engine.scores if getattr(p, "SHAPE_ONLY", False)]
        site = ctx.site[pos]
        floats = np.column_stack(
            [getattr(ctx, name)[pos] for name in FLOAT_COLUMNS]
            + [ctx.data.egress_gb[site], ctx.data.lookup_egress_gb_per_hour[site]]
            + [raw[pos] for raw in criteria]).astype(np.float64) if len(pos) else np.zeros(
                (0, F_CRITERIA + len(criteria)))
        rows = ctx.rows[pos]
        ints = np.column_stack([
            ctx.group[pos], ctx.kind[pos], engine._site_rank[site], ctx.installed_gpus[pos],
            rows, pos, site, ctx.billed_gpus[pos],
        ]).astype(np.int64) if len(pos) else np.zeros((0, 8), dtype=np.int64)
        floats, ints = np.ascontiguousarray(floats), np.ascontiguousarray(ints)
        onprem = np.flatnonzero(ints[:, I_KIND] == ONPREM)
        params = np.zeros(len(d.params))
        for name in PER_SHAPE[1:]:  # gpus_needed is the kernel's `need`
            params[d.params.index(name)] = _number(getattr(ctx, name))
        weights = []
        for scorer in engine.scores:
            crit = scorer.CRITERION
            w = weight_of(rule, crit, scorer.score(ctx).applicable)
            weights.append(w)
            params[d.params.index(f"w_{crit}")] = w
            params[d.params.index(f"s_{crit}")] = scale_of(scorer, ctx.scales)
        params[d.params.index("wsum")] = sum(weights)
        return ShapeTable(floats, ints, onprem, ints[onprem, I_GROUP].copy(),
                          ints[onprem, I_INSTALLED].copy(), params, ctx.gpus_needed, rule,
                          rule.burst.restart_overhead_minutes / 60,
                          tuple(floats[:, k].tolist() for k in range(floats.shape[1])),
                          tuple(ints[:, k].tolist() for k in range(ints.shape[1])),
                          np.zeros(len(ints)))

    def demand(self, wl: Workload, at_h: float) -> Demand | None:
        """`wl`'s demand for on-prem GPUs (placement.engine.shadow), from its candidates that
        pass the SHAPE_ONLY rules."""
        t = self.table(wl)
        if not len(t.ints):
            return None
        spec = wl.spec
        hours = work_hours(spec, t.rule)
        f = t.floats
        totals = ew.total_usd(f[:, F_USD_H], ew.run_hours(hours, f[:, F_OVERHEAD]),
                              ew.moved(f[:, F_BULK_USD], f[:, F_LOOKUP_USD_H], hours))
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
        rule = t.rule
        p = t.params.copy()
        at = self.kernel.workload_at
        hours = work_hours(spec, rule)
        p[at[0]] = hours
        p[at[1]] = math.nan if spec.deadline_hours is None else spec.deadline_hours
        p[at[2]] = deadline_applies(spec)
        p[at[3]] = math.nan if spec.budget_usd is None else spec.budget_usd
        p[at[4]] = spot_room_applies(spec, rule)
        p[at[5]] = view.team_spend.get(spec.team, 0.0)
        cap = view.cap
        waits = np.zeros(len(t.ints))
        deficit = t.need - (t.onprem_capacity - cap.reserved[t.onprem_group])
        short = deficit > 0
        if short.any():
            waits[t.onprem[short]] = cap.schedule.wait(t.onprem_group[short], deficit[short])
        bid = t.no_bid if cap.bid_price is None else np.where(
            t.ints[:, I_KIND] == ONPREM, cap.bid_price[t.ints[:, I_GROUP]], 0.0)
        i, action, wait = self.kernel.run(t.floats, t.ints, cap.reserved, waits, bid, p,
                                          t.need)
        if action == 0:
            return None
        f, n = t.lists, t.int_lists
        run_h = float(ew.run_hours(hours, f[F_OVERHEAD][i]))
        return Pick(n[I_POS][i], n[I_ROW][i], ew.ACTIONS[action], n[I_SITE][i], n[I_GROUP][i],
                    n[I_KIND][i], t.need, n[I_BILLED][i], hours, run_h, wait,
                    f[F_TRANSFER_H][i], f[F_USD_H][i],
                    float(ew.moved(f[F_BULK_USD][i], f[F_LOOKUP_USD_H][i], hours)),
                    float(ew.moved(f[F_BULK_GB][i], f[F_LOOKUP_GB_H][i], hours)), f[F_P99][i],
                    t.restart_hours, f[F_SPOT_RATE][i])


def _number(value: Any) -> float:
    """A setting as the kernel's parameter: None is NaN (no limit), a bool 0 or 1."""
    return math.nan if value is None else float(value)


KernelFn = Callable[[Floats, Ints, Ints, Floats, Floats, Floats, int], tuple[int, int, float]]


@dataclass(frozen=True)
class Kernel:
    """A compiled kernel for one list of plugins: `run(floats, ints, reserved, queue waits,
    bids, params, need)` gives (table position, ACTIONS code, wait) of Engine.decide's choice;
    `params` names the parameter vector's slots, `workload_at` PER_WORKLOAD's."""

    run: KernelFn
    params: tuple[str, ...]
    workload_at: tuple[int, ...]
    source: str


_KERNELS: dict[str, Kernel] = {}


def kernel_cache() -> Path:
    """Where generated kernels and numba's cache of them live: placement/kernels under
    $XDG_CACHE_HOME (default ~/.cache)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "placement" / \
        "kernels"


def kernel_for(filters: Sequence[FilterPlugin], scores: Sequence[ScorePlugin]) -> Kernel:
    """The kernel of these plugins, generated and compiled on first use (one per plugin list
    and their forms' source, shared by every engine that has them). Where every form can be
    imported by name, the kernel is written to kernel_cache() as a module and numba caches its
    machine code there, so a later process loads it instead of compiling (about 3 s)."""
    source, params, funcs = _generate(filters, scores)
    modules = {inspect.getmodule(f) for f in funcs.values()} | {ew}  # the forms and helpers
    key = hashlib.sha256("\n".join(
        [source, numba.__version__] + sorted(_source_of(m) for m in modules)
        + [f"{k}={f.__module__}.{f.__qualname__}" for k, f in sorted(funcs.items())]
    ).encode()).hexdigest()
    got = _KERNELS.get(key)
    if got is not None:
        return got
    run = _cached(key, source, funcs) or _compiled(key, source, funcs)
    empty = np.zeros((0, F_CRITERIA + sum(
        1 for p in scores if getattr(p, "SHAPE_ONLY", False))))
    try:  # compile now: a form numba cannot compile fails here, with the plugin's name
        run(empty, np.zeros((0, 8), dtype=np.int64), np.zeros(1, dtype=np.int64), np.zeros(0),
            np.zeros(0), np.zeros(len(params)), 1)
    except numba.core.errors.NumbaError as e:
        names = ", ".join(sorted(funcs))
        raise BatchUnsupportedError(
            f"the batch kernel could not compile the plugins' elementwise forms ({names}): "
            f"{str(e).splitlines()[0]}") from e
    got = _KERNELS[key] = Kernel(run, params, tuple(params.index(n) for n in PER_WORKLOAD),
                                 source)
    return got


def _source_of(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return repr(obj)


_PRELUDE = """import math

import numba
import numpy as np

from placement.engine import elementwise as ew
from placement.engine.compiled import ONPREM, SPOT
"""


def _compiled(key: str, source: str, funcs: dict[str, Callable[..., Any]]) -> KernelFn:
    """The kernel compiled in this process only."""
    space: dict[str, Any] = {"np": np, "math": math, "ew": ew, "ONPREM": ONPREM, "SPOT": SPOT}
    space.update({k: numba.njit(error_model="numpy")(f) for k, f in funcs.items()})
    exec(compile(source, f"<batch kernel {key[:12]}>", "exec"), space)
    return cast(KernelFn, numba.njit(error_model="numpy")(space["kernel"]))


def _cached(key: str, source: str, funcs: dict[str, Callable[..., Any]]) -> KernelFn | None:
    """The kernel as a module in kernel_cache(), its machine code cached by numba; None when a
    form is not importable by name (defined in a function) or the cache cannot be written."""
    imports = []
    for tag, fn in sorted(funcs.items()):
        owner, _, attr = fn.__qualname__.rpartition(".")
        if "<" in fn.__qualname__ or fn.__module__ in ("__main__", None):
            return None
        name = owner or attr
        imports.append(f"from {fn.__module__} import {name} as _{tag}")
        imports.append(f"{tag} = numba.njit(error_model='numpy')(_{tag}"
                       + (f".{attr})" if owner else ")"))
    text = (f"# The batch kernel of one plugin list, generated by {__name__}.\n" + _PRELUDE
            + "\n".join(imports) + "\n\n\n" + source
            + "\n\nkernel = numba.njit(error_model='numpy', cache=True)(kernel)\n")
    try:
        root = kernel_cache()
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"kernel_{key[:24]}.py"
        if not path.exists():
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
        spec = importlib.util.spec_from_file_location(f"placement_kernel_{key[:24]}", path)
        if spec is None or spec.loader is None:
            return None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    except (OSError, ImportError):
        return None
    return cast(KernelFn, module.kernel)


def _generate(filters: Sequence[FilterPlugin], scores: Sequence[ScorePlugin]
              ) -> tuple[str, tuple[str, ...], dict[str, Callable[..., Any]]]:
    """The kernel's source for these plugins, its parameters' names and the forms it calls."""
    params = list(PER_SHAPE[1:] + PER_WORKLOAD)  # gpus_needed is the `need` argument
    for plugin in scores:
        params += [f"w_{plugin.CRITERION}", f"s_{plugin.CRITERION}"]
    params.append("wsum")
    funcs: dict[str, Callable[..., Any]] = {}

    def arg(name: str) -> str:
        if name in PER_CANDIDATE:
            return f"q_{name}[i]"
        if name == "gpus_needed":
            return "need"
        return name  # a parameter or a reduced quantity: a local

    def call(tag: str, formula: Callable[..., Any]) -> str:
        funcs[tag] = formula
        return f"{tag}({', '.join(arg(n) for n in _params_of(formula))})"

    bools = {"deadline_applies", "bursting_allowed", "spot_never", "spot_room_applies"}
    out = ["def kernel(fl, it, reserved, qwait, bid, p, need):",
           "    m = fl.shape[0]"]
    out += [f"    {n} = p[{k}] > 0" if n in bools else f"    {n} = p[{k}]"
            for k, n in enumerate(params)]
    out += [f"    q_{n} = np.empty(m, dtype=np.bool_)" if n in ("is_cloud", "is_spot", "short")
            else f"    q_{n} = np.empty(m)" for n in PER_CANDIDATE]
    out += ["    for i in range(m):",
            *(f"        q_{n}[i] = fl[i, {k}]" for k, n in enumerate(FLOAT_COLUMNS)),
            "        kind = it[i, 1]",
            "        q_is_cloud[i] = kind != ONPREM",
            "        q_is_spot[i] = kind == SPOT",
            "        q_installed_gpus[i] = it[i, 3]",
            "        q_billed_gpus[i] = it[i, 7]",
            "        q_free_gpus[i] = it[i, 3] - reserved[it[i, 0]]",
            "        q_short[i] = need > q_free_gpus[i]",
            "        q_queue_wait_hours[i] = qwait[i]",
            "        q_bid_usd_per_gpu_hour[i] = bid[i]",
            "        q_wait_hours[i] = ew.wait_hours(q_is_cloud[i], q_short[i], "
            "q_provision_hours[i], q_queue_wait_hours[i])",
            "        q_run_hours[i] = ew.run_hours(hours, q_spot_overhead[i])",
            "        q_egress_usd[i] = ew.moved(q_bulk_egress_usd[i], q_lookup_usd_per_hour[i], "
            "hours)",
            "        q_total_usd[i] = ew.total_usd(q_usd_per_hour[i], q_run_hours[i], "
            "q_egress_usd[i])",
            "        q_opportunity_usd[i] = ew.opportunity_usd(q_bid_usd_per_gpu_hour[i], "
            "q_billed_gpus[i], q_run_hours[i])",
            "        q_cost_usd[i] = ew.cost_usd(q_total_usd[i], q_opportunity_usd[i])",
            "        q_start_hours[i] = ew.start_hours(q_wait_hours[i], q_transfer_hours[i])",
            "        q_finish_hours[i] = ew.finish_hours(q_start_hours[i], q_run_hours[i])",
            "    ok = np.ones(m, dtype=np.bool_)  # every filter so far passes",
            "    other_ok = np.ones(m, dtype=np.bool_)  # every filter but wait passes",
            "    wait_fails = np.zeros(m, dtype=np.bool_)"]
    has_wait = False
    pending: list[str] = []

    def flush() -> None:
        if pending:
            out.append("    for i in range(m):")
            out.extend(pending)
            pending.clear()

    for k, flt in enumerate(filters):
        if getattr(flt, "SHAPE_ONLY", False):
            continue  # applied to the table
        formula = type(flt).rule  # type: ignore[attr-defined]
        names = _params_of(formula)
        if any(n in REDUCED for n in names):
            flush()
            out += ["    onprem_ok_any = False",
                    "    onprem_ok_min_usd = np.inf",
                    "    for i in range(m):",
                    "        if ok[i] and not q_is_cloud[i]:",
                    "            side = ew.onprem_side_usd(q_egress_usd[i], q_opportunity_usd[i])",
                    "            if side < onprem_ok_min_usd or not onprem_ok_any:",
                    "                onprem_ok_min_usd = side",
                    "            onprem_ok_any = True"]
        pending.append(f"        r = {call(f'filter_{k}', formula)}")
        pending.append("        ok[i] = ok[i] and r")
        if flt.NAME == WAIT_FILTER:
            has_wait = True
            pending.append("        wait_fails[i] = not r")
        else:
            pending.append("        other_ok[i] = other_ok[i] and r")
    flush()
    out += ["    considered = ok.copy()",
            "    queue_only = False"]
    if has_wait:
        out += ["    if not considered.any():",
                "        for i in range(m):",
                "            considered[i] = ew.waits_only(wait_fails[i], not other_ok[i], "
                "q_wait_hours[i])",
                "        queue_only = considered.any()"]
    out += ["    if not considered.any():",
            "        return -1, 0, 0.0"]
    column = F_CRITERIA
    crits: list[tuple[str, str]] = []
    for c, scorer in enumerate(scores):
        crit = scorer.CRITERION
        if getattr(scorer, "SHAPE_ONLY", False):
            raw = f"fl[i, {column}]"
            column += 1
        else:
            raw = call(f"value_{c}", type(scorer).value)  # type: ignore[attr-defined]
        out += [f"    raw_{c} = np.empty(m)",
                f"    best_{c} = np.inf",
                "    for i in range(m):",
                f"        raw_{c}[i] = {raw}",
                "        if considered[i]:  # np.min's: NaN if any is",
                f"            v = raw_{c}[i]",
                f"            if math.isnan(v) or math.isnan(best_{c}):",
                f"                best_{c} = np.nan",
                f"            elif v < best_{c}:",
                f"                best_{c} = v"]
        crits.append((crit, f"raw_{c}"))
    out += ["    chosen = -1",
            "    if queue_only:",
            "        qbest = (0.0, 0.0, 0.0)",
            "        for i in range(m):",
            "            if considered[i]:",
            "                k = ew.queue_key(q_total_usd[i], q_wait_hours[i], it[i, 2])",
            "                if chosen < 0 or k < qbest:",
            "                    chosen, qbest = i, k",
            "    else:",
            "        best = (0.0, 0.0, 0.0, 0.0, 0.0)",
            "        for i in range(m):",
            "            if not considered[i]:",
            "                continue",
            "            s = 0.0"]
    for c, (crit, raw) in enumerate(crits):
        out += [f"            if w_{crit} > 0:",
                f"                s = ew.add_weighted(s, w_{crit}, ew.normalized({raw}[i], "
                f"best_{c}, s_{crit}))"]
    out += ["            if wsum > 0:",
            "                s = s / wsum",
            "            k = ew.ranking_key(s, q_total_usd[i], q_wait_hours[i], it[i, 2], "
            "it[i, 1])",
            "            if chosen < 0 or k < best:",
            "                chosen, best = i, k",
            "    action = ew.action_code(q_is_cloud[chosen], queue_only, q_wait_hours[chosen])",
            "    return chosen, action, q_wait_hours[chosen]"]
    return "\n".join(out) + "\n", tuple(params), funcs
