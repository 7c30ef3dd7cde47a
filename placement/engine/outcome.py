"""What a decision produces in array form (`Outcome`) and what one workload shape's decisions
share (`Shape`); the explanation reads both through `Snapshot`, never the engine itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from placement.engine.context import DataMove, DecisionContext
from placement.engine.framework import FilterResult, Reasons
from placement.engine.rules import EffectiveRule

if TYPE_CHECKING:
    from placement.engine.compiled import CompiledInventory
    from placement.model import Inventory
    from placement.model.workload import Workload

Floats = NDArray[np.float64]
Bools = NDArray[np.bool_]
Ints = NDArray[np.int64]


@dataclass
class Shape:
    """What one workload shape's decisions share under one engine (see `shape_key`): the
    resolved rule, the data move, and, without live signals, latency and the results of the
    filters that depend on nothing else (plugins with SHAPE_ONLY = True)."""

    rule: EffectiveRule
    data: DataMove
    p99_ms: Floats | None = None
    filters: dict[str, FilterResult] = field(default_factory=dict)
    missing_sites: bytes | None = None  # the explanation's sites without the GPU (JSON)
    columns: tuple[Any, ...] | None = None  # the explanation's rows its decisions share
    held_bytes: int = 0  # what the memo holds for it, once weighed (`shape_bytes`)


@dataclass
class Outcome:
    """A decision in array form; `Engine.explain` turns it into a `Decision`."""

    ctx: DecisionContext
    filter_names: list[str]
    filter_results: list[FilterResult]
    fails: Bools  # filters x candidates
    considered: Bools
    raw: dict[str, Floats]
    scores: dict[str, Floats]
    weights: dict[str, float]
    total: Floats
    ranking: Ints  # considered candidates, best first
    chosen: int | None
    action: str
    policy_version: str
    fleet: Any = None  # placement.engine.fleet.FleetPlan or FleetMiss under a fleet rule
    shape: Shape | None = None  # what the decision shares with its shape's others
    units: dict[str, str] = field(default_factory=dict)  # per criterion (the plugin's UNIT)

    @property
    def rule(self) -> EffectiveRule:
        return self.ctx.rule



class Snapshot(Protocol):
    """What the explanation reads of the engine that decided."""

    @property
    def ci(self) -> CompiledInventory: ...

    @property
    def inventory(self) -> Inventory: ...

    def shape(self, wl: Workload) -> Shape: ...


def shape_bytes(shape: Shape) -> int:
    """The bytes a memoized shape keeps alive: its arrays, its filters' results and reasons
    (templates and arguments) and the explanation's rows of sites without the GPU."""
    seen: set[int] = set()
    total = 0

    def add(value: object) -> None:
        nonlocal total
        if isinstance(value, np.ndarray) and id(value) not in seen:
            seen.add(id(value))
            total += value.nbytes
        elif isinstance(value, str):
            total += len(value) + 49

    for value in (*vars(shape.data).values(), shape.p99_ms, *(shape.columns or ())[:2]):
        add(value)
    for res in shape.filters.values():
        add(res.passed)
        why = res.why
        if isinstance(why, Reasons):
            add(why.code)
            for text in why.templates:
                add(text)
            for v in why.args.values():
                add(v)
    return total + len(shape.missing_sites or b"")
