"""Placement-quality benchmark: every trace in ../shared/data through `placement simulate`,
the engine's policy against the baselines and the MILP bound, one JSON line per trace.

Targets (per trace): total $ at least 30% below ordered-overflow, egress at least 50% below
cheapest-gpu (egress-blind), inference SLO attainment at least 99% (where the trace has
services), and total $ within 5% of the MILP lower bound. Each line says which are met.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: bench/ is importable from the repository root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.engine import DATA
from placement.simulate.run import Options, simulate
from placement.tuning import tune_gc

TRACES = sorted(p.name for p in DATA.glob("trace_*.csv")) if DATA.exists() else []


def _less(ours: float, theirs: float) -> float | None:
    return round(1 - ours / theirs, 4) if theirs else None


def judge(summary: dict[str, Any]) -> dict[str, Any]:
    pols = summary["policies"]
    eng = pols["engine"]
    cost_cut = _less(eng["total_usd"], pols["ordered-overflow"]["total_usd"])
    egress_cut = _less(eng["egress_gb"], pols["cheapest-gpu"]["egress_gb"])
    egress_usd_cut = _less(eng["egress_usd"], pols["cheapest-gpu"]["egress_usd"])
    gap = eng.get("gap_to_bound")
    slo = eng["slo_attainment"]
    fleet_cut = _less(eng["total_with_fleet_usd"], pols["ordered-overflow"]["total_with_fleet_usd"])
    return {
        "trace": Path(summary["trace"]).name, "workloads": summary["workloads"],
        "engine_usd": eng["total_usd"],
        "cost_below_overflow": cost_cut,
        "egress_below_cheapest": egress_cut,
        "egress_usd_below_cheapest": egress_usd_cut,
        "slo_attainment": slo,
        "gap_to_bound": gap,
        "fleet_view": {"cost_below_overflow": fleet_cut,
                       "gap_to_bound": eng.get("gap_to_bound_fleet")},
        "rejected": {n: m["rejected"] for n, m in pols.items()},
        "met": {"cost": cost_cut is not None and cost_cut >= 0.30,
                "egress": egress_cut is None or egress_cut >= 0.50,
                "slo": slo is None or slo >= 0.99,
                "bound": gap is not None and gap <= 0.05},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces", default=",".join(TRACES))
    parser.add_argument("--config", type=Path, default=Path("policies/examples"))
    parser.add_argument("--limit", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bound-time-s", type=float, default=60)
    args = parser.parse_args()
    tune_gc()  # as every entry point does (placement.tuning)
    for name in filter(None, args.traces.split(",")):
        with tempfile.TemporaryDirectory() as out:
            summary = simulate(Options(trace=DATA / name, config=args.config, out=Path(out),
                                       seed=args.seed, limit=args.limit,
                                       bound_time_s=args.bound_time_s))
        print(json.dumps(judge(summary)), flush=True)


if __name__ == "__main__":
    main()
