"""Constraints filter: the policy rules' require/forbid selectors on site type, labels, names."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from placement.engine.context import DecisionContext
from placement.engine.framework import FilterResult, Reasons, literal
from placement.engine.rules import Constraint


class Constraints:
    """Applies every matching rule's `require` and `forbid` (they accumulate)."""

    SHAPE_ONLY: ClassVar[bool] = True  # the filter reads only the workload's shape
    NAME: ClassVar[str] = "constraints"

    def filter(self, ctx: DecisionContext) -> FilterResult:
        n_sites = len(ctx.ci.site_names)
        first_fail = np.full(n_sites, -1)
        constraints = ctx.rule.constraints
        for k, c in enumerate(constraints):
            sel = ctx.ci.selector_mask(c.selector)
            bad = ~sel if c.mode == "require" else sel
            first_fail = np.where((first_fail < 0) & bad, k, first_fail)
        fail = first_fail[ctx.site]

        def why() -> Reasons:
            return Reasons([literal(_words(c)) for c in constraints],
                           np.maximum(fail, 0).astype(np.int64))

        return FilterResult(fail < 0, why)


def _words(c: Constraint) -> str:
    """What one require/forbid constraint asks, in words."""
    parts = []
    if c.selector.site_types:
        parts.append(f"site type in {c.selector.site_types}")
    if c.selector.labels:
        parts.append("labels " + ", ".join(f"{k}={v}" for k, v in c.selector.labels.items()))
    if c.selector.sites:
        parts.append(f"site in {c.selector.sites}")
    verb = "requires" if c.mode == "require" else "forbids"
    return f"rule {c.rule!r} {verb} {' and '.join(parts)}"
