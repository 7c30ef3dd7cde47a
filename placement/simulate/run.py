"""One what-if run: read a trace, build its workloads, replay them under every policy, bound."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from placement.engine.offline import engine_for
from placement.policy.loader import load_bundle
from placement.simulate.baselines import deciders
from placement.simulate.bound import Bound, build, solve
from placement.simulate.replay import Replay, Run
from placement.simulate.results import fleet_usd, horizon, metrics, timeline
from placement.simulate.synth import synthesize
from placement.simulate.traces import read

BUCKETS = 60
PROBLEMS_SHOWN = 50  # unreadable rows listed in summary.json (all are counted)


@dataclass
class Options:
    """What `placement simulate` was asked for."""

    trace: Path
    config: Path
    out: Path
    fmt: str | None = None
    baselines: tuple[str, ...] = ("all",)
    seed: int = 0
    limit: int | None = None
    load: float | None = 0.8
    window_h: float = 0.25
    bound: bool = True
    bound_time_s: float = 60.0


Progress = Callable[[str, int, int], None]  # policy (or "MILP ..."), steps done (delta), total


def simulate(opts: Options, progress: Progress | None = None) -> dict[str, Any]:
    """Run the comparison; writes summary.json and report.html into opts.out."""
    trace = read(opts.trace, opts.fmt)
    bundle = load_bundle(opts.config)
    engine = engine_for(bundle)  # holds no GPUs: each replay works on its own copy
    syn = synthesize(trace, bundle.inventory, seed=opts.seed, window_h=opts.window_h,
                     limit=opts.limit, load=opts.load,
                     feasible=lambda wl: engine.decide(wl).action != "reject")
    workloads = syn.workloads
    if not workloads:
        shown = "; ".join(trace.problems[:3]) or "no rows"
        raise ValueError(f"{opts.trace} gave no workloads ({len(trace.problems)} rows could not "
                         f"be read: {shown}); fix the rows or pass the right --format")
    policies: dict[str, dict[str, Any]] = {}
    all_runs: dict[str, list[Run]] = {}
    for decider in deciders(list(opts.baselines)):
        name = decider.name

        def step(done: int, name: str = name) -> None:
            if progress is not None:
                progress(name, done, len(workloads))

        all_runs[name] = Replay(engine, decider, seed=opts.seed).run(workloads, step)
    span = max(horizon(runs) for runs in all_runs.values())  # one fleet horizon for all
    for name, runs in all_runs.items():
        policies[name] = metrics(runs, workloads, engine.ci, span)
    summary: dict[str, Any] = {
        "trace": str(opts.trace), "format": trace.format, "workloads": len(workloads),
        "policies": policies,
        "inputs": {"config": str(opts.config), "policy_version": bundle.policy_version,
                   "seed": opts.seed, "limit": opts.limit, "load": opts.load,
                   "time_scale": round(syn.time_scale, 6), "window_h": opts.window_h,
                   "trace_problems": len(trace.problems),
                   "trace_problem_lines": trace.problems[:PROBLEMS_SHOWN],
                   "trace_skipped": trace.skipped,
                   "synthesis_notes": syn.notes},
    }
    if opts.bound:
        views = (("bound", "total_usd", False, 0.0),
                 ("bound_fleet", "total_with_fleet_usd", True, fleet_usd(engine.ci, span)))
        # The bound follows the engine's rules over what the engine placed: the gap is the
        # engine's. Baselines break those rules (spot, bursting, SLOs): no gap for them.
        placed = [w for w, r in zip(workloads, all_runs["engine"], strict=True) if r.site >= 0]
        model = build(engine, placed, seed=opts.seed) if placed else None
        for key, total, sunk, fixed in views:
            if progress is not None:
                progress(f"MILP {key.replace('_', ' ')}", 0, 1)
            b = (solve(model, onprem_sunk=sunk, time_limit_s=opts.bound_time_s)
                 if model is not None else Bound(0.0, "empty", 0.0, 0, 0, opts.bound_time_s))
            if progress is not None:
                progress(f"MILP {key.replace('_', ' ')}", 1, 1)
            usd = None if b.usd is None else b.usd + fixed
            summary[key] = {"usd": None if usd is None else round(usd, 2),
                            "status": b.status, "solver_gap": b.gap,
                            "workloads": b.workloads, "variables": b.variables}
            if usd:
                policies["engine"]["gap_to_" + key] = round(
                    policies["engine"][total] / usd - 1, 4)
    edges = np.linspace(0.0, span, BUCKETS + 1)
    series = {name: timeline(runs, engine.ci, edges) for name, runs in all_runs.items()}
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n",
                                           encoding="utf-8")
    from placement.simulate.report import write_report

    write_report(opts.out, summary, series, edges)
    return summary
