"""Small builders for test inventories, workloads and policies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from placement.engine import Engine
from placement.model import (
    ClientLocation,
    Dataset,
    Inventory,
    Policy,
    Reservation,
    Site,
    Workload,
)
from placement.policy.loader import policy_version
from placement.store.tables import utcnow


def onprem(name: str, gpus: dict[str, tuple[int, float]], lat: float = 50.0, lon: float = 8.0,
           labels: dict[str, str] | None = None, boundary: str | None = None,
           accepts: list[str] | None = None, wan_gbps: float = 10.0,
           links: list[dict[str, Any]] | None = None) -> Site:
    return Site.model_validate({
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"type": "onprem", "location": {"lat": lat, "lon": lon}, "kube_context": name,
                 "network_boundary": boundary, "accepts_boundaries": accepts or [],
                 "wan_gbps": wan_gbps, "egress_usd_per_gb": 0, "links": links or [],
                 "gpus": [{"type": t, "count": c, "usd_per_gpu_hour": p}
                          for t, (c, p) in gpus.items()]},
    })


def cloud(name: str, gpus: Mapping[str, Sequence[tuple[str, int, float, float | None]]],
          lat: float = 39.0, lon: float = -77.0, quota: int = 64, provider: str = "aws",
          egress: float = 0.09, labels: dict[str, str] | None = None,
          links: list[dict[str, Any]] | None = None, provisioning_minutes: float = 15,
          spot_rate: float = 0.05, egress_tiers: list[dict[str, Any]] | None = None) -> Site:
    return Site.model_validate({
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"type": "cloud", "provider": provider, "region": name,
                 "location": {"lat": lat, "lon": lon}, "kube_context": name, "wan_gbps": 10,
                 "egress_usd_per_gb": egress, "egress_tiers": egress_tiers or [],
                 "links": links or [], "provisioning_minutes": provisioning_minutes,
                 "spot_interruptions_per_hour": spot_rate,
                 "gpus": [{"type": t, "quota_gpus": quota, "instances": [
                     {"type": i, "gpus": n, "on_demand_usd_per_hour": od,
                      "spot_usd_per_hour": sp} for i, n, od, sp in insts]}
                     for t, insts in gpus.items()]},
    })


def dataset(name: str, size_gb: float, replicas: list[str], classification: str = "internal",
            boundary: str | None = None) -> Dataset:
    return Dataset.model_validate({
        "metadata": {"name": name},
        "spec": {"size_gb": size_gb, "replicas": replicas, "classification": classification,
                 "network_boundary": boundary},
    })


def client(name: str, lat: float, lon: float, boundary: str | None = None,
           rtt: dict[str, float] | None = None) -> ClientLocation:
    return ClientLocation.model_validate({
        "metadata": {"name": name},
        "spec": {"location": {"lat": lat, "lon": lon}, "network_boundary": boundary,
                 "rtt_ms": rtt or {}},
    })


def job(name: str = "job", gpu: str | list[str] = "A100", count: int = 8, hours: float = 10,
        kind: str = "training", deadline: float | None = None, budget: float | None = None,
        datasets: list[dict[str, Any]] | None = None, team: str = "research",
        labels: dict[str, str] | None = None) -> Workload:
    return Workload.model_validate({
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"kind": kind, "team": team,
                 "gpu": {"types": [gpu] if isinstance(gpu, str) else gpu, "count": count},
                 "duration_hours": hours, "deadline_hours": deadline, "budget_usd": budget,
                 "datasets": datasets or []},
    })


def service(name: str = "svc", gpu: str | list[str] = "L4", count: int = 1, replicas: int = 1,
            slo_ms: float = 100, service_ms: float = 20, clients: list[str] | None = None,
            kind: str = "inference", datasets: list[dict[str, Any]] | None = None,
            rps: float = 0) -> Workload:
    return Workload.model_validate({
        "metadata": {"name": name},
        "spec": {"kind": kind, "team": "apps",
                 "gpu": {"types": [gpu] if isinstance(gpu, str) else gpu, "count": count},
                 "replicas": replicas, "requests_per_s": rps,
                 "latency": {"p99_slo_ms": slo_ms, "service_time_p99_ms": service_ms,
                             "clients": [{"location": c} for c in (clients or ["users"])]},
                 "datasets": datasets or []},
    })


def policy(rules: list[dict[str, Any]] | None = None, **defaults: Any) -> Policy:
    spec: dict[str, Any] = {"rules": rules or []}
    if defaults:
        spec["defaults"] = defaults
    return Policy.model_validate({"metadata": {"name": "test"}, "spec": spec})


BURST_ALL = {"name": "burst-all", "weights": {"cost": 1, "data_gravity": 1, "wait": 1,
                                              "latency": 1},
             "burst": {"allowed": True, "when": "always", "spot": "always"}}


def engine(sites: list[Site], pol: Policy | None = None, datasets: list[Dataset] | None = None,
           clients: list[ClientLocation] | None = None,
           reservations: list[Reservation] | None = None) -> Engine:
    inv = Inventory(sites=sites, datasets=datasets or [], client_locations=clients or [])
    p = pol or policy([BURST_ALL])
    return Engine(inv, p, policy_version(p), reservations or [])


class Clock:
    """A settable clock for code that takes `clock=` (timeouts, backoff, claims)."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def without_brief(reply: dict[str, Any], stored: dict[str, Any]) -> tuple[Any, Any]:
    """A submission's reply and the workload read back, less what only the reply leaves out:
    the reply's decision shows the best few candidates (the ranked ones first) and counts the
    rest in `candidates_omitted`; read back, every candidate is shown. Asserts that, then
    returns both without their candidates, to be compared whole."""
    shown, every = reply["decision"]["decision"], stored["decision"]["decision"]
    assert every["candidates_omitted"] == 0
    assert shown["candidates_omitted"] == len(every["candidates"]) - len(shown["candidates"])
    ranked = [c for c in every["candidates"] if c["rank"] is not None]
    assert shown["candidates"][:len(ranked)] == ranked[:len(shown["candidates"])]
    rest = {k: v for k, v in shown.items() if k not in ("candidates", "candidates_omitted")}
    full = {k: v for k, v in every.items() if k not in ("candidates", "candidates_omitted")}
    return ({**reply, "decision": {**reply["decision"], "decision": rest}},
            {**stored, "decision": {**stored["decision"], "decision": full}})
