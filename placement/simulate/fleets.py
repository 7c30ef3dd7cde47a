"""Request-level replay of LLM request traces for services served as fleets (several sites).

The rules (seeded; the same requests and draws for every policy of a seed):
- Requests: the trace's arrivals, tokens or measured seconds, from an offset (the first or a
  later part) for at most `span_h`. Each request goes to one of the fleet services with
  probability proportional to the service's declared requests/s (`location_demand`), then to
  one of its client locations with probability proportional to the location's declared
  demand x its follow-the-sun activity: NIGHT_FLOOR + (1 - NIGHT_FLOOR) x (1 + cos(2 pi
  (local hour - PEAK_LOCAL_H) / 24)) / 2, local hour = UTC hour + longitude / 15, the UTC
  hour of the trace's first request drawn per seed. Demand moves across the continents with
  the clock (within a 40-minute trace a little, across seeds and in day-long traces a lot).
- Service time: the trace's seconds (its measured time, else tokens x synth's per-token
  constants), scaled per service so that their 99th percentile is the service's declared
  p99 service time: the trace gives the spread of request sizes, the service document its
  scale (the SLO is on the same time the engine checks: RTT + service + RAG lookups).
- Load: with `load`, the part is made that many times the services' declared requests/s
  busy by superposing copies of it, each shifted circularly by a seeded offset and thinned
  to the exact factor (request sizes and bunching stay the trace's); without, its own rate.
- Windows of `window_s`: each window is planned from the previous window's measured
  requests/s per location (the first from its own), through the policy and then
  `scale(previous, plan, settings)` (the autoscaler's hysteresis). Added replicas serve after
  `cold_start_minutes`; a scale-in releases at once. Replicas present at the start are warm.
- Spot: each spot replica is interrupted as a Poisson process at the site's rate per
  instance-hour (`ci.spot_rate`); it is then down for the burst rule's restart overhead plus
  the cold start (an interruption during a cold start starts it again).
- Latency = RTT(location, site) + RAG lookups x RTT to the index + queueing + service time.
  A request goes to a member drawn by the plan's routing weights for its location; when that
  member has no replica up, to the location's heaviest other member that has one, else it
  waits for the first to come up. Queueing per member and window is M/M/c: c = replicas up
  at the request's arrival x the in-flight slots of one replica (replica_rps x p99 service
  seconds, the engine's own Little's-law count), mu = 1 / the mean service time of the
  requests it serves, lambda = their count / the window. The wait is drawn from Erlang C
  (P(wait) = C(c, a), then exponential with mean 1 / (c mu - lambda)), its mean scaled by
  (1 + cs^2) / 2 (Allen-Cunneen: service times are not exponential; arrivals within a window
  are taken as Poisson). Where lambda >= c mu the queue grows: the wait is the fluid backlog,
  (a / c - 1) x the time since the window began. A request past TIMEOUT_MS counts as that.
  Within the SLO when latency <= p99_slo_ms.
- Money: replica-hours held x the engine's billed price per replica (on-prem amortized),
  lookup egress per request at the index's $/GB, a bulk move once per site used; and the
  unmet-work charge (results.py's rule at request level): a location's requests outside the
  SLO in a window are charged their share of serving that location's window on-demand at the
  cheapest on-demand site within its SLO (at least one replica), never free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from placement.engine.compiled import ONPREM, SPOT
from placement.engine.fleet import FleetPlan, location_demand, scale
from placement.simulate.fleet_policies import POLICIES, Service, Setup, window_doc
from placement.simulate.synth import DECODE_S_PER_TOKEN, PREFILL_S_PER_TOKEN
from placement.simulate.traces import Request, Trace

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]

WINDOW_S = 600.0
PEAK_LOCAL_H = 14.0
NIGHT_FLOOR = 0.15
SPAN_H = 6.0
TIMEOUT_MS = 60_000.0


@dataclass
class Requests:
    """The requests of one seed: arrays over requests, in arrival order."""

    at_s: Floats
    service: Ints
    location: Ints  # index into Setup.locations
    service_s: Floats
    u_route: Floats
    u_wait: Floats
    span_s: float
    start_utc_h: float


def activity(local_h: Floats) -> Floats:
    """Follow-the-sun weight of a location at its local hour (peak PEAK_LOCAL_H)."""
    day = (1 + np.cos(2 * np.pi * (local_h - PEAK_LOCAL_H) / 24)) / 2
    got: Floats = NIGHT_FLOOR + (1 - NIGHT_FLOOR) * day
    return got


def _load(at: Floats, raw: Floats, factor: float, span: float,
          rng: np.random.Generator) -> tuple[Floats, Floats]:
    """The trace `factor` times as busy: ceil(factor) copies, each shifted by a seeded
    offset (circularly within the span), each request kept with probability factor /
    copies; request sizes and the arrivals' bunching are the trace's."""
    copies = max(1, math.ceil(factor))
    ats, raws = [], []
    for _ in range(copies):
        keep = rng.random(len(at)) < factor / copies
        ats.append((at[keep] + rng.uniform(0, span)) % span)
        raws.append(raw[keep])
    order = np.argsort(np.concatenate(ats), kind="stable")
    return np.concatenate(ats)[order], np.concatenate(raws)[order]


def requests(trace: Trace, s: Setup, seed: int, *, later: bool = False,
             span_h: float = SPAN_H, load: float | None = None,
             limit: int | None = None) -> Requests:
    """The seed's requests from `trace` (see the module's rules). `load`: the mean requests/s
    as a multiple of the services' declared requests/s (None: the trace's own rate)."""
    recs = [r for r in trace.records if isinstance(r, Request)]
    if not recs:
        raise ValueError(f"{trace.path} has no requests; use a request trace (Azure LLM, "
                         "Mooncake, Alibaba GenAI LoRA)")
    end = recs[-1].at_s
    t0 = end / 2 if later else 0.0
    part = max(min(span_h * 3600, end - t0), 1.0)  # seconds replayed
    recs = [r for r in recs if t0 <= r.at_s < t0 + span_h * 3600][:limit]
    if not recs:
        raise ValueError(f"{trace.path}: no requests in the chosen part; shorten the offset")
    rng = np.random.default_rng([seed, 101])
    at = np.array([r.at_s - t0 for r in recs])
    raw = np.array([r.service_s if r.service_s is not None else
                    r.tokens_in * PREFILL_S_PER_TOKEN + r.tokens_out * DECODE_S_PER_TOKEN
                    for r in recs])
    raw = np.maximum(raw, 1e-6)
    demands = [location_demand(svc.workload.spec) for svc in s.services]
    total = np.array([sum(r for _, r in d) for d in demands])
    if load is not None:
        at, raw = _load(at, raw, load * float(total.sum()) * part / len(at), part, rng)
    start = float(rng.uniform(0, 24))
    service = rng.choice(len(s.services), size=len(at), p=total / total.sum())
    utc = start + at / 3600
    location = np.zeros(len(at), dtype=np.int64)
    service_s = np.zeros(len(at))
    u = rng.random(len(at))
    for k, d in enumerate(demands):
        mine = service == k
        locs = [s.locations.index(loc) for loc, _ in d]
        lon = np.array([s.longitude[loc] for loc, _ in d])
        w = np.array([r for _, r in d]) * activity((utc[mine, None] + lon / 15) % 24)
        cum = np.cumsum(w / w.sum(axis=1, keepdims=True), axis=1)
        pick = np.minimum((u[mine, None] > cum).sum(axis=1), len(locs) - 1)
        location[mine] = np.array(locs)[pick]
        lat = s.services[k].workload.spec.latency
        assert lat is not None
        if mine.any():
            service_s[mine] = raw[mine] * lat.service_time_p99_ms / 1000 / np.percentile(
                raw[mine], 99)
    return Requests(at, service.astype(np.int64), location, service_s, rng.random(len(at)),
                    rng.random(len(at)), max(part, float(at[-1]) + 1e-3), start)


def erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits in M/M/c with offered load a < c (Erlang B
    recursion, stable for large c)."""
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b / (1 - (a / c) * (1 - b))


@dataclass
class Run:
    """One policy over one seed's requests."""

    latency_ms: Floats
    site: Ints  # -1: not served
    ok: NDArray[np.bool_]
    onprem_usd: float = 0.0
    cloud_usd: float = 0.0
    egress_usd: float = 0.0
    unmet_usd: float = 0.0
    replica_hours: dict[tuple[int, int], float] = field(default_factory=dict)  # (svc, row)
    price: dict[int, float] = field(default_factory=dict)  # row -> $ per replica-hour
    preemptions: int = 0
    notes: dict[str, int] = field(default_factory=dict)


@dataclass
class Replica:
    """One replica of a member: when it serves (again), and its down intervals this window."""

    ready_s: float
    down: list[tuple[float, float]]


def window_down(reps: list[Replica], t0: float, t1: float, rate_h: float, down_s: float,
                 rng_of: Any) -> int:
    """Each replica's down intervals in [t0, t1): cold start still running, then spot
    interruptions (Poisson at `rate_h` per hour). Returns the interruptions drawn."""
    hits = 0
    for j, r in enumerate(reps):
        r.down = [(t0, r.ready_s)] if r.ready_s > t0 else []
        if rate_h <= 0:
            continue
        rng = rng_of(j)
        n = int(rng.poisson(rate_h * (t1 - t0) / 3600))
        for p in np.sort(rng.uniform(t0, t1, n)).tolist():
            r.down.append((p, p + down_s))
            r.ready_s = max(r.ready_s, p + down_s)
            hits += 1
    return hits


def up_at(reps: list[Replica], t: Floats) -> Ints:
    """Replicas serving at each time in `t` (this window's down intervals applied)."""
    up = np.full(len(t), len(reps), dtype=np.int64)
    for r in reps:
        covered = np.zeros(len(t), dtype=bool)
        for a, b in r.down:
            covered |= (t >= a) & (t < b)
        up -= covered
    return up


def _next_up(reps: list[Replica], t: float) -> float:
    return min((max([b for a, b in r.down if a <= t < b], default=t) for r in reps),
               default=math.inf)


def _waits(t: Floats, svc_s: Floats, up: Ints, slots: int, dur: float, t0: float,
           u: Floats) -> Floats:
    """Queueing seconds of one member's requests in one window (see the module's rules)."""
    lam = len(t) / dur
    mean = float(svc_s.mean())
    mu = 1 / mean
    cs2 = float(svc_s.var()) / mean ** 2
    a = lam / mu
    wait = np.zeros(len(t))
    servers = up * slots
    for c in np.unique(servers).tolist():
        at = servers == c
        if c <= 0:
            continue
        if a < c:
            pc = erlang_c(int(c), a)
            mean_w = (1 + cs2) / 2 / (c * mu - lam)
            q = u[at] < pc
            wait[np.flatnonzero(at)[q]] = mean_w * -np.log(np.maximum(u[at][q] / pc, 1e-12))
        else:
            wait[at] = (a / c - 1) * (t[at] - t0) + (1 + cs2) / 2 * mean
    return wait


def replay(s: Setup, reqs: Requests, policy: str, seed: int,
           window_s: float = WINDOW_S) -> Run:
    """`policy` (a name in fleet_policies.POLICIES) over the seed's requests."""
    n = len(reqs.at_s)
    run = Run(np.full(n, TIMEOUT_MS), np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=bool))
    decide = POLICIES[policy]
    windows = max(1, math.ceil(reqs.span_s / window_s))
    bounds = np.searchsorted(reqs.at_s, np.arange(windows + 1) * window_s)
    for k, svc in enumerate(s.services):
        _service_replay(s, svc, k, reqs, run, decide, seed, window_s, windows, bounds)
    return run


def _demand(reqs: Requests, s: Setup, idx: Ints, dur: float) -> dict[str, float]:
    counts = np.bincount(reqs.location[idx], minlength=len(s.locations))
    return {loc: float(counts[i]) / dur for i, loc in enumerate(s.locations)}


def _service_replay(s: Setup, svc: Service, k: int, reqs: Requests, run: Run, decide: Any,
                    seed: int, window_s: float, windows: int, bounds: Ints) -> None:
    spec = svc.workload.spec
    assert spec.latency is not None
    slo = spec.latency.p99_slo_ms
    states: dict[int, list[Replica]] = {}
    prev: FleetPlan | None = None
    used_sites: set[int] = set()
    idx_prev: Ints | None = None
    for w in range(windows):
        t0, t1 = w * window_s, min((w + 1) * window_s, reqs.span_s)
        dur = max(t1 - t0, 1e-9)
        span = np.arange(bounds[w], bounds[w + 1])
        idx = span[reqs.service[span] == k]
        basis = idx if idx_prev is None else idx_prev
        basis_dur = dur if idx_prev is None else window_s
        idx_prev = idx
        wl = window_doc(svc, _demand(reqs, s, basis, basis_dur))
        plan, note = decide(s, svc, wl, prev)
        if note:
            run.notes[note] = run.notes.get(note, 0) + 1
        if plan is not None:
            plan = scale({m.row: len(states.get(m.row, [])) for m in plan.members}, plan,
                         svc.settings)
        prev = plan
        want = {} if plan is None else {m.row: m.replicas for m in plan.members}
        for row in list(states):
            if row not in want:
                del states[row]
        for row, reps in want.items():
            _hold(s, svc, k, row, reps, states, run, (t0, t1), w, seed)
        if len(idx) and plan is not None:
            _serve(s, svc, plan, states, reqs, idx, run, t0, dur, used_sites)
        _charge(s, svc, reqs, idx, run, dur, slo)


def _hold(s: Setup, svc: Service, k: int, row: int, reps: int,
          states: dict[int, list[Replica]], run: Run, window: tuple[float, float], w: int,
          seed: int) -> None:
    """`reps` replicas of candidate `row` through window `w`: added ones cold-start (the
    first window's are warm), a scale-in drops the last to be ready; billed for the window;
    spot interruptions drawn (seeded per service, row, replica and window)."""
    ci = s.engine.ci
    t0, t1 = window
    have = sorted(states.get(row, []), key=lambda r: r.ready_s)
    start = t0 if w == 0 else t0 + svc.settings.cold_start_minutes * 60
    have = have[:reps] + [Replica(start, []) for _ in range(reps - len(have))]
    states[row] = have
    price = float(s.engine.billing(svc.workload.spec.gpu.count).usd_per_hour[row])
    run.price[row] = price
    hours = reps * (t1 - t0) / 3600
    run.replica_hours[(k, row)] = run.replica_hours.get((k, row), 0.0) + hours
    if ci.row_kind[row] == ONPREM:
        run.onprem_usd += hours * price
    else:
        run.cloud_usd += hours * price
    rate = float(ci.spot_rate[int(ci.row_site[row])]) if ci.row_kind[row] == SPOT else 0.0
    down_s = (svc.settings.cold_start_minutes / 60 + svc.restart_h) * 3600
    run.preemptions += window_down(have, t0, t1, rate, down_s,
                                   lambda j: np.random.default_rng([seed, k, row, j, w]))


def _serve(s: Setup, svc: Service, plan: FleetPlan, states: dict[int, list[Replica]],
           reqs: Requests, idx: Ints, run: Run, t0: float, dur: float,
           used_sites: set[int]) -> None:
    ci = s.engine.ci
    rows = [m.row for m in plan.members]
    t = reqs.at_s[idx]
    member = np.zeros(len(idx), dtype=np.int64)
    for li, loc in enumerate(plan.locations):
        mine = reqs.location[idx] == s.locations.index(loc)
        w = np.maximum(plan.routes[li], 0.0)
        if w.sum() <= 0:
            w = np.ones(len(rows))
        cum = np.cumsum(w / w.sum())
        member[mine] = np.minimum(np.searchsorted(cum, reqs.u_route[idx][mine], side="right"),
                                  len(rows) - 1)
    up = np.zeros(len(idx), dtype=np.int64)
    for m, row in enumerate(rows):
        at = member == m
        up[at] = up_at(states[row], t[at])
    extra = np.zeros(len(idx))
    for i in np.flatnonzero(up == 0).tolist():
        li = plan.locations.index(s.locations[int(reqs.location[idx[i]])])
        order = np.argsort(-plan.routes[li], kind="stable").tolist()
        alive = [m for m in order if up_at(states[rows[m]], t[i:i + 1])[0] > 0]
        if alive:
            member[i], up[i] = alive[0], up_at(states[rows[alive[0]]], t[i:i + 1])[0]
        else:
            routed = [m for m in order if plan.routes[li, m] > 0] or order
            m = min(routed, key=lambda m: _next_up(states[rows[m]], float(t[i])))
            extra[i] = _next_up(states[rows[m]], float(t[i])) - t[i]
            member[i], up[i] = m, max(len(states[rows[m]]), 1)
    wait = np.zeros(len(idx))
    for m in range(len(rows)):
        at = np.flatnonzero(member == m)
        if len(at):
            wait[at] = _waits(t[at], reqs.service_s[idx[at]], up[at], svc.slots, dur, t0,
                              reqs.u_wait[idx[at]])
    site = ci.row_site[np.array(rows)][member]
    loc_rows = np.array([ci.client_index[s.locations[int(v)]] for v in reqs.location[idx]])
    lat = (ci.client_rtt[loc_rows, site] + svc.lookup_ms[site]
           + (wait + extra + reqs.service_s[idx]) * 1000)
    run.latency_ms[idx] = np.minimum(lat, TIMEOUT_MS)
    run.site[idx] = site
    run.egress_usd += float(svc.lookup_usd_per_request[site].sum())
    for st in np.unique(site).tolist():
        if st not in used_sites:
            used_sites.add(st)
            run.egress_usd += float(svc.bulk_usd[st])


def _charge(s: Setup, svc: Service, reqs: Requests, idx: Ints, run: Run, dur: float,
            slo: float) -> None:
    run.ok[idx] = run.latency_ms[idx] <= slo
    util = svc.settings.target_utilization
    for li, loc in enumerate(s.locations):
        mine = idx[reqs.location[idx] == li]
        if not len(mine):
            continue
        missed = int((~run.ok[mine]).sum())
        if missed:
            reps = max(1, math.ceil(len(mine) / dur / (svc.rps * util)))
            price = svc.od_usd_per_hour.get(loc, math.nan)
            run.unmet_usd += missed / len(mine) * reps * dur / 3600 * price


def _figures(run: Run, mine: NDArray[np.bool_]) -> dict[str, Any]:
    lat = run.latency_ms[mine]
    if not len(lat):
        return {"requests": 0, "p50_ms": math.nan, "p99_ms": math.nan, "slo": math.nan}
    return {"requests": int(mine.sum()), "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "slo": float(run.ok[mine].mean())}


def summary(s: Setup, reqs: Requests, run: Run) -> dict[str, Any]:
    """One policy's figures over one seed: per location latency and SLO attainment, money."""
    locs = {loc: _figures(run, reqs.location == li) for li, loc in enumerate(s.locations)}
    by_service = {svc.workload.metadata.name: {
        loc: _figures(run, (reqs.location == li) & (reqs.service == k))
        for li, loc in enumerate(s.locations)} for k, svc in enumerate(s.services)}
    gpu = run.onprem_usd + run.cloud_usd
    names = s.engine.ci.site_names
    routes: dict[str, dict[str, int]] = {loc: {} for loc in s.locations}
    for li, loc in enumerate(s.locations):
        got = np.bincount(run.site[(reqs.location == li) & (run.site >= 0)],
                          minlength=len(names))
        routes[loc] = {names[i]: int(v) for i, v in enumerate(got.tolist()) if v}
    return {"locations": locs, "by_service": by_service, "slo": float(run.ok.mean()),
            "slo_worst_location": min(v["slo"] for v in locs.values() if v["requests"]),
            "gpu_usd": gpu, "onprem_usd": run.onprem_usd, "cloud_usd": run.cloud_usd,
            "egress_usd": run.egress_usd, "unmet_usd": run.unmet_usd,
            "total_usd": gpu + run.egress_usd + run.unmet_usd,
            "avoidable_usd": run.cloud_usd + run.egress_usd + run.unmet_usd,
            "replica_hours": sum(run.replica_hours.values()),
            "preemptions": run.preemptions, "notes": dict(run.notes), "routes": routes}
