"""One what-if run: read a trace, build its workloads, replay them under every policy, bound
them, over one seed or many (a process pool here, or a Dask cluster), and write the answer."""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from placement.control.gitops import bundle_version
from placement.engine.offline import engine_for
from placement.policy.loader import load_bundle
from placement.simulate import stats
from placement.simulate.baselines import deciders, runnable
from placement.simulate.bound import build, solve
from placement.simulate.replay import Replay, Run
from placement.simulate.results import fleet_usd, horizon, metrics, timeline, unmet_charges
from placement.simulate.synth import synthesize
from placement.simulate.traces import read

BUCKETS = 60
VIEWS = ("used", "avoidable", "fleet")
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
    skip: int = 0  # leave out the first N workloads (a later window of the trace)
    load: float | None = 0.8
    window_h: float = 0.25
    bound: bool = True
    bound_time_s: float = 60.0
    seeds: int = 1  # seeds seed, seed + 1, ... (a process pool, or --cluster, when over 1)
    cluster: str | None = None  # a Dask scheduler address: the seeds run there


Progress = Callable[[str, int, int], None]  # policy (or "MILP ..."), steps done (delta), total


@dataclass
class SeedResult:
    """One seed's summary and the time series its report plots."""

    summary: dict[str, Any]
    series: dict[str, Any]
    edges: np.ndarray


def run_seed(opts: Options, seed: int, progress: Progress | None = None) -> SeedResult:
    """Every policy over one seed's workloads, and the bound; writes nothing."""
    trace = read(opts.trace, opts.fmt)
    bundle = load_bundle(opts.config)
    engine = engine_for(bundle)  # holds no GPUs: each replay works on its own copy
    syn = synthesize(trace, bundle.inventory, seed=seed, window_h=opts.window_h,
                     limit=opts.limit, load=opts.load, skip=opts.skip,
                     feasible=lambda wl: runnable(engine, wl))
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

        all_runs[name] = Replay(engine, decider, seed=seed).run(workloads, step)
    span = max(horizon(runs) for runs in all_runs.values())  # one fleet horizon for all
    charges = unmet_charges(engine, workloads)  # the same for every policy and the bound
    for name, runs in all_runs.items():
        policies[name] = metrics(runs, workloads, engine, span, charges)
    summary: dict[str, Any] = {
        "trace": str(opts.trace), "format": trace.format, "workloads": len(workloads),
        "policies": policies,
        "inputs": {"config": str(opts.config),
                   "policy_version": bundle_version(opts.config, bundle),
                   "seed": seed, "limit": opts.limit, "skip": opts.skip, "load": opts.load,
                   "time_scale": round(syn.time_scale, 6), "window_h": opts.window_h,
                   "trace_problems": len(trace.problems),
                   "trace_problem_lines": trace.problems[:PROBLEMS_SHOWN],
                   "trace_skipped": trace.skipped,
                   "synthesis_notes": syn.notes},
    }
    if opts.bound:
        summary["bound"] = _bounds(engine, workloads, policies, span, seed, opts, progress,
                                   charges)
    edges = np.linspace(0.0, span, BUCKETS + 1)
    series = {name: timeline(runs, engine.ci, edges) for name, runs in all_runs.items()}
    return SeedResult(summary, series, edges)


def _bounds(engine: Any, workloads: list[Any], policies: dict[str, dict[str, Any]],
            span: float, seed: int, opts: Options, progress: Progress | None,
            charges: np.ndarray) -> dict[str, Any]:
    """The MILP's lower bound in each money view, and every policy's gap to it. The bound
    holds for every policy compared: all workloads, any start after arrival, unmet work
    charged as the metrics charge it."""
    model = build(engine, workloads, horizon_h=span, seed=seed, charges=charges)
    out: dict[str, Any] = {}
    for view in ("used", "avoidable"):  # the fleet's is the avoidable bound + the fleet
        if progress is not None:
            progress(f"MILP {view}", 0, 1)
        b = solve(model, view=view, time_limit_s=opts.bound_time_s)
        if progress is not None:
            progress(f"MILP {view}", 1, 1)
        out[view] = {"usd": None if b.usd is None else round(b.usd, 2), "status": b.status,
                     "solver_gap": b.gap, "workloads": b.workloads, "variables": b.variables,
                     "seconds": round(b.seconds, 2)}
    avoid = out["avoidable"]
    out["build_seconds"] = round(model.seconds, 2)
    out["fleet"] = dict(avoid, usd=None if avoid["usd"] is None else round(
        avoid["usd"] + fleet_usd(engine.ci, span), 2))
    for m in policies.values():
        for view in VIEWS:
            usd = out[view]["usd"]
            m[f"gap_to_bound_{view}"] = round(m[f"{view}_usd"] / usd - 1, 4) if usd else None
    return out


@contextmanager
def executor(opts: Options) -> Iterator[Executor]:
    """Where the seeds run: the Dask cluster at opts.cluster, else a local process pool."""
    if opts.cluster is not None:
        try:
            distributed: Any = importlib.import_module("distributed")
        except ImportError as exc:  # the [sim] extra
            raise ValueError("--cluster needs the Dask client: pip install "
                             "'hybrid-placement[sim]' (package distributed)") from exc
        try:
            client = distributed.Client(opts.cluster, timeout=10)
        except OSError as exc:
            raise ValueError(f"cannot reach the Dask scheduler at {opts.cluster}: {exc}; "
                             "start one (dask scheduler) or leave out --cluster") from exc
        try:
            yield client.get_executor()
        finally:
            client.close()
        return
    workers = max(1, min(opts.seeds, os.cpu_count() or 1))
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        yield pool


def simulate(opts: Options, progress: Progress | None = None) -> dict[str, Any]:
    """Run the comparison over opts.seeds seeds; writes summary.json and report.html into
    opts.out. Returns the summary."""
    seeds = list(range(opts.seed, opts.seed + max(1, opts.seeds)))
    if len(seeds) == 1 and opts.cluster is None:
        results = [run_seed(opts, seeds[0], progress)]
    else:
        results_by_seed: dict[int, SeedResult] = {}
        with executor(opts) as pool:
            futures = {pool.submit(run_seed, opts, s): s for s in seeds}
            for fut in as_completed(futures):
                results_by_seed[futures[fut]] = fut.result()
                if progress is not None:
                    progress(f"{len(seeds)} seeds", 1, len(seeds))
        results = [results_by_seed[s] for s in seeds]
    summary = combine([r.summary for r in results])
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n",
                                           encoding="utf-8")
    from placement.simulate.report import write_report

    write_report(opts.out, summary, results[0].series, results[0].edges)
    return summary


def combine(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary from per-seed summaries: means (one seed: its values), the paired
    comparisons of the engine against each baseline with 95% intervals, and the headline."""
    first = per_seed[0]
    pols = [s["policies"] for s in per_seed]
    summary: dict[str, Any] = {
        "trace": first["trace"], "format": first["format"],
        # the same work within a seed; on request traces the count may differ by seed
        "workloads": first["workloads"] if len(per_seed) == 1 else
        stats.mean_of([s["workloads"] for s in per_seed]),
        "workloads_per_seed": [s["workloads"] for s in per_seed],
        "seeds": [s["inputs"]["seed"] for s in per_seed],
        "policies": pols[0] if len(per_seed) == 1 else
        {name: stats.mean_of([p[name] for p in pols]) for name in pols[0]},
    }
    if len(per_seed) > 1:
        summary["intervals"] = {name: {m: stats.interval([float(p[name][m]) for p in pols])
                                       .as_dict() for m in stats.INTERVAL_METRICS
                                       if all(p[name].get(m) is not None for p in pols)}
                                for name in pols[0]}
    bound_gap = None
    if "bound" in first:
        summary["bound"] = first["bound"] if len(per_seed) == 1 else {
            view: {"usd": stats.mean_of([s["bound"][view]["usd"] for s in per_seed]),
                   "status": "; ".join(sorted({s["bound"][view]["status"] for s in per_seed})),
                   "seconds": stats.mean_of([s["bound"][view]["seconds"] for s in per_seed])}
            for view in VIEWS}
        for m in summary["policies"].values():  # the means' own gaps, beside the means
            for view in VIEWS:
                usd = summary["bound"][view]["usd"]
                m[f"gap_to_bound_{view}"] = round(m[f"{view}_usd"] / usd - 1, 4) \
                    if usd else None
        usd = [s["bound"]["avoidable"]["usd"] for s in per_seed]
        if "engine" in first["policies"] and all(u is not None for u in usd):
            bound_gap = stats.ratio_interval(
                [float(s["policies"]["engine"]["avoidable_usd"]) for s in per_seed],
                [float(u) for u in usd if u is not None])
    if "engine" in pols[0]:
        summary["comparisons"] = stats.compare(pols)
        summary["headline"] = stats.headline(summary["comparisons"], len(per_seed), bound_gap)
    summary["inputs"] = dict(first["inputs"], seed=summary["seeds"][0])
    if len(per_seed) > 1:
        summary["per_seed"] = [{"seed": s["inputs"]["seed"], "workloads": s["workloads"],
                                "policies": s["policies"], "bound": s.get("bound")}
                               for s in per_seed]
    return summary
