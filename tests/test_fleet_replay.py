"""The request-level fleet replay: deterministic per seed, every request located, the bill is
replica-hours x price, spot interruptions take capacity away, and the engine's fleet meets an
SLO for every location where one site cannot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from placement.model import Workload
from placement.policy.loader import load_bundle
from placement.simulate.fleet_policies import NAMES, Setup, setup
from placement.simulate.fleets import (
    Replica,
    replay,
    requests,
    summary,
    up_at,
    window_down,
)
from placement.simulate.traces import Request, Trace

EXAMPLES = Path(__file__).resolve().parent.parent / "policies" / "examples"


def _trace(n: int = 300, gap_s: float = 2.0, same_size: bool = False) -> Trace:
    """A small request trace: arrivals every `gap_s`, request sizes from a fixed cycle."""
    sizes = [(400, 40), (1200, 200), (3000, 20), (800, 120), (200, 300)]
    recs = [Request(i * gap_s, *((800, 100) if same_size else sizes[i % len(sizes)]), None, i)
            for i in range(n)]
    return Trace(Path("small.csv"), "azure-llm", "requests", recs)


def _setup(slo_ms: float | None = None, service_ms: float = 250.0,
           only: tuple[str, ...] = ("global-assistant", "global-docs-rag")) -> Setup:
    bundle = load_bundle(EXAMPLES)
    wls: list[Workload] = []
    for w in bundle.workloads:
        if w.metadata.name not in only:
            continue
        if slo_ms is not None:
            lat = w.spec.latency
            assert lat is not None
            w = w.model_copy(update={"spec": w.spec.model_copy(update={
                "latency": lat.model_copy(update={"p99_slo_ms": slo_ms,
                                                  "service_time_p99_ms": service_ms})})})
        wls.append(w)
    return setup(bundle.inventory, bundle.policy, bundle.policy_version, wls)


@pytest.fixture(scope="module")
def examples() -> Setup:
    return _setup()


@pytest.mark.parametrize("policy", NAMES)
def test_the_replay_is_deterministic_per_seed(examples: Setup, policy: str) -> None:
    trace = _trace()
    a = replay(examples, requests(trace, examples, 3), policy, 3, window_s=120)
    b = replay(examples, requests(trace, examples, 3), policy, 3, window_s=120)
    assert np.array_equal(a.latency_ms, b.latency_ms)
    assert (a.onprem_usd, a.cloud_usd, a.unmet_usd) == (b.onprem_usd, b.cloud_usd, b.unmet_usd)
    other = requests(trace, examples, 4)
    assert not np.array_equal(other.location, requests(trace, examples, 3).location)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_request_gets_a_location_of_its_service(examples: Setup, seed: int) -> None:
    reqs = requests(_trace(), examples, seed)
    assert len(reqs.location) == 300
    assert ((reqs.location >= 0) & (reqs.location < len(examples.locations))).all()
    for k, svc in enumerate(examples.services):
        lat = svc.workload.spec.latency
        assert lat is not None
        allowed = {examples.locations.index(c.location) for c in lat.clients}
        assert set(reqs.location[reqs.service == k].tolist()) <= allowed


@pytest.mark.parametrize("policy", NAMES)
def test_a_policys_gpu_cost_is_its_replica_hours_times_price(examples: Setup,
                                                             policy: str) -> None:
    run = replay(examples, requests(_trace(), examples, 0), policy, 0, window_s=120)
    billed = sum(h * run.price[row] for (_, row), h in run.replica_hours.items())
    assert run.replica_hours
    assert run.onprem_usd + run.cloud_usd == pytest.approx(billed, rel=1e-9)


@pytest.mark.parametrize(("rate_h", "fewer"), [(0.0, False), (50.0, True)],
                         ids=["without interruptions every replica serves",
                              "interruptions take replicas down"])
def test_a_spot_interruption_reduces_served_capacity(rate_h: float, fewer: bool) -> None:
    reps = [Replica(0.0, []) for _ in range(4)]
    hits = window_down(reps, 0.0, 600.0, rate_h, 300.0,
                       lambda j: np.random.default_rng([7, j]))
    up = up_at(reps, np.linspace(0, 599, 200))
    assert (hits > 0) == fewer
    assert bool((up < 4).any()) == fewer
    assert (up >= 0).all()


def test_the_fleet_meets_the_slo_everywhere_where_one_site_cannot() -> None:
    # 250 ms of service: no site is within 130 ms of all three locations
    s = _setup(slo_ms=380, service_ms=250, only=("global-assistant",))
    reqs = requests(_trace(400, 1.0, same_size=True), s, 0)
    ours = summary(s, reqs, replay(s, reqs, "engine-fleet", 0, window_s=120))
    one = summary(s, reqs, replay(s, reqs, "single-site", 0, window_s=120))
    assert ours["slo_worst_location"] >= 0.99, ours["locations"]
    assert one["slo_worst_location"] < 0.99, one["locations"]
    assert "no single site meets the SLO" in one["notes"]
