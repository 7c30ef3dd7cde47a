"""Event-driven replay of workloads through a placement policy, with GPUs tracked per site.

Events are arrivals and completions. An arrival is decided against the replay's live capacity
(the engine sees the same reserved GPUs and release times a service would). Then:
- on-prem with room: its GPUs are taken now (as the service reserves them; smaller work may
  pass a queued big job); the run starts once its bulk data has moved;
- on-prem without room: it joins the group's first-in-first-out queue and starts when
  completions free enough GPUs (its data moves while it waits);
- cloud: quota is taken now and billed from now; the run starts after provisioning (and the
  data move), except a service window whose service ran on that region until the window
  began (its nodes are up) and a service's window at the trace's start (a trace is an excerpt
  of services already running). Spot jobs lose work to interruptions drawn from a seeded
  Poisson model at the site's rate per instance-hour x the job's instances (any interrupted
  instance stops the run): each costs up to one checkpoint interval of work plus the restart
  overhead. Each job's draws come from its own seed, so every policy meets the same
  interruptions.
A service window ends at its window's end, however late it started. Cloud spend counts against
the policy's monthly team burst budgets (months of MONTH_H hours from the first arrival).
"""

from __future__ import annotations

import heapq
import random
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numba
import numpy as np

from placement.engine import Engine
from placement.engine.batch import Pick
from placement.engine.compiled import ONPREM, SPOT, CapacityState, ReleaseSchedule
from placement.simulate.synth import SimWorkload

Ints = np.ndarray
EPS_H = 1e-9  # events this close count as simultaneous (window ends meet next arrivals)
MONTH_H = 730.0  # team burst budgets are monthly: 8,760 h / 12


class Decider(Protocol):
    """A placement policy: the project's engine or a baseline."""

    name: str

    def decide(self, engine: Engine, sw: SimWorkload) -> Pick | None:
        """The chosen candidate and its numbers, or None to reject."""
        ...


@dataclass(slots=True)
class Run:
    """One workload's fate under one policy."""

    index: int
    site: int = -1  # -1: rejected
    group: int = -1  # (site, GPU type) group
    kind: int = -1  # ONPREM, ON_DEMAND or SPOT
    gpus: int = 0  # GPUs billed
    arrival_h: float = 0.0
    start_h: float = 0.0
    end_h: float = 0.0
    billed_h: float = 0.0
    gpu_usd: float = 0.0
    egress_usd: float = 0.0
    egress_gb: float = 0.0
    p99_ms: float = float("nan")
    interruptions: int = 0


@dataclass(slots=True)
class _Queued:
    sw: SimWorkload
    pick: Pick
    run: Run
    ready_h: float  # its data is in place (it moves while the workload waits)


class _Schedule(ReleaseSchedule):
    """Release times from the replay's running work and its first-in-first-out queues: a new
    arrival starts after everything queued ahead of it in the group has started.

    Per group, a release curve (from when, how many GPUs are free) is kept until the group's
    running work or queue changes (`touch`); a decision reads it by binary search. Curves are
    built and read by compiled helpers over a flat store (G x L arrays).
    """

    def __init__(self, replay: Replay) -> None:
        super().__init__(replay.engine.ci)
        self.replay = replay
        n = len(replay.engine.ci.group_site)
        self.clen = np.full(n, STALE, dtype=np.int64)
        self.ctimes = np.zeros((n, 16))
        self.cfrees = np.zeros((n, 16), dtype=np.int64)
        self._from_now: dict[int, tuple[int, np.ndarray, np.ndarray]] = {}  # their inputs

    def touch(self, g: int) -> None:
        """Group g's running work or queue changed."""
        self.clen[g] = STALE

    def _build(self, g: int) -> None:
        r = self.replay
        free = int(r.engine.ci.group_capacity[g] - r.reserved[g])
        ends = np.array(list(r.running[g].values()), dtype=np.float64).reshape(-1, 2)
        queue = r.queues[g]
        q = np.array([(x.pick.gpus, x.ready_h, x.pick.run_hours) for x in queue],
                     dtype=np.float64).reshape(-1, 3)
        times, frees, ok = _curve(free, ends[:, 0], ends[:, 1].astype(np.int64),
                                  q[:, 0].astype(np.int64), q[:, 1], q[:, 2], -np.inf)
        if not ok:
            self.clen[g] = NOW_DEPENDENT
            self._from_now[g] = (free, ends, q)
            return
        k = len(times)
        if k > self.ctimes.shape[1]:
            width = max(k, 2 * self.ctimes.shape[1])
            self.ctimes = np.pad(self.ctimes, ((0, 0), (0, width - self.ctimes.shape[1])))
            self.cfrees = np.pad(self.cfrees, ((0, 0), (0, width - self.cfrees.shape[1])))
        self.ctimes[g, :k] = times
        self.cfrees[g, :k] = frees
        self.clen[g] = k

    def wait(self, groups: Ints, deficit: Ints) -> np.ndarray:
        r = self.replay
        clen = self.clen
        for g in groups[clen[groups] == STALE].tolist():
            self._build(g)
        out: np.ndarray = _lookup(groups, deficit, r.engine.ci.group_capacity, r.reserved,
                                  clen, self.ctimes, self.cfrees, r.now)
        for i in np.flatnonzero(np.isnan(out)).tolist():  # curves that need the time
            g = int(groups[i])
            free, ends, q = self._from_now[g]
            times, frees, _ = _curve(free, ends[:, 0], ends[:, 1].astype(np.int64),
                                     q[:, 0].astype(np.int64), q[:, 1], q[:, 2], r.now)
            k = int(np.searchsorted(frees, free + deficit[i]))
            out[i] = times[k] - r.now if k < len(frees) else np.inf
        return out


STALE, NOW_DEPENDENT = -1, -2  # _Schedule.clen: no curve yet; a curve that needs the time


def _curve_py(free: int, end_t: np.ndarray, end_n: np.ndarray, q_need: np.ndarray,
              q_ready: np.ndarray, q_run: np.ndarray, t0: float
              ) -> tuple[np.ndarray, np.ndarray, bool]:
    """A group's release curve: run its queue in order on the running work's ends, then
    list (time, GPUs free) after each later end. Times are absolute, from t0: from -inf the
    curve holds at any time (a lookup takes max(now, time)), unless a queued start would
    depend on the current time (not ok); from now it always holds, now."""
    heap = [(np.inf, 0)]  # a sentinel (typed for the compiler): no end comes after it
    for i in range(len(end_t)):
        heap.append((end_t[i], end_n[i]))
    heapq.heapify(heap)
    t = t0
    for j in range(len(q_need)):
        need = q_need[j]
        while free < need and heap[0][0] < np.inf:
            e, n = heapq.heappop(heap)
            t = max(t, e)
            free += n
        if t == -np.inf:
            return np.zeros(0), np.zeros(0, dtype=np.int64), False
        free -= need
        heapq.heappush(heap, (max(t, q_ready[j]) + q_run[j], need))
    times = np.empty(len(heap))
    frees = np.empty(len(heap), dtype=np.int64)
    times[0], frees[0] = t, free
    k = 1
    while heap[0][0] < np.inf:
        e, n = heapq.heappop(heap)
        t = max(t, e)
        free += n
        times[k], frees[k] = t, free
        k += 1
    return times[:k], frees[:k], True


def _lookup_py(groups: np.ndarray, deficit: np.ndarray, capacity: np.ndarray,
               reserved: np.ndarray, clen: np.ndarray, ctimes: np.ndarray,
               cfrees: np.ndarray, now: float) -> np.ndarray:
    """Hours until each group has the GPUs (free now + deficit); NaN: needs the slow path."""
    out = np.empty(len(groups))
    for i in range(len(groups)):
        g = groups[i]
        k = clen[g]
        if k < 0:
            out[i] = np.nan
            continue
        want = capacity[g] - reserved[g] + deficit[i]
        pos = np.searchsorted(cfrees[g, :k], want)
        out[i] = max(now, ctimes[g, pos]) - now if pos < k else np.inf
    return out


_curve = numba.njit(cache=True)(_curve_py)
_lookup = numba.njit(cache=True)(_lookup_py)


@dataclass
class Replay:
    """Replays workloads through one decider; `runs` holds the outcome per workload."""

    engine: Engine
    decider: Decider
    seed: int = 0
    now: float = 0.0
    runs: list[Run] = field(default_factory=list)
    reserved: np.ndarray = field(init=False)
    running: dict[int, dict[int, tuple[float, int]]] = field(init=False)
    queues: dict[int, deque[_Queued]] = field(init=False)
    warm: dict[str, tuple[int, int, float]] = field(default_factory=dict)  # group, kind, end
    start_h: float = 0.0  # the first arrival: services there were already up
    spend: dict[tuple[str, int], float] = field(default_factory=dict)  # (team, month) -> cloud $

    def __post_init__(self) -> None:
        ci = self.engine.ci
        self.reserved = np.zeros(len(ci.group_site), dtype=np.int64)
        self.running = defaultdict(dict)
        self.queues = defaultdict(deque)
        self.schedule = _Schedule(self)
        self.view = self.engine.with_capacity(CapacityState(self.reserved, self.schedule))
        self._capacity = ci.group_capacity.tolist()
        self._provision = ci.provision_h.tolist()
        self._budgeted = set(self.engine.policy.spec.team_budgets)
        self._events: list[tuple[float, int, int]] = []  # time, order, run index (completion)

    def run(self, workloads: list[SimWorkload],
            progress: Callable[[int], None] | None = None) -> list[Run]:
        """Replay every workload (sorted by arrival); returns one Run per workload."""
        self.runs = [Run(sw.index, arrival_h=sw.arrival_h) for sw in workloads]
        self.start_h = workloads[0].arrival_h if workloads else 0.0
        events = self._events
        for n, sw in enumerate(workloads):
            if events and events[0][0] <= sw.arrival_h + EPS_H:
                self._advance(sw.arrival_h)
            self.now = sw.arrival_h
            self._arrive(sw, self.runs[n])
            if progress is not None and n % 1000 == 999:
                progress(1000)
        self._advance(np.inf)
        if progress is not None:
            progress(len(workloads) % 1000)
        return self.runs

    def _advance(self, until: float) -> None:
        while self._events and self._events[0][0] <= until + EPS_H:
            t, _, n = heapq.heappop(self._events)
            self.now = t
            self._finish(n)

    def _arrive(self, sw: SimWorkload, run: Run) -> None:
        view, spec = self.view, sw.workload.spec
        if spec.team in self._budgeted:
            spent = self.spend.get((spec.team, int(self.now // MONTH_H)), 0.0)
            view = view.with_team_spend({spec.team: spent})
        pick = self.decider.decide(view, sw)
        if pick is None:
            return
        g = pick.group
        run.site, run.group, run.kind, run.gpus = pick.site, g, pick.kind, pick.billed_gpus
        if pick.kind == ONPREM and self._capacity[g] - self.reserved[g] < pick.gpus:
            # without room it queues (with room it starts now, as the service would)
            self.queues[g].append(_Queued(sw, pick, run, sw.arrival_h + pick.transfer_hours))
            self.schedule.touch(g)
            return
        self._start(sw, pick, run, g)

    def _start(self, sw: SimWorkload, pick: Pick, run: Run, g: int) -> None:
        spec = sw.workload.spec
        kind = run.kind
        service = sw.workload.name.rsplit("-w", 1)[0] if spec.is_service else None
        lead = pick.transfer_hours  # the data moves from arrival, while it waits
        if kind != ONPREM and not self._warm(service, sw.arrival_h, g, kind):
            lead = max(lead, self._provision[run.site])
        run.start_h = max(self.now, sw.arrival_h + lead)
        hours = pick.hours
        if service is not None:  # a window serves until its end, however late it started
            run.end_h = max(run.start_h, sw.arrival_h + hours)
        else:
            if kind == SPOT:
                hours, run.interruptions = spot_hours(
                    hours, pick.spot_rate, sw, pick.restart_hours, self.seed)
            run.end_h = run.start_h + hours
        run.billed_h = run.end_h - self.now if kind != ONPREM else run.end_h - run.start_h
        run.gpu_usd = pick.usd_per_hour * run.billed_h
        run.egress_usd, run.egress_gb = pick.egress_usd, pick.egress_gb
        run.p99_ms = pick.p99_ms
        if service is not None:
            self.warm[service] = (g, kind, run.end_h)
        if kind != ONPREM:
            key = (spec.team, int(self.now // MONTH_H))
            self.spend[key] = self.spend.get(key, 0.0) + run.gpu_usd + run.egress_usd
        self.reserved[g] += pick.gpus
        self.running[g][sw.index] = (run.end_h, pick.gpus)
        self.schedule.touch(g)
        heapq.heappush(self._events, (run.end_h, sw.index, sw.index))

    def _warm(self, service: str | None, arrival_h: float, g: int, kind: int) -> bool:
        """A service window finds its nodes up: its previous window ran there until now, or it
        is at the trace's start (a trace is an excerpt of services already running)."""
        if service is None:
            return False
        prev = self.warm.get(service)
        if prev is None:
            return arrival_h <= self.start_h
        return prev[:2] == (g, kind) and prev[2] >= arrival_h - EPS_H

    def _finish(self, n: int) -> None:
        run = self.runs[n]
        g = run.group
        _, gpus = self.running[g].pop(n)
        self.reserved[g] -= gpus
        self.schedule.touch(g)
        queue = self.queues[g]
        while queue:
            head = queue[0]
            if self._capacity[g] - self.reserved[g] < head.pick.gpus:
                break
            queue.popleft()
            self._start(head.sw, head.pick, head.run, g)


def spot_hours(hours: float, rate: float, sw: SimWorkload, restart_h: float,
               seed: int) -> tuple[float, int]:
    """A job's run time on spot with `rate` interruptions per hour of the job (the site's rate
    per instance-hour x its instances: DecisionContext.spot_rate), and its
    interruptions: the same draws wherever it is asked (the replay, the bound) for one
    workload and seed."""
    return spot_run(hours, rate, sw.workload.spec.checkpoint_minutes / 60, restart_h,
                    seed * 1_000_003 + sw.index)


def spot_run(hours: float, rate: float, checkpoint_h: float, restart_h: float,
              seed: int) -> tuple[float, int]:
    """Run time with interruptions: each loses the work since the last checkpoint + restart."""
    if rate <= 0:
        return hours, 0
    rng = random.Random(seed)
    done, total, count = 0.0, 0.0, 0
    while count < 50:
        gap = rng.expovariate(rate)
        if done + gap >= hours:
            break
        lost = min(rng.uniform(0, checkpoint_h), gap)
        done += gap - lost
        total += gap + restart_h
        count += 1
    return total + (hours - done), count
