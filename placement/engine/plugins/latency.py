"""Latency: estimated p99 seen by the worst client; the SLO is a hard filter, p99 a score."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from placement.engine.context import DecisionContext
from placement.engine.framework import FilterResult, Reasons, ScoreResult

REASONS = ("estimated p99 {p99:.1f} ms exceeds the SLO of {slo:g} ms",)


class Latency:
    """p99 = client RTT + service time + RAG lookups x RTT to the nearest replica of the index."""

    SHAPE_ONLY: ClassVar[bool] = True  # the filter reads only the workload's shape
    NAME: ClassVar[str] = "latency"
    CRITERION: ClassVar[str] = "latency"
    UNIT: ClassVar[str] = "ms"
    SCALE: ClassVar[str | None] = "latency_ms"  # the policy's Scales field

    def filter(self, ctx: DecisionContext) -> FilterResult:
        lat = ctx.workload.spec.latency
        if lat is None:
            return FilterResult(np.ones(ctx.n, dtype=bool))
        p99 = ctx.p99_ms
        slo = lat.p99_slo_ms
        return FilterResult(p99 <= slo, Reasons(REASONS, 0, {"p99": p99, "slo": slo}))

    def score(self, ctx: DecisionContext) -> ScoreResult:
        applicable = ctx.workload.spec.latency is not None
        return ScoreResult(ctx.p99_ms, applicable)
