"""The engine's batch path against Engine.decide: the same choice and numbers, bit for bit, on
randomized workloads, capacity states, release schedules and team spend, under policies that
reach every branch (burst modes, spot modes, budgets, scales); and the same replay."""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter
from dataclasses import astuple, replace
from typing import Any

import numpy as np
import pytest

from bench.engine import data_and_clients
from placement.engine import Engine
from placement.engine.batch import BatchEngine, Pick, supports
from placement.engine.compiled import CapacityState, ReleaseSchedule
from placement.engine.engine import shape_key
from placement.engine.plugins.registry import default_filters
from placement.errors import UnknownReferenceError
from placement.model import Inventory, Policy, Reservation, Workload
from placement.policy.catalog import load_offers
from placement.policy.loader import Bundle
from placement.signals import Observed
from placement.simulate import replay as replay_mod
from placement.simulate.baselines import EngineDecider
from placement.simulate.replay import Replay, Run
from placement.simulate.synth import synthesize
from placement.simulate.traces import read

from .conftest import SHARED_DATA
from .factories import cloud, dataset, onprem
from .factories import engine as make_engine

GPUS = ["L4", "A100", "A100-80GB", "H100"]


def _catalog_world(seed: int, n_sites: int = 40) -> Inventory:
    """Sites with GPU offers and prices from the real catalogs; datasets and clients drawn."""
    rng = random.Random(seed)
    offers: dict[str, list[Any]] = {g: [] for g in GPUS}
    for o in load_offers(SHARED_DATA):
        if o.gpu in offers:
            offers[o.gpu].append(o)
    sites = []
    for i in range(n_sites):
        lat, lon = rng.uniform(-40, 60), rng.uniform(-125, 145)
        if rng.random() < 0.3:
            sites.append(onprem(f"dc{i}", {g: (rng.choice([8, 16, 32]), rng.uniform(0.5, 4))
                                           for g in rng.sample(GPUS, k=2)}, lat=lat, lon=lon,
                                wan_gbps=rng.choice([10, 40])))
        else:
            gpus = {g: [(o.instance_type, o.gpus, o.on_demand, o.spot)
                        for o in rng.sample(offers[g], k=min(2, len(offers[g])))]
                    for g in rng.sample(GPUS, k=3)}
            sites.append(cloud(f"r{i}", gpus, lat=lat, lon=lon, quota=rng.choice([8, 32, 128]),
                               egress=rng.choice([0.09, 0.12]),
                               provisioning_minutes=rng.choice([5, 15, 40]),
                               spot_rate=rng.choice([0.0, 0.05, 0.3])))
    datasets, clients = data_and_clients(rng, [s.name for s in sites], 4)
    return Inventory(sites=sites, datasets=datasets, client_locations=clients)


def _policy(when: str, spot: str, **spec: Any) -> Policy:
    return Policy.model_validate({"metadata": {"name": "p"}, "spec": {"rules": [
        {"name": "svc", "match": {"kinds": ["inference", "rag"]},
         "weights": {"latency": 5, "cost": 2, "wait": 1, "data_gravity": 1}, "max_wait_hours": 0.5,
         "burst": {"allowed": True, "when": when, "max_usd_per_hour": 60}},
        {"name": "jobs", "match": {"kinds": ["training", "finetune"]},
         "weights": {"cost": 4, "data_gravity": 2, "wait": 1}, "max_wait_hours": 2,
         "burst": {"allowed": True, "spot": spot, "when": when, "max_spot_interruptions": 2}},
    ], **spec}})


POLICIES = [
    ("always, spot always", _policy("always", "always")),
    ("onprem_unavailable, spot when the deadline allows",
     _policy("onprem_unavailable", "when_deadline_allows")),
    ("near data, spot when the deadline allows, team budget, flat scales",
     _policy("onprem_unavailable_or_near_data", "when_deadline_allows",
             team_budgets={"u": 2500},
             scales={"cost_usd": 5, "wait_hours": 0, "data_gravity_hours": 0, "latency_ms": 3})),
    ("near data, no spot, batch uses defaults (no burst)",
     _policy("onprem_unavailable_or_near_data", "never")),
]


def _workload(rng: random.Random, i: int, datasets: list[str], clients: list[str],
              gpus: list[str]) -> Workload:
    kind = rng.choice(["training", "batch", "inference", "rag", "finetune"])
    spec: dict[str, Any] = {"kind": kind, "team": rng.choice(["t", "u"]),
                            "gpu": {"types": rng.sample(gpus, k=rng.randint(1, 2)),
                                    "count": rng.choice([1, 2, 4, 8, 16])}}
    if kind in ("inference", "rag"):
        spec["replicas"] = rng.choice([1, 2, 3])
        spec["latency"] = {"p99_slo_ms": rng.choice([80, 150, 400]),
                           "service_time_p99_ms": rng.choice([10, 30]),
                           "clients": [{"location": c}
                                       for c in rng.sample(clients, k=rng.randint(1, 2))]}
        spec["requests_per_s"] = rng.choice([0, 10, 200])
        if kind == "rag":
            spec["datasets"] = [{"name": rng.choice(datasets), "access": "lookup",
                                 "lookups_per_request": 3, "kb_per_lookup": 16}]
        if rng.random() < 0.3:
            spec["duration_hours"] = rng.uniform(0.5, 10)
    else:
        spec["duration_hours"] = rng.choice([rng.uniform(0.05, 100), 1.0])
        if rng.random() < 0.5:
            spec["deadline_hours"] = spec["duration_hours"] * rng.uniform(0.9, 4)
        if rng.random() < 0.6:
            spec["datasets"] = [{"name": rng.choice(datasets)}]
        spec["checkpoint_minutes"] = rng.choice([10, 60])
        spec["interruptions"] = rng.choice([0, 0, 1, 3])
    if rng.random() < 0.2:
        spec["budget_usd"] = rng.uniform(10, 5000)
    return Workload.model_validate({"metadata": {"name": f"w{i}"}, "spec": spec})


def _state(rng: random.Random, engine: Engine) -> CapacityState:
    """Random GPUs held per group (some full), with release times (some never)."""
    ci = engine.ci
    reserved = np.array([c if rng.random() < 0.3 else rng.randint(0, int(c))
                         for c in ci.group_capacity], dtype=np.int64)
    rows = []
    for g in np.flatnonzero(~ci.is_cloud[ci.group_site]).tolist():
        left = int(reserved[g])
        while left > 0:
            k = rng.randint(1, left)
            left -= k
            rows.append((ci.site_names[int(ci.group_site[g])],
                         ci.gpu_names[int(ci.group_gpu[g])], k,
                         None if rng.random() < 0.2 else rng.uniform(0, 5)))
    return CapacityState(reserved, ReleaseSchedule(ci, rows))


def _with_bids(rng: random.Random, engine: Engine, state: CapacityState) -> CapacityState:
    """`state` with random bid prices on the on-prem groups (some 0), half the time."""
    if rng.random() < 0.5:
        return state
    ci = engine.ci
    price = np.array([0.0 if cloud or rng.random() < 0.3 else rng.uniform(0, 6)
                      for cloud in ci.is_cloud[ci.group_site].tolist()])
    return replace(state, bid_price=price, bid_note="estimated: test bid prices")


def _same(a: Pick | None, b: Pick | None) -> bool:
    if a is None or b is None:
        return a is b
    return all(x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
               for x, y in zip(astuple(a), astuple(b), strict=True))


def _compare(engine: Engine, rng: random.Random, states: int, per_state: int,
             datasets: list[str], clients: list[str]) -> Counter[str]:
    batch = BatchEngine(engine)
    gpus = list(engine.ci.gpu_index)
    actions: Counter[str] = Counter()
    for _ in range(states):
        view = engine.with_capacity(_with_bids(rng, engine, _state(rng, engine))).with_team_spend(
            {"u": rng.uniform(0, 3000), "t": rng.uniform(0, 3000)})
        for i in range(per_state):
            wl = _workload(rng, i, datasets, clients, gpus)
            out = view.decide(wl)
            want = None if out.chosen is None else Pick.of(out.ctx, out.chosen, out.action)
            got = batch.decide(view, wl)
            assert _same(want, got), (wl.spec, want, got)
            actions[out.action] += 1
    return actions


@pytest.mark.parametrize("pol", [p for _, p in POLICIES], ids=[n for n, _ in POLICIES])
def test_the_batch_path_picks_what_decide_picks_on_catalog_sites(pol: Policy) -> None:
    engine = Engine(_catalog_world(3), pol, "v1")
    seen = _compare(engine, random.Random(5), states=25, per_state=12,
                    datasets=[f"ds{i}" for i in range(4)], clients=[f"c{i}" for i in range(4)])
    assert set(seen) == {"place", "queue", "burst", "reject"}


def test_the_batch_path_picks_what_decide_picks_on_the_example_bundle(
        example_engine: Engine, bundle: Bundle) -> None:
    # Boundaries, require/forbid rules, classifications and plant clients behind OT networks
    seen = _compare(example_engine, random.Random(11), states=25, per_state=12,
                    datasets=[d.name for d in bundle.inventory.datasets],
                    clients=[c.name for c in bundle.inventory.client_locations])
    assert {"place", "queue", "burst", "reject"} <= set(seen)


def test_the_batch_path_refuses_live_signals(example_engine: Engine) -> None:
    n = len(example_engine.ci.group_site)
    observed = Observed(free_gpus=np.full(n, np.nan), service_ms={})
    assert not supports(example_engine.with_observed(observed))  # signals: use decide
    with pytest.raises(ValueError, match="live signals"):
        BatchEngine(example_engine.with_observed(observed))
    assert supports(example_engine)


@pytest.mark.parametrize("drop", ["burst", "wait", "capacity", "budget"])
def test_the_kernel_follows_the_engine_s_plugin_list(example_engine: Engine, bundle: Bundle,
                                                     drop: str) -> None:
    """The kernel is generated from the engine's plugins: without one of them (the burst
    gate, or the wait filter and with it the queue fallback) it still picks what decide
    picks."""
    custom = Engine(example_engine.inventory, example_engine.policy, "v",
                    filters=[p for p in default_filters() if drop != p.NAME])
    assert supports(custom)
    seen = _compare(custom, random.Random(13), states=10, per_state=12,
                    datasets=[d.name for d in bundle.inventory.datasets],
                    clients=[c.name for c in bundle.inventory.client_locations])
    assert len(seen) >= 2


def test_unknown_references_fail_as_in_decide(example_engine: Engine) -> None:
    wl = Workload.model_validate({"metadata": {"name": "x"}, "spec": {
        "kind": "training", "team": "t", "gpu": {"types": ["A100"], "count": 1},
        "duration_hours": 1, "datasets": [{"name": "no-such-data"}]}})
    with pytest.raises(UnknownReferenceError, match="no-such-data"):
        example_engine.decide(wl)
    with pytest.raises(UnknownReferenceError, match="no-such-data"):
        BatchEngine(example_engine).decide(example_engine, wl)


class _Checked(replay_mod._Schedule):
    """The replay's release curves, each answer checked against a walk from the current time."""

    calls = 0

    def wait(self, groups: np.ndarray, deficit: np.ndarray) -> np.ndarray:
        got = super().wait(groups, deficit)
        r = self.replay
        for i, g in enumerate(groups.tolist()):
            want = int(r.engine.ci.group_capacity[g] - r.reserved[g] + deficit[i])
            assert got[i] == _walk(r, g, want)
            _Checked.calls += 1
        return got


def _walk(r: Replay, g: int, want: int) -> float:
    """The wait for `want` GPUs of group g, walked from the current time: the queue starts in
    order as running work ends, then ends are counted until `want` are free."""
    free = int(r.engine.ci.group_capacity[g] - r.reserved[g])
    ends = list(r.running[g].values())
    heapq.heapify(ends)
    t = r.now
    for q in r.queues[g]:
        need = q.pick.gpus
        while free < need and ends:
            end, n = heapq.heappop(ends)
            t, free = max(t, end), free + n
        free -= need
        heapq.heappush(ends, (max(t, q.ready_h) + q.pick.run_hours, need))
    while free < want and ends:
        end, n = heapq.heappop(ends)
        t, free = max(t, end), free + n
    return t - r.now if free >= want else np.inf


def _runs(engine: Engine, decider: EngineDecider, workloads: list[Any],
          monkeypatch: pytest.MonkeyPatch) -> list[Run]:
    monkeypatch.setattr(replay_mod, "_Schedule", _Checked)
    return Replay(engine, decider, seed=3).run(workloads)


@pytest.mark.parametrize("trace", ["trace_philly_jobs.csv", "trace_alibaba_gpu2023_pods.csv"])
def test_a_replay_through_the_batch_path_is_the_replay_through_decide(
        example_engine: Engine, trace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    t = read(SHARED_DATA / trace)
    t.records = t.records[:600]
    workloads = synthesize(t, example_engine.inventory, seed=3, load=1.5).workloads
    fast = _runs(example_engine, EngineDecider(), workloads, monkeypatch)
    slow_decider = EngineDecider()
    slow_decider._batch[id(example_engine.ci)] = None  # Engine.decide for every workload
    slow = _runs(example_engine, slow_decider, workloads, monkeypatch)
    assert [astuple_run(r) for r in fast] == [astuple_run(r) for r in slow]
    assert sum(r.start_h > r.arrival_h for r in fast) > 20  # queues formed: waits were read
    assert _Checked.calls > 100


def astuple_run(r: Run) -> tuple[Any, ...]:
    return tuple(-1.0 if isinstance(v, float) and math.isnan(v) else v
                 for v in (getattr(r, f) for f in Run.__slots__))


def _job(hours: float, deadline: float | None = None, team: str = "t",
         datasets: list[dict[str, Any]] | None = None) -> Workload:
    return Workload.model_validate({"metadata": {"name": "j"}, "spec": {
        "kind": "training", "team": team, "gpu": {"types": ["A100"], "count": 8},
        "duration_hours": hours, "deadline_hours": deadline, "checkpoint_minutes": 60,
        "datasets": datasets or []}})


def _edge_engine(burst: dict[str, Any], dc_release_h: float | None, dc_free: bool = False,
                 budgets: dict[str, float] | None = None, od_usd_h: float = 32.0) -> Engine:
    sites = [onprem("dc", {"A100": (8, 1.0)}),
             cloud("r1", {"A100": [("p4d", 8, od_usd_h, 10.0)]}, egress=0.5, spot_rate=0.5,
                   provisioning_minutes=15)]
    pol = Policy.model_validate({"metadata": {"name": "p"}, "spec": {
        "team_budgets": budgets or {}, "rules": [
            {"name": "jobs", "match": {"kinds": ["training"]}, "weights": {"cost": 1},
             "max_wait_hours": 2, "burst": burst}]}})
    held = [] if dc_free else [Reservation(site="dc", gpu_type="A100", count=8,
                                           remaining_hours=dc_release_h)]
    return make_engine(sites, pol, [dataset("d", 100, ["r1"])], reservations=held)


SPOT = {"allowed": True, "when": "always", "spot": "when_deadline_allows",
        "spot_slack_factor": 2, "restart_overhead_minutes": 10}
# Spot at r1: 0.5 interruptions/h x (60/120 + 10/60) h lost = 1/3 more run time, so a 10 h job
# runs 13.33 h and needs 2 x 3.33 h of slack: latest finish 0.25 + 10 + 6.67 = 16.92 h.
EDGES = [
    ("spot when the deadline leaves room for restarts",
     _edge_engine(SPOT, None), _job(10, deadline=17), {}, ("burst", "r1", 2)),
    ("on-demand when it does not",
     _edge_engine(SPOT, None), _job(10, deadline=16), {}, ("burst", "r1", 1)),
    ("a cloud region exactly as dear as moving the data on-prem stays gated",  # $50 = $50
     _edge_engine({"allowed": True, "when": "onprem_unavailable_or_near_data"}, None,
                  dc_free=True, od_usd_h=50.0),
     _job(1, datasets=[{"name": "d"}]), {}, ("place", "dc", 0)),
    ("nothing starts within max wait: queue where it starts soonest",
     _edge_engine({"allowed": False}, 3.0), _job(1), {}, ("queue", "dc", 0)),
    ("the team's burst budget is spent: rejected",
     _edge_engine({"allowed": True}, None, budgets={"t": 400}), _job(10), {"t": 100.0},
     ("reject", None, None)),
    ("the team's burst budget has room: burst",
     _edge_engine({"allowed": True}, None, budgets={"t": 400}), _job(10), {"t": 50.0},
     ("burst", "r1", 1)),
]


@pytest.mark.parametrize(("engine", "wl", "spend", "expect"), [e[1:] for e in EDGES],
                         ids=[e[0] for e in EDGES])
def test_edge_cases_decide_the_same_both_ways(engine: Engine, wl: Workload,
                                              spend: dict[str, float],
                                              expect: tuple[str, str | None, int | None]) -> None:
    view = engine.with_team_spend(spend)
    out = view.decide(wl)
    site = None if out.chosen is None else engine.ci.site_names[int(out.ctx.site[out.chosen])]
    kind = None if out.chosen is None else int(out.ctx.kind[out.chosen])
    assert (out.action, site, kind) == expect
    want = None if out.chosen is None else Pick.of(out.ctx, out.chosen, out.action)
    assert _same(BatchEngine(engine).decide(view, wl), want)


def test_the_shape_memo_never_changes_a_decision_or_its_explanation(
        example_engine: Engine, bundle: Bundle) -> None:
    """A warm engine (memo hits: same shapes, other durations, deadlines and capacity) explains
    every decision exactly as a cold one does."""
    rng = random.Random(21)
    datasets = [d.name for d in bundle.inventory.datasets]
    clients = [c.name for c in bundle.inventory.client_locations]
    gpus = list(example_engine.ci.gpu_index)
    shapes = [_workload(rng, i, datasets, clients, gpus) for i in range(12)]
    warm = Engine(example_engine.inventory, example_engine.policy, "v")
    for _ in range(6):
        state = _state(rng, warm)
        for base in shapes:
            spec = base.spec.model_copy(update={
                "duration_hours": rng.uniform(0.1, 50),
                "deadline_hours": None if base.spec.is_service else rng.uniform(1, 80)})
            wl = base.model_copy(update={"spec": spec})
            cold = Engine(example_engine.inventory, example_engine.policy, "v")
            got = warm.with_capacity(state).explain_dict(warm.with_capacity(state).decide(wl))
            want = cold.with_capacity(state).explain_dict(cold.with_capacity(state).decide(wl))
            assert got == want
    assert len(warm._shapes) == len({shape_key(w, warm.reads) for w in shapes})


@pytest.mark.parametrize(("free", "ends", "queue", "t0", "ok", "times", "frees"), [
    # 4 free, running ends (h, GPUs), queued (GPUs, data ready h, run h)
    (0, [(2.0, 4), (3.0, 4)], [(4, 0.0, 5.0)], -np.inf, True, [2.0, 3.0, 7.0], [0, 4, 8]),
    (2, [(1.0, 2)], [], -np.inf, True, [-np.inf, 1.0], [2, 4]),
    # the head fits at once (it would start now): only a curve from now holds
    (4, [(1.0, 2)], [(4, 0.5, 1.0)], -np.inf, False, [], []),
    (4, [(1.0, 2)], [(4, 0.5, 1.0)], 0.25, True, [0.25, 1.0, 1.5], [0, 2, 6]),
], ids=["the queue waits for the first end", "no queue", "head fits: needs the time",
        "head fits: from now"])
def test_release_curves(free: int, ends: list[tuple[float, int]],
                        queue: list[tuple[int, float, float]], t0: float, ok: bool,
                        times: list[float], frees: list[int]) -> None:
    e = np.array(ends, dtype=float).reshape(-1, 2)
    q = np.array(queue, dtype=float).reshape(-1, 3)
    got_t, got_f, got_ok = replay_mod._curve_py(
        free, e[:, 0], e[:, 1].astype(np.int64), q[:, 0].astype(np.int64), q[:, 1], q[:, 2],
        t0)
    assert (got_ok, got_t.tolist(), got_f.tolist()) == (ok, times, frees)
