"""Simulator benchmark: the Philly trace repeated with shifted arrivals, replayed through the
engine and every baseline (--baselines all, the default; --baselines none for the engine alone)
against 100 sites (GPU offers and prices from the real catalogs, as bench/engine.py).

Prints {"bench": "simulate", "workloads": N, "sites": S, "seconds": ..., "workloads_per_s": ...,
"per_policy_seconds": {...}} with --json; `seconds` is every replay together (decisions,
queues, completions); building the workloads from the trace is timed apart (build_seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from typing import Any

if not __package__:  # run as a script: bench/ is importable from the repository root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.engine import DATA, build
from placement.engine import Engine
from placement.simulate.baselines import deciders
from placement.simulate.replay import Replay
from placement.simulate.synth import synthesize
from placement.simulate.traces import read
from placement.tuning import tune_gc


def run(n: int, n_sites: int, seed: int, load: float,
        baselines: list[str]) -> dict[str, object]:
    held, _ = build(n_sites, seed)  # the replay tracks its own GPUs: drop the bench's held ones
    engine = Engine(held.inventory, held.policy, held.policy_version)
    trace = read(DATA / "trace_philly_jobs.csv")
    base = trace.records
    span = base[-1].at_s + 3600
    records: list[Any] = []
    copy = 0
    while len(records) < n:
        shift = copy * span
        records.extend(replace(r, at_s=r.at_s + shift) for r in base[: n - len(records)])
        copy += 1
    trace.records = records
    t0 = time.perf_counter()
    syn = synthesize(trace, engine.inventory, seed=seed, load=load)
    t1 = time.perf_counter()
    per: dict[str, float] = {}
    rejected: dict[str, int] = {}
    for decider in deciders(baselines):
        start = time.perf_counter()
        runs = Replay(engine, decider, seed=seed).run(syn.workloads)
        per[decider.name] = round(time.perf_counter() - start, 2)
        rejected[decider.name] = sum(1 for r in runs if r.site < 0)
    t2 = time.perf_counter()
    return {"bench": "simulate", "workloads": len(syn.workloads), "sites": n_sites,
            "policies": len(per), "seconds": round(t2 - t1, 2),
            "workloads_per_s": round(len(syn.workloads) / (t2 - t1), 1),
            "per_policy_seconds": per, "build_seconds": round(t1 - t0, 2),
            "cores": os.cpu_count(), "rejected": rejected}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--workloads", type=int, default=1_000_000)
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--load", type=float, default=0.8)
    parser.add_argument("--baselines", default="all",
                        help="comma-separated baselines, all, or none (the engine alone)")
    args = parser.parse_args()
    names = [] if args.baselines == "none" else [b for b in args.baselines.split(",") if b]
    tune_gc()  # as every entry point does (placement.tuning)
    result = run(args.workloads, args.sites, args.seed, args.load, names)
    print(json.dumps(result) if args.json else
          f"{result['workloads']:,} workloads x {result['policies']} policies, "
          f"{result['sites']} sites: {result['seconds']} s ({result['workloads_per_s']:,} "
          f"workloads/s); per policy {result['per_policy_seconds']}; building them "
          f"{result['build_seconds']} s")


if __name__ == "__main__":
    main()
