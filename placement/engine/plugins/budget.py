"""Budget filter: the workload's total budget, the burst rule's $/hour cap and the team's
monthly burst budget."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from placement.engine.context import DecisionContext
from placement.engine.framework import FilterResult, Reasons

_PARTS = ("estimated ${total:,.0f} exceeds the budget of ${budget:,.0f}",
          "${hourly:,.2f}/h exceeds the burst cap of ${cap:,.2f}/h",
          "team {team} has ${spent:,.0f} spent or committed of its ${allowed:,.0f} burst budget "
          "this month; this burst would add ${total:,.0f}")
# code: over the workload's budget (1) + over the burst cap (2) + over the team's budget (4)
REASONS = tuple("; ".join(part for k, part in enumerate(_PARTS) if code >> k & 1)
                for code in range(8))


class Budget:
    """Rejects candidates whose estimated total $ or burst $/hour exceed what is allowed."""

    NAME: ClassVar[str] = "budget"

    def filter(self, ctx: DecisionContext) -> FilterResult:
        budget = ctx.workload.spec.budget_usd
        cap = ctx.rule.burst.max_usd_per_hour
        total, hourly = ctx.total_usd, ctx.usd_per_hour
        over_total = total > budget if budget is not None else np.zeros(ctx.n, dtype=bool)
        over_rate = (ctx.is_cloud & (hourly > cap)) if cap is not None else np.zeros(
            ctx.n, dtype=bool)
        team, allowed = ctx.workload.spec.team, ctx.team_budget_usd
        spent = ctx.team_spent_usd
        over_team = (ctx.is_cloud & (spent + total > allowed)) if allowed is not None \
            else np.zeros(ctx.n, dtype=bool)

        def why() -> Reasons:
            code = over_total.astype(np.int64) + 2 * over_rate + 4 * over_team
            return Reasons(REASONS, code, {
                "total": total, "budget": budget, "hourly": hourly, "cap": cap, "team": team,
                "spent": spent, "allowed": allowed})

        return FilterResult(~(over_total | over_rate | over_team), why)
