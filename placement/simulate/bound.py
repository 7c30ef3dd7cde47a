"""An offline lower bound on what any compared policy pays: a MILP that knows every arrival.

What it bounds. Over all the workloads given (placed or not), the bound is at most the
`used_usd` (view "used") or `avoidable_usd` (view "avoidable") that `results.metrics` gives the
replay of any policy that chooses among `baselines.any_policy`'s candidates and whose replay
ends by `horizon_h` (run.py passes the largest horizon of the policies compared). The fleet
view's bound is the avoidable bound plus the fleet's fixed cost (run.py adds it).

Options per workload (a variable x per option; a job's options sum to 1):
- unmet: what the metrics charge for work not done, `results.unmet_usd`, in
  no capacity row. A workload with no candidate at all pays exactly this.
- a job on an on-prem candidate: one variable whose start s may be anywhere in [lo, hi]: from
  arrival + data move to `horizon_h` - run time, and for a job with a deadline to the latest
  start that meets it. Its cost does not depend on s (amortized $/GPU-hour x run hours, plus
  egress; GPU $ 0 in the avoidable view). A job that ends after its deadline pays its cost
  and the metrics' unmet charge, so a late option is dominated by the unmet one: on-prem
  options that cannot start in time and cloud options that end late are left out (a schedule
  that runs a job late is matched by one that leaves it unmet, at no more cost and with less
  capacity used, so the bound still holds for it). Without a deadline a job may wait as long
  as the horizon allows: waiting costs nothing in the metrics. One variable covers every start
  window up to the horizon's, rather than one per window: without deadlines the start matters
  only to capacity, the suffix rows below already hold the fluid schedule's condition, and a
  variable per window would multiply the model by the windows (and lose up to a window of
  each job to the least-overlap count).
- a job on a cloud candidate: it starts at arrival (the replay starts cloud work only at its
  decision, on arrival) and is billed as the replay bills it: the longer of provisioning and
  the data move, then the run, on spot with the replay's own seeded interruptions
  (`spot_hours`); its quota is held from arrival to its end.
- a service window: only on candidates whose p99 meets its SLO (a window outside its SLO pays
  its cost and the unmet charge, so the unmet option dominates it). The window is cut at the
  time windows' edges into segments; each segment is served on an on-prem candidate or left
  unmet (continuous shares that, with the cloud options, sum to 1 per segment): a window that
  queues on-prem serves, and pays for, only its late part, and the metrics charge the rest as
  unmet. A cloud window is billed at least its run hours and holds its quota from arrival.
  An on-prem segment pays the window's egress x its share of the window (a lower estimate: the
  replay charges the whole egress however late the window starts).

Capacity, per (site, GPU type) group: the GPU-hours counted in an interval [A, B] are at most
its GPUs (or quota) x (B - A), for each time window (width w; they tile [first arrival,
horizon]) and, on-prem, for each suffix [window start, horizon]. Why every real schedule
satisfies these rows: a job started at s runs [s, s + d], so it uses g x overlap(s) GPU-hours
of [A, B], overlap(s) = max(0, min(s + d, B) - max(s, A)) (the replay holds its GPUs at least
that long). The model knows only s in [lo, hi], so it counts g x min(overlap(lo), overlap(hi)).
That is the least overlap over the whole interval: min(s + d, B) - max(s, A) is concave in s
(a minimum of linear functions minus a maximum of linear functions), so its minimum over an
interval is at an end, and max(0, .) keeps it there. So the row counts no more than the real
schedule uses, and the real schedule fits. Work at known times is counted as it runs: a
cloud job from arrival to its billed end, a cloud window over its run hours, an on-prem
segment for its share served. The suffix rows are what make waiting possible but not
free: the work released after A must fit in [A, horizon] (the fluid schedule's condition), and
a job released before A still counts the part it cannot have run before A. They are chains of
running sums (L_v = L_{v+1} + what starts counting at v, L_v <= GPUs x (horizon - A_v)), so a
job touches only the suffixes its own run spans.

Rows that can never bind are dropped, with the job options they leave dominated (the cheapest
in each view stays): the optimum is unchanged.

Size: variables are about workloads x candidates, plus service segments and one per on-prem
group and window. The windows are widened (halved in number) until the model fits
`max_variables` and NONZEROS_PER_VARIABLE x that many nonzeros; if one window does not fit,
there is no MILP and the bound is the capacity-free one: each workload at its cheapest option,
capacity ignored, always valid and instant. `solve` also answers with it when HiGHS has no
bound in time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, linprog, milp
from scipy.sparse import coo_matrix, csr_matrix

from placement.engine import Engine
from placement.engine.compiled import SPOT
from placement.engine.context import DecisionContext
from placement.simulate.baselines import any_policy
from placement.simulate.replay import spot_hours
from placement.simulate.results import late, unmet_charges, within_slo
from placement.simulate.synth import SimWorkload

Floats = np.ndarray
Ints = np.ndarray

# Measured here (2 cores): Philly's first 40,000 jobs on policies/examples are 373,000
# variables before the slack rows go (171,000 after), built in 10 s and solved in 8-16 s per
# view with 0.6 GB. The cap keeps memory bounded on far larger traces.
MAX_VARIABLES = 1_000_000
NONZEROS_PER_VARIABLE = 16  # the nonzeros' budget: this x max_variables
MAX_WINDOWS = 128  # the finest tiling tried (halved until the model fits)
VIEWS = ("used", "avoidable")
NO_WORKLOADS = "no workloads"
NO_CANDIDATE = "no workload has a candidate: each is unmet"


@dataclass(frozen=True)
class Bound:
    """The lower bound and how it was reached."""

    usd: float | None  # None only when there is no workload (then 0.0 all the same)
    status: str  # "optimal", "time limit: dual bound, gap 3.1%", "...: capacity-free bound"
    gap: float | None  # (plan - bound) / plan with HiGHS's best plan; None without a plan
    workloads: int
    variables: int
    seconds: float  # wall time of the solve (the build's is Model.seconds)


@dataclass(frozen=True)
class Model:
    """The MILP, priced both ways (built once, solved per view)."""

    onprem_usd: Floats  # per variable: on-prem GPU $ (counted in the "used" view only)
    other_usd: Floats  # per variable: cloud GPU $, egress and the unmet charge
    integrality: Ints
    lower: Floats
    upper: Floats
    constraints: LinearConstraint | None  # None: no MILP (see note), the capacity-free bound
    fixed_usd: float  # workloads with no candidate: their unmet charge, in both views
    free_usd: dict[str, float]  # the capacity-free bound per view (fixed_usd included)
    workloads: int
    windows: int
    window_h: float
    note: str  # why there is no MILP, or ""
    seconds: float  # wall time of the build

    @property
    def variables(self) -> int:
        return len(self.other_usd)


def _billed_hours(ctx: DecisionContext, idx: Ints, sw: SimWorkload, seed: int) -> Floats:
    """Hours the replay bills a job on each cloud candidate `idx`: from its request, the
    longer of provisioning and the data move, then the run, on spot with the replay's own
    interruptions (the same seeded draws)."""
    hours = np.full(len(idx), float(ctx.hours))
    site = ctx.site[idx]
    restart_h = ctx.rule.burst.restart_overhead_minutes / 60
    for j in np.flatnonzero(ctx.kind[idx] == SPOT):
        hours[j] = spot_hours(float(ctx.hours), float(ctx.spot_rate[idx[j]]), sw,
                              restart_h, seed)[0]
    billed: Floats = np.maximum(ctx.transfer_hours[idx], ctx.ci.provision_h[site]) + hours
    return billed


class _Table:
    """Columns gathered per workload (arrays or scalars), concatenated once."""

    def __init__(self, *names: str) -> None:
        self.parts: dict[str, list[Floats]] = {k: [] for k in names}

    def add(self, **cols: Floats | float) -> None:
        n = max((len(v) for v in cols.values() if isinstance(v, np.ndarray)), default=1)
        for k, v in cols.items():
            self.parts[k].append(np.broadcast_to(np.asarray(v, float), (n,)))

    def __getitem__(self, key: str) -> Floats:
        parts = self.parts[key]
        return np.concatenate(parts) if parts else np.zeros(0)

    def ints(self, key: str) -> Ints:
        return self[key].astype(np.int64)


@dataclass
class _Options:
    """Every workload's options, from its decision context (the engine holds no GPUs)."""

    job_unmet: list[float] = field(default_factory=list)  # per job
    job_onprem: _Table = field(default_factory=lambda: _Table(
        "k", "group", "gpus", "lo", "hi", "d", "onprem", "other"))
    job_cloud: _Table = field(default_factory=lambda: _Table(
        "k", "group", "gpus", "start", "end", "other"))
    service: _Table = field(default_factory=lambda: _Table("a", "h", "rate"))
    svc_onprem: _Table = field(default_factory=lambda: _Table(  # $ per hour served
        "i", "group", "gpus", "onprem", "other"))
    svc_cloud: _Table = field(default_factory=lambda: _Table("i", "group", "gpus", "other"))
    fixed: float = 0.0
    free: dict[str, float] = field(default_factory=lambda: {v: 0.0 for v in VIEWS})

    @property
    def jobs(self) -> int:
        return len(self.job_unmet)

    @property
    def services(self) -> int:
        return len(self.service.parts["a"])


def _gather(engine: Engine, workloads: list[SimWorkload], seed: int,
            charges: Floats) -> _Options:
    out = _Options()
    for sw_pos, sw in enumerate(workloads):
        wl = sw.workload
        spec = wl.spec
        unmet = float(charges[sw_pos])
        ctx = engine.context(wl)
        ok = any_policy(ctx)
        if spec.is_service:
            ok = ok & within_slo(ctx.p99_ms, spec)
        idx = np.flatnonzero(ok)
        if not len(idx):
            out.fixed += unmet
            continue
        a, hours, gpus = float(sw.arrival_h), float(ctx.hours), float(ctx.gpus_needed)
        local, remote = idx[~ctx.is_cloud[idx]], idx[ctx.is_cloud[idx]]
        price, egress = ctx.usd_per_hour, ctx.egress_usd
        if not spec.is_service:
            billed = _billed_hours(ctx, remote, sw, seed)
            latest = np.inf  # the latest start on-prem that meets the deadline
            if spec.deadline_hours is not None:  # late is dominated by unmet: drop it
                latest = a + spec.deadline_hours - hours
                local = local[~late(ctx.transfer_hours[local] + hours, spec)]
                keep = ~late(billed, spec)
                remote, billed = remote[keep], billed[keep]
            k = out.jobs
            out.job_unmet.append(unmet)
            on_usd = price[local] * hours
            cl_usd = price[remote] * billed + egress[remote]
            out.job_onprem.add(k=k, group=ctx.group[local], gpus=gpus,
                               lo=a + ctx.transfer_hours[local], hi=latest, d=hours,
                               onprem=on_usd, other=egress[local])
            out.job_cloud.add(k=k, group=ctx.group[remote], gpus=gpus, start=a,
                              end=a + billed, other=cl_usd)
            for view in VIEWS:
                gpu = on_usd if view == "used" else 0.0
                out.free[view] += float(min([unmet, *(gpu + egress[local]), *cl_usd]))
        else:
            i = out.services
            # $ per hour left unserved: the metrics charge asked x the share of the window
            # missed (a lower rate where the billed hours exceed the window)
            rate = unmet / max(hours, spec.duration_hours or 1.0)
            out.service.add(a=a, h=hours, rate=rate)
            eg_rate = egress[local] / hours
            cl_usd = price[remote] * hours + egress[remote]
            out.svc_onprem.add(i=i, group=ctx.group[local], gpus=gpus, onprem=price[local],
                               other=eg_rate)
            out.svc_cloud.add(i=i, group=ctx.group[remote], gpus=gpus, other=cl_usd)
            for view in VIEWS:
                gpu = price[local] if view == "used" else 0.0
                out.free[view] += float(min([hours * min([rate, *(gpu + eg_rate)]), *cl_usd]))
    for view in VIEWS:
        out.free[view] += out.fixed
    return out


def _spans(start: Floats, end: Floats, o: float, w: float, n: int
           ) -> tuple[Ints, Ints, Floats]:
    """For intervals [start, end]: (interval, window, overlap) for each window of the tiling
    [o + u w, o + (u + 1) w], u < n, that the interval overlaps."""
    end = np.minimum(end, o + n * w)
    live = end > np.maximum(start, o)
    first = np.clip(np.floor((start - o) / w), 0, n - 1).astype(np.int64)
    last = np.clip(np.ceil((end - o) / w) - 1, 0, n - 1).astype(np.int64)
    count = np.where(live, last - first + 1, 0)
    item = np.repeat(np.arange(len(start)), count)
    u = first[item] + np.arange(len(item)) - np.repeat(np.cumsum(count) - count, count)
    a = o + u * w
    ov = np.minimum(end[item], a + w) - np.maximum(start[item], a)
    keep = ov > 0
    return item[keep], u[keep], ov[keep]


def _min_overlap(lo: Floats, hi: Floats, d: Floats, a: Floats, b: Floats) -> Floats:
    """The least overlap of [s, s + d] with [a, b] over the starts s in [lo, hi]: at an end
    (see the module's docstring)."""

    def at(s: Floats) -> Floats:
        out: Floats = np.clip(np.minimum(s + d, b) - np.maximum(s, a), 0.0, None)
        return out

    least: Floats = np.minimum(at(lo), at(hi))
    return least


def _segments(a: Floats, h: Floats, o: float, w: float, n: int
              ) -> tuple[Ints, Ints, Floats]:
    """Service windows [a, a + h] cut at the time windows' edges: (window, time window or -1
    past the horizon, length), ordered by window."""
    t_end = o + n * w
    item, u, ov = _spans(a, a + h, o, w, n)
    past = np.flatnonzero(a + h > t_end)
    seg_i = np.r_[item, past]
    seg_u = np.r_[u, np.full(len(past), -1, dtype=np.int64)]
    seg_len = np.r_[ov, (a + h - np.maximum(a, t_end))[past]]
    order = np.argsort(seg_i, kind="stable")
    return seg_i[order].astype(np.int64), seg_u[order].astype(np.int64), seg_len[order]


def _each_segment(owner: Ints, seg_i: Ints, n_services: int) -> tuple[Ints, Ints]:
    """For options of services `owner`: (option, segment) for each segment of its service."""
    start = np.searchsorted(seg_i, np.arange(n_services))
    count = np.bincount(seg_i, minlength=n_services)[owner]
    item = np.repeat(np.arange(len(owner)), count)
    seg = np.repeat(start[owner], count) + np.arange(len(item)) - np.repeat(
        np.cumsum(count) - count, count)
    return item, seg


def _size(opts: _Options, fits: Floats, o: float, span: float, n: int,
          onprem_groups: int) -> tuple[int, int]:
    """(variables, nonzeros) of the model over n windows, before the slack rows go (at most:
    an estimate from above)."""
    w = span / n
    sv, so, sc = opts.service, opts.svc_onprem, opts.svc_cloud
    end = np.minimum(sv["a"] + sv["h"], o + span)
    seg = (np.ceil((end - sv["a"]) / w) + 2).astype(np.int64)
    seg_on, seg_cl = seg[so.ints("i")], seg[sc.ints("i")]
    jo, jc = opts.job_onprem, opts.job_cloud
    variables = (opts.jobs + len(jo["k"]) + len(jc["k"]) + len(sc["i"]) + int(seg.sum())
                 + int(seg_on.sum()) + onprem_groups * n)
    runs = np.ceil(np.where(fits, jo["d"], 0.0) / w) + 2
    cloud = np.ceil((jc["end"] - jc["start"]) / w) + 2
    nonzeros = (opts.jobs + int((2 * runs + 1).sum()) + int((cloud + 1).sum())
                + int(seg.sum()) + 3 * int(seg_on.sum()) + 2 * int(seg_cl.sum())
                + 2 * onprem_groups * n)
    return variables, nonzeros


class _Builder:
    """The MILP's columns (in blocks) and its nonzeros."""

    def __init__(self) -> None:
        self.n = 0
        self.onprem: list[Floats] = []
        self.other: list[Floats] = []
        self.integral: list[Ints] = []
        self.upper: list[Floats] = []
        self.rows: list[Ints] = []
        self.cols: list[Ints] = []
        self.vals: list[Floats] = []

    def block(self, count: int, onprem: Floats | float, other: Floats | float, whole: bool,
              ub: Floats | float = 1.0) -> Ints:
        cols = np.arange(self.n, self.n + count)
        self.n += count
        for into, v in ((self.onprem, onprem), (self.other, other), (self.upper, ub)):
            into.append(np.broadcast_to(np.asarray(v, float), (count,)))
        self.integral.append(np.full(count, int(whole), dtype=np.int64))
        return cols

    def entries(self, rows: Ints, cols: Ints, vals: Floats | float) -> None:
        self.rows.append(np.asarray(rows, np.int64))
        self.cols.append(np.asarray(cols, np.int64))
        self.vals.append(np.broadcast_to(np.asarray(vals, float), (len(rows),)))

    def matrix(self, n_rows: int) -> csr_matrix:
        a: csr_matrix = coo_matrix((np.concatenate(self.vals), (np.concatenate(self.rows),
                                    np.concatenate(self.cols))), shape=(n_rows, self.n)).tocsr()
        return a


def build(engine: Engine, workloads: list[SimWorkload], *, horizon_h: float,
          window_h: float | None = None, seed: int = 0,
          max_variables: int = MAX_VARIABLES, charges: Floats | None = None) -> Model:
    """The bound's model over every workload (see the module's docstring). `horizon_h`: the
    hour by which every schedule compared has ended; `window_h`: the widest time window
    wanted (default: MAX_WINDOWS windows from the first arrival to the horizon), widened while
    the model would not fit `max_variables`; `seed`: the replay's (its spot interruptions)."""
    t0 = time.perf_counter()
    ci = engine.ci
    opts = _gather(engine, workloads, seed,
                   unmet_charges(engine, workloads) if charges is None else charges)
    empty = np.zeros(0)

    def without(note: str) -> Model:
        return Model(empty, empty, np.zeros(0, dtype=np.int64), empty, empty, None,
                     opts.fixed, opts.free, len(workloads), 0, 0.0, note,
                     time.perf_counter() - t0)

    if not workloads:
        return without(NO_WORKLOADS)
    if opts.jobs + opts.services == 0:
        return without(NO_CANDIDATE)
    o = min(sw.arrival_h for sw in workloads)
    t_end = max(float(horizon_h), max(sw.arrival_h for sw in workloads))
    t_end = t_end if t_end > o else o + 1.0
    span = t_end - o
    jo, jc, sv = opts.job_onprem, opts.job_cloud, opts.service
    so, sc = opts.svc_onprem, opts.svc_cloud
    # a job that cannot end on-prem by the horizon counts in no row (no schedule that ends by
    # the horizon runs it there); the others start in [lo, hi]
    lo, d, gpus = jo["lo"], jo["d"], jo["gpus"]
    fits = lo + d <= t_end + 1e-9
    hi = np.maximum(lo, np.minimum(t_end - d, jo["hi"]))
    onprem_groups = np.unique(np.r_[jo.ints("group"), so.ints("group")])
    n = max(1, min(int(np.ceil(span / window_h)) if window_h else MAX_WINDOWS, 1 << 16))
    while True:
        variables, nonzeros = _size(opts, fits, o, span, n, len(onprem_groups))
        if variables <= max_variables and nonzeros <= NONZEROS_PER_VARIABLE * max_variables:
            break
        if n == 1:
            return without(f"{variables:,} variables with one window, over {max_variables:,}")
        n //= 2
    w = span / n
    b = _Builder()
    cap: list[tuple[Ints, Ints, Ints, Floats]] = []  # (column, group, window, GPU-hours)
    chain: list[tuple[Ints, Ints, Ints, Floats]] = []  # (column, group, suffix, increment)

    # jobs: one assignment row each (rows 0 .. jobs - 1)
    k_unmet = np.arange(opts.jobs)
    b.entries(k_unmet, b.block(opts.jobs, 0.0, np.array(opts.job_unmet), False), 1.0)
    cols = b.block(len(lo), jo["onprem"], jo["other"], True)
    groups = jo.ints("group")
    b.entries(jo.ints("k"), cols, 1.0)
    item, u, _ = _spans(np.where(fits, hi, np.inf), lo + d, o, w, n)  # > 0 only there
    start = o + u * w
    least = _min_overlap(lo[item], hi[item], d[item], start, start + w)
    cap.append((cols[item], groups[item], u, gpus[item] * least))
    item, v, _ = _spans(np.where(fits, lo, np.inf), lo + d, o, w, n)  # where suffixes change
    start = o + v * w
    ends = np.full(len(v), t_end)
    here = _min_overlap(lo[item], hi[item], d[item], start, ends)
    after = np.where(v + 1 < n, _min_overlap(lo[item], hi[item], d[item],
                                              np.minimum(start + w, t_end), ends), 0.0)
    chain.append((cols[item], groups[item], v, gpus[item] * (here - after)))
    cols = b.block(len(jc["k"]), 0.0, jc["other"], True)
    job_end = b.n  # job options are the columns before this, in one assignment row each
    b.entries(jc.ints("k"), cols, 1.0)
    item, u, ov = _spans(jc["start"], jc["end"], o, w, n)
    cap.append((cols[item], jc.ints("group")[item], u, jc["gpus"][item] * ov))

    # services: one assignment row per segment
    seg_i, seg_u, seg_len = _segments(sv["a"], sv["h"], o, w, n)
    seg_row = opts.jobs + np.arange(len(seg_i))
    n_assign = opts.jobs + len(seg_i)
    cols = b.block(len(sc["i"]), 0.0, sc["other"], True)
    item, seg = _each_segment(sc.ints("i"), seg_i, opts.services)
    b.entries(seg_row[seg], cols[item], 1.0)
    inside = seg_u[seg] >= 0
    item, seg = item[inside], seg[inside]
    cap.append((cols[item], sc.ints("group")[item], seg_u[seg],
                sc["gpus"][item] * seg_len[seg]))
    b.entries(seg_row, b.block(len(seg_i), 0.0, sv["rate"][seg_i] * seg_len, False), 1.0)
    item, seg = _each_segment(so.ints("i"), seg_i, opts.services)
    cols = b.block(len(item), so["onprem"][item] * seg_len[seg],
                   so["other"][item] * seg_len[seg], False)
    b.entries(seg_row[seg], cols, 1.0)
    inside = seg_u[seg] >= 0
    load = (so["gpus"][item] * seg_len[seg])[inside]
    at = (cols[inside], so.ints("group")[item][inside], seg_u[seg][inside])
    cap.append((*at, load))
    chain.append((*at, load))

    # capacity per (group, window), where something counts
    cap_row0 = n_assign
    c_col, c_group, c_u, c_val = (np.concatenate(x) for x in zip(*cap, strict=True))
    nz = c_val > 0
    keys, c_row = np.unique((c_group * n + c_u)[nz], return_inverse=True)
    b.entries(cap_row0 + c_row, c_col[nz], c_val[nz])
    cap_ub = ci.group_capacity[keys // n].astype(float) * w
    # suffix chains, on-prem: L_v - L_{v+1} - (what starts counting at v) = 0
    chain_row0 = cap_row0 + len(keys)
    where = np.full(len(ci.group_site), -1, dtype=np.int64)
    where[onprem_groups] = np.arange(len(onprem_groups))
    l_ub = np.repeat(ci.group_capacity[onprem_groups].astype(float), n) * np.tile(
        t_end - (o + np.arange(n) * w), len(onprem_groups))
    l_cols = b.block(len(l_ub), 0.0, 0.0, False, l_ub)
    l_rows = chain_row0 + np.arange(len(l_cols))
    b.entries(l_rows, l_cols, 1.0)
    nxt = np.arange(len(l_cols)) % n < n - 1
    b.entries(l_rows[nxt], l_cols[nxt] + 1, -1.0)
    k_col, k_group, k_v, k_val = (np.concatenate(x) for x in zip(*chain, strict=True))
    nz = k_val != 0
    b.entries(chain_row0 + (where[k_group] * n + k_v)[nz], k_col[nz], -k_val[nz])

    a = b.matrix(chain_row0 + len(l_cols))
    lb_rows = np.r_[np.ones(n_assign), np.full(len(keys), -np.inf), np.zeros(len(l_cols))]
    ub_rows = np.r_[np.ones(n_assign), cap_ub, np.zeros(len(l_cols))]
    onprem, other = np.concatenate(b.onprem), np.concatenate(b.other)
    rows, keep = _drop_slack(a, ub_rows, onprem + other, other, opts.jobs, job_end, cap_row0,
                             chain_row0, int(l_cols[0]) if len(l_cols) else b.n, n, l_ub)
    return Model(onprem[keep], other[keep], np.concatenate(b.integral)[keep],
                 np.zeros(len(keep)), np.concatenate(b.upper)[keep],
                 LinearConstraint(a[rows][:, keep], lb_rows[rows], ub_rows[rows]), opts.fixed,
                 opts.free, len(workloads), n, w, "", time.perf_counter() - t0)


def _drop_slack(a: csr_matrix, ub_rows: Floats, used: Floats, avoidable: Floats,
                n_jobs: int, job_end: int, cap_row0: int, chain_row0: int, l_col0: int,
                n: int, l_ub: Floats) -> tuple[Ints, Ints]:
    """The rows and columns to keep: without the rows that can never bind, and the job options
    they leave dominated. A capacity row is slack when all it could count (every variable at
    1) fits; an on-prem group's suffix chain when each suffix's most fits. A job option left in
    no binding row competes with its job's other such options (unmet among them) on cost
    alone: the cheapest in each view stays, the others go. The optimum is unchanged."""
    cap_slack = np.asarray(a[cap_row0:chain_row0].sum(axis=1)).ravel() <= ub_rows[
        cap_row0:chain_row0]
    step = -np.asarray(a[chain_row0:, :l_col0].sum(axis=1)).ravel().reshape(-1, n)
    most = np.cumsum(step[:, ::-1], axis=1)[:, ::-1]  # L_v with every variable at 1
    chain_slack = np.repeat((most <= l_ub.reshape(-1, n)).all(axis=1), n)
    rows = np.r_[np.arange(cap_row0), cap_row0 + np.flatnonzero(~cap_slack),
                 chain_row0 + np.flatnonzero(~chain_slack)].astype(np.int64)
    binding = rows[rows >= cap_row0]
    counted = np.asarray((a[binding] != 0).sum(axis=0)).ravel() > 0
    jobs = a[:n_jobs, :job_end].tocsc()
    job_of = jobs.indices[jobs.indptr[:-1]]  # each job option's assignment row
    loose = np.flatnonzero(~counted[:job_end])
    drop = np.zeros(a.shape[1], dtype=bool)
    drop[loose] = True
    for cost in (used, avoidable):
        order = loose[np.lexsort((cost[loose], job_of[loose]))]
        _, first = np.unique(job_of[order], return_index=True)
        drop[order[first]] = False
    drop[l_col0:] = chain_slack  # the running sums of slack chains
    return rows, np.flatnonzero(~drop)


def solve(model: Model, *, view: str = "used", time_limit_s: float = 60.0) -> Bound:
    """The bound of a built model in one money view: "used" (on-prem GPU-hours at their
    amortized price) or "avoidable" (on-prem GPU $ 0: cloud GPUs, egress and the unmet
    charge), in about `time_limit_s` of wall time. First the LP relaxation (HiGHS's interior
    point method, fast on these models), whose duals give a bound however accurate they are;
    then the MILP in the time left. The answer is the highest of the MILP's dual bound, the
    LP's and the capacity-free bound (each is a bound): never None when there is a workload.
    "optimal": HiGHS closed the MILP (to its default relative gap, 0.01%)."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; known: {', '.join(VIEWS)}")
    t0 = time.perf_counter()

    def done(usd: float, status: str, gap: float | None = None) -> Bound:
        return Bound(float(usd), status, None if gap is None else float(gap), model.workloads,
                     model.variables, time.perf_counter() - t0)

    found = {"capacity-free": model.free_usd[view]}
    if model.constraints is None:
        if model.note in (NO_WORKLOADS, NO_CANDIDATE):
            return done(found["capacity-free"], model.note, 0.0)  # exact: nothing to place
        return done(found["capacity-free"], f"not built ({model.note}): capacity-free bound")
    cost = model.other_usd + (model.onprem_usd if view == "used" else 0.0)
    lp = _lp_bound(model, cost, time_limit_s)
    if lp is not None:
        found["LP"] = lp + model.fixed_usd
        if not model.integrality.any():
            return done(max(found.values()), "optimal", 0.0)  # the LP is the whole model
    left = time_limit_s - (time.perf_counter() - t0)
    if left < 0.05:
        if lp is None:
            return done(found["capacity-free"],
                        "time limit before the first LP bound: capacity-free bound")
        return done(max(found.values()), "time limit before the MILP: LP bound")
    res = milp(cost, integrality=model.integrality, bounds=Bounds(model.lower, model.upper),
               constraints=model.constraints, options={"time_limit": left, "disp": False})
    plan = float(res.fun) + model.fixed_usd if res.x is not None else None
    dual = getattr(res, "mip_dual_bound", None)
    if dual is not None and np.isfinite(dual):
        found["dual"] = float(dual) + model.fixed_usd
    best = max(found, key=lambda k: found[k])
    usd = found[best] if plan is None else min(found[best], plan)
    gap = None if plan is None else (plan - usd) / plan if plan > 0 else 0.0
    if res.status == 0:
        return done(usd, "optimal", gap)
    why = "time limit" if res.status == 1 else f"HiGHS: {res.message}"
    shown = "no plan yet" if gap is None else f"gap {gap:.1%}"
    if best == "dual":
        return done(usd, f"{why}: dual bound, {shown}", gap)
    if best == "LP":
        return done(usd, f"{why}: LP bound, {shown}", gap)
    if len(found) == 1:
        return done(usd, f"{why} before the first LP bound: capacity-free bound", gap)
    return done(usd, f"{why}: capacity-free bound (above the LP's), {shown}", gap)


def _lp_bound(model: Model, cost: Floats, time_limit_s: float) -> float | None:
    """A bound from the LP relaxation's duals y, or None when HiGHS has none in time. For
    every feasible x, cost.x >= y.b + sum_j min over x_j's box of (cost - A'y)_j x_j when
    y <= 0 on the <= rows (a Lagrangian bound: it holds for any such y, so duals off by
    HiGHS's tolerances give a valid bound, a little weaker)."""
    cons = model.constraints
    assert cons is not None
    a = csr_matrix(cons.A)
    lb, ub = np.asarray(cons.lb, float), np.asarray(cons.ub, float)
    eq = lb == ub
    le = ~eq  # the model's other rows are all <= (capacity)
    res = linprog(cost, A_ub=a[le], b_ub=ub[le], A_eq=a[eq], b_eq=ub[eq],
                  bounds=np.c_[model.lower, model.upper], method="highs-ipm",
                  options={"time_limit": max(time_limit_s, 0.01), "disp": False})
    if res.status != 0 or getattr(res, "eqlin", None) is None:
        return None
    y = np.zeros(a.shape[0])
    y[eq] = res.eqlin.marginals
    y[le] = np.minimum(res.ineqlin.marginals, 0.0)
    reduced = cost - a.T @ y
    box = np.minimum(reduced * model.lower, reduced * model.upper)
    return float(y @ ub + box.sum())


def lower_bound(engine: Engine, workloads: list[SimWorkload], *, horizon_h: float,
                view: str = "used", window_h: float | None = None, time_limit_s: float = 60.0,
                seed: int = 0, max_variables: int = MAX_VARIABLES) -> Bound:
    """Build and solve in one call (see `build` and `solve`)."""
    return solve(build(engine, workloads, horizon_h=horizon_h, window_h=window_h, seed=seed,
                       max_variables=max_variables), view=view, time_limit_s=time_limit_s)
