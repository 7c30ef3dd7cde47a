"""Capacity filter: the site must have enough GPUs of the type (installed or quota)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from placement.engine.compiled import CAPACITY_NAMES
from placement.engine.context import DecisionContext
from placement.engine.elementwise import jitable
from placement.engine.framework import FilterResult, Named, Reasons

REASONS = ("has {total} {gpu} installed; the workload needs {need} on one site",
           "{capacity} quota allows {room} more {gpu} ({total} in total); the workload needs "
           "{need}")


class Capacity:
    """Rejects candidates whose installed GPUs (on-prem) or free quota (cloud) are too few."""

    NAME: ClassVar[str] = "capacity"

    @staticmethod
    @jitable
    def rule(installed_gpus: Any, gpus_needed: Any, is_cloud: Any, free_gpus: Any) -> Any:
        """On-prem GPUs in use come back (the wait plugin prices that); cloud quota is a hard
        cap."""
        return np.logical_and(installed_gpus >= gpus_needed, np.logical_or(
            np.logical_not(is_cloud), free_gpus >= gpus_needed))

    def filter(self, ctx: DecisionContext) -> FilterResult:
        need = ctx.gpus_needed
        total = ctx.installed_gpus
        room = ctx.free_gpus
        passed = ctx.call(self.rule)

        def why() -> Reasons:
            return Reasons(REASONS, ctx.is_cloud.astype(np.int64), {
                "total": total, "gpu": Named(ctx.ci.gpu_names, ctx.gpu), "need": need,
                "capacity": Named(CAPACITY_NAMES, ctx.kind), "room": room})

        return FilterResult(passed, why)
