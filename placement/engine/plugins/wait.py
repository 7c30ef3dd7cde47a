"""Wait: expected delay before the GPUs are available; over the rule's max wait is a rejection."""

from __future__ import annotations

from typing import ClassVar

from placement.engine.context import DecisionContext, overdue_note
from placement.engine.framework import FilterResult, ScoreResult


class Wait:
    """On-prem: until enough reserved GPUs are released. Cloud: the provisioning time."""

    NAME: ClassVar[str] = "wait"
    CRITERION: ClassVar[str] = "wait"
    UNIT: ClassVar[str] = "h"

    def filter(self, ctx: DecisionContext) -> FilterResult:
        wait = ctx.wait_hours
        limit = ctx.rule.max_wait_hours

        busy = ctx.busy_per_signals
        free = ctx.free_gpus

        def reason(i: int) -> str:
            shown = "no release expected" if wait[i] == float("inf") else f"{wait[i]:.2f} h"
            why = (f" (live signals report {free[i]} free: the rest are busy with work the "
                   "scheduler did not place; their release time is unknown)" if busy[i] else "")
            why += overdue_note(ctx, i)
            return (f"expected wait for {ctx.gpus_needed} free GPUs is {shown}{why}, over the "
                    f"rule's max wait of {limit:g} h")

        return FilterResult(wait <= limit, reason)

    def score(self, ctx: DecisionContext) -> ScoreResult:
        return ScoreResult(ctx.wait_hours)
