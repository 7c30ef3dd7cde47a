"""Engine benchmark: the decision the service makes, at 10, 100, 1,000 and 10,000 sites.

Sites are synthetic but their GPU offers and prices are drawn from the real AWS/GCP/Azure
catalogs in ../shared/data (prices_*.csv). For each size it times:
- `decide`: filter, score, pick (Engine.decide alone);
- `service`: what the service runs per submission, decide + the explanation as it is stored:
  the decision's record (Engine.record: its fields and every candidate as packed columns,
  reasons as templates and codes) and the fields' JSON encoding;
- `reply`: `service` + what a submission's reply adds: the best 3 candidates worded
  (placement.engine.explain.brief) and the reply's JSON;
- `read`: `service` + every candidate worded, as GET /v1/decisions/{id} does on read
  (placement.engine.explain.render), and its JSON;
- `validated`: decide + the validated `Decision` model (what `place`, `policy diff` use).
The target (issue 17, item 7): `service` <= 2x `decide` in instructions at 100 and 1,000
sites.
Beside the times it prints `anchor_us`, a fixed NumPy + Python workload timed in the same run,
and each p50 as a multiple of it, so runs on machines 3x apart compare. With --instructions
(and valgrind installed) it also counts instructions per decision with callgrind: a run that
collects only inside the loop that decides K workloads (itertools.starmap, `--toggle-collect`),
divided by K.
Prints one JSON line per size with --json.

The fleet section (--fleet-sizes, 10 and 100 sites by default) times Engine.decide for
services under a fleet rule with three client locations (Frankfurt, Virginia, Tokyo): the
probe decisions per location and the HiGHS plan (placement.engine.fleet). It prints p50/p99,
the shares of the probes (`_table`) and of the solver (`_solve`) in the fleet decisions' time,
and each p50/p99 as a multiple of a plain single-site decide of the same services without the
fleet label, measured in the same run, and how the warm-up pass planned each fleet (the MILP,
the rounded LP relaxation, the greedy plan, or no fleet). With --instructions it also counts
the fleet decisions' instructions; HiGHS's share of them varied between runs under valgrind
(65M and 72M for the same code and the same 20 solves), so they are approximate. The target:
fleet decision p99 <= 5 ms at 100 sites.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from placement.engine import Engine, Outcome
from placement.engine.explain import brief, render, split_record
from placement.jsoncodec import dumps
from placement.model import Inventory, Policy, Reservation, Site, Workload
from placement.model.inventory import ClientLocation, Dataset
from placement.policy.catalog import Offer, load_offers
from placement.policy.loader import policy_version
from placement.tuning import tune_gc

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
GPUS = ["L4", "A100", "A100-80GB", "H100"]


def _site(i: int, rng: random.Random, offers: dict[str, list[Offer]]) -> Site:
    lat, lon = rng.uniform(-40, 60), rng.uniform(-125, 145)
    if rng.random() < 0.2:
        pools = [{"type": g, "count": rng.choice([8, 16, 32, 64]),
                  "usd_per_gpu_hour": round(rng.uniform(0.5, 4.0), 3)}
                 for g in rng.sample(GPUS, k=2)]
        spec: dict[str, Any] = {"type": "onprem", "gpus": pools, "egress_usd_per_gb": 0}
    else:
        gpus = []
        for g in rng.sample(GPUS, k=3):
            picks = rng.sample(offers[g], k=min(3, len(offers[g])))
            gpus.append({"type": g, "quota_gpus": rng.choice([16, 64, 256]), "instances": [
                {"type": o.instance_type, "gpus": o.gpus, "on_demand_usd_per_hour": o.on_demand,
                 "spot_usd_per_hour": o.spot} for o in picks]})
        spec = {"type": "cloud", "provider": rng.choice(["aws", "gcp", "azure"]),
                "region": f"r{i}", "gpus": gpus, "egress_usd_per_gb": rng.choice([0.09, 0.12])}
    spec.update({"location": {"lat": lat, "lon": lon}, "kube_context": f"s{i}",
                 "wan_gbps": rng.choice([10, 40, 100])})
    return Site.model_validate({"metadata": {"name": f"site-{i:04d}"}, "spec": spec})


def data_and_clients(rng: random.Random, site_names: list[str], n_clients: int
                     ) -> tuple[list[Dataset], list[ClientLocation]]:
    """Four datasets (50 GB to 40 TB, two replicas each) and clients anywhere."""
    datasets = [Dataset.model_validate({"metadata": {"name": f"ds{i}"}, "spec": {
        "size_gb": rng.choice([50, 2000, 40000]), "replicas": rng.sample(site_names, k=2)}})
        for i in range(4)]
    clients = [ClientLocation.model_validate({"metadata": {"name": f"c{i}"}, "spec": {
        "location": {"lat": rng.uniform(-40, 60), "lon": rng.uniform(-125, 145)}}})
        for i in range(n_clients)]
    return datasets, clients


def offers_by_gpu() -> dict[str, list[Offer]]:
    """The real catalogs' offers of the benchmark's GPU types."""
    by_gpu: dict[str, list[Offer]] = {g: [] for g in GPUS}
    for o in load_offers(DATA):
        if o.gpu in by_gpu:
            by_gpu[o.gpu].append(o)
    return by_gpu


def synthetic_sites(n_sites: int, rng: random.Random) -> list[Site]:
    """`n_sites` synthetic sites priced from the real catalogs."""
    by_gpu = offers_by_gpu()
    return [_site(i, rng, by_gpu) for i in range(n_sites)]


def build(n_sites: int, seed: int) -> tuple[Engine, list[Workload]]:
    rng = random.Random(seed)
    sites_ = synthetic_sites(n_sites, rng)
    datasets, clients = data_and_clients(rng, [s.name for s in sites_], 5)
    policy = Policy.model_validate({"metadata": {"name": "bench"}, "spec": {"rules": [
        {"name": "svc", "match": {"kinds": ["inference", "rag"]},
         "weights": {"latency": 5, "cost": 2, "wait": 1, "data_gravity": 1},
         "burst": {"allowed": True, "when": "always"}},
        {"name": "jobs", "match": {"kinds": ["training"]},
         "weights": {"cost": 4, "data_gravity": 2, "wait": 1}, "max_wait_hours": 2,
         "burst": {"allowed": True, "spot": "when_deadline_allows"}}]}})
    held = [Reservation(site=s.name, gpu_type=s.spec.gpus[0].type, count=4,
                        remaining_hours=rng.uniform(0, 12)) for s in sites_ if s.spec.type ==
            "onprem"]
    engine = Engine(Inventory(sites=sites_, datasets=datasets, client_locations=clients),
                    policy, policy_version(policy), held)
    workloads = []
    for i in range(200):
        gpu = rng.sample(GPUS, k=2)
        if i % 2:
            spec = {"kind": "training", "team": "t", "gpu": {"types": gpu, "count": 8},
                    "duration_hours": rng.uniform(1, 72), "deadline_hours": 96,
                    "datasets": [{"name": f"ds{rng.randrange(4)}"}]}
        else:
            spec = {"kind": "inference", "team": "t", "gpu": {"types": gpu, "count": 1},
                    "replicas": 2, "latency": {"p99_slo_ms": 150, "service_time_p99_ms": 30,
                                               "clients": [{"location": f"c{rng.randrange(5)}"}]}}
        workloads.append(Workload.model_validate({"metadata": {"name": f"w{i}"}, "spec": spec}))
    return engine, workloads


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def anchor_us() -> float:
    """A fixed workload of the engine's kind (small NumPy ops and Python dicts), median of 7."""
    rng = np.random.default_rng(0)
    a, b = rng.random(512), rng.random(512)
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(200):
            m = (a < b) & (a > 0.1)
            order = np.lexsort((a[m], b[m]))
            rows = [{"x": float(x), "y": int(y)} for x, y in zip(a[:32], order[:32], strict=False)]
        times.append((time.perf_counter() - t0) / 200 * 1e6)
        del rows
    return statistics.median(times)


def _stored(engine: Engine, out: Outcome) -> tuple[dict[str, Any], bytes | memoryview | None]:
    fields, columns = split_record(engine.record(out))
    dumps(fields)  # the store's JSON of the fields (the packed columns go as bytes)
    return fields, columns


AFTER: dict[str, Callable[[Engine, Outcome], Any]] = {  # what each path does after decide
    "decide": lambda engine, out: None,
    "service": _stored,
    "reply": lambda engine, out: dumps(brief(*_stored(engine, out))),
    "read": lambda engine, out: dumps(render(*_stored(engine, out))),
    "validated": lambda engine, out: engine.explain(out),
}


def _timed(engine: Engine, workloads: list[Workload], rounds: int, how: str,
           samples: int) -> list[float]:
    out: list[float] = []
    after = AFTER[how]
    for _ in range(rounds):
        for w in workloads:
            t0 = time.perf_counter()
            after(engine, engine.decide(w))
            out.append((time.perf_counter() - t0) * 1000)
            if len(out) >= samples:
                return out
    return out


def run(n_sites: int, seed: int, rounds: int, anchor: float) -> dict[str, Any]:
    engine, workloads = build(n_sites, seed)
    for i, w in enumerate(workloads):  # warm-up: every shape memo, billing, caches
        out = engine.decide(w)
        if i < 20 or n_sites <= 1000:  # at 10,000 sites each explanation takes ~1 s
            engine.explain(out)
    tune_gc()  # as every entry point does (placement.tuning)
    result: dict[str, Any] = {"bench": "engine", "sites": n_sites, "cores": os.cpu_count(),
                              "anchor_us": round(anchor, 2)}
    big = max(1, n_sites // 1000)
    for how, samples in (("decide", 1000), ("service", 1000 // big), ("reply", 1000 // big),
                         ("read", 200 // big), ("validated", 200 // big)):
        ms = _timed(engine, workloads, rounds, how, samples)
        result[f"{how}_p50_ms"] = round(_pct(ms, 50), 4)
        result[f"{how}_p99_ms"] = round(_pct(ms, 99), 4)
        result[f"{how}_p50_anchors"] = round(_pct(ms, 50) * 1000 / anchor, 2)
        result[f"{how}_samples"] = len(ms)
    result["decisions_per_s"] = round(1000 / result["decide_p50_ms"], 1)
    return result


FLEET_CLIENTS = (("frankfurt", 50.1, 8.7), ("virginia", 38.9, -77.4), ("tokyo", 35.7, 139.7))
FLEET_LABEL = {"placement.dev/fleet": "true"}


def build_fleet(n_sites: int, seed: int, n_services: int = 20
                ) -> tuple[Engine, list[Workload], list[Workload]]:
    """`n_sites` synthetic sites, three client locations, a policy whose fleet rule matches
    services labelled for it; the fleet services and their unlabelled (single-site) twins."""
    rng = random.Random(seed)
    sites_ = synthetic_sites(n_sites, rng)
    clients = [ClientLocation.model_validate({"metadata": {"name": name}, "spec": {
        "location": {"lat": lat, "lon": lon}}}) for name, lat, lon in FLEET_CLIENTS]
    policy = Policy.model_validate({"metadata": {"name": "bench-fleet"}, "spec": {"rules": [
        {"name": "fleets", "match": {"kinds": ["inference"], "labels": FLEET_LABEL},
         "burst": {"allowed": True, "when": "always", "spot": "always"},
         "fleet": {"target_utilization": 0.7, "spot_max_share": 0.5}},
        {"name": "svc", "match": {"kinds": ["inference"]},
         "weights": {"latency": 5, "cost": 2, "wait": 1, "data_gravity": 1},
         "burst": {"allowed": True, "when": "always"}}]}})
    held = [Reservation(site=s.name, gpu_type=s.spec.gpus[0].type, count=4,
                        remaining_hours=rng.uniform(0, 12)) for s in sites_ if s.spec.type ==
            "onprem"]
    engine = Engine(Inventory(sites=sites_, client_locations=clients), policy,
                    policy_version(policy), held)
    fleet, single = [], []
    for i in range(n_services):
        spec = {"kind": "inference", "team": "t", "gpu": {"types": rng.sample(GPUS, k=2),
                                                          "count": 1},
                "latency": {"p99_slo_ms": rng.choice([250, 300, 400]),
                            "service_time_p99_ms": rng.choice([30, 60, 120]),
                            "clients": [{"location": name,
                                         "requests_per_s": rng.choice([2, 10, 40, 120])}
                                        for name, _, _ in FLEET_CLIENTS]},
                "serving": {"model": f"m{i}", "backend": "vllm", "max_batch_size": 8}}
        fleet.append(Workload.model_validate({"metadata": {"name": f"f{i}",
                                                           "labels": FLEET_LABEL},
                                              "spec": spec}))
        single.append(Workload.model_validate({"metadata": {"name": f"s{i}"}, "spec": spec}))
    return engine, fleet, single


class _Stopwatch:
    """Seconds spent inside one module function while installed (wraps the module global)."""

    def __init__(self, module: Any, name: str) -> None:
        self.module, self.name, self.seconds = module, name, 0.0
        self.inner = getattr(module, name)

    def __enter__(self) -> _Stopwatch:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return self.inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        setattr(self.module, self.name, timed)
        return self

    def __exit__(self, *_: object) -> None:
        setattr(self.module, self.name, self.inner)


def run_fleet(n_sites: int, seed: int, samples: int) -> dict[str, Any]:
    """Fleet decisions against plain single-site decisions of the same services."""
    from placement.engine import fleet as fleet_module

    engine, fleet, single = build_fleet(n_sites, seed)
    methods: dict[str, int] = {}
    for w in fleet + single:  # warm-up: every shape memo (the probes' too), billing, HiGHS
        out = engine.decide(w)
        engine.explain_dict(out)
        if out.fleet is not None:
            how = getattr(out.fleet, "method", "no fleet")
            methods[how] = methods.get(how, 0) + 1
    tune_gc()
    result: dict[str, Any] = {"bench": "engine-fleet", "sites": n_sites, "locations":
                              len(FLEET_CLIENTS), "cores": os.cpu_count(),
                              "fleet_methods": methods}
    rounds = max(1, samples // len(fleet))
    ms = _timed(engine, single, rounds, "decide", samples)
    result["single_p50_ms"] = round(_pct(ms, 50), 4)
    result["single_p99_ms"] = round(_pct(ms, 99), 4)
    with _Stopwatch(fleet_module, "_table") as table, \
            _Stopwatch(fleet_module, "_solve") as solve:
        t0 = time.perf_counter()
        ms = _timed(engine, fleet, rounds, "decide", samples)
        total = time.perf_counter() - t0
    result["fleet_p50_ms"] = round(_pct(ms, 50), 4)
    result["fleet_p99_ms"] = round(_pct(ms, 99), 4)
    result["fleet_samples"] = len(ms)
    result["probes_share"] = round(table.seconds / total, 3)
    result["solver_share"] = round(solve.seconds / total, 3)
    result["p50_vs_single"] = round(result["fleet_p50_ms"] / result["single_p50_ms"], 1)
    result["p99_vs_single"] = round(result["fleet_p99_ms"] / result["single_p99_ms"], 1)
    result["target_p99_5ms"] = "met" if result["fleet_p99_ms"] <= 5 else "missed"
    return result


def _probe(n_sites: int, k: int, how: str) -> None:
    """The body callgrind counts: build and warm the engine, then decide `k` workloads inside
    itertools.starmap, the one C function callgrind collects in (`--toggle-collect`).
    `how` "fleet" / "fleet-single": the fleet section's services / their single-site twins."""
    if how.startswith("fleet"):
        engine, fleet, single = build_fleet(n_sites, 7)
        workloads = fleet if how == "fleet" else single
        for w in workloads + workloads:
            engine.decide(w)
        tune_gc()
        todo = (workloads * (k // len(workloads) + 1))[:k]
        list(itertools.starmap(engine.decide, ((w,) for w in todo)))
        return
    engine, workloads = build(n_sites, 7)
    for w in workloads:  # every shape memo warm, its explanation's rows too (as `run` does)
        _stored(engine, engine.decide(w))
    tune_gc()

    after = AFTER[how]

    def one(w: Workload) -> None:
        after(engine, engine.decide(w))

    todo = (workloads * (k // len(workloads) + 1))[:k]
    list(itertools.starmap(one, ((w,) for w in todo)))


def _callgrind(n_sites: int, k: int, how: str) -> int | None:
    """Instructions of `k` decisions (only those: collection is on inside starmap_next) under
    callgrind, or None without valgrind."""
    if shutil.which("valgrind") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", "--toggle-collect=starmap_next",
             f"--callgrind-out-file={out}", sys.executable, __file__, "--probe",
             f"{n_sites},{k},{how}"], capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": "0"})
    found = re.search(r"Collected : (\d+)", done.stderr)
    return int(found.group(1)) if found else None


def instructions(n_sites: int, k: int) -> dict[str, Any]:
    """Instructions per decision for decide alone and each path after it (`AFTER`), by
    callgrind, collecting only inside the measured loop."""
    out: dict[str, Any] = {"instructions_k": k}
    for how in AFTER:
        got = _callgrind(n_sites, k, how)
        if got is None:
            return {"instructions": "valgrind not installed"}
        out[f"{how}_instructions"] = round(got / k)
    for how in list(AFTER)[1:]:
        out[f"{how}_vs_decide"] = round(out[f"{how}_instructions"] /
                                        out["decide_instructions"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="one JSON line per size")
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--instructions", action="store_true",
                        help="also count instructions with callgrind (slow: minutes)")
    parser.add_argument("--instruction-sizes", default="100,1000",
                        help="sizes to count instructions at")
    parser.add_argument("--instruction-k", type=int, default=40,
                        help="decisions per callgrind run at 100 sites (scaled down above)")
    parser.add_argument("--fleet-sizes", default="10,100",
                        help="sizes of the fleet section ('' to skip it)")
    parser.add_argument("--fleet-samples", type=int, default=400,
                        help="fleet decisions timed per size (as many single-site ones)")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        n, k, how = args.probe.split(",")
        _probe(int(n), int(k), how)
        return
    anchor = anchor_us()
    counted = {int(x) for x in args.instruction_sizes.split(",")} if args.instructions else set()
    for n in (int(x) for x in args.sizes.split(",") if x):
        result = run(n, args.seed, args.rounds, anchor)
        if n in counted:  # fewer decisions where each costs more (valgrind runs ~50x slower)
            result.update(instructions(n, max(5, args.instruction_k * 100 // max(n, 100))))
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{n:>6} sites: decide p50 {result['decide_p50_ms']} ms p99 "
                  f"{result['decide_p99_ms']} ms; service p50 {result['service_p50_ms']} ms "
                  f"p99 {result['service_p99_ms']} ms; reply p50 {result['reply_p50_ms']} ms; "
                  f"read p50 {result['read_p50_ms']} ms; validated p50 "
                  f"{result['validated_p50_ms']} ms ({os.cpu_count()} cores)")
    for n in (int(x) for x in args.fleet_sizes.split(",") if x):
        result = run_fleet(n, args.seed, args.fleet_samples)
        if n in counted:
            k = max(5, args.instruction_k // 2)
            fleet_i, single_i = _callgrind(n, k, "fleet"), _callgrind(n, k, "fleet-single")
            if fleet_i is not None and single_i is not None:
                result.update(fleet_instructions=round(fleet_i / k),
                              single_instructions=round(single_i / k),
                              fleet_vs_single_instructions=round(fleet_i / single_i, 1))
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{n:>6} sites, fleet of 3 locations: decide p50 {result['fleet_p50_ms']} ms "
                  f"p99 {result['fleet_p99_ms']} ms (probes {result['probes_share']:.0%}, "
                  f"solver {result['solver_share']:.0%}); single-site p50 "
                  f"{result['single_p50_ms']} ms p99 {result['single_p99_ms']} ms; fleet / "
                  f"single p50 x{result['p50_vs_single']} p99 x{result['p99_vs_single']}; "
                  f"warm-up plans {result['fleet_methods']}; "
                  + (f"instructions fleet {result['fleet_instructions']:,} single "
                     f"{result['single_instructions']:,} "
                     f"(x{result['fleet_vs_single_instructions']}); "
                     if "fleet_instructions" in result else "")
                  + "5 ms p99 target "
                  f"{result['target_p99_5ms']} ({os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
