"""The MILP lower bound: small cases worked out by hand, and, on random small inventories, a
bound never above what any feasible schedule costs (every policy's replay, random placements
replayed, and random on-prem orders with waits that no policy would choose)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import OptimizeResult

from placement.engine import Engine
from placement.engine.batch import Pick
from placement.engine.compiled import ONPREM
from placement.model import Site, Workload
from placement.simulate import bound
from placement.simulate.baselines import any_policy, deciders
from placement.simulate.bound import Bound, Model, build, lower_bound, solve
from placement.simulate.replay import Replay, Run
from placement.simulate.results import horizon, metrics
from placement.simulate.synth import SimWorkload

from .factories import client, cloud, dataset, engine, job, onprem, policy, service

ONPREM_USD, CLOUD_USD = 1.0, 5.0  # per GPU-hour: waiting for the on-prem GPU pays
JOBS = {"name": "jobs", "match": {"kinds": ["training", "batch"]}, "max_wait_hours": 0.25,
        "burst": {"allowed": True, "when": "onprem_unavailable", "spot": "never"}}
SERVICES = {"name": "svc", "match": {"kinds": ["inference"]},
            "burst": {"allowed": True, "when": "always"}}
VIEWS = ("used", "avoidable")
TOL = 0.02  # the metrics round to cents


def _one_gpu(max_wait_hours: float = 0.25) -> Engine:
    sites = [onprem("dc", {"L4": (1, ONPREM_USD)}, lat=50.1, lon=8.7),
             cloud("region", {"L4": [("l4.x1", 1, CLOUD_USD, None)]}, quota=8,
                   provisioning_minutes=0, spot_rate=0.0)]
    rule = {**JOBS, "max_wait_hours": max_wait_hours}
    return engine(sites, policy([rule, SERVICES]), clients=[client("users", 50.1, 8.7)])


def _jobs(*shapes: tuple[float, int, float]) -> list[SimWorkload]:
    """(arrival h, GPUs, hours) -> L4 training jobs."""
    return [SimWorkload(i, at, job(f"j{i}", gpu="L4", count=n, hours=h))
            for i, (at, n, h) in enumerate(shapes)]


def _window(i: int, at: float, hours: float = 1.0, replicas: int = 1,
            slo_ms: float = 100) -> SimWorkload:
    spec = service(f"s{i}", replicas=replicas, slo_ms=slo_ms, service_ms=20).model_dump()
    spec["spec"]["duration_hours"] = hours
    spec["metadata"]["name"] = f"s{i}-w{i}"
    return SimWorkload(i, at, Workload.model_validate(spec), requests=10)


def _far_onprem_engine() -> Engine:
    """The users are at Frankfurt; the on-prem GPUs at Sydney miss a 100 ms SLO."""
    sites = [onprem("sydney", {"L4": (4, ONPREM_USD)}, lat=-33.9, lon=151.2),
             cloud("frankfurt", {"L4": [("l4.x1", 1, CLOUD_USD, None)]}, lat=50.1, lon=8.7,
                   quota=8, provisioning_minutes=0, spot_rate=0.0)]
    return engine(sites, policy([JOBS, SERVICES]), clients=[client("users", 50.1, 8.7)])


@dataclass(frozen=True)
class Case:
    name: str
    engine: Engine
    workloads: list[SimWorkload]
    horizon_h: float
    used: float  # the optimum worked out by hand, in each view
    avoidable: float
    forbidden: float | None = None  # a cheaper "used" $ that capacity or the rules forbid
    dearer: float | None = None  # a feasible plan's "used" $ that the optimum beats


CASES = [
    # Both arrive at 0 on one GPU: the optimum runs them back to back (2 x 1 h x $1); one in
    # the cloud would cost $1 + $5. Only a bound that lets work wait reaches the optimum.
    Case("waiting pays: two 1-h jobs on one GPU, back to back", _one_gpu(),
         _jobs((0.0, 1, 1.0), (0.0, 1, 1.0)), 2.0, 2 * ONPREM_USD, 0.0,
         dearer=ONPREM_USD + CLOUD_USD),
    # A third cannot also wait and end by the horizon: one goes to the cloud (or is unmet, at
    # the same $5/GPU-hour); all three on-prem ($3) does not fit.
    Case("a third job cannot wait past the horizon", _one_gpu(),
         _jobs((0.0, 1, 1.0), (0.0, 1, 1.0), (0.0, 1, 1.0)), 2.0,
         2 * ONPREM_USD + CLOUD_USD, CLOUD_USD, forbidden=3 * ONPREM_USD),
    # A (2 h) at 0, B and C (1 h) at 0.5, horizon 3: A, then B back to back fill [0, 3]; C
    # goes to the cloud. The work released after 0.5 (2 h, and A's 1.5 h it cannot have run
    # before 0.5) does not fit in [0.5, 3] on one GPU.
    Case("arrivals apart: a 2-h job, then two 1-h jobs that cannot both wait",
         _one_gpu(), _jobs((0.0, 1, 2.0), (0.5, 1, 1.0), (0.5, 1, 1.0)), 3.0,
         3 * ONPREM_USD + CLOUD_USD, CLOUD_USD, forbidden=4 * ONPREM_USD),
    # The same two jobs, each due 1.5 h after arrival, horizon 3: back to back one would end
    # at 2 h, late, which the metrics charge as unmet on top of its run. So one runs on-prem
    # and the other in the cloud (or unmet, at the same $5/GPU-hour): waiting does not pay.
    Case("a deadline stops a job from waiting", _one_gpu(),
         [SimWorkload(i, 0.0, job(f"j{i}", gpu="L4", count=1, hours=1.0, deadline=1.5))
          for i in range(2)], 3.0,
         ONPREM_USD + CLOUD_USD, CLOUD_USD, forbidden=2 * ONPREM_USD),
    # 16 GPUs asked: no site has them (1 on-prem, quota 8): rejected by the rules, its 16 x 2
    # GPU-hours are charged as unmet at the cheapest on-demand $/GPU-hour of L4, never free.
    Case("a job no site can run is unmet", _one_gpu(), _jobs((0.0, 16, 2.0)), 2.0,
         16 * 2 * CLOUD_USD, 16 * 2 * CLOUD_USD, forbidden=0.0),
    # A 2-replica window whose only site within its SLO is the cloud: 2 GPUs x 1 h there
    # (the cheap on-prem GPUs are too far from its users).
    Case("a service within its SLO only in the cloud", _far_onprem_engine(),
         [_window(0, 0.0, replicas=2)], 1.0, 2 * CLOUD_USD, 2 * CLOUD_USD,
         forbidden=2 * ONPREM_USD),
    # The same window near its users on-prem: $1 per GPU-hour, nothing avoidable.
    Case("a service within its SLO on-prem", _one_gpu(), [_window(0, 0.0)], 1.0,
         ONPREM_USD, 0.0, dearer=CLOUD_USD),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_bound_is_the_optimum_worked_out_by_hand(case: Case) -> None:
    model = build(case.engine, case.workloads, horizon_h=case.horizon_h)
    got = {view: solve(model, view=view, time_limit_s=10) for view in VIEWS}
    for view, want in (("used", case.used), ("avoidable", case.avoidable)):
        b = got[view]
        assert b.usd == pytest.approx(want, abs=1e-6), (view, b)
        assert b.status in ("optimal", bound.NO_CANDIDATE) and b.workloads == len(case.workloads)
    used = got["used"].usd
    assert used is not None
    assert case.forbidden is None or case.forbidden < used - 0.5
    assert case.dearer is None or used < case.dearer - 0.5
    # and no policy does better than the optimum
    _assert_below_every_policy(case.engine, case.workloads, case.horizon_h)


@pytest.mark.parametrize(("max_wait_hours", "best_policy"), [
    (0.25, ONPREM_USD + CLOUD_USD),  # the rule lets no policy wait an hour: one bursts
    (5.0, 2 * ONPREM_USD),  # a rule that lets them wait: they reach the bound
])
def test_waiting_beats_bursting_whether_or_not_a_policy_waits(
        max_wait_hours: float, best_policy: float) -> None:
    e, wls = _one_gpu(max_wait_hours), _jobs((0.0, 1, 1.0), (0.0, 1, 1.0))
    b = lower_bound(e, wls, horizon_h=2.0, view="used", time_limit_s=10)
    one_in_the_cloud = ONPREM_USD + CLOUD_USD
    assert b.usd is not None
    assert b.usd == pytest.approx(2 * ONPREM_USD) and b.usd < one_in_the_cloud
    assert b.status == "optimal" and b.gap == pytest.approx(0.0, abs=1e-6)
    costs = _policy_costs(e, wls)
    assert min(c["used"] for c in costs) == pytest.approx(best_policy, abs=TOL)


def _policy_costs(e: Engine, wls: list[SimWorkload], seed: int = 0
                  ) -> list[dict[str, float]]:
    out = []
    for d in deciders(["all"]):
        runs = Replay(e, d, seed=seed).run(wls)
        m = metrics(runs, wls, e)
        out.append({"used": m["used_usd"], "avoidable": m["avoidable_usd"],
                    "horizon": horizon(runs)})
    return out


def _assert_below_every_policy(e: Engine, wls: list[SimWorkload], horizon_h: float) -> None:
    costs = _policy_costs(e, wls)
    model = build(e, wls, horizon_h=max(horizon_h, *(c["horizon"] for c in costs)))
    for view in VIEWS:
        usd = solve(model, view=view, time_limit_s=10).usd
        assert usd is not None
        assert all(usd <= c[view] + TOL for c in costs), (view, usd, costs)


def test_no_workloads_bound_zero_and_never_nothing_otherwise() -> None:
    e = _one_gpu()
    empty = solve(build(e, [], horizon_h=1.0), view="used")
    assert empty.usd == 0.0 and empty.workloads == 0
    wls = _jobs((0.0, 1, 1.0), (0.0, 1, 1.0), (0.0, 1, 1.0))
    # too large for the cap: no MILP, the capacity-free bound (each job at its cheapest)
    tiny = build(e, wls, horizon_h=2.0, max_variables=3)
    b = solve(tiny, view="used")
    assert tiny.constraints is None and b.usd == pytest.approx(3 * ONPREM_USD)
    assert "capacity-free" in b.status and b.gap is None


def test_a_model_over_the_cap_widens_its_windows_first() -> None:
    e = _one_gpu()
    wls = [_window(i, 0.25 * i, hours=0.25) for i in range(40)]
    full = build(e, wls, horizon_h=10.0)
    narrow = build(e, wls, horizon_h=10.0, max_variables=full.variables - 1)
    assert narrow.constraints is not None and narrow.windows < full.windows
    assert narrow.variables < full.variables
    # a coarser model is a weaker bound, never a wrong one
    for view in VIEWS:
        coarse, fine = (solve(m, view=view, time_limit_s=10).usd for m in (narrow, full))
        assert coarse is not None and fine is not None and coarse <= fine + 1e-6


def _timed_out(x: np.ndarray | None = None, fun: float | None = None,
               dual: float = -np.inf) -> OptimizeResult:
    return OptimizeResult(status=1, x=x, fun=fun, mip_dual_bound=dual,
                          message="Time limit reached", eqlin=None)


THREE_ON_ONE_GPU = _jobs((0.0, 1, 1.0), (0.0, 1, 1.0), (0.0, 1, 1.0))  # optimum $7, free $3


def test_a_time_limit_before_any_lp_bound_gives_the_capacity_free_bound(
        monkeypatch: pytest.MonkeyPatch) -> None:
    model = build(_one_gpu(), THREE_ON_ONE_GPU, horizon_h=2.0)
    monkeypatch.setattr(bound, "linprog", lambda *a, **k: _timed_out())
    monkeypatch.setattr(bound, "milp", lambda *a, **k: _timed_out())
    b = solve(model, view="used", time_limit_s=5)
    assert b.usd == pytest.approx(3 * ONPREM_USD) and b.gap is None
    assert b.status == "time limit before the first LP bound: capacity-free bound"


def test_a_time_limit_with_a_dual_bound_gives_it_and_the_proved_gap(
        monkeypatch: pytest.MonkeyPatch) -> None:
    model = build(_one_gpu(), THREE_ON_ONE_GPU, horizon_h=2.0)
    monkeypatch.setattr(bound, "linprog", lambda *a, **k: _timed_out())
    plan = np.zeros(model.variables)
    monkeypatch.setattr(bound, "milp", lambda *a, **k: _timed_out(plan, 8.0, 6.0))
    b = solve(model, view="used", time_limit_s=5)
    assert b.usd == pytest.approx(6.0) and b.gap == pytest.approx(0.25)
    assert b.status == "time limit: dual bound, gap 25.0%"


def test_a_time_limit_in_the_milp_keeps_the_lp_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    model = build(_one_gpu(), THREE_ON_ONE_GPU, horizon_h=2.0)
    monkeypatch.setattr(bound, "milp", lambda *a, **k: _timed_out())
    b = solve(model, view="used", time_limit_s=5)  # the LP relaxation is exact here
    assert b.usd == pytest.approx(2 * ONPREM_USD + CLOUD_USD)
    assert b.status == "time limit: LP bound, no plan yet" and b.gap is None


def test_a_short_time_limit_on_a_hard_model_still_bounds() -> None:
    rng = random.Random(3)
    sites = [onprem(f"dc{k}", {"L4": (4, ONPREM_USD)}) for k in range(3)] + [
        cloud(f"r{k}", {"L4": [("l4.x1", 1, CLOUD_USD + k, 1.0)]}, quota=16,
              provisioning_minutes=6, spot_rate=0.2) for k in range(3)]
    rule = {**JOBS, "burst": {"allowed": True, "when": "always", "spot": "always"}}
    e = engine(sites, policy([rule]))
    shapes = sorted((rng.uniform(0, 50), rng.randint(1, 4), rng.uniform(0.2, 6))
                    for _ in range(1000))
    model = build(e, _jobs(*shapes), horizon_h=80.0)
    for limit in (0.01, 0.5):
        b = solve(model, view="used", time_limit_s=limit)
        assert b.usd is not None and b.usd >= model.free_usd["used"] - 1e-6
        assert b.status == "optimal" or b.status.startswith("time limit"), b.status


# -- random small instances: the bound is below every feasible schedule ----------------------


class RandomPlacer:
    """A valid, otherwise arbitrary policy: each workload rejected, queued on-prem or sent to
    the cloud (where its quota has room), at random among the candidates any policy may use."""

    name = "random"

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def decide(self, engine: Engine, sw: SimWorkload) -> Pick | None:
        ctx = engine.context(sw.workload)
        ok = any_policy(ctx) & (~ctx.is_cloud | (ctx.free_gpus >= ctx.gpus_needed))
        idx = np.flatnonzero(ok)
        if not len(idx) or self.rng.random() < 0.15:
            return None
        pos = int(self.rng.choice(idx.tolist()))
        return Pick.of(ctx, pos, "burst" if ctx.is_cloud[pos] else "place")


def _ordered_onprem(e: Engine, wls: list[SimWorkload], rng: random.Random) -> list[Run]:
    """A schedule no replay makes: jobs in a random order, each on a random on-prem candidate
    (or unmet), started at the earliest time its GPUs are free for its whole run after its
    data has moved, plus a random idle wait. Services are left unmet."""
    runs = [Run(sw.index, arrival_h=sw.arrival_h) for sw in wls]
    busy: dict[int, list[tuple[float, float, int]]] = {}  # group: (start, end, GPUs)
    for n in rng.sample(range(len(wls)), len(wls)):
        sw = wls[n]
        if sw.workload.spec.is_service:
            continue
        ctx = e.context(sw.workload)
        idx = np.flatnonzero(any_policy(ctx) & ~ctx.is_cloud)
        if not len(idx) or rng.random() < 0.1:
            continue
        pos = int(rng.choice(idx.tolist()))
        g, need, d = int(ctx.group[pos]), ctx.gpus_needed, float(ctx.hours)
        cap = int(e.ci.group_capacity[g])
        placed = busy.setdefault(g, [])
        ready = sw.arrival_h + float(ctx.transfer_hours[pos]) + rng.choice([0.0, 0.0, 0.7])
        starts = sorted({ready, *(end for _, end, _ in placed if end > ready)})
        for s in starts:
            points = [s, *(a for a, _, _ in placed if s < a < s + d)]
            if all(need + sum(k for a, b, k in placed if a <= t < b) <= cap for t in points):
                break
        placed.append((s, s + d, need))
        r = runs[n]
        r.site, r.group, r.kind, r.gpus = int(ctx.site[pos]), g, ONPREM, need
        r.start_h, r.end_h, r.billed_h = s, s + d, d
        r.gpu_usd = float(ctx.usd_per_hour[pos]) * d
        r.egress_usd, r.egress_gb = float(ctx.egress_usd[pos]), float(ctx.egress_gb[pos])
    return runs


@st.composite
def instances(draw: st.DrawFn, jobs: int = 8, services: int = 2
              ) -> tuple[Engine, list[SimWorkload], int]:
    """1-2 on-prem sites (1-4 L4 each), 1-2 cloud regions, 2-`jobs` jobs (some with deadlines,
    some reading a dataset held at dc0) and up to `services` service windows."""
    sites: list[Site] = []
    n_onprem = draw(st.integers(1, 2))
    for k in range(n_onprem):
        sites.append(onprem(f"dc{k}", {"L4": (draw(st.integers(1, 4)),
                                              draw(st.sampled_from([0.5, 1.0, 2.0])))},
                            lat=50.0 + 10 * k, lon=8.0, wan_gbps=1.0))
    for k in range(draw(st.integers(1, 2))):
        spot = draw(st.sampled_from([None, 0.8]))
        sites.append(cloud(f"r{k}", {"L4": [("l4.x1", 1, draw(st.sampled_from([1.5, 3.0, 6.0])),
                                             spot)]},
                           lat=45.0, lon=5.0 + 30 * k, quota=draw(st.integers(1, 6)),
                           provisioning_minutes=draw(st.sampled_from([0, 6, 30])),
                           spot_rate=draw(st.sampled_from([0.0, 0.5]))))
    rule = {**JOBS, "max_wait_hours": draw(st.sampled_from([0.0, 0.25, 5.0])),
            "burst": {"allowed": draw(st.booleans()),
                      "when": draw(st.sampled_from(["onprem_unavailable", "always"])),
                      "spot": draw(st.sampled_from(["never", "always"]))}}
    lake = dataset("lake", draw(st.sampled_from([50.0, 900.0])), ["dc0"])
    e = engine(sites, policy([rule, SERVICES]), datasets=[lake],
               clients=[client("users", 50.0, 8.0)])
    shapes = []
    for _ in range(draw(st.integers(2, jobs))):
        at = draw(st.integers(0, 12)) / 4
        hours = draw(st.integers(1, 12)) / 4
        gpus = draw(st.integers(1, 4))
        deadline = draw(st.sampled_from([None, hours * 1.5, hours + 2.0]))
        reads = draw(st.booleans())
        shapes.append((at, job("j", gpu="L4", count=gpus, hours=hours, deadline=deadline,
                               datasets=[{"name": "lake"}] if reads else [])))
    for k in range(draw(st.integers(0, services))):
        at = draw(st.integers(0, 8)) / 4
        spec = service(f"svc{k}", replicas=draw(st.integers(1, 2)),
                       slo_ms=draw(st.sampled_from([30.0, 200.0])), service_ms=20).model_dump()
        spec["spec"]["duration_hours"] = draw(st.sampled_from([0.5, 1.0]))
        shapes.append((at, Workload.model_validate(spec)))
    shapes.sort(key=lambda s: s[0])
    wls = []
    for i, (at, wl) in enumerate(shapes):
        data = wl.model_dump()
        data["metadata"]["name"] = f"{data['metadata']['name']}{i}-w{i}"
        wls.append(SimWorkload(i, at, Workload.model_validate(data)))
    return e, wls, draw(st.integers(0, 3))


def _never_above_a_schedule(inst: tuple[Engine, list[SimWorkload], int]) -> None:
    e, wls, seed = inst
    schedules: list[tuple[str, list[Run]]] = [
        (d.name, Replay(e, d, seed=seed).run(wls)) for d in deciders(["all"])]
    schedules += [(f"random {k}", Replay(e, RandomPlacer(seed * 10 + k), seed=seed).run(wls))
                  for k in range(3)]
    rng = random.Random(seed)
    schedules += [(f"ordered {k}", _ordered_onprem(e, wls, rng)) for k in range(3)]
    span = max(horizon(runs) for _, runs in schedules)  # as run.py: the latest end of all
    model = build(e, wls, horizon_h=span, seed=seed)
    for view in VIEWS:
        b = solve(model, view=view, time_limit_s=10)
        _check(b, model, view)
        for name, runs in schedules:
            cost = metrics(runs, wls, e, span)[f"{view}_usd"]
            assert b.usd is not None and b.usd <= cost + TOL + 1e-6 * cost, (view, name, b)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_the_bound_is_never_above_any_feasible_schedule(
        inst: tuple[Engine, list[SimWorkload], int]) -> None:
    _never_above_a_schedule(inst)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances(jobs=16, services=4))
def test_nor_under_load_where_capacity_binds(inst: tuple[Engine, list[SimWorkload], int]
                                              ) -> None:
    _never_above_a_schedule(inst)


def _check(b: Bound, model: Model, view: str) -> None:
    assert b.usd is not None
    assert b.usd >= model.free_usd[view] - 1e-6  # at least the capacity-free bound
    assert b.status in ("optimal", bound.NO_CANDIDATE) and b.workloads == model.workloads
