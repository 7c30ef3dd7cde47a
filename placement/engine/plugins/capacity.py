"""Capacity filter: the site must have enough GPUs of the type (installed or quota)."""

from __future__ import annotations

from typing import ClassVar

from placement.engine.compiled import CAPACITY_NAMES
from placement.engine.context import DecisionContext
from placement.engine.framework import FilterResult


class Capacity:
    """Rejects candidates whose installed GPUs (on-prem) or free quota (cloud) are too few."""

    NAME: ClassVar[str] = "capacity"

    def filter(self, ctx: DecisionContext) -> FilterResult:
        need = ctx.gpus_needed
        total = ctx.ci.group_capacity[ctx.group]
        room = ctx.free_gpus
        # On-prem GPUs in use come back (the wait plugin prices that); cloud quota is a hard cap.
        passed = (total >= need) & (~ctx.is_cloud | (room >= need))

        def reason(i: int) -> str:
            gpu = _gpu_name(ctx, i)
            if not ctx.is_cloud[i]:
                return f"has {total[i]} {gpu} installed; the workload needs {need} on one site"
            return (f"{CAPACITY_NAMES[ctx.kind[i]]} quota allows {room[i]} more {gpu} "
                    f"({total[i]} in total); the workload needs {need}")

        return FilterResult(passed, reason)


def _gpu_name(ctx: DecisionContext, i: int) -> str:
    gid = int(ctx.ci.row_gpu[ctx.rows[i]])
    return next(k for k, v in ctx.ci.gpu_index.items() if v == gid)
