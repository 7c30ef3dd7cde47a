"""Table-driven tests per plugin, on small synthetic inventories built by factories."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from placement.engine import Engine
from placement.model import Decision, Reservation

from . import factories as f

A100_8: list[tuple[str, int, float, float | None]] = [("p4d", 8, 32.0, 8.0)]


def _by(d: Decision, site: str, capacity: str | None = None) -> Any:
    return next(c for c in d.candidates
                if c.site == site and (capacity is None or c.capacity == capacity))


# --- capacity ---------------------------------------------------------------------------------
CAPACITY = [
    ("on-prem with too few GPUs installed is rejected", 16, [], "dc", False, "has 8 A100"),
    ("on-prem with enough installed GPUs passes", 8, [], "dc", True, None),
    ("cloud within quota passes", 16, [], "cloud", True, None),
    ("cloud quota used up by reservations is rejected", 16,
     [Reservation(site="cloud", gpu_type="A100", count=56)], "cloud", False, "quota allows 8"),
]


@pytest.mark.parametrize(("need", "held", "site", "ok", "why"), [c[1:] for c in CAPACITY],
                         ids=[c[0] for c in CAPACITY])
def test_capacity(need: int, held: list[Reservation], site: str, ok: bool,
                  why: str | None) -> None:
    eng = f.engine([f.onprem("dc", {"A100": (8, 2.0)}), f.cloud("cloud", {"A100": A100_8})],
                   reservations=held)
    c = _by(eng.place(f.job(count=need)), site, "onprem" if site == "dc" else "on_demand")
    assert (c.rejected_by != "capacity") is ok
    if why:
        assert why in c.reason


def test_site_without_the_gpu_type_says_what_it_has() -> None:
    eng = f.engine([f.onprem("dc", {"L4": (8, 0.7)}), f.cloud("cloud", {"A100": A100_8})])
    c = _by(eng.place(f.job()), "dc")
    assert (c.rejected_by, c.reason) == ("capacity", "offers no A100 (has: L4)")


# --- constraints ------------------------------------------------------------------------------
CONSTRAINTS: list[tuple[str, dict[str, Any], set[str]]] = [
    ("require on-prem keeps only on-prem", {"require": {"site_types": ["onprem"]}}, {"dc"}),
    ("require a label keeps labelled sites", {"require": {"labels": {"residency": "eu"}}},
     {"dc", "eu-cloud"}),
    ("forbid a site by name", {"forbid": {"sites": ["dc"]}}, {"eu-cloud", "us-cloud"}),
    ("require and forbid combine", {"require": {"labels": {"residency": "eu"}},
                                    "forbid": {"site_types": ["cloud"]}}, {"dc"}),
]


@pytest.mark.parametrize(("rule", "allowed"), [c[1:] for c in CONSTRAINTS],
                         ids=[c[0] for c in CONSTRAINTS])
def test_constraints(rule: dict[str, Any], allowed: set[str]) -> None:
    sites = [f.onprem("dc", {"A100": (8, 2.0)}, labels={"residency": "eu"}),
             f.cloud("eu-cloud", {"A100": A100_8}, labels={"residency": "eu"}),
             f.cloud("us-cloud", {"A100": A100_8}, labels={"residency": "us"})]
    pol = f.policy([{"name": "c", **rule}, f.BURST_ALL])
    d = f.engine(sites, pol).place(f.job())
    passed = {c.site for c in d.candidates if c.rejected_by != "constraints"}
    assert passed == allowed
    rejected = [c for c in d.candidates if c.rejected_by == "constraints"]
    assert all("rule 'c'" in (c.reason or "") for c in rejected)


def test_constraints_from_every_matching_rule_apply_whatever_the_order() -> None:
    sites = [f.onprem("dc", {"A100": (8, 2.0)}), f.cloud("cloud", {"A100": A100_8})]
    pol = f.policy([f.BURST_ALL, {"name": "secret", "match": {"data_classifications":
                                                             ["confidential"]},
                                  "require": {"site_types": ["onprem"]}}])
    ds = [f.dataset("secrets", 10, ["dc"], "confidential")]
    d = f.engine(sites, pol, datasets=ds).place(f.job(datasets=[{"name": "secrets"}]))
    assert d.site == "dc" and d.rule == "burst-all" and d.constraint_rules == ["secret"]


# --- boundary ---------------------------------------------------------------------------------
def test_clients_in_a_closed_network_reach_only_sites_that_allow_it() -> None:
    sites = [f.onprem("plant", {"L4": (4, 0.7)}, boundary="ot"),
             f.onprem("dc", {"L4": (4, 0.7)}, accepts=["ot"]),
             f.onprem("other", {"L4": (4, 0.7)})]
    d = f.engine(sites, clients=[f.client("users", 50, 8, boundary="ot")]).place(
        f.service(slo_ms=500))
    reasons = {c.site: c.rejected_by for c in d.candidates}
    assert reasons == {"plant": None, "dc": None, "other": "boundary"}


def test_bounded_data_may_not_leave_its_network() -> None:
    sites = [f.onprem("plant", {"A100": (8, 2.0)}, boundary="ot"),
             f.onprem("dc", {"A100": (8, 1.0)})]
    ds = [f.dataset("video", 100, ["plant"], boundary="ot")]
    d = f.engine(sites, datasets=ds).place(f.job(datasets=[{"name": "video"}]))
    assert d.site == "plant"
    assert "may not leave network boundary ot" in _by(d, "dc").reason


# --- latency ----------------------------------------------------------------------------------
def test_latency_is_rtt_plus_service_time_plus_rag_lookups() -> None:
    sites = [f.onprem("near", {"L4": (4, 0.7)}, lat=50, lon=8),
             f.onprem("far", {"L4": (4, 0.1)}, lat=40, lon=-75,
                      links=[{"to": "near", "rtt_ms": 90.0}])]
    clients = [f.client("users", 50, 8, rtt={"near": 2.0, "far": 95.0})]
    ds = [f.dataset("index", 5, ["near"])]
    wl = f.service(kind="rag", slo_ms=150, service_ms=30,
                   datasets=[{"name": "index", "access": "lookup", "lookups_per_request": 2}])
    d = f.engine(sites, clients=clients, datasets=ds).place(wl)
    near, far = _by(d, "near"), _by(d, "far")
    assert near.estimates.p99_latency_ms == pytest.approx(2 + 30 + 2 * 0.5)
    assert far.estimates.p99_latency_ms == pytest.approx(95 + 30 + 2 * 90)
    assert (far.rejected_by, d.site) == ("latency", "near")
    assert "exceeds the SLO of 150 ms" in far.reason


# --- wait -------------------------------------------------------------------------------------
WAITS = [
    ("free GPUs: no wait", 4, [], 0.0),
    ("first release is enough", 4, [(4, 2.0), (4, 5.0)], 2.0),
    ("needs both releases", 6, [(4, 2.0), (4, 5.0)], 5.0),
    ("releases sorted by time, not input order", 4, [(4, 5.0), (4, 2.0)], 2.0),
    ("unknown release time never frees", 6, [(4, None), (2, 3.0)], None),
]


@pytest.mark.parametrize(("need", "held", "expected"), [c[1:] for c in WAITS],
                         ids=[c[0] for c in WAITS])
def test_wait_follows_the_release_schedule(need: int, held: list[tuple[int, float | None]],
                                           expected: float | None) -> None:
    res = [Reservation(site="dc", gpu_type="A100", count=n, remaining_hours=h) for n, h in held]
    pol = f.policy([{**f.BURST_ALL, "max_wait_hours": 100}])
    d = f.engine([f.onprem("dc", {"A100": (8, 2.0)})], pol, reservations=res).place(
        f.job(count=need))
    assert _by(d, "dc").estimates.wait_hours == (None if expected is None
                                                 else pytest.approx(expected))


# --- deadline, budget, burst ------------------------------------------------------------------
GATES: list[tuple[str, dict[str, Any], dict[str, Any], str, str, str]] = [
    ("deadline too close for the run", {}, {"deadline": 5, "hours": 10}, "cloud", "on_demand",
     "deadline"),
    ("budget too small", {}, {"budget": 100.0}, "cloud", "on_demand", "budget"),
    ("burst $/hour cap", {"burst": {"allowed": True, "when": "always", "max_usd_per_hour": 10}},
     {}, "cloud", "on_demand", "budget"),
    ("burst not allowed", {"burst": {"allowed": False}}, {}, "cloud", "on_demand", "burst"),
    ("spot never", {"burst": {"allowed": True, "when": "always", "spot": "never"}}, {},
     "cloud", "spot", "burst"),
    ("spot needs slack before the deadline",
     {"burst": {"allowed": True, "when": "always", "spot": "when_deadline_allows"}},
     {"deadline": 10.3, "hours": 10}, "cloud", "spot", "burst"),
    ("cloud waits for on-prem that can start",
     {"burst": {"allowed": True, "when": "onprem_unavailable"}}, {}, "cloud", "on_demand",
     "burst"),
    ("cloud costlier than on-prem that can start",
     {"burst": {"allowed": True, "when": "onprem_unavailable_or_near_data"}}, {}, "cloud",
     "on_demand", "burst"),
]


@pytest.mark.parametrize(("rule", "job", "site", "capacity", "flt"), [g[1:] for g in GATES],
                         ids=[g[0] for g in GATES])
def test_gates(rule: dict[str, Any], job: dict[str, Any], site: str, capacity: str,
               flt: str) -> None:
    pol = f.policy([{"name": "r", "weights": {"cost": 1}, **rule}])
    sites = [f.onprem("dc", {"A100": (8, 2.0)}), f.cloud("cloud", {"A100": A100_8},
                                                        provisioning_minutes=0)]
    d = f.engine(sites, pol).place(f.job(**job))
    c = _by(d, site, capacity)
    assert c.rejected_by == flt, c
    assert c.reason


def test_spot_is_used_when_the_deadline_leaves_room() -> None:
    pol = f.policy([{"name": "r", "weights": {"cost": 1},
                     "burst": {"allowed": True, "when": "always",
                               "spot": "when_deadline_allows"}}])
    d = f.engine([f.cloud("cloud", {"A100": A100_8})], pol).place(f.job(deadline=48, hours=10))
    assert (d.action, d.capacity) == ("burst", "spot")
    assert d.estimates is not None and d.estimates.gpu_hours > 80  # restarts add expected GPU-hours


@pytest.mark.parametrize(("when", "site"), [
    ("onprem_unavailable", "dc"),
    ("onprem_unavailable_or_near_data", "cloud"),
], ids=["on-prem first pulls the data across", "the cheaper all-in region where the data lives"])
def test_a_job_follows_its_data_to_the_cloud_when_that_costs_less(when: str, site: str) -> None:
    pol = f.policy([{"name": "r", "weights": {"cost": 1},
                     "burst": {"allowed": True, "when": when}}])
    sites = [f.onprem("dc", {"A100": (8, 2.0)}),
             f.cloud("cloud", {"A100": A100_8}, provisioning_minutes=0, egress=0.09)]
    ds = [f.dataset("corpus", 40000, ["cloud"])]  # 40 TB: $3,600 to move out of the region
    d = f.engine(sites, pol, datasets=ds).place(f.job(datasets=[{"name": "corpus"}]))
    assert d.site == site
    if site == "dc":
        assert "bursts only when on-prem cannot" in (_by(d, "cloud", "on_demand").reason or "")


# --- data gravity and cost --------------------------------------------------------------------
def test_data_comes_from_the_cheapest_replica_over_measured_bandwidth() -> None:
    sites = [f.cloud("a", {"A100": A100_8}, links=[{"to": "c", "gbps": 4.0,
                                                   "egress_usd_per_gb": 0.02}]),
             f.cloud("b", {"A100": A100_8}, egress=0.09),
             f.cloud("c", {"A100": A100_8})]
    ds = [f.dataset("corpus", 1000, ["a", "b"])]
    d = f.engine(sites, datasets=ds).place(f.job(datasets=[{"name": "corpus"}]))
    c = _by(d, "c", "on_demand").estimates
    assert c.egress_gb == 1000 and c.egress_usd == pytest.approx(20.0)
    assert c.transfer_hours == pytest.approx(1000 * 8 / 4.0 / 3600, rel=1e-3)
    assert _by(d, "a", "on_demand").estimates.egress_usd == 0


BILLING = [
    ("whole instances are billed", 3, [("big", 8, 16.0, None)], 16.0, 8),
    ("the cheapest mix of one instance type wins", 3,
     [("one", 1, 3.0, None), ("eight", 8, 16.0, None)], 9.0, 3),
    ("two of the big one beat sixteen small ones", 16,
     [("one", 1, 3.0, None), ("eight", 8, 16.0, None)], 32.0, 16),
]


@pytest.mark.parametrize(("n", "insts", "per_hour", "billed"), [b[1:] for b in BILLING],
                         ids=[b[0] for b in BILLING])
def test_cloud_billing(n: int, insts: list[tuple[str, int, float, float | None]],
                       per_hour: float, billed: int) -> None:
    d = f.engine([f.cloud("c", {"A100": insts})]).place(f.job(count=n, hours=1))
    e = _by(d, "c", "on_demand").estimates
    assert e.usd_per_hour == pytest.approx(per_hour) and e.gpu_hours == pytest.approx(billed)


def test_engine_scores_with_arrays_not_per_site_objects() -> None:
    eng = f.engine([f.onprem(f"s{i}", {"A100": (8, 1 + i / 10)}) for i in range(20)])
    out = eng.decide(f.job())
    assert isinstance(out.total, np.ndarray) and out.total.shape == (20,)
    assert out.chosen is not None and eng.ci.site_names[int(out.ctx.site[out.chosen])] == "s0"


def test_duplicate_plugin_names_fail_at_start_up() -> None:
    from placement.engine.plugins.capacity import Capacity
    from placement.engine.plugins.registry import DuplicatePluginError

    with pytest.raises(DuplicatePluginError, match="registered twice"):
        Engine(f.engine([f.onprem("dc", {"A100": (8, 2.0)})]).inventory, f.policy(), "v",
               filters=[Capacity(), Capacity()])


REJECTS = [
    ("no site offers the GPU type", {"gpu": "H200"}, "no site offers the GPU"),
    ("more GPUs than any site has", {"count": 100}, "capacity: 1"),
]


@pytest.mark.parametrize(("job", "summary"), [r[1:] for r in REJECTS], ids=[r[0] for r in REJECTS])
def test_reject_says_why(job: dict[str, Any], summary: str) -> None:
    d = f.engine([f.onprem("dc", {"A100": (8, 2.0)})]).place(f.job(**job))
    assert (d.action, d.site) == ("reject", None)
    assert summary in d.summary
    assert all(c.rejected_by and c.reason for c in d.candidates)


def test_unknown_reservation_site_is_a_clear_error() -> None:
    from placement.errors import UnknownReferenceError

    with pytest.raises(UnknownReferenceError, match="no site named 'x'; known: dc"):
        f.engine([f.onprem("dc", {"A100": (8, 2.0)})],
                 reservations=[Reservation(site="x", gpu_type="A100", count=1)])
