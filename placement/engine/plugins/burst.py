"""Burst gate: cloud only when the rule allows it (and on-prem cannot start in time); spot rules."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from placement.engine.compiled import SPOT
from placement.engine.context import DecisionContext
from placement.engine.framework import Bools, FilterResult, Reasons

_GATED = ("on-prem site {best_onprem} can start in {best_wait:.2f} h, within max wait "
          "{max_wait:g} h; rule {rule!r} bursts only when on-prem cannot")
_NEAR = (" or running here costs less than moving the data there (${total:,.2f} here, "
         "${cheapest:,.2f} of egress")
_SPOT = ("rule {rule!r} does not allow spot capacity",
         "interrupted on spot {interrupted} times; rule {rule!r} allows {allowed}, so on-demand "
         "or on-prem only",
         "deadline leaves no room for spot restarts (needs {slack:g}x the expected "
         "{overhead:.2f} h of restart overhead)")
# code: 0 bursting not allowed, 1 gated by `when`, 2-4 the spot rules (never, interrupted,
# deadline); keyed by (`when` also weighs the data's cost, the policy prices on-prem GPU-hours)
_REASONS = {(near, bid): ("rule {rule!r} does not allow bursting to cloud",
                          _GATED + (_NEAR + (" and on-prem GPU-hours' bid price" if bid else "")
                                    + ")" if near else ""), *_SPOT)
            for near in (False, True) for bid in (False, True)}


class BurstGate:
    """Runs last: it needs to know which on-prem candidates passed every other filter."""

    NAME: ClassVar[str] = "burst"

    def filter(self, ctx: DecisionContext) -> FilterResult:
        burst, rule = ctx.rule.burst, ctx.rule.burst_rule or "defaults"
        onprem_ok = ctx.mask & ~ctx.is_cloud
        gated = when_gated(ctx, onprem_ok)
        best_onprem, best_wait = "", 0.0
        cheapest_onprem = np.inf
        if gated.any():
            j = int(np.flatnonzero(onprem_ok)[np.argmin(ctx.wait_hours[onprem_ok])])
            best_onprem = ctx.ci.site_names[int(ctx.site[j])]
            best_wait = float(ctx.wait_hours[j])
            cheapest_onprem = float((ctx.egress_usd + ctx.opportunity_usd)[onprem_ok].min())
        interrupted = ctx.workload.spec.interruptions
        bad_spot = ~spot_allowed(ctx)
        not_allowed = ~burst_allowed(ctx)
        passed = ~(not_allowed | gated | bad_spot)

        def why() -> Reasons:
            near = burst.when != "onprem_unavailable"
            spot_code = 2 if burst.spot == "never" else (
                3 if interrupted >= burst.max_spot_interruptions else 4)
            code = np.where(not_allowed, 0, np.where(gated, 1, spot_code))
            return Reasons(_REASONS[near, ctx.cap.bid_price is not None], code, {
                "rule": rule, "best_onprem": best_onprem, "best_wait": best_wait,
                "max_wait": ctx.rule.max_wait_hours, "total": ctx.total_usd,
                "cheapest": cheapest_onprem, "interrupted": interrupted,
                "allowed": burst.max_spot_interruptions, "slack": burst.spot_slack_factor,
                "overhead": ctx.run_hours - ctx.hours})

        return FilterResult(passed, why)


def spot_allowed(ctx: DecisionContext) -> Bools:
    """Per candidate: False for a spot candidate the rule does not allow (never; after too many
    interruptions; when the deadline leaves no room for the expected restarts); True for every
    other candidate. The engine's gate and the simulator's baselines both ask this."""
    burst = ctx.rule.burst
    spot = ctx.kind == SPOT
    if burst.spot == "never" or ctx.workload.spec.interruptions >= burst.max_spot_interruptions:
        never: Bools = ~spot
        return never
    if burst.spot == "when_deadline_allows" and ctx.workload.spec.deadline_hours:
        slack_need = burst.spot_slack_factor * (ctx.run_hours - ctx.hours)
        latest = ctx.start_hours + ctx.hours + slack_need
        room: Bools = ~(spot & (latest > ctx.workload.spec.deadline_hours))
        return room
    return np.ones(ctx.n, dtype=bool)


def burst_allowed(ctx: DecisionContext) -> Bools:
    """Per candidate: on-prem, or a cloud region where the rule allows bursting."""
    ok: Bools = ~ctx.is_cloud | ctx.rule.burst.allowed
    return ok


def when_gated(ctx: DecisionContext, onprem_ok: Bools) -> Bools:
    """Per candidate: a cloud region the rule's `when` keeps closed, given the on-prem
    candidates that can start the workload within its max wait (`onprem_ok`): with `when`
    onprem_unavailable every cloud region while there is one; with
    onprem_unavailable_or_near_data the regions whose total $ is not below what moving the
    data to on-prem costs (the on-prem GPUs are paid for already), plus the on-prem GPU-hours'
    bid price where the policy prices it."""
    burst = ctx.rule.burst
    if burst.when == "always" or not onprem_ok.any():
        return np.zeros(ctx.n, dtype=bool)
    gated: Bools = ctx.is_cloud.copy()
    if burst.when == "onprem_unavailable_or_near_data":  # on-prem's side: the data move,
        # plus what its GPU-hours are worth to work only on-prem can run
        onprem_usd = ctx.egress_usd + ctx.opportunity_usd
        gated &= ctx.total_usd >= float(onprem_usd[onprem_ok].min())
    return gated
