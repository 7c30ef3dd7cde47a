"""Wait: expected delay before the GPUs are available; over the rule's max wait is a rejection."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from placement.engine.context import OVERDUE_NOTE, DecisionContext, overdue
from placement.engine.elementwise import jitable
from placement.engine.framework import FilterResult, Reasons, ScoreResult

_BUSY = (" (live signals report {free} free: the rest are busy with work the scheduler did not "
         "place; their release time is unknown)")
# code = no release expected (1) + busy per live signals (2) + overdue work counted (4)
REASONS = tuple(
    "expected wait for {need} free GPUs is "
    + ("no release expected" if code & 1 else "{wait:.2f} h")
    + (_BUSY if code & 2 else "") + (OVERDUE_NOTE if code & 4 else "")
    + ", over the rule's max wait of {limit:g} h" for code in range(8))


class Wait:
    """On-prem: until enough reserved GPUs are released. Cloud: the provisioning time."""

    NAME: ClassVar[str] = "wait"
    CRITERION: ClassVar[str] = "wait"
    UNIT: ClassVar[str] = "h"
    SCALE: ClassVar[str | None] = "wait_hours"  # the policy's Scales field

    @staticmethod
    @jitable
    def rule(wait_hours: Any, max_wait_hours: Any) -> Any:
        return wait_hours <= max_wait_hours

    @staticmethod
    @jitable
    def value(wait_hours: Any) -> Any:
        return wait_hours

    def filter(self, ctx: DecisionContext) -> FilterResult:
        wait = ctx.wait_hours
        limit = ctx.rule.max_wait_hours

        def why() -> Reasons:
            code = (np.isinf(wait).astype(np.int64) + 2 * ctx.busy_per_signals
                    + 4 * overdue(ctx))
            return Reasons(REASONS, code, {
                "need": ctx.gpus_needed, "wait": wait, "free": ctx.free_gpus, "limit": limit,
                "overdue_hours": ctx.cap.schedule.overdue_hours})

        return FilterResult(ctx.call(self.rule), why)

    def score(self, ctx: DecisionContext) -> ScoreResult:
        return ScoreResult(ctx.call(self.value))
