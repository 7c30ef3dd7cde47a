"""Placement-quality benchmark: every trace in ../shared/data through `placement simulate` over
several seeds (5 by default), the engine against each baseline at equal work, with 95%
intervals, and against the MILP lower bound. One JSON line per trace, then one line per
comparison in words. Nothing here is a target the engine is tuned to: the same command with
--skip N judges a later window of each trace, and --config another inventory.

Per trace: for each baseline, the engine's avoidable spend (cloud GPU + egress + unmet work
charged at on-demand prices) relative to the baseline's, paired by seed (mean and 95% interval,
significant or not), and the differences in deadline misses, rejections and unmet GPU-hours;
the used and fleet views beside it; the engine's gap to the bound in each view.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

if not __package__:  # run as a script: bench/ is importable from the repository root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.engine import DATA, data_and_clients, synthetic_sites
from placement.simulate.run import Options, simulate
from placement.tuning import tune_gc

TRACES = sorted(p.name for p in DATA.glob("trace_*.csv")) if DATA.exists() else []


def judge(summary: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The benchmark's line for one trace."""
    comps = summary.get("comparisons", {})
    eng = summary["policies"]["engine"]
    bound = summary.get("bound", {})
    return {
        "trace": Path(summary["trace"]).name, "workloads": summary["workloads"],
        "seeds": summary["seeds"], "seconds": round(seconds, 1),
        "engine": {k: eng.get(k) for k in (
            "avoidable_usd", "used_usd", "fleet_usd", "unmet_gpu_hours", "rejected",
            "deadline_misses", "slo_attainment", "gap_to_bound_avoidable",
            "gap_to_bound_used", "gap_to_bound_fleet")},
        "vs": {name: {m: c[m] for m in ("avoidable_usd", "used_usd", "fleet_usd",
                                         "deadline_misses", "rejected", "unmet_gpu_hours")
                      if m in c}
               for name, c in comps.items()},
        "baselines": {name: {k: m.get(k) for k in ("avoidable_usd", "rejected",
                                                    "deadline_misses", "slo_attainment")}
                      for name, m in summary["policies"].items() if name != "engine"},
        "bound_status": {v: b.get("status") for v, b in bound.items()},
        "headline": summary.get("headline", []),
    }


def synthetic_bundle(out: Path, n_sites: int, seed: int, policy: Path) -> Path:
    """A policy bundle over an inventory nobody tuned to: `n_sites` sites drawn from the real
    catalogs (bench/engine.py's synthetic_sites, seeded), its datasets and client locations,
    and the given policy file."""
    rng = random.Random(seed)
    sites = synthetic_sites(n_sites, rng)
    datasets, clients = data_and_clients(rng, [s.name for s in sites], 5)
    out.mkdir(parents=True, exist_ok=True)
    docs = [dict(d.model_dump(mode="json", by_alias=True, exclude_none=True),
                 apiVersion="placement.dev/v1alpha1") for d in (*sites, *datasets, *clients)]
    (out / "inventory.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False),
                                        encoding="utf-8")
    shutil.copy(policy, out / "policy.yaml")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces", default=",".join(TRACES))
    parser.add_argument("--config", type=Path, default=Path("policies/examples"))
    parser.add_argument("--limit", type=int, default=3000)
    parser.add_argument("--skip", type=int, default=0,
                        help="leave out the first N workloads: judge a later window")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--bound-time-s", type=float, default=60)
    parser.add_argument("--no-bound", action="store_true")
    parser.add_argument("--cluster", default=None, help="a Dask scheduler for the seeds")
    parser.add_argument("--sites", type=int, default=0,
                        help="judge on a synthetic inventory of N catalog sites instead of "
                        "--config's (its policy.yaml is kept)")
    parser.add_argument("--inventory-seed", type=int, default=11)
    parser.add_argument("--baselines", default="all",
                        help="comma-separated baselines (and engine-greedy: the engine without "
                        "bid prices), or all")
    args = parser.parse_args()
    tune_gc()  # as every entry point does (placement.tuning)
    scratch = tempfile.TemporaryDirectory()
    config = args.config if not args.sites else synthetic_bundle(
        Path(scratch.name) / "bundle", args.sites, args.inventory_seed,
        args.config / "policy.yaml")
    for name in filter(None, args.traces.split(",")):
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            summary = simulate(Options(
                trace=DATA / name, config=config, out=Path(out), seed=args.seed,
                limit=args.limit, skip=args.skip, bound=not args.no_bound,
                bound_time_s=args.bound_time_s, seeds=args.seeds, cluster=args.cluster,
                baselines=tuple(args.baselines.split(","))))
            line = judge(summary, time.perf_counter() - t0)
        line["cores"] = os.cpu_count()
        print(json.dumps(line), flush=True)
        for sentence in line["headline"]:
            print(f"# {name}: {sentence}", flush=True)
    scratch.cleanup()


if __name__ == "__main__":
    main()
