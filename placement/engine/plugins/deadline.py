"""Deadline filter: the job must be expected to finish before its deadline."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from placement.engine.context import DecisionContext
from placement.engine.framework import FilterResult


class Deadline:
    """Finish = max(wait, data transfer) + run time (spot restarts included)."""

    NAME: ClassVar[str] = "deadline"

    def filter(self, ctx: DecisionContext) -> FilterResult:
        deadline = ctx.workload.spec.deadline_hours
        if deadline is None or ctx.workload.spec.is_service:
            return FilterResult(np.ones(ctx.n, dtype=bool), lambda i: "")
        finish = ctx.finish_hours

        def reason(i: int) -> str:
            return (f"would finish in {finish[i]:.1f} h (start {ctx.start_hours[i]:.1f} h + run "
                    f"{ctx.run_hours[i]:.1f} h), after the {deadline:g} h deadline")

        return FilterResult(finish <= deadline, reason)
