"""Deadline filter: the job must be expected to finish before its deadline."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from placement.engine.context import DecisionContext
from placement.engine.elementwise import jitable
from placement.engine.framework import FilterResult, Reasons

REASONS = ("would finish in {finish:.1f} h (start {start:.1f} h + run {run:.1f} h), after "
           "the {deadline:g} h deadline",)


class Deadline:
    """Finish = max(wait, data transfer) + run time (spot restarts included)."""

    NAME: ClassVar[str] = "deadline"

    @staticmethod
    @jitable
    def rule(finish_hours: Any, deadline_hours: Any, deadline_applies: Any) -> Any:
        return np.logical_or(np.logical_not(deadline_applies), finish_hours <= deadline_hours)

    def filter(self, ctx: DecisionContext) -> FilterResult:
        deadline = ctx.deadline_hours
        if not ctx.deadline_applies:
            return FilterResult(np.ones(ctx.n, dtype=bool))
        finish = ctx.finish_hours
        return FilterResult(ctx.call(self.rule), Reasons(REASONS, 0, {
            "finish": finish, "start": ctx.start_hours, "run": ctx.run_hours,
            "deadline": deadline}))
