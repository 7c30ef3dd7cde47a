"""Budget filter: the workload's total budget, the burst rule's $/hour cap and the team's
monthly burst budget."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from placement.engine.context import DecisionContext
from placement.engine.elementwise import jitable
from placement.engine.framework import FilterResult, Reasons

_PARTS = ("estimated ${total:,.0f} exceeds the budget of ${budget:,.0f}",
          "${hourly:,.2f}/h exceeds the burst cap of ${cap:,.2f}/h",
          "team {team} has ${spent:,.0f} spent or committed of its ${allowed:,.0f} burst budget "
          "this month; this burst would add ${total:,.0f}")
# code: over the workload's budget (1) + over the burst cap (2) + over the team's budget (4)
REASONS = tuple("; ".join(part for k, part in enumerate(_PARTS) if code >> k & 1)
                for code in range(8))


@jitable
def over(total_usd: Any, budget_usd: Any, is_cloud: Any, usd_per_hour: Any,
         burst_cap_usd_per_hour: Any, team_spent_usd: Any, team_budget_usd: Any
         ) -> tuple[Any, Any, Any]:
    """(over the workload's budget, over the burst $/h cap, over the team's monthly burst
    budget); a limit not set (NaN) is never exceeded."""
    return (total_usd > budget_usd,
            np.logical_and(is_cloud, usd_per_hour > burst_cap_usd_per_hour),
            np.logical_and(is_cloud, team_spent_usd + total_usd > team_budget_usd))


class Budget:
    """Rejects candidates whose estimated total $ or burst $/hour exceed what is allowed."""

    NAME: ClassVar[str] = "budget"

    @staticmethod
    @jitable
    def rule(total_usd: Any, budget_usd: Any, is_cloud: Any, usd_per_hour: Any,
             burst_cap_usd_per_hour: Any, team_spent_usd: Any, team_budget_usd: Any) -> Any:
        total, rate, team = over(total_usd, budget_usd, is_cloud, usd_per_hour,
                                 burst_cap_usd_per_hour, team_spent_usd, team_budget_usd)
        return np.logical_not(np.logical_or(np.logical_or(total, rate), team))

    def filter(self, ctx: DecisionContext) -> FilterResult:
        budget, cap = ctx.budget_usd, ctx.burst_cap_usd_per_hour
        team, allowed, spent = ctx.workload.spec.team, ctx.team_budget_usd, ctx.team_spent_usd
        total, hourly = ctx.total_usd, ctx.usd_per_hour

        def why() -> Reasons:
            over_total, over_rate, over_team = ctx.call(over)
            code = over_total.astype(np.int64) + 2 * over_rate + 4 * over_team
            return Reasons(REASONS, code, {
                "total": total, "budget": budget, "hourly": hourly, "cap": cap, "team": team,
                "spent": spent, "allowed": allowed})

        return FilterResult(ctx.call(self.rule), why)
