"""Per-decision context: the candidate rows and the estimates plugins share (computed once)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import numpy as np
from numpy.typing import NDArray

from placement.engine import elementwise as ew
from placement.engine.compiled import ONPREM, SPOT, CapacityState, CompiledInventory
from placement.engine.network import SITE_RATE, TIERED_RATE, tiered_egress_usd
from placement.engine.rules import EffectiveRule
from placement.model import Scales
from placement.model.workload import Workload, WorkloadSpec

if TYPE_CHECKING:
    from placement.signals import Observed

Floats = NDArray[np.float64]
T = TypeVar("T")


class cached_property(Generic[T]):  # the name of the functools descriptor it stands in for
    """functools.cached_property without its per-instance lock (Python 3.11 takes an RLock
    on every first read, which costs a decision about a tenth of its time). A context is
    used by one thread, so there is nothing to lock against."""

    def __init__(self, func: Callable[[Any], T]) -> None:
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> cached_property[T]: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...

    def __get__(self, instance: object | None, owner: type | None = None
                ) -> T | cached_property[T]:
        if instance is None:
            return self
        value = instance.__dict__[self.name] = self.func(instance)
        return value


OVERDUE_NOTE = (" (includes GPUs held by work past its expected end; when they come back is "
                "unknown, assumed {overdue_hours:g} h from now by the policy's "
                "defaults.overdue_release_hours)")


def overdue(ctx: DecisionContext) -> Bools:
    """Per candidate: its wait counts GPUs held by work past its expected end."""
    held = ctx.cap.schedule.overdue.copy()  # one copy (other decisions may add to it)
    return np.isin(ctx.group, np.fromiter(held, dtype=np.int64, count=len(held)))


def overdue_note(ctx: DecisionContext, i: int) -> str:
    """Words for a candidate whose wait counts GPUs held by work past its expected end."""
    schedule = ctx.cap.schedule
    if int(ctx.group[i]) not in schedule.overdue:
        return ""
    return OVERDUE_NOTE.format(overdue_hours=schedule.overdue_hours)


BURST_WHEN = ("always", "onprem_unavailable", "onprem_unavailable_or_near_data")
_PARAMS: dict[Callable[..., Any], tuple[str, ...]] = {}
SIGNAL_BUSY_WAIT_H = 1.0  # assumed wait for GPUs busy with work the scheduler did not place
Ints = NDArray[np.int64]
Int8s = NDArray[np.int8]
Bools = NDArray[np.bool_]


@dataclass(frozen=True)
class Billing:
    """Per candidate row: USD per hour billed for n GPUs, GPUs billed, instance chosen and how
    many of it."""

    usd_per_hour: Floats
    billed_gpus: Ints
    instance: Ints  # index into CompiledInventory.inst_names, -1 for on-prem
    instances: Ints  # instances billed (1 for on-prem)


@dataclass(frozen=True)
class DataMove:
    """Per site: bulk data to move in, its egress cost and time, and lookup penalties."""

    egress_gb: Floats
    egress_usd: Floats
    transfer_hours: Floats
    lookup_ms: Floats
    lookup_egress_gb_per_hour: Floats
    lookup_egress_usd_per_hour: Floats
    sources: tuple[tuple[int, Ints], ...] = ()  # per bulk dataset: (dataset, source per site)
    # per site, where the numbers come from (network.SOURCE_NAMES; -1: nothing moved or
    # looked up): the largest bulk move's egress price and bandwidth, the lookups' RTT
    egress_source: Int8s = field(default_factory=lambda: np.zeros(0, dtype=np.int8))
    gbps_source: Int8s = field(default_factory=lambda: np.zeros(0, dtype=np.int8))
    lookup_rtt_source: Int8s = field(default_factory=lambda: np.zeros(0, dtype=np.int8))

    def usd(self, site: Ints, hours: float) -> Floats:
        """Egress $ at each of `site` for `hours` of work: the bulk move plus the lookups."""
        usd: Floats = ew.moved(self.egress_usd[site], self.lookup_egress_usd_per_hour[site],
                               hours)
        return usd

    def gb(self, site: Ints, hours: float) -> Floats:
        """GB moved into each of `site` for `hours` of work (bulk and lookups)."""
        gb: Floats = ew.moved(self.egress_gb[site], self.lookup_egress_gb_per_hour[site], hours)
        return gb


# A workload's settings that are not per candidate: functions of its spec and rule, which
# DecisionContext and the batch path (per workload) both read.

def work_hours(spec: WorkloadSpec, rule: EffectiveRule) -> float:
    """Hours of work: a job's duration or a service's cost horizon."""
    return spec.duration_hours if spec.duration_hours else rule.service_horizon_hours


def deadline_applies(spec: WorkloadSpec) -> bool:
    """A job's deadline filters candidates (a service's never does)."""
    return spec.deadline_hours is not None and not spec.is_service


def spot_never(spec: WorkloadSpec, rule: EffectiveRule) -> bool:
    """Spot is closed: the rule never allows it, or the workload was interrupted too often."""
    burst = rule.burst
    return burst.spot == "never" or spec.interruptions >= burst.max_spot_interruptions


def spot_room_applies(spec: WorkloadSpec, rule: EffectiveRule) -> bool:
    """Spot needs deadline room for its expected restarts."""
    return rule.burst.spot == "when_deadline_allows" and not spot_never(spec, rule) and bool(
        spec.deadline_hours)


@dataclass
class DecisionContext:
    """Everything one decision needs. Estimates are cached per decision, never across them."""

    ci: CompiledInventory
    cap: CapacityState
    workload: Workload
    rule: EffectiveRule
    scales: Scales
    rows: Ints
    billing: Billing
    mask: Bools = field(default_factory=lambda: np.zeros(0, dtype=bool))
    observed: Observed | None = None  # live signals, when the service has them
    team_spent_usd: float = 0.0  # the team's burst spend this month, when budgets apply
    team_budget_usd: float | None = None  # the policy's monthly burst budget for the team

    @cached_property
    def n(self) -> int:
        """Candidates in this decision."""
        return len(self.rows)

    @cached_property
    def site(self) -> Ints:
        return self.ci.row_site[self.rows]

    @cached_property
    def kind(self) -> Ints:
        return self.ci.row_kind[self.rows]

    @cached_property
    def gpu(self) -> Ints:
        """GPU type index per candidate (CompiledInventory.gpu_names)."""
        got: Ints = self.ci.row_gpu[self.rows]
        return got

    @cached_property
    def group(self) -> Ints:
        return self.ci.row_group[self.rows]

    @cached_property
    def is_cloud(self) -> Bools:
        cloud: Bools = self.kind != ONPREM
        return cloud

    @cached_property
    def gpus_needed(self) -> int:
        return self.workload.spec.gpu.count * self.workload.spec.replicas

    def call(self, formula: Callable[..., T], **known: Any) -> T:
        """`formula` (a plugin's `rule` or `value`, placement.engine.elementwise) over this
        decision's candidates: each parameter is the attribute of that name (or `known`'s
        value, computed already); a setting that is not set (None) is NaN, which every
        comparison treats as no limit."""
        names = _PARAMS.get(formula)
        if names is None:
            names = _PARAMS[formula] = tuple(inspect.signature(formula).parameters)
        args = [known[n] if n in known else getattr(self, n) for n in names]
        return formula(*[math.nan if a is None else a for a in args])

    # The workload's settings the rules read, by the names the batch kernel uses too.

    @cached_property
    def is_spot(self) -> Bools:
        spot: Bools = self.kind == SPOT
        return spot

    @cached_property
    def installed_gpus(self) -> Ints:
        """GPUs installed (on-prem) or the quota (cloud) of each candidate's group."""
        got: Ints = self.ci.group_capacity[self.group]
        return got

    @property
    def max_wait_hours(self) -> float:
        return self.rule.max_wait_hours

    @property
    def deadline_hours(self) -> float | None:
        return self.workload.spec.deadline_hours

    @property
    def deadline_applies(self) -> bool:
        return deadline_applies(self.workload.spec)

    @property
    def budget_usd(self) -> float | None:
        return self.workload.spec.budget_usd

    @property
    def burst_cap_usd_per_hour(self) -> float | None:
        return self.rule.burst.max_usd_per_hour

    @property
    def bursting_allowed(self) -> bool:
        return self.rule.burst.allowed

    @property
    def burst_when(self) -> int:
        """The rule's `when`, as BURST_WHEN's index."""
        return BURST_WHEN.index(self.rule.burst.when)

    @property
    def spot_never(self) -> bool:
        return spot_never(self.workload.spec, self.rule)

    @property
    def spot_room_applies(self) -> bool:
        return spot_room_applies(self.workload.spec, self.rule)

    @property
    def spot_slack_factor(self) -> float:
        return self.rule.burst.spot_slack_factor

    @property
    def onprem_ok_any(self) -> bool:
        """Some on-prem candidate passes every filter run so far (`mask`)."""
        return bool((self.mask & ~self.is_cloud).any())

    @property
    def onprem_ok_min_usd(self) -> float:
        """The least `onprem_side_usd` among on-prem candidates passing every filter run so far
        (inf when there is none)."""
        ok = self.mask & ~self.is_cloud
        if not ok.any():
            return math.inf
        side: Floats = ew.onprem_side_usd(self.egress_usd, self.opportunity_usd)
        return float(side[ok].min())

    @cached_property
    def hours(self) -> float:
        """Hours of work: a job's duration or a service's cost horizon."""
        return work_hours(self.workload.spec, self.rule)

    @cached_property
    def spot_rate(self) -> Floats:
        """Expected spot interruptions per hour of the workload on each candidate: the site's
        rate per instance-hour x the instances it runs on (any one interrupted stops the run;
        0 off spot)."""
        rate: Floats = np.where(self.kind == SPOT, self.ci.spot_rate[self.site]
                                * self.billing.instances[self.rows], 0.0)
        return rate

    @cached_property
    def spot_overhead(self) -> Floats:
        """Expected fraction of extra run time from spot interruptions (0 if not spot)."""
        lost_h = self.workload.spec.checkpoint_minutes / 120 + (
            self.rule.burst.restart_overhead_minutes / 60)
        overhead: Floats = self.spot_rate * lost_h
        return overhead

    @cached_property
    def run_hours(self) -> Floats:
        got: Floats = ew.run_hours(self.hours, self.spot_overhead)
        return got

    @cached_property
    def usd_per_hour(self) -> Floats:
        return self.billing.usd_per_hour[self.rows]

    @cached_property
    def gpu_usd(self) -> Floats:
        return self.usd_per_hour * self.run_hours

    @cached_property
    def gpu_hours(self) -> Floats:
        return self.billing.billed_gpus[self.rows] * self.run_hours

    @cached_property
    def data(self) -> DataMove:
        return data_move(self.ci, self.workload)

    @cached_property
    def egress_gb(self) -> Floats:
        return self.data.gb(self.site, self.hours)

    @cached_property
    def egress_usd(self) -> Floats:
        return self.data.usd(self.site, self.hours)

    @cached_property
    def bulk_egress_usd(self) -> Floats:
        """Egress $ of moving the bulk datasets in (once)."""
        got: Floats = self.data.egress_usd[self.site]
        return got

    @cached_property
    def lookup_usd_per_hour(self) -> Floats:
        """Egress $ per hour of the RAG lookups' traffic."""
        got: Floats = self.data.lookup_egress_usd_per_hour[self.site]
        return got

    @cached_property
    def transfer_hours(self) -> Floats:
        return self.data.transfer_hours[self.site]

    @cached_property
    def total_usd(self) -> Floats:
        got: Floats = ew.total_usd(self.usd_per_hour, self.run_hours, self.egress_usd)
        return got

    @cached_property
    def billed_gpus(self) -> Ints:
        """GPUs billed per candidate (whole instances in the cloud)."""
        got: Ints = self.billing.billed_gpus[self.rows]
        return got

    @cached_property
    def bid_usd_per_gpu_hour(self) -> Floats:
        """The on-prem group's bid price per GPU-hour where the policy prices on-prem capacity
        (placement.engine.shadow); 0 in the cloud and without bid prices."""
        price = self.cap.bid_price
        if price is None:
            return np.zeros(self.n)
        bid: Floats = np.where(self.kind == ONPREM, price[self.group], 0.0)
        return bid

    @cached_property
    def opportunity_usd(self) -> Floats:
        """What the on-prem GPU-hours are worth to work only on-prem can run: the group's bid
        price x GPU-hours (0 in the cloud, and without bid prices)."""
        got: Floats = ew.opportunity_usd(self.bid_usd_per_gpu_hour, self.billed_gpus,
                                         self.run_hours)
        return got

    @cached_property
    def cost_usd(self) -> Floats:
        """The cost criterion: billed $ plus the opportunity cost of on-prem GPUs (without bid
        prices that cost is 0, and x + 0.0 is x: the sum is skipped)."""
        if self.cap.bid_price is None:
            return self.total_usd
        got: Floats = ew.cost_usd(self.total_usd, self.opportunity_usd)
        return got

    @cached_property
    def store_free_gpus(self) -> Ints:
        """Installed (or quota) minus reserved, per the store."""
        free: Ints = self.ci.group_capacity[self.group] - self.cap.reserved[self.group]
        return free

    @cached_property
    def free_gpus(self) -> Ints:
        """Free per the store; a fresh signal reporting fewer (GPUs busy with work the
        scheduler did not place, or broken) lowers it, never raises it."""
        free = self.store_free_gpus
        if self.observed is not None:
            seen = self.observed.free_gpus[self.group]
            known = ~np.isnan(seen)
            if known.any():
                free = np.where(known, np.minimum(free, np.nan_to_num(seen)), free
                                ).astype(np.int64)
        return free

    @cached_property
    def busy_per_signals(self) -> Bools:
        """Short of GPUs only because live signals report fewer free than the store."""
        short: Bools = (self.gpus_needed > self.free_gpus) & (
            self.gpus_needed <= self.store_free_gpus)
        return short

    @cached_property
    def wait_hours(self) -> Floats:
        """Expected delay until the GPUs are there: queue (on-prem) or provisioning (cloud).

        Reservations' release times cover what the store knows. GPUs that signals report busy
        with other work come back at an unknown time, assumed SIGNAL_BUSY_WAIT_H: the workload
        queues (and is re-decided as signals change) instead of being rejected.
        """
        got: Floats = ew.wait_hours(self.is_cloud, self.short, self.provision_hours,
                                    self.queue_wait_hours)
        return got

    @cached_property
    def short(self) -> Bools:
        """Fewer GPUs free than the workload needs (per the store, or per live signals)."""
        got: Bools = (self.gpus_needed > self.store_free_gpus) | self.busy_per_signals
        return got

    @cached_property
    def queue_wait_hours(self) -> Floats:
        """On-prem: hours until enough reserved GPUs are released (0 when free now)."""
        deficit = self.gpus_needed - self.store_free_gpus
        wait = np.zeros(self.n)
        short = deficit > 0
        if short.any():
            wait[short] = self.cap.schedule.wait(self.group[short], deficit[short])
        got: Floats = np.where(self.busy_per_signals, np.maximum(wait, SIGNAL_BUSY_WAIT_H), wait)
        return got

    @cached_property
    def provision_hours(self) -> Floats:
        """Hours to provision capacity at each candidate's site (0 on-prem)."""
        got: Floats = self.ci.provision_h[self.site]
        return got

    @cached_property
    def start_hours(self) -> Floats:
        """Data moves while the workload waits: it starts when both are done."""
        got: Floats = ew.start_hours(self.wait_hours, self.transfer_hours)
        return got

    @cached_property
    def finish_hours(self) -> Floats:
        got: Floats = ew.finish_hours(self.start_hours, self.run_hours)
        return got

    @cached_property
    def client_rtt_ms(self) -> Floats:
        """The worst RTT from the workload's clients to each candidate (0 without clients)."""
        lat = self.workload.spec.latency
        if lat is None or not lat.clients:
            return np.zeros(self.n)
        idx = [self.ci.client_index[c.location] for c in lat.clients]
        rtt: Floats = self.ci.client_rtt[np.array(idx)][:, self.site].max(axis=0)
        return rtt

    @cached_property
    def client_rtt_source(self) -> Int8s:
        """Where each candidate's worst client RTT comes from (network.SOURCE_NAMES; -1
        without clients)."""
        lat = self.workload.spec.latency
        if lat is None or not lat.clients:
            return np.full(self.n, -1, dtype=np.int8)
        idx = np.array([self.ci.client_index[c.location] for c in lat.clients])
        worst = idx[self.ci.client_rtt[idx][:, self.site].argmax(axis=0)]
        src: Int8s = self.ci.client_rtt_source[worst, self.site]
        return src

    @cached_property
    def p99_ms(self) -> Floats:
        """Worst client's p99: RTT + service time + RAG lookups x RTT to the data."""
        lat = self.workload.spec.latency
        if lat is None:
            return np.full(self.n, np.nan)
        rtt = self.client_rtt_ms
        service: Floats | float = lat.service_time_p99_ms
        seen = self.observed.service_for(self.workload) if self.observed is not None else None
        if seen is not None:  # observed at the site (fresh) replaces the declared value
            at_site = seen[self.site]
            service = np.where(np.isnan(at_site), lat.service_time_p99_ms, at_site)
        p99: Floats = rtt + service + self.data.lookup_ms[self.site]
        return p99


def data_move(ci: CompiledInventory, wl: Workload, egress: Floats | None = None) -> DataMove:
    """Per site: what reading the workload's datasets there costs (vectorized over sites), at
    the inventory's $/GB (or at `egress`, an S x S $/GB matrix: how a baseline prices it). A
    bulk move priced at its source site's default rate is billed by that site's volume tiers,
    where it has them, at the move's own volume."""
    if egress is None:
        egress = ci.egress
    s = len(ci.site_names)
    cols = np.arange(s)
    gb, usd, hours = np.zeros(s), np.zeros(s), np.zeros(s)
    lookup_ms, lk_gb_h, lk_usd_h = np.zeros(s), np.zeros(s), np.zeros(s)
    none = np.full(s, -1, dtype=np.int8)
    egress_src, gbps_src, lookup_src = none.copy(), none.copy(), none.copy()
    largest = np.zeros(s)
    rate = wl.spec.requests_per_s
    sources: list[tuple[int, Ints]] = []
    for ref in wl.spec.datasets:
        d = ci.dataset_index[ref.name]
        reps = np.flatnonzero(ci.dataset_replicas[d])
        local = ci.dataset_replicas[d]
        if ref.access == "bulk":
            size = ci.dataset_size[d]
            cost = egress[reps] * size  # R x S
            price_src = ci.network_source[2][reps]
            tiers = [(k, ci.egress_tiers[r]) for k, r in enumerate(reps.tolist())
                     if r in ci.egress_tiers]
            if tiers:
                at_rate = (price_src == SITE_RATE) & (cost > 0)
                for k, tier in tiers:
                    cost[k] = np.where(at_rate[k], tiered_egress_usd(size, *tier), cost[k])
                    price_src[k] = np.where(at_rate[k], TIERED_RATE, price_src[k])
            secs = size * 8 / ci.gbps[reps]  # GB -> Gbit over Gbit/s
            best = np.argmin(cost + secs * 1e-9, axis=0)
            gb += np.where(local, 0.0, size)
            usd += cost[best, cols]
            hours += secs[best, cols] / 3600
            sources.append((d, np.where(local, -1, reps[best])))
            bigger = ~local & (size > largest)
            largest = np.where(bigger, size, largest)
            egress_src = np.where(bigger, price_src[best, cols], egress_src)
            gbps_src = np.where(bigger, ci.network_source[1][reps[best], cols], gbps_src)
        else:
            rtt = ci.rtt[reps]  # R x S
            near = np.argmin(rtt, axis=0)
            lookup_ms += ref.lookups_per_request * rtt[near, cols]
            per_h = rate * ref.lookups_per_request * ref.kb_per_lookup / 1e6 * 3600
            moved = np.where(local, 0.0, per_h)
            lk_gb_h += moved
            lk_usd_h += moved * egress[reps[near], cols]
            lookup_src = np.where(lookup_src < 0, ci.network_source[0][reps[near], cols],
                                  lookup_src)
            egress_src = np.where((egress_src < 0) & ~local,
                                  ci.network_source[2][reps[near], cols], egress_src)
    return DataMove(gb, usd, hours, lookup_ms, lk_gb_h, lk_usd_h, tuple(sources),
                    egress_src.astype(np.int8), gbps_src.astype(np.int8),
                    lookup_src.astype(np.int8))


def moves_to(ci: CompiledInventory, move: DataMove, site: int) -> list[dict[str, Any]]:
    """The bulk datasets `site` lacks, each with the replica the engine priced to copy it from
    (`Decision.data_moves`; staging reads them)."""
    names = list(ci.dataset_index)
    return [{"dataset": names[d], "from_site": ci.site_names[int(src[site])],
             "gb": float(ci.dataset_size[d])} for d, src in move.sources if src[site] >= 0]
