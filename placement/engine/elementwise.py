"""The per-candidate formulas of a decision, each written once for both ways it is evaluated.

Engine.decide evaluates a rule over all of a decision's candidates at once (NumPy arrays, from
DecisionContext); the batch path evaluates it for one candidate at a time inside a compiled
kernel (numba scalars, placement.engine.batch). A function here, and a plugin's `rule` or
`value`, uses only operators, NumPy ufuncs and `where`, so the same source runs both ways and
gives the same floating-point result. Its parameter names are the quantities it reads: names
of DecisionContext attributes, which the kernel also provides (batch.QUANTITIES).

Rules for such a function: no `if` on a per-candidate value (use `where`), no `~`, `and`, `or`
or `not` (use np.logical_*: `~True` is -2 in Python), no Python `max`/`min` (np.maximum).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

F = TypeVar("F", bound=Callable[..., Any])
_MARKED: list[Callable[..., Any]] = []  # every `jitable` function, for `use_numba`
_NUMBA: list[Callable[[Callable[..., Any]], Any]] = []  # register_jitable once numba is used

# Action codes (Outcome.action's words by index).
ACTIONS = ("reject", "place", "queue", "burst")


def jitable(fn: F) -> F:
    """Marks `fn` as one of these formulas: it runs as itself over arrays, and compiles into
    the batch kernel where the kernel (or another formula) calls it. Numba (the 'sim' extra)
    is imported only by the batch path (`use_numba`), never by Engine.decide."""
    _MARKED.append(fn)
    for register in _NUMBA:
        register(fn)
    return fn


def use_numba() -> None:
    """Make every `jitable` function (and those marked later) callable from numba-compiled
    code, and `where` a plain choice there. The batch path calls this on import."""
    if _NUMBA:
        return
    from numba import types
    from numba.extending import overload, register_jitable

    @overload(where)
    def _where_scalar(cond: Any, a: Any, b: Any) -> Any:
        if isinstance(cond, types.Boolean):
            def choose(cond: Any, a: Any, b: Any) -> Any:
                return a if cond else b
            return choose
        return None

    for fn in _MARKED:
        register_jitable(fn)
    _NUMBA.append(register_jitable)


def where(cond: Any, a: Any, b: Any) -> Any:
    """np.where over arrays; a plain choice for one candidate in the kernel (`use_numba`)."""
    return np.where(cond, a, b)


# Quantities derived from others. DecisionContext's attributes of the same names call these.

@jitable
def run_hours(hours: Any, spot_overhead: Any) -> Any:
    """Hours of running: the work plus the expected spot restarts."""
    return hours * (1.0 + spot_overhead)


@jitable
def moved(bulk: Any, lookups_per_hour: Any, hours: Any) -> Any:
    """Egress over the work ($ or GB): the bulk move in plus the lookups' traffic."""
    return bulk + lookups_per_hour * hours


@jitable
def total_usd(usd_per_hour: Any, run_hours: Any, egress_usd: Any) -> Any:
    """What the placement bills: GPU-hours (restarts included) plus egress."""
    return usd_per_hour * run_hours + egress_usd


@jitable
def opportunity_usd(bid_usd_per_gpu_hour: Any, billed_gpus: Any, run_hours: Any) -> Any:
    """What the on-prem GPU-hours are worth to work only on-prem can run (bid 0 elsewhere)."""
    return bid_usd_per_gpu_hour * (billed_gpus * run_hours)


@jitable
def cost_usd(total_usd: Any, opportunity_usd: Any) -> Any:
    """The cost criterion: billed $ plus the on-prem GPU-hours' opportunity cost."""
    return total_usd + opportunity_usd


@jitable
def wait_hours(is_cloud: Any, short: Any, provision_hours: Any, queue_wait_hours: Any) -> Any:
    """Cloud: provisioning time, or never when the quota is short. On-prem: the queue's wait
    (0 when the GPUs are free)."""
    return where(is_cloud, where(short, np.inf, provision_hours), queue_wait_hours)


@jitable
def start_hours(wait_hours: Any, transfer_hours: Any) -> Any:
    """Data moves while the workload waits: it starts when both are done."""
    return np.maximum(wait_hours, transfer_hours)


@jitable
def finish_hours(start_hours: Any, run_hours: Any) -> Any:
    return start_hours + run_hours


@jitable
def onprem_side_usd(egress_usd: Any, opportunity_usd: Any) -> Any:
    """What running on an on-prem candidate costs beyond GPUs paid for already: moving the data
    there, plus its GPU-hours' opportunity cost (the burst gate's `near_data` comparison)."""
    return egress_usd + opportunity_usd


# The framework's own per-candidate rules: normalizing a criterion, ranking, the action.

@jitable
def normalized(raw: Any, best: Any, scale: Any) -> Any:
    """Score = 100 x (best + scale) / (raw + scale) of a considered candidate; lower raw is
    better; with scale 0 a ratio (best 0: only exact zeros score 100); non-finite raw 0."""
    if scale > 0:  # best and scale are one number for every candidate
        ratio = 100.0 * (best + scale) / (raw + scale)
    elif best > 0:
        ratio = 100.0 * best / raw
    else:
        ratio = where(raw <= 0, 100.0, 0.0)
    return where(np.isfinite(raw), ratio, 0.0)


@jitable
def waits_only(fails_wait: Any, fails_other: Any, wait_hours: Any) -> Any:
    """A candidate that may queue when none passes: it fails only the wait filter, and its
    GPUs are expected back at a known time."""
    return np.logical_and(np.logical_and(fails_wait, np.logical_not(fails_other)),
                          np.isfinite(wait_hours))


@jitable
def add_weighted(total_score: Any, weight: Any, score: Any) -> Any:
    """The weighted sum's next term; a score left undefined (NaN) adds nothing."""
    return total_score + weight * where(np.isnan(score), 0.0, score)


@jitable
def rounded_score(total_score: Any) -> Any:
    """The weighted score as ranked: to 9 decimals, so float noise never orders candidates
    (NumPy's round(x, 9) is this multiply, rint and divide)."""
    return np.rint(total_score * 1e9) / 1e9


@jitable
def action_code(is_cloud: Any, queue_only: Any, wait_hours: Any) -> Any:
    """ACTIONS index of the chosen candidate: burst (cloud), queue (on-prem, waiting, or only
    waiting candidates were left) or place."""
    return where(is_cloud, 3, where(np.logical_or(queue_only, wait_hours > 0), 2, 1))


@jitable
def ranking_key(total_score: Any, total_usd: Any, wait_hours: Any, site_rank: Any,
                kind: Any) -> tuple[Any, Any, Any, Any, Any]:
    """What candidates are ranked by, the first deciding first: the weighted score (higher
    first), then the billed $, the wait, the site's name and the kind (on-prem first)."""
    return (-rounded_score(total_score), total_usd, wait_hours, site_rank * 1.0, kind * 1.0)


@jitable
def queue_key(total_usd: Any, wait_hours: Any, site_rank: Any) -> tuple[Any, Any, Any]:
    """The ranking when only waiting candidates are left: the soonest start first, then the
    billed $ and the site's name."""
    return (wait_hours, total_usd, site_rank * 1.0)
