"""Fleet plans (placement.engine.fleet): hand-worked fleets on small inventories, the replica
capacity and per-location demand tables, autoscaling hysteresis, properties (hypothesis) and
the decision's fleet section against the Decision model for the example services."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from placement.engine import Engine
from placement.engine.fleet import (
    FleetMiss,
    FleetPlan,
    location_demand,
    replica_rps,
    scale,
)
from placement.model import Decision, Policy, Reservation, Site, Workload
from placement.model.policy import FleetSettings
from placement.policy.loader import Bundle
from placement.signals import Observed

from . import factories as f

HORIZON_H = 720.0  # the policy default service_horizon_hours: a service's cost horizon
# A spot replica per hour: its price x (1 + interruptions/h x (checkpoint 30 min / 2 + restart
# 10 min)); usable capacity x 1 / (1 + interruptions/h x (cold start 5 + restart 10 min)).
SPOT_LOST_H = 30 / 120 + 10 / 60
SPOT_DOWN_H = 5 / 60 + 10 / 60


def fleet_policy(spot: str = "never", when: str = "always", max_wait: float | None = None,
                 **fleet: Any) -> Policy:
    """One rule: every service is a fleet, bursts as `when` says, spot as `spot` says."""
    rule: dict[str, Any] = {"name": "fleet", "match": {"kinds": ["inference", "rag"]},
                            "burst": {"allowed": True, "when": when, "spot": spot},
                            "fleet": fleet}
    if max_wait is not None:
        rule["max_wait_hours"] = max_wait
    return f.policy([rule])


def svc(demand: dict[str, float], slo: float = 60, service_ms: float = 20,
        rps: float | None = 10, gpus: list[str] | None = None, budget: float | None = None,
        replicas: int = 1, serving: dict[str, Any] | None = None) -> Workload:
    """A service with these locations' requests/s (one GPU per replica)."""
    return Workload.model_validate({"metadata": {"name": "svc"}, "spec": {
        "kind": "inference", "team": "apps", "gpu": {"types": gpus or ["L4"], "count": 1},
        "replicas": replicas, "budget_usd": budget, "serving": serving,
        "latency": {"p99_slo_ms": slo, "service_time_p99_ms": service_ms, "replica_rps": rps,
                    "clients": [{"location": loc, "requests_per_s": r}
                                for loc, r in demand.items()]}}})


def l4(name: str, od: float, spot: float | None = None, quota: int = 64,
       spot_rate: float = 0.05) -> Site:
    return f.cloud(name, {"L4": [("g6.xlarge", 1, od, spot)]}, quota=quota, spot_rate=spot_rate)


def decide(eng: Engine, wl: Workload) -> tuple[FleetPlan | FleetMiss | None, dict[str, Any]]:
    out = eng.decide(wl)
    return out.fleet, eng.explain_dict(out)


def members(d: dict[str, Any]) -> dict[tuple[str, str, str], int]:
    """(site, GPU type, capacity) -> replicas of the decision's fleet."""
    return {(m["site"], m["gpu_type"], m["capacity"]): m["replicas"]
            for m in d["fleet"]["members"]}


# --- (a) one location: the cheapest qualifying site, replicas from the demand ------------------

ONE_LOCATION = [  # requests/s, replica_rps, target utilization, replicas
    (30, 10, 0.7, 5),
    (7, 10, 0.7, 1),
    (70, 10, 0.7, 10),
    (100, 25, 0.5, 8),
    (0.5, 10, 0.9, 1),
]


@pytest.mark.parametrize(("demand", "rps", "target", "replicas"), ONE_LOCATION, ids=[
    "30 req/s at 10 per replica and 70% need 5 replicas",
    "7 req/s fit one replica",
    "70 req/s need 10 replicas",
    "100 req/s at 25 per replica and 50% need 8",
    "half a request/s still needs one replica"])
def test_one_location_is_served_by_the_cheapest_site_within_the_slo(
        demand: float, rps: float, target: float, replicas: int) -> None:
    sites = [l4("near-dear", 1.00), l4("near-cheap", 0.80), l4("near-dearer", 1.20),
             l4("far-cheapest", 0.50)]
    users = f.client("users", 39, -77, rtt={"near-dear": 5, "near-cheap": 12,
                                            "near-dearer": 3, "far-cheapest": 80})
    eng = f.engine(sites, fleet_policy(target_utilization=target), clients=[users])
    plan, d = decide(eng, svc({"users": demand}, rps=rps))
    assert isinstance(plan, FleetPlan), d["summary"]
    assert replicas == math.ceil(demand / (rps * target))
    assert members(d) == {("near-cheap", "L4", "on_demand"): replicas}
    assert d["action"] == "burst" and d["site"] == "near-cheap"
    assert d["instance_type"] == "g6.xlarge"
    assert d["fleet"]["usd_per_hour"] == pytest.approx(0.80 * replicas)
    assert d["estimates"]["total_usd"] == pytest.approx(0.80 * replicas * HORIZON_H)
    assert d["estimates"]["p99_latency_ms"] == pytest.approx(12 + 20)
    (route,) = d["fleet"]["routing"]
    assert route["targets"] == [{"site": "near-cheap", "weight": 1.0, "p99_latency_ms": 32.0}]
    assert route["demand_rps"] == pytest.approx(demand)
    assert d["summary"].startswith("burst a fleet of 1 site(s) (near-cheap on_demand L4 x"
                                   f"{replicas})")


# --- (b) two continents: a member near each, each location routed to its own -----------------

def test_two_continents_get_a_member_each_routed_in_full_to_their_own() -> None:
    sites = [l4("us-a", 0.80), f.cloud("eu-a", {"L4": [("g6.xlarge", 1, 0.90, None)]},
                                       lat=50, lon=8)]
    clients = [f.client("virginia", 39, -77, rtt={"us-a": 10, "eu-a": 90}),
               f.client("frankfurt", 50, 8, rtt={"us-a": 90, "eu-a": 8})]
    eng = f.engine(sites, fleet_policy(), clients=clients)
    plan, d = decide(eng, svc({"virginia": 30, "frankfurt": 5}))
    assert isinstance(plan, FleetPlan), d["summary"]
    # 30 / (10 x 0.7) -> 5 replicas at $0.80; 5 / 7 -> 1 replica at $0.90
    assert members(d) == {("us-a", "L4", "on_demand"): 5, ("eu-a", "L4", "on_demand"): 1}
    assert d["fleet"]["usd_per_hour"] == pytest.approx(5 * 0.80 + 0.90)
    assert d["estimates"]["total_usd"] == pytest.approx(4.90 * HORIZON_H)
    assert d["fleet"]["demand_rps"] == pytest.approx(35)
    assert d["site"] == "us-a"  # the member with most replicas
    routing = {r["location"]: r for r in d["fleet"]["routing"]}
    for loc, site, p99 in (("virginia", "us-a", 30.0), ("frankfurt", "eu-a", 28.0)):
        assert routing[loc]["targets"] == [{"site": site, "weight": 1.0, "p99_latency_ms": p99}]
        assert site in routing[loc]["why"]
    by_site = {m["site"]: m for m in d["fleet"]["members"]}
    assert by_site["us-a"]["routed_rps"] == pytest.approx(30)
    assert by_site["us-a"]["utilization"] == pytest.approx(30 / 50)
    assert by_site["eu-a"]["utilization"] == pytest.approx(5 / 10)


# --- (c) a full on-prem site opens the burst gate for its location ---------------------------

FULL_ONPREM = [  # GPUs held of the plant's 4, members, $/h
    (4, {("eu-a", "L4", "on_demand"): 3}, 3 * 0.90),
    (2, {("plant", "L4", "onprem"): 2, ("eu-a", "L4", "on_demand"): 1}, 2 * 0.50 + 0.90),
    (0, {("plant", "L4", "onprem"): 3}, 3 * 0.50),
]


@pytest.mark.parametrize(("held", "want", "usd_h"), FULL_ONPREM, ids=[
    "a full plant: the cloud serves all of the floor",
    "two GPUs free: the plant takes what it can, the cloud the rest",
    "an empty plant serves the floor alone"])
def test_a_full_onprem_site_bursts_its_location_to_the_cloud(
        held: int, want: dict[tuple[str, str, str], int], usd_h: float) -> None:
    sites = [f.onprem("plant", {"L4": (4, 0.50)}, lat=48.8, lon=9.2),
             f.cloud("eu-a", {"L4": [("g6.xlarge", 1, 0.90, None)]}, lat=50, lon=8)]
    floor = f.client("floor", 48.8, 9.2, rtt={"plant": 2, "eu-a": 10})
    held_gpus = [Reservation(site="plant", gpu_type="L4", count=held, remaining_hours=5)
                 ] if held else []
    eng = f.engine(sites, fleet_policy(when="onprem_unavailable", max_wait=0.5),
                   clients=[floor], reservations=held_gpus)
    plan, d = decide(eng, svc({"floor": 20}))
    assert isinstance(plan, FleetPlan), d["summary"]
    assert members(d) == want
    assert d["fleet"]["usd_per_hour"] == pytest.approx(usd_h)
    cloud = any(site == "eu-a" for site, _, _ in want)
    assert d["action"] == ("burst" if cloud else "place")
    (route,) = d["fleet"]["routing"]
    assert sum(t["weight"] for t in route["targets"]) == pytest.approx(1.0)
    if held == 4:  # the plant is the nearer site; the story says it would have to wait
        (alt,) = [a for a in route["alternatives"] if a["site"] == "plant"]
        assert "wait" in alt["reason"] and "max wait of 0.5 h" in alt["reason"]
        assert "eu-a" in route["why"]
    if held == 2:  # the plant's two free GPUs carry at most 2 x 7 req/s
        plant = next(m for m in d["fleet"]["members"] if m["site"] == "plant")
        assert plant["routed_rps"] <= 14 + 1e-6 and plant["gpus"] == 2
        assert "split over 2" in route["why"]


def test_the_burst_gate_stays_shut_while_the_plant_can_take_the_whole_demand() -> None:
    """One replica fits on-prem and so does the demand: no cloud member although the cloud
    would be nearer and the rule allows bursts when on-prem is unavailable."""
    sites = [f.onprem("plant", {"L4": (8, 0.50)}, lat=48.8, lon=9.2),
             f.cloud("eu-a", {"L4": [("g6.xlarge", 1, 0.30, None)]}, lat=50, lon=8)]
    floor = f.client("floor", 48.8, 9.2, rtt={"plant": 20, "eu-a": 2})
    eng = f.engine(sites, fleet_policy(when="onprem_unavailable"), clients=[floor])
    plan, d = decide(eng, svc({"floor": 20}))
    assert isinstance(plan, FleetPlan), d["summary"]
    assert members(d) == {("plant", "L4", "onprem"): 3} and d["action"] == "place"


# --- (d) spot: spread over sites, never more than spot_max_share of a location on one ---------

def _spot_price(price: float, rate: float = 0.05) -> float:
    return price * (1 + rate * SPOT_LOST_H)


def _spot_usable(rps: float = 10, target: float = 0.7, rate: float = 0.05) -> float:
    return rps * target / (1 + rate * SPOT_DOWN_H)


SPOT = [  # spot rule, sites (name, on-demand, spot), members, $/h
    ("always", [("spot-a", 0.90, 0.30), ("spot-b", 0.95, 0.35), ("od-c", 0.80, None)],
     {("spot-a", "L4", "spot"): 3, ("spot-b", "L4", "spot"): 3},
     3 * _spot_price(0.30) + 3 * _spot_price(0.35)),
    ("always", [("spot-a", 0.90, 0.30), ("od-c", 0.80, None)],
     {("spot-a", "L4", "spot"): 3, ("od-c", "L4", "on_demand"): 3},
     3 * _spot_price(0.30) + 3 * 0.80),
    ("never", [("spot-a", 0.90, 0.30), ("spot-b", 0.95, 0.35), ("od-c", 0.80, None)],
     {("od-c", "L4", "on_demand"): 6}, 6 * 0.80),
]


@pytest.mark.parametrize(("spot", "offers", "want", "usd_h"), SPOT, ids=[
    "two spot sites carry half each",
    "one spot site carries half, on-demand the rest",
    "spot never: on-demand only"])
def test_spot_replicas_spread_and_fall_back_to_on_demand(
        spot: str, offers: list[tuple[str, float, float | None]],
        want: dict[tuple[str, str, str], int], usd_h: float) -> None:
    sites = [l4(name, od, sp) for name, od, sp in offers]
    users = f.client("users", 39, -77, rtt={name: 10 for name, _, _ in offers})
    eng = f.engine(sites, fleet_policy(spot=spot, spot_max_share=0.5), clients=[users])
    plan, d = decide(eng, svc({"users": 40}))
    assert isinstance(plan, FleetPlan), d["summary"]
    # 20 req/s on a spot site: 20 / usable (7 / 1.0125 = 6.91) -> 3 replicas
    assert math.ceil(20 / _spot_usable()) == 3
    assert members(d) == want
    assert d["fleet"]["usd_per_hour"] == pytest.approx(usd_h, abs=1e-4)  # rounded to 4 places
    for m in d["fleet"]["members"]:
        if m["capacity"] == "spot":
            assert m["routed_rps"] <= 0.5 * 40 + 1e-6
    if spot == "never":
        assert all(m["capacity"] != "spot" for m in d["fleet"]["members"])


@pytest.mark.parametrize(("budget_s", "method"), [(0.05, "HiGHS"), (1e-9, "greedy")],
                         ids=["the HiGHS plan", "the greedy plan (no HiGHS answer in time)"])
def test_a_spot_site_with_two_gpu_types_still_carries_at_most_its_share(
        budget_s: float, method: str) -> None:
    """The share caps a site (a failure domain), not each of its GPU types."""
    both = f.cloud("us-a", {"L4": [("g6.xlarge", 1, 0.80, 0.10)],
                            "A10G": [("g5.xlarge", 1, 0.90, 0.11)]}, spot_rate=0.01)
    sites = [both, l4("us-b", 0.80, 0.40, spot_rate=0.01)]
    users = f.client("users", 39, -77, rtt={"us-a": 10, "us-b": 10})
    pol = fleet_policy(spot="always", spot_max_share=0.5, time_budget_seconds=budget_s)
    eng = f.engine(sites, pol, clients=[users])
    plan, d = decide(eng, svc({"users": 40}, gpus=["L4", "A10G"]))
    assert isinstance(plan, FleetPlan), d["summary"]
    assert method in plan.method
    per_site: dict[str, float] = {}
    for m in d["fleet"]["members"]:
        per_site[m["site"]] = per_site.get(m["site"], 0.0) + m["routed_rps"]
    assert per_site["us-a"] <= 20 + 1e-6
    assert sum(per_site.values()) == pytest.approx(40)
    assert d["summary"].startswith(f"burst a fleet of {len(per_site)} site(s) (")


# --- (e, f) no fleet: the ordinary decision stands and says why --------------------------------

def _two_sites(far_boundary: str | None = None) -> Engine:
    sites = [l4("us-a", 0.80), l4("us-b", 1.00)]
    far_rtt = {"us-a": 20.0, "us-b": 21.0} if far_boundary else {"us-a": 200.0, "us-b": 210.0}
    clients = [f.client("users", 39, -77, rtt={"us-a": 10, "us-b": 12}),
               f.client("far", -33, 151, boundary=far_boundary, rtt=far_rtt)]
    return f.engine(sites, fleet_policy(), clients=clients)


def test_a_location_no_site_can_reach_leaves_the_single_site_decision() -> None:
    """Clients in a closed network no site is in: no fleet; the ordinary decision stands."""
    eng = _two_sites(far_boundary="ot")
    wl = svc({"users": 30, "far": 5})
    plan, d = decide(eng, wl)
    assert isinstance(plan, FleetMiss)
    assert plan.reason.startswith("no site can serve far now")
    assert "us-a (p99 40.0 ms): boundary: clients at far (in ot) cannot reach it" in plan.reason
    single = eng.explain_dict(eng.decide_single(wl))
    assert d["fleet"] is None
    assert (d["action"], d["site"]) == (single["action"], single["site"]) == ("reject", None)
    assert d["summary"] == f"{single['summary']}; no fleet: {plan.reason}"


def test_a_location_beyond_the_slo_from_every_site_is_served_best_effort() -> None:
    """Every other rule holds for it: the nearest site serves it (p99 200 + 20 ms), said so;
    the other location stays within the SLO. 35 req/s on us-a: 35 / 7 -> 5 replicas."""
    eng = _two_sites()
    plan, d = decide(eng, svc({"users": 30, "far": 5}))
    assert isinstance(plan, FleetPlan), d["summary"]
    assert plan.best_effort == (False, True)
    assert members(d) == {("us-a", "L4", "on_demand"): 5}
    assert d["fleet"]["usd_per_hour"] == pytest.approx(4.0)
    routing = {r["location"]: r for r in d["fleet"]["routing"]}
    assert routing["users"]["within_slo"] and not routing["far"]["within_slo"]
    assert routing["far"]["targets"] == [{"site": "us-a", "weight": 1.0,
                                          "p99_latency_ms": 220.0}]
    assert routing["far"]["why"].startswith("no candidate meets the 60 ms SLO from here")
    assert d["estimates"]["p99_latency_ms"] == pytest.approx(220.0)
    Decision.model_validate(d)


BUDGET = [  # budget $, fleet or not; the fleet: 5 replicas x $0.80 x 720 h = $2,880
    (2881.0, True),
    (2879.0, False),
    (1000.0, False),
    (None, True),
]


@pytest.mark.parametrize(("budget", "fleet"), BUDGET, ids=[
    "a budget just above the cheapest fleet", "a budget just below it",
    "a budget for one replica only", "no budget"])
def test_a_budget_below_the_cheapest_fleet_is_a_miss(budget: float | None,
                                                     fleet: bool) -> None:
    eng = _two_sites()
    plan, d = decide(eng, svc({"users": 30}, budget=budget))
    if fleet:
        assert isinstance(plan, FleetPlan), d["summary"]
        assert members(d) == {("us-a", "L4", "on_demand"): 5}
        assert d["estimates"]["total_usd"] == pytest.approx(2880.0)
        return
    assert isinstance(plan, FleetMiss) and "budget" in plan.reason
    assert d["fleet"] is None and "; no fleet: " in d["summary"]
    # the single-site decision (one replica, $576 over the horizon) stands
    assert d["action"] == "burst" and d["site"] == "us-a"
    assert d["estimates"]["total_usd"] == pytest.approx(0.80 * HORIZON_H)


@pytest.mark.parametrize(("budget", "fleet"), [(1100.0, True), (1000.0, False)], ids=[
    "billed $1,080 fits a $1,100 budget though the bid prices add $648",
    "a $1,000 budget does not fit"])
def test_a_fleet_budget_counts_billed_dollars_not_bid_prices(budget: float,
                                                             fleet: bool) -> None:
    """As the budget filter: the opportunity cost of on-prem GPUs ranks plans, it is not
    spent. 3 replicas x $0.50 x 720 h = $1,080 billed; the bid ($0.30/GPU-h) adds $648."""
    sites = [f.onprem("plant", {"L4": (8, 0.50)}),
             f.cloud("eu-a", {"L4": [("g6.xlarge", 1, 0.90, None)]})]
    floor = f.client("floor", 48.8, 9.2, rtt={"plant": 2, "eu-a": 10})
    eng = f.engine(sites, fleet_policy(), clients=[floor])
    eng = eng.with_capacity(dataclasses.replace(eng.cap, bid_price=np.array([0.30, 0.0]),
                                                bid_note="test"))
    plan, d = decide(eng, svc({"floor": 20}, budget=budget))
    if not fleet:
        assert isinstance(plan, FleetMiss) and "budget" in plan.reason
        return
    assert isinstance(plan, FleetPlan), d["summary"]
    assert members(d) == {("plant", "L4", "onprem"): 3}
    assert d["estimates"]["total_usd"] == pytest.approx(1080.0)
    assert d["estimates"]["opportunity_usd"] == pytest.approx(648.0)


def test_a_location_without_demand_still_gets_a_replica_within_its_slo() -> None:
    sites = [l4("us-a", 0.80), f.cloud("eu-a", {"L4": [("g6.xlarge", 1, 0.90, None)]})]
    clients = [f.client("virginia", 39, -77, rtt={"us-a": 10, "eu-a": 90}),
               f.client("frankfurt", 50, 8, rtt={"us-a": 90, "eu-a": 8})]
    eng = f.engine(sites, fleet_policy(), clients=clients)
    plan, d = decide(eng, svc({"virginia": 30, "frankfurt": 0}))
    assert isinstance(plan, FleetPlan), d["summary"]
    assert members(d) == {("us-a", "L4", "on_demand"): 5, ("eu-a", "L4", "on_demand"): 1}
    routing = {r["location"]: r for r in d["fleet"]["routing"]}
    assert routing["frankfurt"]["targets"] == [
        {"site": "eu-a", "weight": 1.0, "p99_latency_ms": 28.0}]


# --- (g) replica capacity ----------------------------------------------------------------------

def _spec(service_ms: float = 250, declared: float | None = None, count: int = 1,
          serving: dict[str, Any] | None = None) -> Workload:
    wl = svc({"users": 1}, slo=1000, service_ms=service_ms, rps=declared, serving=serving)
    return wl.model_copy(update={"spec": wl.spec.model_copy(update={
        "gpu": wl.spec.gpu.model_copy(update={"count": count})})})


LLM = {"model": "m", "backend": "vllm", "max_batch_size": 8}
REPLICA_RPS = [  # workload, measured service ms, requests/s per replica
    (_spec(declared=42.0), None, 42.0),
    (_spec(declared=42.0), 10.0, 42.0),
    (_spec(service_ms=20), None, 50.0),
    (_spec(serving=LLM), None, 8 / 0.25),
    (_spec(count=2, serving={**LLM, "instances_per_gpu": 2}), None, 2 * 2 * 8 / 0.25),
    (_spec(count=2, serving={**LLM, "instances_per_gpu": 2, "dynamic_batching": False}),
     None, 2 * 2 / 0.25),
    (_spec(count=2, serving={**LLM, "max_batch_size": 0, "instances_per_gpu": 2}), None,
     4 / 0.25),
    (_spec(count=2, serving={**LLM, "instances_per_gpu": 3, "instance_kind": "cpu"}), None,
     8 / 0.25),
    (_spec(service_ms=0.2), None, 1000.0),
    (_spec(serving=LLM), 125.0, 8 / 0.125),
    (_spec(serving=LLM), float("nan"), 8 / 0.25),
]


@pytest.mark.parametrize(("wl", "seen", "want"), REPLICA_RPS, ids=[
    "the declared replica_rps",
    "the declared replica_rps over a measured service time",
    "one request in flight over 20 ms",
    "a batch of 8 over 250 ms",
    "2 GPUs x 2 instances x a batch of 8",
    "no dynamic batching: instances only",
    "max_batch_size 0: instances only",
    "CPU instances: one in flight per batch, whatever the GPUs",
    "a service time under 1 ms is read as 1 ms",
    "a measured 125 ms doubles the declared 250 ms's rate",
    "no reading (NaN): the declared service time"])
def test_replica_rps(wl: Workload, seen: float | None, want: float) -> None:
    assert replica_rps(wl.spec, seen) == pytest.approx(want)


def test_replica_rps_needs_a_service() -> None:
    with pytest.raises(ValueError, match="only a service"):
        replica_rps(f.job().spec)


def test_a_measured_service_time_sizes_the_fleet_at_that_site() -> None:
    """Triton's service time at a site (a fresh signal) replaces the declared one: 10 ms there
    is 100 req/s per replica instead of 50, so 60 req/s need one replica, not two."""
    sites = [l4("us-a", 0.80), l4("us-b", 0.70)]
    users = f.client("users", 39, -77, rtt={"us-a": 10, "us-b": 10})
    eng = f.engine(sites, fleet_policy(), clients=[users])
    wl = svc({"users": 60}, rps=None, service_ms=20,
             serving={"model": "m", "backend": "python"})
    _, d = decide(eng, wl)
    assert members(d) == {("us-b", "L4", "on_demand"): 2}  # 60 / (50 x 0.7) -> 2 x $0.70
    seen = Observed(free_gpus=np.full(len(eng.ci.group_site), np.nan),
                    service_ms={"m": np.array([10.0, np.nan])})
    _, d = decide(eng.with_observed(seen), wl)
    assert members(d) == {("us-a", "L4", "on_demand"): 1}  # 60 / (100 x 0.7) -> 1 x $0.80
    (m,) = d["fleet"]["members"]
    assert m["replica_rps"] == pytest.approx(100.0)
    assert d["fleet"]["routing"][0]["targets"][0]["p99_latency_ms"] == pytest.approx(20.0)


# --- (h) demand per location -------------------------------------------------------------------

def _clients(total: float, clients: list[dict[str, Any]]) -> Workload:
    return Workload.model_validate({"metadata": {"name": "svc"}, "spec": {
        "kind": "inference", "team": "apps", "gpu": {"types": ["L4"], "count": 1},
        "requests_per_s": total,
        "latency": {"p99_slo_ms": 100, "service_time_p99_ms": 20, "clients": clients}}})


DEMAND = [  # service requests/s, clients, per-location requests/s
    (0, [{"location": "a", "requests_per_s": 30}, {"location": "b", "requests_per_s": 5}],
     [("a", 30), ("b", 5)]),
    (100, [{"location": "a", "share": 0.5}, {"location": "b", "share": 0.25}],
     [("a", 100 * 2 / 3), ("b", 100 / 3)]),
    (100, [{"location": "a"}, {"location": "b"}], [("a", 50), ("b", 50)]),
    (100, [{"location": "a", "requests_per_s": 30}, {"location": "b", "share": 0.5},
           {"location": "c", "share": 0.5}], [("a", 30), ("b", 35), ("c", 35)]),
    (10, [{"location": "a", "requests_per_s": 30}, {"location": "b"}], [("a", 30), ("b", 0)]),
    (0, [{"location": "a"}], [("a", 0)]),
]


@pytest.mark.parametrize(("total", "clients", "want"), DEMAND, ids=[
    "each location's own requests/s",
    "shares of the service's requests/s, normalized",
    "equal shares by default",
    "own rates first, shares of what is left",
    "own rates above the total leave nothing for the shares",
    "no rate anywhere: no demand"])
def test_location_demand(total: float, clients: list[dict[str, Any]],
                         want: list[tuple[str, float]]) -> None:
    got = location_demand(_clients(total, clients).spec)
    assert [loc for loc, _ in got] == [loc for loc, _ in want]
    assert [r for _, r in got] == pytest.approx([r for _, r in want])


def test_a_job_has_no_location_demand() -> None:
    assert location_demand(f.job().spec) == []


# --- (i) autoscaling with hysteresis -----------------------------------------------------------

SCALE = [  # requests/s now, replicas before, replicas after (10 req/s per replica, 70%, 40%)
    (25, 5, 5),   # plan 4; 25 / (5 x 10) = 50% >= 40%: a dip keeps the replicas
    (19, 5, 3),   # plan 3; 38% < 40%: shrink to ceil(19 / 7) = 3
    (10, 5, 2),   # plan 2; 20%: shrink to ceil(10 / 7) = 2
    (50, 5, 8),   # plan 8: scale-out follows the plan
    (30, 0, 5),   # a new member: the plan
    (30, 5, 5),   # no change
]


@pytest.mark.parametrize(("demand", "before", "after"), SCALE, ids=[
    "a small dip keeps the replicas", "a drop below the scale-in utilization shrinks",
    "a big drop shrinks to what the traffic needs", "scale-out follows the plan",
    "a new member starts at the plan", "steady traffic keeps the plan"])
def test_scale_hysteresis(demand: float, before: int, after: int) -> None:
    eng = f.engine([l4("us-a", 0.80)], fleet_policy(),
                   clients=[f.client("users", 39, -77, rtt={"us-a": 10})])
    plan = eng.decide(svc({"users": demand})).fleet
    assert isinstance(plan, FleetPlan)
    (m,) = plan.members
    assert m.replicas == math.ceil(demand / 7)
    settings = FleetSettings(target_utilization=0.7, scale_in_utilization=0.4)
    got = scale({m.row: before} if before else {}, plan, settings)
    (n,) = got.members
    assert n.replicas == after and n.gpus == after
    assert n.routed_rps == pytest.approx(demand)
    assert n.usd_per_hour == pytest.approx(0.80 * after)
    assert got.usd_per_hour == pytest.approx(0.80 * after)
    assert got.routes is plan.routes  # scaling never reroutes


# --- properties --------------------------------------------------------------------------------

SLO_MS, SERVICE_MS = 80.0, 20.0  # a site qualifies for a location at RTT <= 60 ms
ROOTS = [math.sqrt(p) for p in (2, 3, 5, 7, 11, 13)]  # prices without coincidental ties


@st.composite
def fleets(draw: st.DrawFn, spot: bool = False, onprem: bool = False) -> dict[str, Any]:
    """Cloud sites (and maybe one on-prem site) offering L4, locations with measured RTTs to
    each site and a demand each."""
    n = draw(st.integers(2, 5))
    locs = draw(st.integers(1, 3))
    sites = []
    for i in range(n):
        price = draw(st.integers(40, 300)) / 100 + ROOTS[i] / 1000
        sp = (price * draw(st.integers(20, 60)) / 100
              if spot and draw(st.booleans()) else None)
        sites.append({"name": f"s{i}", "od": price, "spot": sp,
                      "quota": draw(st.integers(2, 12)), "onprem": False})
    if onprem and draw(st.booleans()):
        sites.append({"name": "plant", "od": draw(st.integers(20, 100)) / 100 + ROOTS[5] / 1000,
                      "spot": None, "quota": draw(st.integers(2, 8)), "onprem": True,
                      "held": draw(st.integers(0, 2))})
    rtt = [[draw(st.integers(1, 90)) for _ in sites] for _ in range(locs)]
    demand = [draw(st.sampled_from([0, 1, 5, 12, 30, 45])) for _ in range(locs)]
    return {"sites": sites, "rtt": rtt, "demand": demand}


def _world(w: dict[str, Any], price_factor: float = 1.0, spot: str = "never",
           gap: float | None = None) -> tuple[Engine, Workload]:
    """The engine and the service of `w`; `gap`: the rule's optimality_gap (None: the
    default). HiGHS's time is not cut short on a loaded machine: the properties are the
    plan's."""
    sites = []
    held = []
    for s in w["sites"]:
        if s["onprem"]:
            sites.append(f.onprem(s["name"], {"L4": (s["quota"], s["od"] * price_factor)}))
            if s["held"]:
                held.append(Reservation(site=s["name"], gpu_type="L4", count=s["held"],
                                        remaining_hours=4))
        else:
            sp = s["spot"] * price_factor if s["spot"] is not None else None
            sites.append(l4(s["name"], s["od"] * price_factor, sp, quota=s["quota"]))
    clients = [f.client(f"loc{li}", 0, 0, rtt={s["name"]: float(r)
                                                for s, r in zip(w["sites"], row, strict=True)})
               for li, row in enumerate(w["rtt"])]
    exact: dict[str, Any] = {} if gap is None else {"optimality_gap": gap}
    eng = f.engine(sites, fleet_policy(spot=spot, time_budget_seconds=10, **exact),
                   clients=clients, reservations=held)
    wl = svc({f"loc{li}": float(r) for li, r in enumerate(w["demand"])}, slo=SLO_MS,
             service_ms=SERVICE_MS)
    return eng, wl


def _shape(plan: FleetPlan | FleetMiss | None, eng: Engine) -> Any:
    if not isinstance(plan, FleetPlan):
        return type(plan).__name__
    names = eng.ci.site_names
    return sorted((names[m.site], m.kind, m.replicas) for m in plan.members)


def _names(plan: FleetPlan, eng: Engine) -> set[str]:
    return {eng.ci.site_names[m.site] for m in plan.members}


PROPS = settings(max_examples=30, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])


# The least-cost plan (optimality_gap 0) has the properties exactly. At the default gap HiGHS
# may stop at another plan within it (its path depends on the numbers: e.g. sites at $1.60 and
# $1.52 + $0.30 spot, 45 and 30 req/s, prices x2 took a plan 0.6% dearer), so there the costs
# agree within the gap.

@PROPS
@given(fleets())
def test_adding_a_site_worse_on_every_criterion_never_changes_the_fleet(
        w: dict[str, Any]) -> None:
    eng, wl = _world(w, gap=0.0)
    before = eng.decide(wl).fleet
    worse = {"name": "worse", "od": max(s["od"] for s in w["sites"]) + 0.25, "spot": None,
             "quota": max(s["quota"] for s in w["sites"]), "onprem": False}
    w2 = {**w, "sites": [*w["sites"], worse],
          "rtt": [[*row, max(row) + 5] for row in w["rtt"]]}
    eng2, wl2 = _world(w2, gap=0.0)
    after = eng2.decide(wl2).fleet
    if not isinstance(before, FleetPlan):  # its GPUs may make a fleet possible, no more
        assert not isinstance(after, FleetPlan) or "worse" in _names(after, eng2)
        return
    assert _shape(after, eng2) == _shape(before, eng)
    assert isinstance(after, FleetPlan)
    assert after.usd_per_hour == pytest.approx(before.usd_per_hour)


@PROPS
@given(fleets(spot=True), st.sampled_from([0.5, 2.0, 3.7, 10.0]))
def test_scaling_every_price_never_changes_the_fleet(w: dict[str, Any], k: float) -> None:
    eng, wl = _world(w, spot="always", gap=0.0)
    eng2, wl2 = _world(w, price_factor=k, spot="always", gap=0.0)
    before, after = eng.decide(wl).fleet, eng2.decide(wl2).fleet
    assert _shape(after, eng2) == _shape(before, eng)
    if isinstance(before, FleetPlan) and isinstance(after, FleetPlan):
        assert after.usd_per_hour == pytest.approx(before.usd_per_hour * k)


@PROPS
@given(fleets(spot=True), st.sampled_from([0.5, 2.0, 3.7, 10.0]))
def test_scaling_every_price_keeps_the_fleet_cost_within_the_optimality_gap(
        w: dict[str, Any], k: float) -> None:
    eng, wl = _world(w, spot="always")
    eng2, wl2 = _world(w, price_factor=k, spot="always")
    before, after = eng.decide(wl).fleet, eng2.decide(wl2).fleet
    assert type(after) is type(before)
    if isinstance(before, FleetPlan) and isinstance(after, FleetPlan):
        gap = 1 + FleetSettings().optimality_gap + 1e-6
        assert after.usd_per_hour / k <= gap * before.usd_per_hour
        assert before.usd_per_hour <= gap * after.usd_per_hour / k


@PROPS
@given(fleets(spot=True, onprem=True))
def test_every_fleet_serves_all_demand_within_the_slo_and_the_free_gpus(
        w: dict[str, Any]) -> None:
    eng, wl = _world(w, spot="always")
    plan = eng.decide(wl).fleet
    if not isinstance(plan, FleetPlan):
        return
    names = eng.ci.site_names
    spec = {s["name"]: s for s in w["sites"]}
    sites = [names[m.site] for m in plan.members]
    for li, want in enumerate(w["demand"]):  # every location's routes sum to its demand
        assert float(plan.routes[li].sum()) == pytest.approx(max(want, 1e-6), abs=1e-6)
        row = w["rtt"][li]
        nearest_cloud = min(r for s, r in zip(w["sites"], row, strict=True) if not s["onprem"])
        for k, site in enumerate(sites):
            if plan.routes[li, k] > 0:  # every routed pair within the SLO
                rtt = row[list(spec).index(site)]
                assert plan.p99_ms[li, k] == pytest.approx(rtt + SERVICE_MS)
                if plan.best_effort[li]:  # none is (or the plant is full): the nearest
                    assert nearest_cloud + SERVICE_MS > SLO_MS  # every other rule allows
                    assert rtt <= nearest_cloud
                else:
                    assert rtt + SERVICE_MS <= SLO_MS
        spot_on: dict[str, float] = {}
        for k, m in enumerate(plan.members):
            if m.kind == 2:
                spot_on[sites[k]] = spot_on.get(sites[k], 0.0) + float(plan.routes[li, k])
        assert all(v <= 0.5 * max(want, 1e-6) + 1e-6 for v in spot_on.values())
    used: dict[str, int] = {}
    for site, m in zip(sites, plan.members, strict=True):  # one GPU type: per site
        used[site] = used.get(site, 0) + m.gpus
        # HiGHS's tolerance, and 1e-6 req/s to the nearest member for each location without
        assert m.routed_rps <= m.replicas * m.replica_rps * 0.7 + 1e-5  # demand
    for site, gpus in used.items():
        s = spec[site]
        assert gpus <= s["quota"] - (s.get("held", 0) if s["onprem"] else 0)


# --- the decision's fleet against the Decision model --------------------------------------------

@pytest.mark.parametrize("name", ["global-assistant", "global-docs-rag"])
def test_example_fleet_decisions_validate_against_the_decision_model(
        name: str, bundle: Bundle, example_engine: Engine) -> None:
    wl = next(w for w in bundle.workloads if w.name == name)
    lat = wl.spec.latency
    assert lat is not None
    out = example_engine.decide(wl)
    assert isinstance(out.fleet, FleetPlan), example_engine.explain_dict(out)["summary"]
    data = example_engine.explain_dict(out)
    decision = Decision.model_validate(data)
    assert decision.fleet is not None
    assert decision.model_dump(mode="json") == data
    fleet = decision.fleet
    assert fleet.rule == "serve-global-services-as-fleets"
    assert {r.location for r in fleet.routing} == {c.location for c in lat.clients}
    want = dict(location_demand(wl.spec))
    for r in fleet.routing:
        assert r.demand_rps == pytest.approx(want[r.location])
        assert sum(t.weight for t in r.targets) == pytest.approx(1.0, abs=1e-5)
        assert all(t.p99_latency_ms <= lat.p99_slo_ms for t in r.targets)
    largest = max(fleet.members, key=lambda m: (m.replicas, m.routed_rps))
    assert decision.site == largest.site
    assert decision.action == ("burst" if any(m.capacity != "onprem" for m in fleet.members)
                               else "place")
    assert fleet.usd_per_hour >= sum(m.usd_per_hour for m in fleet.members) - 1e-3


# --- the burst rule's limits hold for the fleet's cloud members together -----------------------

def _capped(cap: float | None = None, team_budget: float | None = None) -> Engine:
    rule: dict[str, Any] = {"name": "fleet", "match": {"kinds": ["inference"]},
                            "burst": {"allowed": True, "when": "always", "spot": "never",
                                      "max_usd_per_hour": cap}, "fleet": {}}
    spec: dict[str, Any] = {"rules": [rule]}
    if team_budget is not None:
        spec["team_budgets"] = {"apps": team_budget}
    policy = Policy.model_validate({"metadata": {"name": "capped"}, "spec": spec})
    sites = [l4("us-a", 0.80), l4("us-b", 0.90)]
    clients = [f.client("east", 39, -77, rtt={"us-a": 10, "us-b": 80}),
               f.client("west", 37, -122, rtt={"us-a": 80, "us-b": 10})]
    return f.engine(sites, policy, clients=clients)


LIMITS = [  # cap $/h, team budget $, a fleet or not; the fleet: 5 x 0.80 + 2 x 0.90 = $5.80/h
    (None, None, True),
    (5.80, None, True),  # each member alone is under it, and so are both together
    (5.00, None, False),  # each member alone is under it ($4.00, $1.80), together not
    (None, 5.80 * 720 + 1, True),
    (None, 5.80 * 720 - 1, False),  # the month's budget left, over the service horizon
]


@pytest.mark.parametrize(("cap", "team", "fleet"), LIMITS, ids=[
    "no limits", "cap at the fleet's $/h", "cap below the fleet's $/h",
    "team budget just enough", "team budget just short"])
def test_the_burst_cap_and_the_team_budget_hold_for_the_whole_fleet(
        cap: float | None, team: float | None, fleet: bool) -> None:
    eng = _capped(cap, team)
    plan, d = decide(eng, svc({"east": 30, "west": 10}, slo=60))
    if fleet:
        assert isinstance(plan, FleetPlan), d["summary"]
        assert members(d) == {("us-a", "L4", "on_demand"): 5, ("us-b", "L4", "on_demand"): 2}
        assert d["fleet"]["usd_per_hour"] == pytest.approx(5.80, abs=1e-4)
    else:
        assert isinstance(plan, FleetMiss)


# --- members sharing a site; hysteresis and the floor within the GPUs free ---------------------

def _one_spot_site(quota: int = 64) -> Engine:
    sites = [l4("us-a", 0.90, spot=0.30, quota=quota)]
    clients = [f.client("east", 39, -77, rtt={"us-a": 10})]
    return f.engine(sites, fleet_policy(spot="always"), clients=clients)


def test_members_sharing_a_site_are_one_route_target() -> None:
    """Spot carries at most half a location's demand per site: the rest goes on-demand at
    the same site. The routing table names the site once, with the two members' share."""
    eng = _one_spot_site()
    plan, d = decide(eng, svc({"east": 40}, slo=60))
    assert isinstance(plan, FleetPlan)
    assert {(m["site"], m["capacity"]) for m in d["fleet"]["members"]} == {
        ("us-a", "spot"), ("us-a", "on_demand")}
    (route,) = d["fleet"]["routing"]
    assert [(t["site"], t["weight"]) for t in route["targets"]] == [("us-a", 1.0)]


def test_kept_replicas_never_exceed_the_gpus_free() -> None:
    """Spot and on-demand share the site's quota: replicas kept by hysteresis on one member
    must leave the other its GPUs, else the plan's own size stands."""
    eng = _one_spot_site(quota=4)
    plan, _ = decide(eng, svc({"east": 26}, slo=60))
    assert isinstance(plan, FleetPlan) and sum(m.gpus for m in plan.members) <= 4
    od = next(m for m in plan.members if m.kind == 1)
    settings = FleetSettings.model_validate({})
    got = scale({od.row: od.replicas + 1}, plan, settings)
    assert sum(m.gpus for m in got.members) <= 4
    assert got.members == plan.members  # no room to keep the extra one


def test_the_greedy_floor_stays_within_the_gpus_free() -> None:
    sites = [l4("us-a", 0.80, quota=2), l4("us-b", 0.90, quota=64)]
    clients = [f.client("east", 39, -77, rtt={"us-a": 10, "us-b": 12})]
    eng = f.engine(sites, fleet_policy(time_budget_seconds=1e-9), clients=clients)
    plan, d = decide(eng, svc({"east": 5}, slo=60, replicas=4))
    assert isinstance(plan, FleetPlan), d["summary"]
    used = members(d)
    assert d["fleet"]["method"] == "greedy"
    assert sum(used.values()) == 4 and used.get(("us-a", "L4", "on_demand"), 0) <= 2


@PROPS
@given(fleets(spot=True))
def test_routing_without_the_lp_is_the_lps_optimum(w: dict[str, Any]) -> None:
    """Where the replicas' capacity does not bind, each location filling its best pairs is
    the routing LP's optimum: the p99 each location's requests see, weighted, is the LP's."""
    import placement.engine.fleet as fleet_module

    eng, wl = _world(w, spot="always", gap=0.0)
    plan = eng.decide(wl).fleet
    original = fleet_module._each_to_its_best
    fleet_module._each_to_its_best = lambda *a, **k: None
    try:
        lp = eng.decide(wl).fleet
    finally:
        fleet_module._each_to_its_best = original
    if not isinstance(plan, FleetPlan):
        assert not isinstance(lp, FleetPlan)
        return
    assert isinstance(lp, FleetPlan) and _shape(lp, eng) == _shape(plan, eng)
    seen = np.nansum(plan.routes * plan.p99_ms, axis=1)
    assert np.allclose(seen, np.nansum(lp.routes * lp.p99_ms, axis=1), rtol=1e-6, atol=1e-6)
    assert np.allclose(plan.routes.sum(axis=1), lp.routes.sum(axis=1))


# --- the story names the limit that keeps a cheaper candidate out ------------------------------

def _story(d: dict[str, Any], location: str) -> dict[str, Any]:
    return next(r for r in d["fleet"]["routing"] if r["location"] == location)


def test_a_cheaper_site_left_out_by_the_site_limit_says_so() -> None:
    """Each location has a cheaper site of its own, but max_sites 1 puts all on the one site
    every location reaches; the story says the limit, not that the plan costs less."""
    sites = [l4("hub", 0.80), l4("east-cheap", 0.60), l4("west-cheap", 0.60)]
    clients = [f.client("east", 39, -77, rtt={"hub": 20, "east-cheap": 10, "west-cheap": 90}),
               f.client("west", 37, -122, rtt={"hub": 20, "east-cheap": 90, "west-cheap": 10})]
    for limit, want in [(3, {"east-cheap", "west-cheap"}), (1, {"hub"})]:
        eng = f.engine(sites, fleet_policy(max_sites=limit), clients=clients)
        plan, d = decide(eng, svc({"east": 7, "west": 7}, slo=60))
        assert isinstance(plan, FleetPlan), d["summary"]
        assert {m["site"] for m in d["fleet"]["members"]} == want
    why = _story(d, "east")["why"]
    assert ("the cheaper east-cheap on-demand L4 is not used: one more replica there would "
            "pass the fleet's limit of 1 site(s) (fleet.max_sites)") in why
    assert "costs less without it" not in why


def test_a_cheaper_site_out_of_free_gpus_says_so() -> None:
    """The cheaper site has 1 GPU: its replica carries 7 of 20 req/s, the rest goes to the
    dearer one, and the story says the cheaper one has no GPUs left."""
    sites = [l4("small-cheap", 0.60, quota=1), l4("big-dear", 0.90)]
    east = f.client("east", 39, -77, rtt={"small-cheap": 10, "big-dear": 12})
    eng = f.engine(sites, fleet_policy(), clients=[east])
    plan, d = decide(eng, svc({"east": 20}, slo=60))
    assert isinstance(plan, FleetPlan), d["summary"]
    assert members(d) == {("small-cheap", "L4", "on_demand"): 1,
                          ("big-dear", "L4", "on_demand"): 2}
    why = _story(d, "east")["why"]
    assert "split over 2" in why
    assert ("the cheaper small-cheap on-demand L4 is held to its replicas: one more replica "
            "there would pass the GPUs free there (1)") in why


def test_a_cheaper_cloud_site_held_back_by_the_burst_cap_says_so() -> None:
    """The cloud is cheaper than the plant (amortized $1.20), but the burst cap allows one
    cloud replica ($0.80/h): the rest runs on the plant, and the story says the cap."""
    sites = [f.onprem("plant", {"L4": (8, 1.20)}, lat=39, lon=-77), l4("us-a", 0.80)]
    east = f.client("east", 39, -77, rtt={"plant": 5, "us-a": 10})
    rule: dict[str, Any] = {"name": "fleet", "match": {"kinds": ["inference"]},
                            "burst": {"allowed": True, "when": "always", "spot": "never",
                                      "max_usd_per_hour": 1.0}, "fleet": {}}
    eng = f.engine(sites, f.policy([rule]), clients=[east])
    plan, d = decide(eng, svc({"east": 20}, slo=60))
    assert isinstance(plan, FleetPlan), d["summary"]
    assert members(d) == {("us-a", "L4", "on_demand"): 1, ("plant", "L4", "onprem"): 2}
    why = _story(d, "east")["why"]
    assert "the cheaper us-a on-demand L4 is held to its replicas" in why
    assert "the burst cap of $1.00/h over the fleet's cloud members" in why
