"""Cost: billed GPU-hours x price (spot restarts included) + egress; on-prem at amortized cost,
plus its opportunity cost where the policy prices it (placement.engine.shadow)."""

from __future__ import annotations

from typing import Any, ClassVar

from placement.engine.context import DecisionContext
from placement.engine.elementwise import jitable
from placement.engine.framework import ScoreResult


class Cost:
    """Raw value: total USD over the job's run or the service's horizon, plus the on-prem
    GPU-hours' bid price where there is one."""

    NAME: ClassVar[str] = "cost"
    CRITERION: ClassVar[str] = "cost"
    UNIT: ClassVar[str] = "USD"
    SCALE: ClassVar[str | None] = "cost_usd"  # the policy's Scales field

    @staticmethod
    @jitable
    def value(cost_usd: Any) -> Any:
        return cost_usd

    def score(self, ctx: DecisionContext) -> ScoreResult:
        return ScoreResult(ctx.call(self.value))
