"""HiGHS for the fleet planner's small LPs and MILPs, solved inside a single decision.

These problems have tens of variables and must solve in about a millisecond, where HiGHS's
fixed costs dominate. Measured at 100 sites (bench/engine.py's fleets, 2 cores): scipy's
`milp` wrapper added about 2 ms per call (it checks and converts every option and builds a new
solver each time), and HiGHS's thread pool added 0.6 ms per run. So this calls HiGHS through
its own binding (highspy) with one solver per thread, reused, on one thread, with presolve and
the primal heuristics off: a fleet's MILP is solved at its root, where the heuristics took most
of the time (36 ms with them, 5.5 ms without, the same optimum) and presolve only rebuilds a
model this small. Problems that can be large (re-planning a whole queue, the bid-price LP,
the simulator's bound) keep scipy's HiGHS with its defaults, presolve and heuristics on.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]

# scipy's status codes, which callers already use: 0 optimal, 1 a limit was reached (the best
# plan found, if any, is in x), 2 infeasible, 3 unbounded, 4 anything else
OPTIMAL, LIMIT, INFEASIBLE, UNBOUNDED, OTHER = 0, 1, 2, 3, 4

_OPTIONS: dict[str, Any] = {
    "output_flag": False, "threads": 1, "presolve": "off", "mip_heuristic_effort": 0.0,
    "mip_heuristic_run_rins": False, "mip_heuristic_run_rens": False,
    "mip_heuristic_run_root_reduced_cost": False, "mip_heuristic_run_zi_round": False,
    "mip_heuristic_run_shifting": False, "mip_heuristic_run_feasibility_jump": False,
    "mip_detect_symmetry": False}

_local = threading.local()
_construct = threading.Lock()


@dataclass(frozen=True)
class Solution:
    status: int
    x: Floats | None  # None when no feasible point is known
    fun: float | None


def _quiet_new() -> Any:
    """A new solver. HiGHS prints its banner to the process's stdout as it is built, before
    any option can silence it, which would corrupt the CLI's `--json` output: stdout is
    pointed at /dev/null for that moment (once per thread), C's buffers flushed before it is
    given back."""
    import highspy

    with _construct:
        try:
            if sys.stdout is not None:
                sys.stdout.flush()
            saved = os.dup(1)
        except (OSError, ValueError):  # no stdout to protect (closed): build it as it is
            return highspy.Highs()  # type: ignore[no-untyped-call]
        try:
            null = os.open(os.devnull, os.O_WRONLY)
        except OSError:
            os.close(saved)
            return highspy.Highs()  # type: ignore[no-untyped-call]
        try:
            os.dup2(null, 1)
            h = highspy.Highs()  # type: ignore[no-untyped-call]
            ctypes.CDLL(None).fflush(None)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(null)
    return h


def _solver() -> Any:
    h = getattr(_local, "highs", None)
    if h is None:
        h = _quiet_new()
        for key, value in _OPTIONS.items():  # one this HiGHS does not know keeps its default
            h.setOptionValue(key, value)
        _local.highs = h
    return h


def solve(cost: Floats, a: Floats, row_lower: Floats, row_upper: Floats, lower: Floats,
          upper: Floats, *, integrality: NDArray[Any] | None = None,
          time_limit: float = 1.0, gap: float = 1e-4) -> Solution:
    """min cost·x subject to row_lower <= a x <= row_upper, lower <= x <= upper, and x
    integral where `integrality` is nonzero. `a` is dense (rows x variables); infinities are
    HiGHS's."""
    import highspy

    h = _solver()
    inf = highspy.kHighsInf
    nv = len(cost)
    rows, cols = np.nonzero(a)
    order = np.lexsort((rows, cols))  # column-wise, as HiGHS stores it
    rows, cols = rows[order], cols[order]
    start = np.searchsorted(cols, np.arange(nv + 1)).astype(np.int32)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = nv, a.shape[0]
    lp.col_cost_ = np.asarray(cost, dtype=float)
    lp.col_lower_ = np.clip(np.asarray(lower, dtype=float), -inf, inf)
    lp.col_upper_ = np.clip(np.asarray(upper, dtype=float), -inf, inf)
    lp.row_lower_ = np.clip(np.asarray(row_lower, dtype=float), -inf, inf)
    lp.row_upper_ = np.clip(np.asarray(row_upper, dtype=float), -inf, inf)
    m = lp.a_matrix_
    m.format_ = highspy.MatrixFormat.kColwise
    m.num_col_, m.num_row_ = nv, a.shape[0]
    m.start_, m.index_, m.value_ = start, rows.astype(np.int32), a[rows, cols].astype(float)
    mip = integrality is not None and bool(np.any(integrality))
    if mip:
        assert integrality is not None
        kinds = (highspy.HighsVarType.kContinuous, highspy.HighsVarType.kInteger)
        lp.integrality_ = [kinds[int(v != 0)] for v in integrality]
    h.clearModel()
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("mip_rel_gap", float(gap))
    h.passModel(lp)
    h.run()
    status = h.getModelStatus()
    codes = highspy.HighsModelStatus
    if status == codes.kOptimal:
        code = OPTIMAL
    elif status in (codes.kTimeLimit, codes.kIterationLimit, codes.kSolutionLimit,
                    codes.kObjectiveBound, codes.kObjectiveTarget):
        code = LIMIT
    elif status in (codes.kInfeasible, codes.kUnboundedOrInfeasible):
        code = INFEASIBLE  # the callers' costs are >= 0 over x >= 0: never unbounded
    elif status == codes.kUnbounded:
        code = UNBOUNDED
    else:
        code = OTHER
    info = h.getInfo()
    feasible = code == OPTIMAL or (code == LIMIT and info.primal_solution_status == 2)
    if not feasible:
        return Solution(code, None, None)
    x = np.array(h.getSolution().col_value, dtype=float)
    return Solution(code, x, float(info.objective_function_value))
