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


class DuplicatePluginError(PlacementError):
    """Two plugins registered under one name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"plugin name {name!r} is registered twice; give each plugin its own NAME")


def check_unique(filters: Sequence[FilterPlugin], scores: Sequence[ScorePlugin]) -> None:
    """Fail at start-up when a name repeats within filters or within scores."""
    for group in (filters, scores):
        seen: set[str] = set()
        for plugin in group:
            if plugin.NAME in seen:
                raise DuplicatePluginError(plugin.NAME)
            seen.add(plugin.NAME)


def default_filters() -> list[FilterPlugin]:
    """Filters in the order they run."""
    return [Capacity(), Constraints(), Boundary(), Latency(), Wait(), Deadline(), Budget(),
            BurstGate()]


def default_scores() -> list[ScorePlugin]:
    """Score plugins, one per criterion."""
    return [Latency(), DataGravity(), Cost(), Wait()]
