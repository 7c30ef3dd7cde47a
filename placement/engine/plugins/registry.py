"""The explicit plugin registry: order matters for filters (the burst gate runs last)."""

from __future__ import annotations

from collections.abc import Sequence

from placement.engine.framework import FilterPlugin, ScorePlugin
from placement.engine.plugins.boundary import Boundary
from placement.engine.plugins.budget import Budget
from placement.engine.plugins.burst import BurstGate
from placement.engine.plugins.capacity import Capacity
from placement.engine.plugins.constraints import Constraints
from placement.engine.plugins.cost import Cost
from placement.engine.plugins.data_gravity import DataGravity
from placement.engine.plugins.deadline import Deadline
from placement.engine.plugins.latency import Latency
from placement.engine.plugins.wait import Wait
from placement.errors import PlacementError
from placement.model.policy import Policy, register_criterion


class DuplicatePluginError(PlacementError):
    """Two plugins registered under one name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"plugin name {name!r} is registered twice; give each plugin its own NAME")


class UnscoredCriterionError(PlacementError):
    """A policy weighs a criterion that no score plugin of the engine scores."""

    def __init__(self, where: str, name: str, scored: Sequence[str]) -> None:
        self.name = name
        super().__init__(f"{where}.{name}: no score plugin scores criterion {name!r}; this "
                         f"engine scores {', '.join(scored)} (remove the weight, or register "
                         "the plugin that scores it)")


def check_unique(filters: Sequence[FilterPlugin], scores: Sequence[ScorePlugin]) -> None:
    """Fail at start-up when a name repeats within filters or within scores."""
    for group in (filters, scores):
        seen: set[str] = set()
        for plugin in group:
            if plugin.NAME in seen:
                raise DuplicatePluginError(plugin.NAME)
            seen.add(plugin.NAME)


def check_weights(policy: Policy, scores: Sequence[ScorePlugin]) -> None:
    """Fail when the policy weighs a plugin criterion (beyond the built-in four) that none of
    `scores` scores: its weight would be ignored."""
    scored = [p.CRITERION for p in scores]
    spec = policy.spec
    places = [("spec.defaults.weights", spec.defaults.weights)] + [
        (f"spec.rules[{i}].weights", r.weights) for i, r in enumerate(spec.rules)
        if r.weights is not None]
    for where, weights in places:
        for name in weights.plugin_weights():
            if name not in scored:
                raise UnscoredCriterionError(where, name, scored)


def default_filters() -> list[FilterPlugin]:
    """Filters in the order they run."""
    return [Capacity(), Constraints(), Boundary(), Latency(), Wait(), Deadline(), Budget(),
            BurstGate()]


def default_scores() -> list[ScorePlugin]:
    """Score plugins, one per criterion."""
    return [Latency(), DataGravity(), Cost(), Wait()]


for _plugin in default_scores():  # policies may weigh every registered criterion
    register_criterion(_plugin.CRITERION)
