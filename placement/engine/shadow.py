"""The opportunity cost of on-prem GPUs: bid prices from the duals of a fluid LP.

On-prem GPUs are paid for whatever runs on them, but they are not free: an hour given to a job
that could have run in the cloud is an hour a job that can only run on-prem (confidential
data, a network boundary, a GPU type no cloud offers) may lack. The engine prices that with
bid-price control, the standard method of network revenue management: a request takes a
resource when its value exceeds the resource's bid price, and the bid price is the dual of the
resource's capacity in an LP over the expected demand.

Here the expected demand over the next `window_hours` (W) is the demand of the last W hours
(each arrival once: its GPUs x min(its hours, W), the on-prem groups it can run in, and what
running on-prem is worth to it per GPU-hour); each on-prem group offers the GPU-hours it has
free over the next W hours once the work running and queued there is done (from the release
schedule, the same one the wait estimate reads). The LP gives each group's free GPU-hours to
the work worth most there:

    max sum_k,g v_k x_kg   s.t.  sum_g x_kg <= d_k (each class's demand),
                                 sum_k x_kg <= F_g (each group's free GPU-hours), x >= 0

and the dual of each group's capacity row is its bid price (USD per GPU-hour): 0 when the
group is not short, else the value of the last work it turns away. What on-prem is worth to
a workload per GPU-hour:
- one that can also run in the cloud: what the cloud would cost it above on-prem (its
  cheapest cloud candidate's total $ minus its cheapest on-prem one's), at least 0;
- one that only on-prem can run: what doing it at all costs, the cheapest on-demand price per
  GPU-hour of its GPU types anywhere in the inventory (rules ignored); with no cloud offer
  of the type, the highest on-prem price of it.

An engine whose policy sets `opportunity_cost` adds bid price x GPU-hours to every on-prem
candidate's cost criterion and to the on-prem side of the burst gate's near-data test (what
the cloud must beat); billed estimates and budgets stay what is billed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from placement.engine.compiled import ON_DEMAND, ONPREM, CapacityState, CompiledInventory

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]


def work_value_usd_per_gpu_hour(ci: CompiledInventory, gpu_types: Sequence[str]) -> float:
    """What an hour of one GPU of these types is worth to get done: the cheapest on-demand
    $/GPU-hour among the inventory's cloud offers of the types (rules and quota ignored). A
    type no cloud region offers is valued at the median on-demand $/GPU-hour of every offer;
    with no cloud offer at all, at the highest amortized on-prem price of the types. (The
    yardstick charges undone work at this rate too.)"""
    on_demand = ci.row_kind[ci.inst_row] == ON_DEMAND
    per_gpu = ci.inst_price / np.maximum(ci.inst_gpus, 1)
    types = [ci.gpu_index[t] for t in gpu_types if t in ci.gpu_index]
    mine = on_demand & np.isin(ci.row_gpu[ci.inst_row], types)
    if mine.any():
        return float(per_gpu[mine].min())
    if on_demand.any():
        return float(np.median(per_gpu[on_demand]))
    onprem = (ci.row_kind == ONPREM) & np.isin(ci.row_gpu, types)
    return float(ci.row_unit_price[onprem].max()) if onprem.any() else 0.0


def demand_of(at_h: float, kinds: Ints, groups: Ints, totals: Floats, gpus: int,
              hours: float, only_onprem_value: float) -> Demand | None:
    """One arrival's demand from its candidates that pass the capacity-blind rules (their
    kind, group and total $ for `gpus` GPUs over `hours`): None when no on-prem group can
    run it."""
    onprem = kinds == ONPREM
    gpu_hours = gpus * hours
    if not onprem.any() or gpu_hours <= 0:
        return None
    on = float(totals[onprem].min())
    movable = bool((~onprem).any())
    value = (max(0.0, float(totals[~onprem].min()) - on) / gpu_hours if movable
             else only_onprem_value)
    return Demand(at_h, tuple(sorted(set(groups[onprem].tolist()))), gpus, hours, value,
                  movable)


def free_gpu_hours(ci: CompiledInventory, cap: CapacityState, window_h: float) -> Floats:
    """Per group: on-prem GPU-hours free over the next `window_h` hours once the work running
    and queued is done, from the capacity state's release schedule (0 for cloud groups)."""
    free = np.zeros(len(ci.group_site))
    onprem = np.flatnonzero(~ci.is_cloud[ci.group_site])
    now_free = np.maximum(ci.group_capacity[onprem] - cap.reserved[onprem], 0)
    free[onprem] = now_free * window_h
    held = ci.group_capacity[onprem] - now_free
    if held.sum() > 0:
        groups = np.repeat(onprem, held)
        deficit = np.concatenate([np.arange(1, h + 1) for h in held.tolist()]).astype(np.int64)
        waits = cap.schedule.wait(groups, deficit)  # when the k-th held GPU is back
        np.add.at(free, groups, np.clip(window_h - waits, 0.0, window_h))
    return free


@dataclass(frozen=True)
class Demand:
    """One arrival, as the LP sees it."""

    at_h: float
    groups: tuple[int, ...]  # on-prem groups it can run in
    gpus: int
    hours: float
    value: float  # USD per GPU-hour that running on-prem is worth to it
    movable: bool  # it can also run in the cloud


@dataclass(frozen=True)
class BidPrices:
    """Per group, USD per GPU-hour; and where they came from, in words."""

    usd_per_gpu_hour: Floats
    note: str


def bid_prices(capacity_gpu_hours: Floats, demands: list[Demand], window_h: float) -> Floats:
    """Each group's bid price: the dual of its capacity in the fluid LP (module doc); each
    demand counts its GPUs x min(hours, `window_h`).

    `capacity_gpu_hours` is per group (0 for cloud groups, which nothing here asks for)."""
    from scipy.optimize import linprog  # imported here: only foresight needs it

    n_groups = len(capacity_gpu_hours)
    classes: dict[tuple[tuple[int, ...], float], float] = {}
    for d in demands:
        if d.groups and d.gpus * d.hours > 0 and d.value > 0:
            key = (d.groups, round(d.value, 6))
            classes[key] = classes.get(key, 0.0) + d.gpus * min(d.hours, window_h)
    prices = np.zeros(n_groups)
    if not classes:
        return prices
    cols: list[tuple[int, int]] = []  # (class, group) per variable
    values: list[float] = []
    for k, (groups, value) in enumerate(classes):
        for g in groups:
            cols.append((k, g))
            values.append(value)
    n_cls, n_var = len(classes), len(cols)
    used = sorted({g for _, g in cols})
    row_of = {g: n_cls + i for i, g in enumerate(used)}
    a = np.zeros((n_cls + len(used), n_var))
    for j, (k, g) in enumerate(cols):
        a[k, j] = 1.0
        a[row_of[g], j] = 1.0
    b = np.concatenate([np.array(list(classes.values())),
                        np.array([capacity_gpu_hours[g] for g in used])])
    res = linprog(-np.array(values), A_ub=a, b_ub=b, bounds=(0, None), method="highs")
    if res.status != 0 or res.ineqlin is None:
        return prices  # no answer: price nothing rather than guess
    duals = -np.asarray(res.ineqlin.marginals)
    for g in used:
        prices[g] = max(0.0, float(duals[row_of[g]]))
    return prices


class BidPriceEstimator:
    """Recent demand and the bid prices it implies, recomputed every `every_h` hours."""

    def __init__(self, n_groups: int, window_h: float, every_h: float) -> None:
        self.window_h = window_h
        self.every_h = every_h
        self.recent: deque[Demand] = deque()
        self.computed_at = -np.inf
        self.current = BidPrices(np.zeros(n_groups), "no demand seen yet")

    def observe(self, demand: Demand | None) -> None:
        """Count one arrival's demand."""
        if demand is not None:
            self.recent.append(demand)

    def prices(self, now_h: float, ci: CompiledInventory, cap: CapacityState) -> BidPrices:
        """The bid prices in effect at `now_h` over the capacity state `cap` (recomputed when
        `every_h` has passed)."""
        if now_h - self.computed_at < self.every_h:
            return self.current
        while self.recent and self.recent[0].at_h < now_h - self.window_h:
            self.recent.popleft()
        self.current = price_demand(free_gpu_hours(ci, cap, self.window_h), list(self.recent),
                                    self.window_h, self.every_h, f"{now_h:.2f} h")
        self.computed_at = now_h
        return self.current


def price_demand(free: Floats, demands: list[Demand], window_h: float, every_h: float,
                 at: str) -> BidPrices:
    """Bid prices for `free` GPU-hours per group given the recent `demands`, and the words
    that say where they came from (`at`: when, as the caller tells time)."""
    only = sum(1 for d in demands if not d.movable)
    return BidPrices(bid_prices(free, demands, window_h), (
        f"estimated: bid price from the duals of an LP over the {len(demands)} arrivals "
        f"({only} only on-prem can run) of the {window_h:g} h before {at}, recomputed "
        f"every {every_h * 60:g} min"))
