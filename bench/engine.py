"""Engine benchmark: decisions per second and latency percentiles at 10, 100 and 1,000 sites.

Sites are synthetic but their GPU offers and prices are drawn from the real AWS/GCP/Azure
catalogs in ../shared/data (prices_*.csv). Prints one JSON line per size with --json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

from placement.engine import Engine
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


def build(n_sites: int, seed: int) -> tuple[Engine, list[Workload]]:
    rng = random.Random(seed)
    by_gpu: dict[str, list[Offer]] = {g: [] for g in GPUS}
    for o in load_offers(DATA):
        if o.gpu in by_gpu:
            by_gpu[o.gpu].append(o)
    sites = [_site(i, rng, by_gpu) for i in range(n_sites)]
    datasets, clients = data_and_clients(rng, [s.name for s in sites], 5)
    policy = Policy.model_validate({"metadata": {"name": "bench"}, "spec": {"rules": [
        {"name": "svc", "match": {"kinds": ["inference", "rag"]},
         "weights": {"latency": 5, "cost": 2, "wait": 1, "data_gravity": 1},
         "burst": {"allowed": True, "when": "always"}},
        {"name": "jobs", "match": {"kinds": ["training"]},
         "weights": {"cost": 4, "data_gravity": 2, "wait": 1}, "max_wait_hours": 2,
         "burst": {"allowed": True, "spot": "when_deadline_allows"}}]}})
    held = [Reservation(site=s.name, gpu_type=s.spec.gpus[0].type, count=4,
                        remaining_hours=rng.uniform(0, 12)) for s in sites if s.spec.type ==
            "onprem"]
    engine = Engine(Inventory(sites=sites, datasets=datasets, client_locations=clients),
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


def run(n_sites: int, seed: int, rounds: int) -> dict[str, Any]:
    engine, workloads = build(n_sites, seed)
    for w in workloads[:20]:
        engine.decide(w)  # warm-up: billing memo, caches
    tune_gc()  # as every entry point does (placement.tuning)
    decide_ms: list[float] = []
    explain_ms: list[float] = []
    for _ in range(rounds):
        for w in workloads:
            t0 = time.perf_counter()
            out = engine.decide(w)
            t1 = time.perf_counter()
            decide_ms.append((t1 - t0) * 1000)
            if len(explain_ms) < 200:
                engine.explain(out)
                explain_ms.append((time.perf_counter() - t1) * 1000)
    return {
        "bench": "engine", "sites": n_sites, "candidates_per_decision": None,
        "decisions_per_s": round(1000 / statistics.fmean(decide_ms), 1),
        "p50_ms": round(_pct(decide_ms, 50), 4), "p99_ms": round(_pct(decide_ms, 99), 4),
        "explain_p50_ms": round(_pct(explain_ms, 50), 3),
        "explain_p99_ms": round(_pct(explain_ms, 99), 3),
        "decisions": len(decide_ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="one JSON line per size")
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    for n in (int(x) for x in args.sizes.split(",")):
        result = run(n, args.seed, args.rounds)
        result.pop("candidates_per_decision")
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{n:>5} sites: {result['decisions_per_s']:>9} decisions/s  "
                  f"p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms  "
                  f"(explain p99 {result['explain_p99_ms']} ms)")


if __name__ == "__main__":
    main()
