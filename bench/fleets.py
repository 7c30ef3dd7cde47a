"""Fleet replay benchmark: LLM request traces replayed request by request against the example
bundle's fleet services (global-assistant, global-docs-rag), under the engine's fleets and five
baselines, over several seeds (placement.simulate.fleets for the rules).

    python -m bench.fleets --traces azure_code,azure_conv,mooncake,genai --seeds 5 \
        [--window later] [--variant halved] [--load 1.0] [--plot out.png] [--json out.json]

Prints, per trace, each policy's per-location p50/p99 latency and SLO attainment, its cost
(replica-hours x price + egress + the unmet-work charge) and avoidable cost (cloud GPUs +
egress + the charge), with 95% intervals over seeds, then the paired comparisons the targets
name. `--variant halved`: the example inventory with every on-prem pool halved and the Tokyo
users' measured RTTs dropped (the engine estimates them), to check nothing is tuned to the
example's numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: bench/ is importable from the repository root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from placement.model import Inventory
from placement.model.inventory import OnPremSiteSpec
from placement.policy.loader import load_bundle
from placement.simulate import stats
from placement.simulate.fleet_policies import NAMES, Setup, setup
from placement.simulate.fleets import WINDOW_S, replay, requests, summary
from placement.simulate.traces import read

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
TRACES = {"azure_code": "trace_azure_llm2023_code.csv",
          "azure_conv": "trace_azure_llm2023_conv.csv",
          "mooncake": "trace_mooncake_conversation.csv",
          "genai": "trace_alibaba_genai2026_lora_requests.csv"}
SERVICES = ("global-assistant", "global-docs-rag")
OURS = "engine-fleet"
HOURS = {"genai": 24.0}  # a 15-day trace: one day of it (the others are under an hour)
DEFAULT_HOURS = 1.0


@contextmanager
def quiet() -> Iterator[None]:
    """Stdout at the file-descriptor level off (HiGHS writes progress lines to it)."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def halved(inv: Inventory) -> Inventory:
    """Every on-prem pool halved (at least 1 GPU); tokyo-users' measured RTTs dropped."""
    sites = []
    for site in inv.sites:
        if isinstance(site.spec, OnPremSiteSpec):
            pools = [p.model_copy(update={"count": max(1, p.count // 2)}) for p in site.spec.gpus]
            site = site.model_copy(update={"spec": site.spec.model_copy(update={"gpus": pools})})
        sites.append(site)
    clients = [c.model_copy(update={"spec": c.spec.model_copy(update={"rtt_ms": {}})})
               if c.name == "tokyo-users" else c for c in inv.client_locations]
    return inv.model_copy(update={"sites": sites, "client_locations": clients})


def build(variant: str) -> Setup:
    bundle = load_bundle(ROOT / "policies" / "examples")
    inv = halved(bundle.inventory) if variant == "halved" else bundle.inventory
    wls = [w for w in bundle.workloads if w.metadata.name in SERVICES]
    return setup(inv, bundle.policy, bundle.policy_version, wls)


def run_trace(s: Setup, name: str, seeds: int, later: bool, load: float | None,
              span_h: float, window_s: float) -> list[dict[str, Any]]:
    trace = read(DATA / TRACES[name])
    out = []
    for seed in range(seeds):
        reqs = requests(trace, s, seed, later=later, load=load, span_h=span_h)
        out.append({p: summary(s, reqs, replay(s, reqs, p, seed, window_s)) for p in NAMES})
        out[-1]["_requests"] = {"n": len(reqs.at_s), "span_s": reqs.span_s,
                                "start_utc_h": reqs.start_utc_h}
    return out


def _iv(values: list[float], fmt: str) -> str:
    iv = stats.interval(values)
    half = f"±{fmt.format(iv.half)}" if iv.half is not None else ""
    return fmt.format(iv.mean) + half


def table(per_seed: list[dict[str, Any]], locations: list[str]) -> list[str]:
    lines = [f"{'policy':<20} " + " ".join(f"{loc[:16]:>34}" for loc in locations)
             + f" {'cost $':>14} {'avoidable $':>14}",
             f"{'':<20} " + " ".join(f"{'p50 / p99 ms, within SLO %':>34}" for _ in locations)]
    for p in NAMES:
        cells = []
        for loc in locations:
            got = [r[p]["locations"][loc] for r in per_seed]
            cells.append(f"{_iv([g['p50_ms'] for g in got], '{:.0f}')} / "
                         f"{_iv([g['p99_ms'] for g in got], '{:.0f}')}, "
                         f"{_iv([100 * g['slo'] for g in got], '{:.2f}')}")
        lines.append(f"{p:<20} " + " ".join(f"{c:>34}" for c in cells)
                     + f" {_iv([r[p]['total_usd'] for r in per_seed], '{:.2f}'):>14}"
                     + f" {_iv([r[p]['avoidable_usd'] for r in per_seed], '{:.2f}'):>14}")
    return lines


def _rel(iv: dict[str, Any]) -> str:
    if not iv.get("relative", True):
        return f"{iv['mean']:+.2f} $ (a seed at $0)"
    span = "" if iv["low"] is None else f" [{iv['low']:+.1%}, {iv['high']:+.1%}]"
    return f"{iv['mean']:+.1%}{span}"


def targets(per_seed: list[dict[str, Any]], locations: list[str]) -> list[str]:
    ours = [r[OURS] for r in per_seed]
    worst = [o["slo_worst_location"] for o in ours]
    iv = stats.interval(worst)
    low = iv.mean - (iv.half or 0.0)
    lines = [f"  SLO >= 99% for every location: worst location {100 * iv.mean:.2f}% "
             f"(95% low {100 * low:.2f}%): {'met' if low >= 0.99 else 'NOT met'}"]
    for base, goal in (("all-cloud-on-demand", -0.40), ("skyserve-like", -0.20)):
        theirs = [r[base] for r in per_seed]
        slo = stats.interval([o["slo"] - t["slo"] for o, t in zip(ours, theirs, strict=True)])
        for view in ("total_usd", "avoidable_usd"):
            got = stats.ratio_interval([o[view] for o in ours], [t[view] for t in theirs])
            ok = got.get("relative", True) and got["mean"] <= goal
            lines.append(f"  {view:<14} vs {base:<20} {_rel(got):<28} (target {goal:.0%}): "
                         f"{'met' if ok else 'NOT met'}")
        lines.append(f"  {'':<14}    SLO attainment difference {100 * slo.mean:+.2f} pp"
                     + (f" ±{100 * slo.half:.2f}" if slo.half is not None else ""))
    for loc in locations:
        got = stats.ratio_interval([r["price-only"]["locations"][loc]["p99_ms"] for r in per_seed],
                                   [r[OURS]["locations"][loc]["p99_ms"] for r in per_seed])
        factor = 1 + got["mean"]
        lines.append(f"  p99 at {loc:<18} price-only / engine = {factor:.2f}x (target >= 2x): "
                     f"{'met' if factor >= 2 else 'NOT met'}")
    return lines


def plot(results: dict[str, list[dict[str, Any]]], locations: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    counts: dict[str, dict[tuple[str, str], int]] = {p: {} for p in NAMES}
    sites: set[str] = set()
    for per_seed in results.values():
        for r in per_seed:
            for p in NAMES:
                for loc, got in r[p]["routes"].items():
                    for site, n in got.items():
                        counts[p][(loc, site)] = counts[p].get((loc, site), 0) + n
                        sites.add(site)
    cols = sorted(sites)
    fig, axes = plt.subplots(2, 3, figsize=(16, 7), constrained_layout=True)
    for ax, p in zip(axes.flat, NAMES, strict=True):
        m = np.array([[counts[p].get((loc, s), 0) for s in cols] for loc in locations], float)
        m = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        ax.imshow(m, vmin=0, vmax=1, cmap="Blues")
        ax.set_title(p)
        ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(locations)), locations, fontsize=8)
        for i in range(len(locations)):
            for j in range(len(cols)):
                if m[i, j] >= 0.005:
                    ax.text(j, i, f"{m[i, j]:.0%}", ha="center", va="center", fontsize=7,
                            color="white" if m[i, j] > 0.5 else "black")
    fig.suptitle("Share of each location's requests served at each site (all traces, seeds)")
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", default=",".join(TRACES))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--window", choices=("first", "later"), default="first")
    parser.add_argument("--variant", choices=("examples", "halved"), default="examples")
    parser.add_argument("--load", type=float, default=1.0,
                        help="mean requests/s as a multiple of the services' declared "
                        "requests/s (0: the trace's own rate)")
    parser.add_argument("--hours", type=float, help="replayed span per trace (default: "
                        f"{DEFAULT_HOURS:g} h, genai {HOURS['genai']:g} h)")
    parser.add_argument("--window-minutes", type=float, default=WINDOW_S / 60)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    names = [t for t in args.traces.split(",") if t]
    unknown = [t for t in names if t not in TRACES]
    if unknown:
        parser.error(f"--traces: unknown {', '.join(unknown)}; use {', '.join(TRACES)}")
    s = build(args.variant)
    results: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        t = time.perf_counter()
        hours = args.hours or HOURS.get(name, DEFAULT_HOURS)
        with quiet():
            results[name] = got = run_trace(s, name, args.seeds, args.window == "later",
                                            args.load or None, hours,
                                            args.window_minutes * 60)
        n = got[0]["_requests"]["n"]
        print(f"\n== {name}: {n:,} requests over {got[0]['_requests']['span_s'] / 60:.0f} min "
              f"(seed 0), {args.seeds} seeds, window {args.window}, inventory {args.variant}, "
              f"load {args.load:g}, {time.perf_counter() - t:.1f} s on {os.cpu_count()} cores")
        print("\n".join(table(got, s.locations)))
        print("targets (engine-fleet, paired by seed; [95% interval]):")
        print("\n".join(targets(got, s.locations)))
        notes = {p: got[0][p]["notes"] for p in NAMES if got[0][p]["notes"]}
        if notes:
            print(f"notes (seed 0): {notes}")
    if args.plot:
        plot(results, s.locations, args.plot)
        print(f"\nplot: {args.plot}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
