"""Cost: billed GPU-hours x price (spot restarts included) + egress; on-prem at amortized cost."""

from __future__ import annotations

from typing import ClassVar

from placement.engine.context import DecisionContext
from placement.engine.framework import ScoreResult


class Cost:
    """Raw value: total USD over the job's run or the service's horizon."""

    NAME: ClassVar[str] = "cost"
    CRITERION: ClassVar[str] = "cost"
    UNIT: ClassVar[str] = "USD"

    def score(self, ctx: DecisionContext) -> ScoreResult:
        return ScoreResult(ctx.total_usd)
