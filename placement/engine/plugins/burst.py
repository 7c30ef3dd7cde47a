"""Burst gate: cloud only when the rule allows it (and on-prem cannot start in time); spot rules."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from placement.engine.context import DecisionContext
from placement.engine.elementwise import jitable, onprem_side_usd
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

    @staticmethod
    @jitable
    def rule(is_cloud: Any, is_spot: Any, total_usd: Any, onprem_ok_any: Any,
             onprem_ok_min_usd: Any, bursting_allowed: Any, burst_when: Any, spot_never: Any,
             spot_room_applies: Any, spot_slack_factor: Any, start_hours: Any, hours: Any,
             run_hours: Any, deadline_hours: Any) -> Any:
        closed = np.logical_or(
            not_allowed(is_cloud, bursting_allowed),
            gated(is_cloud, total_usd, onprem_ok_any, onprem_ok_min_usd, burst_when))
        return np.logical_not(np.logical_or(closed, bad_spot(
            is_spot, spot_never, spot_room_applies, spot_slack_factor, start_hours, hours,
            run_hours, deadline_hours)))

    def filter(self, ctx: DecisionContext) -> FilterResult:
        burst, rule = ctx.rule.burst, ctx.rule.burst_rule or "defaults"
        interrupted = ctx.workload.spec.interruptions
        onprem_ok = ctx.mask & ~ctx.is_cloud  # `mask` changes after this filter: keep it
        cheapest_onprem = ctx.onprem_ok_min_usd

        def why() -> Reasons:
            closed = gated(ctx.is_cloud, ctx.total_usd, bool(onprem_ok.any()), cheapest_onprem,
                           ctx.burst_when)
            best_onprem, best_wait = "", 0.0
            if closed.any():
                j = int(np.flatnonzero(onprem_ok)[np.argmin(ctx.wait_hours[onprem_ok])])
                best_onprem = ctx.ci.site_names[int(ctx.site[j])]
                best_wait = float(ctx.wait_hours[j])
            near = burst.when != "onprem_unavailable"
            spot_code = 2 if burst.spot == "never" else (
                3 if interrupted >= burst.max_spot_interruptions else 4)
            code = np.where(ctx.call(not_allowed), 0, np.where(closed, 1, spot_code))
            return Reasons(_REASONS[near, ctx.cap.bid_price is not None], code, {
                "rule": rule, "best_onprem": best_onprem, "best_wait": best_wait,
                "max_wait": ctx.rule.max_wait_hours, "total": ctx.total_usd,
                "cheapest": cheapest_onprem, "interrupted": interrupted,
                "allowed": burst.max_spot_interruptions, "slack": burst.spot_slack_factor,
                "overhead": ctx.run_hours - ctx.hours})

        return FilterResult(ctx.call(self.rule, onprem_ok_min_usd=cheapest_onprem), why)


@jitable
def not_allowed(is_cloud: Any, bursting_allowed: Any) -> Any:
    """A cloud candidate where the rule does not allow bursting."""
    return np.logical_and(is_cloud, np.logical_not(bursting_allowed))


@jitable
def gated(is_cloud: Any, total_usd: Any, onprem_ok_any: Any, onprem_ok_min_usd: Any,
          burst_when: Any) -> Any:
    """A cloud region the rule's `when` keeps closed while an on-prem candidate can start the
    workload within its max wait (`onprem_ok_any`): with `when` onprem_unavailable (1) every
    cloud region; with onprem_unavailable_or_near_data (2) the regions whose total $ is not
    below the cheapest such on-prem candidate's `onprem_side_usd` (moving the data there, plus
    its GPU-hours' bid price where the policy prices them: the on-prem GPUs are paid for
    already); with always (0) none."""
    open_here = np.logical_or(burst_when == 0, np.logical_and(
        burst_when == 2, total_usd < onprem_ok_min_usd))
    return np.logical_and(np.logical_and(is_cloud, onprem_ok_any), np.logical_not(open_here))


@jitable
def bad_spot(is_spot: Any, spot_never: Any, spot_room_applies: Any, spot_slack_factor: Any,
             start_hours: Any, hours: Any, run_hours: Any, deadline_hours: Any) -> Any:
    """A spot candidate the rule closes: spot never (or interrupted too often), or the deadline
    leaves no room for the expected restarts (times the rule's slack factor)."""
    latest = start_hours + hours + spot_slack_factor * (run_hours - hours)
    return np.logical_and(is_spot, np.logical_or(spot_never, np.logical_and(
        spot_room_applies, latest > deadline_hours)))


def spot_allowed(ctx: DecisionContext) -> Bools:
    """Per candidate: False for a spot candidate the rule does not allow (never; after too many
    interruptions; when the deadline leaves no room for the expected restarts); True for every
    other candidate. The engine's gate and the simulator's baselines both ask this."""
    ok: Bools = ~ctx.call(bad_spot)
    return ok


def burst_allowed(ctx: DecisionContext) -> Bools:
    """Per candidate: on-prem, or a cloud region where the rule allows bursting."""
    ok: Bools = ~ctx.call(not_allowed)
    return ok


def when_gated(ctx: DecisionContext, onprem_ok: Bools) -> Bools:
    """Per candidate: a cloud region the rule's `when` keeps closed (`gated`), given the
    on-prem candidates that can start the workload within its max wait (`onprem_ok`)."""
    some = bool(onprem_ok.any())
    least = float(ctx.call(onprem_side_usd)[onprem_ok].min()) if some else np.inf
    got: Bools = gated(ctx.is_cloud, ctx.total_usd, some, least, ctx.burst_when)
    return got
