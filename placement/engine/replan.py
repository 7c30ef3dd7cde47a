"""Re-planning queued workloads together: one assignment MILP over their decisions (HiGHS).

Each queued workload's decision (Engine.decide on one capacity snapshot) offers the candidates
it considers that can start now: cloud regions with quota, on-prem groups with the GPUs free.
Deciding them one at a time in queue order gives the first the best candidate even when that
leaves a later one nothing; the plan instead picks at most one candidate per workload so that

    max  sum_w,c (PLACE_VALUE x (1 + priority_w) + score_wc) x_wc
    s.t. sum_c x_wc <= 1                       (each workload once)
         sum_w,c in g  gpus_w x_wc <= free_g    (no group over its free GPUs or quota)
         x binary

that is, as many workloads started as can be, higher priorities first, then the engine's own
weighted scores. HiGHS solves it within a time budget; without a solution in time there is no
plan, and the caller decides greedily as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from placement.engine.compiled import ONPREM
from placement.engine.outcome import Outcome

PLACE_VALUE = 1000.0  # a workload started is worth more than any score difference (0-100)


@dataclass(frozen=True)
class Plan:
    """The candidate position chosen per workload index (absent: it stays queued)."""

    chosen: dict[int, int]
    status: str  # "optimal" or "best found in the time budget"
    workloads: int  # how many were planned together


def startable(out: Outcome) -> list[int]:
    """Positions of the candidates `out` considers that can start now, best first: those that
    pass every filter (the wait filter too: a queue-only decision has none) and are a cloud
    region or an on-prem group with the GPUs free."""
    ctx = out.ctx
    waits = (out.fails[out.filter_names.index("wait")] if "wait" in out.filter_names
             else np.zeros(ctx.n, dtype=bool))
    free = ctx.free_gpus  # the store's, lowered by fresh signals
    return [int(i) for i in out.ranking.tolist()
            if not waits[i] and (ctx.kind[i] != ONPREM or free[i] >= ctx.gpus_needed)]


def replan(outcomes: list[Outcome], priorities: list[int], time_limit_s: float) -> Plan | None:
    """The joint plan over `outcomes` (decisions on one capacity snapshot), or None when
    HiGHS finds no solution within `time_limit_s`."""
    from scipy.optimize import Bounds, LinearConstraint, milp  # only re-planning needs it

    cols: list[tuple[int, int]] = []  # (workload, candidate position)
    value: list[float] = []
    free: dict[int, int] = {}
    for w, (out, prio) in enumerate(zip(outcomes, priorities, strict=True)):
        ctx = out.ctx
        for i in startable(out):
            cols.append((w, i))
            value.append(PLACE_VALUE * (1 + max(prio, 0)) + float(out.total[i]))
            free.setdefault(int(ctx.group[i]), int(ctx.free_gpus[i]))
    if not cols:
        return Plan({}, "optimal", len(outcomes))
    groups = sorted(free)
    row_of = {g: len(outcomes) + k for k, g in enumerate(groups)}
    a = np.zeros((len(outcomes) + len(groups), len(cols)))
    for j, (w, i) in enumerate(cols):
        ctx = outcomes[w].ctx
        a[w, j] = 1.0
        a[row_of[int(ctx.group[i])], j] = float(ctx.gpus_needed)
    upper = np.array([1.0] * len(outcomes) + [float(max(free[g], 0)) for g in groups])
    res = milp(-np.array(value), constraints=LinearConstraint(a, -np.inf, upper),
               integrality=np.ones(len(cols)), bounds=Bounds(0, 1),
               options={"time_limit": time_limit_s})
    if res.x is None:
        return None
    chosen = {cols[j][0]: cols[j][1] for j in np.flatnonzero(res.x > 0.5).tolist()}
    return Plan(chosen, "optimal" if res.status == 0 else "best found in the time budget",
                len(outcomes))
