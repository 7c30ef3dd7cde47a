"""Deadline filter: the job must be expected to finish before its deadline."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from placement.engine.context import DecisionContext
from placement.engine.framework import FilterResult, Reasons

REASONS = ("would finish in {finish:.1f} h (start {start:.1f} h + run {run:.1f} h), after "
           "the {deadline:g} h deadline",)


class Deadline:
    """Finish = max(wait, data transfer) + run time (spot restarts included)."""

    NAME: ClassVar[str] = "deadline"

    def filter(self, ctx: DecisionContext) -> FilterResult:
        deadline = ctx.workload.spec.deadline_hours
        if deadline is None or ctx.workload.spec.is_service:
            return FilterResult(np.ones(ctx.n, dtype=bool))
        finish = ctx.finish_hours
        return FilterResult(finish <= deadline, Reasons(REASONS, 0, {
            "finish": finish, "start": ctx.start_hours, "run": ctx.run_hours,
            "deadline": deadline}))
