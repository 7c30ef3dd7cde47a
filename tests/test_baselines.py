"""The simulator's baselines, each choice worked out by hand on a small inventory: spot allowed
or not, one ordered site list per workload, SkyPilot's egress rule (free within one cloud),
nearest-first services, and the policy's hard rules kept by every baseline."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from placement.engine import Engine
from placement.engine.batch import Pick
from placement.engine.offline import engine_for
from placement.model import Workload
from placement.policy.loader import load_bundle
from placement.simulate.baselines import BASELINES, runnable, skypilot_egress
from placement.simulate.replay import Replay
from placement.simulate.synth import SimWorkload, synthesize
from placement.simulate.traces import Job, Trace

from .factories import client, cloud, dataset, engine, job, onprem, policy, service


def _rule(spot: str, allowed: bool = True, max_wait: float = 0.25) -> dict[str, Any]:
    return {"name": "jobs", "match": {"kinds": ["training", "batch", "inference", "rag"]},
            "max_wait_hours": max_wait,
            "burst": {"allowed": allowed, "when": "onprem_unavailable", "spot": spot}}


def _choose(name: str, e: Engine, *wls: Workload) -> list[str]:
    """The site (and capacity kind) the baseline gives each workload, in arrival order."""
    sims = [SimWorkload(i, 0.0, wl) for i, wl in enumerate(wls)]
    runs = Replay(e, BASELINES[name]()).run(sims)
    kinds = {0: "onprem", 1: "on_demand", 2: "spot"}
    return [f"{e.ci.site_names[r.site]}/{kinds[r.kind]}" if r.site >= 0 else "rejected"
            for r in runs]


def _spot_engine(spot: str) -> Engine:
    sites = [onprem("dc", {"L4": (2, 1.0)}),
             cloud("region", {"L4": [("l4.x4", 4, 8.0, 2.0)]}, quota=8,
                   provisioning_minutes=6, spot_rate=0.0)]
    return engine(sites, policy([_rule(spot)]))


BIG = job("big", gpu="L4", count=4, hours=1.0)  # more L4s than the on-prem site has


@pytest.mark.parametrize(("name", "spot", "want"), [
    ("overflow", "always", "region/spot"),  # within a region, spot first where allowed
    ("overflow", "never", "region/on_demand"),
    ("price-only", "always", "region/spot"),  # $2/h beats $8/h
    ("price-only", "never", "region/on_demand"),
    ("nearest", "always", "region/spot"),  # a job: as overflow
    ("overflow-on-demand-only", "always", "region/on_demand"),
    ("all-cloud-on-demand", "always", "region/on_demand"),
])
def test_spot_only_where_the_rule_allows_it(name: str, spot: str, want: str) -> None:
    assert _choose(name, _spot_engine(spot), BIG) == [want]


def test_no_baseline_bursts_where_the_rule_forbids_it_except_all_cloud() -> None:
    sites = [onprem("dc", {"L4": (4, 1.0)}),
             cloud("region", {"L4": [("l4.x4", 4, 8.0, 2.0)]}, provisioning_minutes=6)]
    e = engine(sites, policy([_rule("always", allowed=False, max_wait=10)]))
    first, second = job("a", gpu="L4", count=4), job("b", gpu="L4", count=4)
    for name in ("overflow", "price-only", "nearest", "overflow-on-demand-only"):
        assert _choose(name, e, first, second) == ["dc/onprem", "dc/onprem"], name  # b queues
    # by definition it ignores the rule's burst settings (a reference point, not a rule)
    assert _choose("all-cloud-on-demand", e, first, second) == ["region/on_demand"] * 2


def _two_onprem(rule: dict[str, Any] | None = None) -> Engine:
    sites = [onprem("a", {"L4": (4, 1.0)}, lat=50.1, lon=8.7),  # Frankfurt
             onprem("b", {"L4": (4, 1.0)}, lat=30.3, lon=-97.7),  # Austin
             cloud("region", {"L4": [("l4.x1", 1, 2.0, None)]}, lat=39.0, lon=-77.0)]
    return engine(sites, policy([rule or _rule("never")]),
                  datasets=[dataset("logs", 500, ["b"])],
                  clients=[client("texas", 30.2, -97.8), client("hessen", 50.0, 8.6)])


@pytest.mark.parametrize(("wl", "want"), [
    (job("plain", gpu="L4", count=1, hours=1.0), "a/onprem"),  # inventory order
    (job("reads-logs", gpu="L4", count=1, hours=1.0, datasets=[{"name": "logs"}]),
     "b/onprem"),  # the site holding its data comes first
    (service("texan", slo_ms=500, clients=["texas"]), "b/onprem"),  # nearest first
    (service("hessian", slo_ms=500, clients=["hessen"]), "a/onprem"),
], ids=["job without data", "job with data on b", "service near b", "service near a"])
def test_overflow_keeps_one_ordered_list_per_workload(wl: Workload, want: str) -> None:
    assert _choose("overflow", _two_onprem(), wl) == [want]


def test_overflow_waits_on_prem_within_max_wait_before_it_bursts() -> None:
    sites = [onprem("dc", {"L4": (4, 1.0)}),
             cloud("region", {"L4": [("l4.x4", 4, 8.0, None)]}, provisioning_minutes=6)]
    long_wait = engine(sites, policy([_rule("never", max_wait=2.0)]))
    short_wait = engine(sites, policy([_rule("never", max_wait=0.25)]))
    a, b = job("a", gpu="L4", count=4, hours=1.0), job("b", gpu="L4", count=4, hours=1.0)
    assert _choose("overflow", long_wait, a, b) == ["dc/onprem", "dc/onprem"]  # waits 1 h
    assert _choose("overflow", short_wait, a, b) == ["dc/onprem", "region/on_demand"]


@pytest.mark.parametrize(("size_gb", "want"), [
    (100.0, "aws-west/on_demand"),  # $9 across clouds outweighs $0.10/h: stays in AWS
    (0.5, "gcp-central/on_demand"),  # $0.045 of egress: the cheaper GPU wins
], ids=["big data stays in its cloud", "small data follows the cheaper GPU"])
def test_price_only_prices_egress_as_skypilot_free_within_one_cloud(size_gb: float,
                                                                     want: str) -> None:
    sites = [cloud("aws-east", {"A100": [("p4", 8, 30.0, None)]}, provider="aws"),
             cloud("aws-west", {"L4": [("l4.x1", 1, 2.0, None)]}, provider="aws"),
             cloud("gcp-central", {"L4": [("g2", 1, 1.9, None)]}, provider="gcp")]
    e = engine(sites, policy([_rule("never")]), datasets=[dataset("corpus", size_gb,
                                                                  ["aws-east"])])
    wl = job("j", gpu="L4", count=1, hours=1.0, datasets=[{"name": "corpus"}])
    assert _choose("price-only", e, wl) == [want]
    m = skypilot_egress(e.ci)
    east, west, gcp = (e.ci.site_index[n] for n in ("aws-east", "aws-west", "gcp-central"))
    assert m[east, west] == 0 and m[east, gcp] == pytest.approx(0.09)
    # the replay still bills the real egress: AWS charges between its own regions
    sims = [SimWorkload(0, 0.0, wl)]
    run = Replay(e, BASELINES["price-only"]()).run(sims)[0]
    assert run.egress_usd == pytest.approx(0.09 * size_gb)


@pytest.mark.parametrize(("when", "second"), [
    ("onprem_unavailable", "a/onprem"),  # a can start it now: the rule keeps the cloud shut
    ("always", "region/on_demand"),  # the region is nearer Texas than Frankfurt is
])
def test_nearest_puts_a_service_at_the_nearest_site_with_room_the_rule_allows(
        when: str, second: str) -> None:
    rule = {**_rule("never"), "burst": {"allowed": True, "when": when, "spot": "never"}}
    e = _two_onprem(rule=rule)
    near_b = service("texan", slo_ms=500, clients=["texas"], replicas=4)
    # b takes the first window's four replicas; the second finds b full
    assert _choose("nearest", e, near_b, near_b) == ["b/onprem", second]


@pytest.mark.parametrize(("when", "want"), [
    ("onprem_unavailable", "dc/onprem"),  # an idle on-prem GPU keeps the cloud shut
    ("always", "region/spot"),  # $0.42/h beats $0.75/h
])
def test_price_only_keeps_the_rules_burst_gate(when: str, want: str) -> None:
    sites = [onprem("dc", {"L4": (1, 0.75)}),
             cloud("region", {"L4": [("l4.x1", 1, 0.8, 0.42)]}, spot_rate=0.0)]
    rule = {**_rule("always"), "burst": {"allowed": True, "when": when, "spot": "always"}}
    e = engine(sites, policy([rule]))
    assert _choose("price-only", e, job("j", gpu="L4", count=1, hours=1.0)) == [want]


def test_runnable_asks_the_hard_rules_not_a_policy() -> None:
    e = _spot_engine("never")
    assert runnable(e, BIG)  # the cloud can take it
    assert not runnable(e, job("x", gpu="H100", count=1))  # no site has H100s
    onprem_only = engine([onprem("dc", {"L4": (2, 1.0)})], policy([_rule("never")]))
    assert not runnable(onprem_only, BIG)  # 4 L4s on one site: nowhere


class _Fresh:
    """A baseline that forgets its shapes' facts before every decision."""

    def __init__(self, name: str) -> None:
        self.name, self.cls = name, BASELINES[name]

    def decide(self, e: Engine, sw: SimWorkload) -> Pick | None:
        return self.cls().decide(e, sw)


@pytest.mark.parametrize("name", list(BASELINES))
def test_facts_kept_per_shape_change_no_choice(name: str) -> None:
    bundle = load_bundle(Path("policies/examples"))
    e = engine_for(bundle)
    rng = random.Random(5)
    records = [Job(rng.uniform(0, 40 * 3600), rng.uniform(600, 8 * 3600), rng.choice(
        [1, 2, 4, 8]), 1) for _ in range(300)]
    records.sort(key=lambda r: r.at_s)
    syn = synthesize(Trace(Path("t.csv"), "philly", "jobs", records), bundle.inventory,
                     seed=2, load=1.5, feasible=lambda wl: runnable(e, wl))
    kept = Replay(e, BASELINES[name](), seed=2).run(syn.workloads)
    fresh = Replay(e, _Fresh(name), seed=2).run(syn.workloads)
    assert [repr(r) for r in kept] == [repr(r) for r in fresh]  # repr: NaN p99 for jobs
    assert len({r.site for r in kept}) > 2  # the case exercises more than one site
