"""Simulator benchmark: the Philly trace repeated with shifted arrivals, replayed through the
engine against 100 sites (GPU offers and prices from the real catalogs, as bench/engine.py).

Prints {"bench": "simulate", "workloads": N, "sites": S, "seconds": ..., "workloads_per_s": ...}
with --json; `seconds` is the replay (decisions, queues, completions); building the workloads
from the trace is timed apart (build_seconds).
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
from placement.simulate.baselines import EngineDecider
from placement.simulate.replay import Replay
from placement.simulate.synth import synthesize
from placement.simulate.traces import read
from placement.tuning import tune_gc


def run(n: int, n_sites: int, seed: int, load: float) -> dict[str, object]:
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
    runs = Replay(engine, EngineDecider(), seed=seed).run(syn.workloads)
    t2 = time.perf_counter()
    return {"bench": "simulate", "workloads": len(runs), "sites": n_sites,
            "seconds": round(t2 - t1, 2), "workloads_per_s": round(len(runs) / (t2 - t1), 1),
            "build_seconds": round(t1 - t0, 2), "cores": os.cpu_count(),
            "rejected": sum(1 for r in runs if r.site < 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--workloads", type=int, default=1_000_000)
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--load", type=float, default=0.8)
    args = parser.parse_args()
    tune_gc()  # as every entry point does (placement.tuning)
    result = run(args.workloads, args.sites, args.seed, args.load)
    print(json.dumps(result) if args.json else
          f"{result['workloads']:,} workloads, {result['sites']} sites: {result['seconds']} s "
          f"({result['workloads_per_s']:,} /s); building them {result['build_seconds']} s")


if __name__ == "__main__":
    main()
