"""The policies compared: the project's engine and the placement rules people use today.

Every baseline sees the same candidates and estimates as the engine (one DecisionContext) and
keeps the hard rules the engine keeps: the policy's require/forbid constraints (compliance)
and network boundaries. What each one ignores is the point of the comparison:
- ordered-overflow: on-prem sites in inventory order, the first with free GPUs; else cloud
  regions on-demand in inventory order, the first with quota; else the queue of the first
  on-prem site that has the GPUs at all (Karmada overflow affinities, MultiKueue's ordered
  dispatch). Blind to price, data and latency.
- cheapest-gpu: the lowest GPU price per hour among candidates with room (on-prem at its
  amortized price, cloud on-demand, and spot for jobs); else the cheapest on-prem queue.
  Blind to egress and latency (a price-only optimizer).
- all-cloud-on-demand: every workload in the cloud on-demand: services in the region nearest
  their clients, jobs in the cheapest region with quota; on-prem only when the rules forbid
  the cloud (then as ordered-overflow).
"""

from __future__ import annotations

import logging
from typing import ClassVar

import numpy as np

from placement.engine import Engine
from placement.engine.batch import BatchEngine, Pick, unsupported
from placement.engine.compiled import ON_DEMAND, ONPREM, SPOT
from placement.engine.context import DecisionContext
from placement.engine.plugins.boundary import Boundary
from placement.engine.plugins.constraints import Constraints
from placement.simulate.replay import Decider
from placement.simulate.synth import SimWorkload

Bools = np.ndarray

log = logging.getLogger("placement.simulate")


class EngineDecider:
    """The project's policy: the real engine, every filter and score. Through the engine's
    batch path (the same choice as Engine.decide, faster) when the engine has the default
    plugins; through Engine.decide otherwise."""

    name = "engine"

    def __init__(self) -> None:
        self._batch: dict[int, BatchEngine | None] = {}

    def decide(self, engine: Engine, sw: SimWorkload) -> Pick | None:
        key = id(engine.ci)
        if key not in self._batch:
            why = unsupported(engine)
            if why is not None:
                log.warning("the batch path cannot run this engine (%s): every workload goes "
                            "through Engine.decide, which is slower", why)
            self._batch[key] = BatchEngine(engine) if why is None else None
        batch = self._batch[key]
        if batch is not None:
            return batch.decide(engine, sw.workload)
        out = engine.decide(sw.workload)
        return None if out.chosen is None else Pick.of(out.ctx, out.chosen, out.action)


def _pick(ctx: DecisionContext, pos: int | None) -> Pick | None:
    if pos is None:
        return None
    kind = int(ctx.kind[pos])
    waits = ctx.gpus_needed > ctx.free_gpus[pos]
    return Pick.of(ctx, pos, "burst" if kind != ONPREM else "queue" if waits else "place")


def hard_rules(ctx: DecisionContext) -> tuple[Bools, Bools, Bools]:
    """Allowed by the hard rules; of those, with room now; on-prem that can ever fit."""
    ok = Constraints().filter(ctx).passed & Boundary().filter(ctx).passed
    need = ctx.gpus_needed
    fits = ctx.ci.group_capacity[ctx.group] >= need
    room = ok & fits & (ctx.free_gpus >= need)
    can_queue = ok & fits & ~ctx.is_cloud
    return ok & fits, room, can_queue


def _first(mask: Bools, order: np.ndarray) -> int | None:
    idx = np.flatnonzero(mask)
    return int(idx[np.argmin(order[idx])]) if len(idx) else None


class OrderedOverflow:
    """On-prem first in a fixed order, overflow to cloud in a fixed order."""

    name: ClassVar[str] = "ordered-overflow"

    def decide(self, engine: Engine, sw: SimWorkload) -> Pick | None:
        ctx = engine.context(sw.workload)
        return _pick(ctx, overflow(ctx))


def overflow(ctx: DecisionContext) -> int | None:
    _, room, can_queue = hard_rules(ctx)
    order = ctx.site.astype(float)
    for mask in (room & (ctx.kind == ONPREM), room & (ctx.kind == ON_DEMAND), can_queue):
        got = _first(mask, order)
        if got is not None:
            return got
    return None


class CheapestGpu:
    """The lowest GPU price with room, egress and latency unseen."""

    name: ClassVar[str] = "cheapest-gpu"

    def decide(self, engine: Engine, sw: SimWorkload) -> Pick | None:
        ctx = engine.context(sw.workload)
        _, room, can_queue = hard_rules(ctx)
        if sw.workload.spec.is_service:
            room = room & (ctx.kind != SPOT)
        price = ctx.usd_per_hour
        got = _first(room, price)
        return _pick(ctx, got if got is not None else _first(can_queue, price))


class AllCloudOnDemand:
    """Everything in the cloud, on-demand."""

    name: ClassVar[str] = "all-cloud-on-demand"

    def decide(self, engine: Engine, sw: SimWorkload) -> Pick | None:
        ctx = engine.context(sw.workload)
        _, room, _ = hard_rules(ctx)
        key = ctx.p99_ms if sw.workload.spec.is_service else ctx.usd_per_hour
        got = _first(room & (ctx.kind == ON_DEMAND), key)
        return _pick(ctx, got if got is not None else overflow(ctx))  # quota full, no cloud


BASELINES: dict[str, type[Decider]] = {
    c.name: c for c in (OrderedOverflow, CheapestGpu, AllCloudOnDemand)}  # type: ignore[misc]


def deciders(baselines: list[str]) -> list[Decider]:
    """The engine and the named baselines ('all' for every one)."""
    names = list(BASELINES) if baselines == ["all"] else baselines
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline(s) {', '.join(unknown)}; known: "
                         f"{', '.join(BASELINES)} or all")
    return [EngineDecider(), *(BASELINES[n]() for n in names)]
