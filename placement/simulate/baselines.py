"""The policies compared: the project's engine and the placement rules people use today.

Every baseline sees the same candidates and estimates as the engine (one DecisionContext) and
keeps the policy's hard rules (`allowed`): require/forbid constraints, network boundaries, a
site with enough GPUs installed (or quota), the workload's budget and the burst $/hour cap,
the team's monthly burst budget, cloud only where the matching rule allows bursting and its
`when` lets it, and spot only where it allows spot (the engine's own gate and spot rules,
`when_gated` and `spot_allowed`). Each is as strong as
the system it stands for; what it ignores is the point of the comparison:

- overflow (Karmada's ordered cluster affinities, Kueue/MultiKueue's ordered flavors and
  dispatch): one ordered site list per workload, the way a platform team writes it once per
  rule: on-prem sites first, then cloud regions. Services list sites nearest their clients
  first; jobs list the sites holding their bulk data first, then inventory order. Within a
  cloud region spot comes before on-demand where the rule allows spot. The first on-prem site
  in the list with free GPUs takes it; else the first on-prem site expected to start it within
  the rule's max wait (it queues there); else the first cloud region with quota; else it
  queues at the first on-prem site that has the GPUs at all. Blind to price and data cost.
- price-only (SkyPilot's optimizer): the lowest GPU $ for the run plus egress as SkyPilot
  prices it (free within one cloud, the inventory's $/GB across clouds and between on-prem and
  a cloud; on-prem sites are one cluster fleet, free among themselves), among candidates that
  can start now or, on-prem, within the rule's max wait; else the cheapest on-prem queue.
  On-prem GPUs count at their amortized price. Blind to latency and to same-cloud egress.
- nearest (services; SkyServe-like placement by client latency without price): each service
  at the site nearest its clients (the worst client RTT) with room now, on-prem or cloud where
  the rule allows; else as overflow. Jobs go as overflow.
- overflow-on-demand-only: the old rule: on-prem in inventory order, the first with free GPUs;
  else cloud on-demand in inventory order; else the first on-prem queue. No spot, no waiting
  (so it ignores the rule's `when`: it bursts as soon as on-prem is full).
- all-cloud-on-demand: every workload in the cloud on-demand (services nearest their clients,
  jobs the cheapest region with quota) whatever the rule's burst settings; on-prem only when
  the constraints forbid every cloud region (then as overflow-on-demand-only).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from placement.engine import Engine
from placement.engine.batch import BatchEngine, Pick, unsupported
from placement.engine.compiled import ON_DEMAND, ONPREM, SPOT, CompiledInventory
from placement.engine.context import DataMove, DecisionContext, data_move
from placement.engine.engine import shape_key
from placement.engine.plugins.boundary import Boundary
from placement.engine.plugins.budget import Budget
from placement.engine.plugins.burst import burst_allowed, spot_allowed, when_gated
from placement.engine.plugins.constraints import Constraints
from placement.engine.shadow import BidPriceEstimator
from placement.model import Workload
from placement.model.inventory import CloudSiteSpec
from placement.simulate.replay import Decider
from placement.simulate.results import within_slo
from placement.simulate.synth import SimWorkload

Bools = np.ndarray

log = logging.getLogger("placement.simulate")
FACTS_KEPT = 4096  # shapes whose facts a baseline keeps (a service window is a shape each)


class EngineDecider:
    """The project's policy: the real engine, every filter and score. Through the engine's
    batch path (the same choice as Engine.decide, faster) when the engine has the default
    plugins; through Engine.decide otherwise. Where the policy sets `opportunity_cost`, on-prem
    GPU-hours carry bid prices from the demand seen so far in the replay (the batch path's
    shape tables give each arrival's demand); `greedy` turns them off (`engine-greedy`: the
    same engine deciding each workload alone, to compare against)."""

    name = "engine"

    def __init__(self, greedy: bool = False) -> None:
        self._batch: dict[int, BatchEngine | None] = {}
        self._bids: dict[int, BidPriceEstimator] = {}
        self.greedy = greedy
        if greedy:
            self.name = "engine-greedy"

    def decide(self, engine: Engine, sw: SimWorkload) -> Pick | None:
        key = id(engine.ci)
        if key not in self._batch:
            why = unsupported(engine)
            if why is not None:
                log.warning("the batch path cannot run this engine (%s): every workload goes "
                            "through Engine.decide, which is slower, and without bid prices",
                            why)
            self._batch[key] = BatchEngine(engine) if why is None else None
        batch = self._batch[key]
        if batch is None:
            out = engine.decide(sw.workload)
            return None if out.chosen is None else Pick.of(out.ctx, out.chosen, out.action)
        priced = engine.policy.spec.opportunity_cost
        if priced is None or self.greedy:
            return batch.decide(engine, sw.workload)
        bids = self._bids.get(key)
        if bids is None:
            bids = self._bids[key] = BidPriceEstimator(len(engine.ci.group_site),
                                                       priced.window_hours,
                                                       priced.every_minutes / 60)
        now = bids.prices(sw.arrival_h, engine.ci, engine.cap)
        view = engine.with_capacity(replace(engine.cap, bid_price=now.usd_per_gpu_hour,
                                            bid_note=now.note))
        pick = batch.decide(view, sw.workload)
        bids.observe(batch.demand(sw.workload, sw.arrival_h))
        return pick


def _pick(ctx: DecisionContext, pos: int | None) -> Pick | None:
    if pos is None:
        return None
    kind = int(ctx.kind[pos])
    waits = ctx.gpus_needed > ctx.free_gpus[pos]
    return Pick.of(ctx, pos, "burst" if kind != ONPREM else "queue" if waits else "place")


def shape_rules(ctx: DecisionContext) -> Bools:
    """The hard rules that read the workload's shape alone: require/forbid, network
    boundaries, and a site with enough GPUs of the type installed (or quota) at all."""
    ok: Bools = Constraints().filter(ctx).passed & Boundary().filter(ctx).passed
    return ok & (ctx.ci.group_capacity[ctx.group] >= ctx.gpus_needed)


def constraints(ctx: DecisionContext, facts: ShapeFacts | None = None) -> Bools:
    """The policy's constraints on where a workload may run, whatever the policy deciding:
    `shape_rules`, and budgets and the burst $/hour cap."""
    ok: Bools = (facts.rules if facts is not None else shape_rules(ctx)) & \
        Budget().filter(ctx).passed
    return ok


def allowed(ctx: DecisionContext, facts: ShapeFacts | None = None) -> Bools:
    """`constraints`, with the matching rule's burst settings, as the engine's burst gate
    reads them: cloud only where the rule allows bursting and its `when` lets it (not while
    an allowed on-prem site can start the workload within the rule's max wait, unless the
    data is near), spot only where it allows spot."""
    burst = facts.burst_ok if facts is not None else burst_allowed(ctx)
    ok: Bools = constraints(ctx, facts)
    soon = ok & _onprem_soon(ctx)
    out: Bools = ok & burst & spot_allowed(ctx) & ~when_gated(ctx, soon)
    return out


def any_policy(ctx: DecisionContext) -> Bools:
    """Every candidate some policy compared may choose (the bound's candidates): `constraints`
    and the rule's spot settings (all-cloud-on-demand bursts whatever the rule says)."""
    ok: Bools = constraints(ctx) & spot_allowed(ctx)
    return ok


def runnable(engine: Engine, wl: Workload) -> bool:
    """Whether some site could run the workload at all under the policy's hard rules (on an
    empty inventory; a service within its SLO). The workloads' draws use this, never a
    policy's decision, so every policy is judged on the same work."""
    ctx = engine.context(wl)
    ok = allowed(ctx)
    if wl.spec.is_service:
        ok = ok & within_slo(ctx.p99_ms, wl.spec)
    return bool(ok.any())


def _onprem_soon(ctx: DecisionContext) -> Bools:
    """On-prem candidates expected to start the workload within the rule's max wait."""
    soon: Bools = ~ctx.is_cloud & (ctx.wait_hours <= ctx.rule.max_wait_hours)
    return soon


def _room(ctx: DecisionContext) -> Bools:
    room: Bools = ctx.free_gpus >= ctx.gpus_needed
    return room


def _first(mask: Bools, *keys: np.ndarray) -> int | None:
    """The first candidate of `mask` by `keys` (the last key is the primary one), ties by
    candidate order."""
    idx = np.flatnonzero(mask)
    if not len(idx):
        return None
    order = np.lexsort(tuple(k[idx] for k in keys))
    return int(idx[order[0]])


def _first_in_turn(masks: tuple[Bools, ...], order: np.ndarray) -> int | None:
    """The first candidate by `order` of the first mask that has one."""
    for mask in masks:
        got = _first(mask, order)
        if got is not None:
            return got
    return None


def overflow_order(ctx: DecisionContext) -> np.ndarray:
    """Per candidate: its place in the workload's overflow list (lower first)."""
    cloud = ctx.is_cloud.astype(float)
    spot_last = (ctx.kind != SPOT).astype(float)  # within a region, spot first where allowed
    if ctx.workload.spec.is_service:
        near = ctx.client_rtt_ms
    else:
        holds = np.zeros(ctx.n)
        for ref in ctx.workload.spec.datasets:
            if ref.access == "bulk":
                holds += ctx.ci.dataset_replicas[ctx.ci.dataset_index[ref.name]][ctx.site]
        near = -holds
    rank = np.lexsort((spot_last, ctx.site, near, cloud))
    order = np.empty(ctx.n)
    order[rank] = np.arange(ctx.n)
    return order


@dataclass
class ShapeFacts:
    """What a baseline's choice reads that depends on the workload's shape alone (the
    engine's `shape_key`): worked out once per shape, as the engine's own memo does."""

    rules: Bools  # shape_rules
    burst_ok: Bools  # on-prem, or the rule allows bursting
    order: np.ndarray  # overflow_order
    sky: DataMove | None = None  # the data move as SkyPilot prices it (price-only)

    @classmethod
    def of(cls, ctx: DecisionContext) -> ShapeFacts:
        return cls(shape_rules(ctx), burst_allowed(ctx), overflow_order(ctx))


class Baseline:
    """A baseline's shared part: the decision context and its shape's facts (the most
    recently used FACTS_KEPT shapes are kept)."""

    name: str

    def __init__(self) -> None:
        self._facts: OrderedDict[tuple[Any, ...], ShapeFacts] = OrderedDict()

    def context(self, engine: Engine, wl: Workload) -> tuple[DecisionContext, ShapeFacts]:
        shape = engine.shape(wl)
        ctx = engine.context(wl, shape)
        key = (id(engine.ci), shape_key(wl, engine.reads))
        facts = self._facts.pop(key, None)
        if facts is None:
            facts = ShapeFacts.of(ctx)
            if len(self._facts) >= FACTS_KEPT:
                self._facts.popitem(last=False)
        self._facts[key] = facts
        return ctx, facts

    def decide(self, engine: Engine, sw: SimWorkload) -> Pick | None:
        ctx, facts = self.context(engine, sw.workload)
        return _pick(ctx, self.choose(ctx, facts))

    def choose(self, ctx: DecisionContext, facts: ShapeFacts) -> int | None:
        """The chosen candidate's position, or None to reject."""
        raise NotImplementedError


def overflow(ctx: DecisionContext, facts: ShapeFacts) -> int | None:
    """The overflow choice (see the module's docstring)."""
    ok = allowed(ctx, facts)
    onprem = ok & ~ctx.is_cloud
    return _first_in_turn((onprem & _room(ctx),
                           onprem & _onprem_soon(ctx),
                           ok & ctx.is_cloud & _room(ctx), onprem), facts.order)


class Overflow(Baseline):
    """Ordered site lists with waiting and spot, as the rule allows."""

    name = "overflow"

    def choose(self, ctx: DecisionContext, facts: ShapeFacts) -> int | None:
        return overflow(ctx, facts)


def overflow_on_demand_only(ctx: DecisionContext, facts: ShapeFacts) -> int | None:
    """The old rule (see the module's docstring)."""
    ok = constraints(ctx, facts) & facts.burst_ok & (ctx.kind != SPOT)  # never waits
    room = ok & _room(ctx)
    return _first_in_turn((room & (ctx.kind == ONPREM), room & (ctx.kind == ON_DEMAND),
                           ok & (ctx.kind == ONPREM)), ctx.site.astype(float))


class OverflowOnDemandOnly(Baseline):
    """On-prem first in a fixed order, overflow to cloud on-demand in a fixed order."""

    name = "overflow-on-demand-only"

    def choose(self, ctx: DecisionContext, facts: ShapeFacts) -> int | None:
        return overflow_on_demand_only(ctx, facts)


def providers(ci: CompiledInventory) -> list[str]:
    """Per site: its cloud provider, or "onprem" for every on-prem site."""
    return [s.spec.provider if isinstance(s.spec, CloudSiteSpec) else "onprem"
            for s in ci.inventory.sites]


def skypilot_egress(ci: CompiledInventory) -> np.ndarray:
    """The S x S $/GB matrix as SkyPilot's optimizer prices a transfer: free between two sites
    of one provider, the inventory's $/GB otherwise."""
    prov = np.array(providers(ci))
    same = prov[:, None] == prov[None, :]
    out: np.ndarray = np.where(same, 0.0, ci.egress)
    return out


class PriceOnly(Baseline):
    """The lowest GPU $ plus egress as SkyPilot prices it; latency unseen."""

    name = "price-only"

    def __init__(self) -> None:
        super().__init__()
        self._egress: dict[int, np.ndarray] = {}

    def choose(self, ctx: DecisionContext, facts: ShapeFacts) -> int | None:
        ci = ctx.ci
        if facts.sky is None:
            matrix = self._egress.get(id(ci))
            if matrix is None:
                matrix = self._egress[id(ci)] = skypilot_egress(ci)
            facts.sky = data_move(ci, ctx.workload, matrix)
        ok = allowed(ctx, facts)
        price = ctx.gpu_usd + facts.sky.usd(ctx.site, ctx.hours)
        soon = ok & (_room(ctx) | _onprem_soon(ctx))
        got = _first(soon, price)
        return got if got is not None else _first(ok & ~ctx.is_cloud, price)


class Nearest(Baseline):
    """Services at the site nearest their clients with room; jobs as overflow."""

    name = "nearest"

    def choose(self, ctx: DecisionContext, facts: ShapeFacts) -> int | None:
        if not ctx.workload.spec.is_service:
            return overflow(ctx, facts)
        got = _first(allowed(ctx, facts) & _room(ctx), ctx.site.astype(float),
                     ctx.client_rtt_ms)
        return got if got is not None else overflow(ctx, facts)


class AllCloudOnDemand(Baseline):
    """Everything in the cloud, on-demand."""

    name = "all-cloud-on-demand"

    def choose(self, ctx: DecisionContext, facts: ShapeFacts) -> int | None:
        ok = constraints(ctx, facts) & _room(ctx) & (ctx.kind == ON_DEMAND)
        key = ctx.client_rtt_ms if ctx.workload.spec.is_service else ctx.usd_per_hour
        got = _first(ok, key)
        return got if got is not None else overflow_on_demand_only(ctx, facts)


BASELINES: dict[str, type[Baseline]] = {
    c.name: c for c in (Overflow, PriceOnly, Nearest, OverflowOnDemandOnly, AllCloudOnDemand)}


def deciders(baselines: list[str]) -> list[Decider]:
    """The engine and the named baselines ('all' for every one; `engine-greedy`, the engine
    without bid prices, only when named)."""
    names = list(BASELINES) if baselines == ["all"] else baselines
    unknown = [n for n in names if n not in BASELINES and n != "engine-greedy"]
    if unknown:
        raise ValueError(f"unknown baseline(s) {', '.join(unknown)}; known: "
                         f"{', '.join(BASELINES)}, engine-greedy or all")
    return [EngineDecider(), *(EngineDecider(greedy=True) if n == "engine-greedy"
                               else BASELINES[n]() for n in names)]
