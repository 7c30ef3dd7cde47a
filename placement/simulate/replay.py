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
  Poisson model at the site's rate: each costs up to one checkpoint interval of work plus the
  restart overhead. Each job's draws come from its own seed, so every policy meets the same
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

import numpy as np

from placement.compiled import ONPREM, SPOT, CapacityState, ReleaseSchedule
from placement.engine import Engine
from placement.engine.context import DecisionContext
from placement.simulate.synth import SimWorkload

Ints = np.ndarray
EPS_H = 1e-9  # events this close count as simultaneous (window ends meet next arrivals)
MONTH_H = 730.0  # team burst budgets are monthly: 8,760 h / 12


class Decider(Protocol):
    """A placement policy: the project's engine or a baseline."""

    name: str

    def decide(self, engine: Engine, sw: SimWorkload) -> tuple[DecisionContext, int | None]:
        """The decision context and the chosen candidate (position in ctx.rows) or None."""
        ...


@dataclass
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


@dataclass
class _Queued:
    sw: SimWorkload
    ctx: DecisionContext
    pos: int
    run: Run


class _Schedule(ReleaseSchedule):
    """Release times from the replay's running work and its first-in-first-out queues: a new
    arrival starts after everything queued ahead of it in the group has started."""

    def __init__(self, replay: Replay) -> None:
        super().__init__(replay.engine.ci)
        self.replay = replay

    def wait(self, groups: Ints, deficit: Ints) -> np.ndarray:
        r = self.replay
        out = np.full(len(groups), np.inf)
        for i, (g, short) in enumerate(zip(groups.tolist(), deficit.tolist(), strict=True)):
            free = int(r.engine.ci.group_capacity[g] - r.reserved[g])
            want = free + short  # the arrival's GPUs: `short` more than are free now
            ends = list(r.running[g].values())
            heapq.heapify(ends)
            t = r.now
            for q in r.queues[g]:
                need = q.ctx.gpus_needed
                while free < need and ends:
                    end, n = heapq.heappop(ends)
                    t, free = max(t, end), free + n
                free -= need
                begin = max(t, q.sw.arrival_h + float(q.ctx.transfer_hours[q.pos]))
                heapq.heappush(ends, (begin + float(q.ctx.run_hours[q.pos]), need))
            while free < want and ends:
                end, n = heapq.heappop(ends)
                t, free = max(t, end), free + n
            if free >= want:
                out[i] = t - r.now
        return out


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
    queued_gpus: dict[int, int] = field(init=False)
    warm: dict[str, tuple[int, int, float]] = field(default_factory=dict)  # group, kind, end
    start_h: float = 0.0  # the first arrival: services there were already up
    spend: dict[tuple[str, int], float] = field(default_factory=dict)  # (team, month) -> cloud $

    def __post_init__(self) -> None:
        ci = self.engine.ci
        self.reserved = np.zeros(len(ci.group_site), dtype=np.int64)
        self.running = defaultdict(dict)
        self.queues = defaultdict(deque)
        self.queued_gpus = defaultdict(int)
        self.view = self.engine.with_capacity(CapacityState(self.reserved, _Schedule(self)))
        self._events: list[tuple[float, int, int]] = []  # time, order, run index (completion)

    def run(self, workloads: list[SimWorkload],
            progress: Callable[[int], None] | None = None) -> list[Run]:
        """Replay every workload (sorted by arrival); returns one Run per workload."""
        self.runs = [Run(sw.index, arrival_h=sw.arrival_h) for sw in workloads]
        self.start_h = workloads[0].arrival_h if workloads else 0.0
        for n, sw in enumerate(workloads):
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
        if spec.team in self.engine.policy.spec.team_budgets:
            spent = self.spend.get((spec.team, int(self.now // MONTH_H)), 0.0)
            view = view.with_team_spend({spec.team: spent})
        ctx, pos = self.decider.decide(view, sw)
        if pos is None:
            return
        ci = self.engine.ci
        row = int(ctx.rows[pos])
        g, kind = int(ci.row_group[row]), int(ci.row_kind[row])
        run.site, run.group, run.kind = int(ci.row_site[row]), g, kind
        run.gpus = int(ctx.billing.billed_gpus[row])
        need = ctx.gpus_needed
        free = int(ci.group_capacity[g] - self.reserved[g])
        if kind == ONPREM and free < need:  # with room it starts now, as the service would
            self.queues[g].append(_Queued(sw, ctx, pos, run))
            self.queued_gpus[g] += need
            return
        self._start(sw, ctx, pos, run, g)

    def _start(self, sw: SimWorkload, ctx: DecisionContext, pos: int, run: Run, g: int) -> None:
        ci, spec = self.engine.ci, sw.workload.spec
        kind = run.kind
        service = sw.workload.name.rsplit("-w", 1)[0] if spec.is_service else None
        lead = float(ctx.transfer_hours[pos])  # the data moves from arrival, while it waits
        if kind != ONPREM and not self._warm(service, sw.arrival_h, g, kind):
            lead = max(lead, float(ci.provision_h[run.site]))
        run.start_h = max(self.now, sw.arrival_h + lead)
        hours = float(ctx.hours)
        if service is not None:  # a window serves until its end, however late it started
            run.end_h = max(run.start_h, sw.arrival_h + hours)
        else:
            if kind == SPOT:
                hours, run.interruptions = spot_hours(ctx, run.site, sw, self.seed)
            run.end_h = run.start_h + hours
        run.billed_h = run.end_h - self.now if kind != ONPREM else run.end_h - run.start_h
        run.gpu_usd = float(ctx.usd_per_hour[pos]) * run.billed_h
        run.egress_usd, run.egress_gb = float(ctx.egress_usd[pos]), float(ctx.egress_gb[pos])
        run.p99_ms = float(ctx.p99_ms[pos])
        if service is not None:
            self.warm[service] = (g, kind, run.end_h)
        if kind != ONPREM:
            key = (spec.team, int(self.now // MONTH_H))
            self.spend[key] = self.spend.get(key, 0.0) + run.gpu_usd + run.egress_usd
        self.reserved[g] += ctx.gpus_needed
        self.running[g][sw.index] = (run.end_h, ctx.gpus_needed)
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
        ci = self.engine.ci
        g = run.group
        _, gpus = self.running[g].pop(n)
        self.reserved[g] -= gpus
        queue = self.queues[g]
        while queue:
            head = queue[0]
            need = head.ctx.gpus_needed
            if int(ci.group_capacity[g] - self.reserved[g]) < need:
                break
            queue.popleft()
            self.queued_gpus[g] -= need
            self._start(head.sw, head.ctx, head.pos, head.run, g)


def spot_hours(ctx: DecisionContext, site: int, sw: SimWorkload, seed: int) -> tuple[float, int]:
    """A job's run time on spot at `site`, and its interruptions: the same draws wherever it
    is asked (the replay, the bound) for one workload and seed."""
    return spot_run(float(ctx.hours), float(ctx.ci.spot_rate[site]),
                    sw.workload.spec.checkpoint_minutes / 60,
                    ctx.rule.burst.restart_overhead_minutes / 60, seed * 1_000_003 + sw.index)


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
