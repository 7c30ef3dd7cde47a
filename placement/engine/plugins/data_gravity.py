"""Data gravity: hours to bring bulk data to a site from its best replica (egress $: cost)."""

from __future__ import annotations

from typing import ClassVar

from placement.engine.context import DecisionContext
from placement.engine.framework import ScoreResult


class DataGravity:
    """Raw value: transfer hours over the measured (or WAN-limited) bandwidth."""

    SHAPE_ONLY: ClassVar[bool] = True  # reads only the workload's shape
    NAME: ClassVar[str] = "data_gravity"
    CRITERION: ClassVar[str] = "data_gravity"
    UNIT: ClassVar[str] = "h"
    SCALE: ClassVar[str | None] = "data_gravity_hours"  # the policy's Scales field

    def score(self, ctx: DecisionContext) -> ScoreResult:
        applicable = any(d.access == "bulk" for d in ctx.workload.spec.datasets)
        return ScoreResult(ctx.transfer_hours, applicable)
