"""The what-if simulator: small seeded cases whose outcomes are worked out here by hand from
the inputs (prices, GPUs, hours), the MILP bound, synthesis rules and the CLI end to end."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from placement.cli.main import app
from placement.engine import Engine
from placement.engine.batch import Pick
from placement.engine.compiled import ON_DEMAND, ONPREM, SPOT
from placement.model import Inventory, Workload
from placement.simulate.baselines import deciders
from placement.simulate.replay import Decider, Replay, Run, spot_run
from placement.simulate.results import metrics, unmet_usd
from placement.simulate.synth import SimWorkload, synthesize
from placement.simulate.traces import Job, Request, Trace

from .conftest import philly_head
from .factories import client, cloud, dataset, engine, job, onprem, policy, service

ONPREM_PRICE, OD_PRICE, SPOT_PRICE = 1.0, 2.0, 0.5  # USD per GPU-hour
PROVISION_MIN = 6

JOBS_RULE = {"name": "jobs", "match": {"kinds": ["training", "batch"]},
             "weights": {"cost": 1, "wait": 1, "data_gravity": 1, "latency": 0},
             "max_wait_hours": 0.25,
             "burst": {"allowed": True, "when": "onprem_unavailable", "spot": "never"}}


def _engine(rules: list[dict[str, object]] | None = None) -> Engine:
    sites = [onprem("dc", {"L4": (4, ONPREM_PRICE)}),
             cloud("region", {"L4": [("l4.x1", 1, OD_PRICE, SPOT_PRICE)]}, quota=8,
                   provisioning_minutes=PROVISION_MIN, spot_rate=0.0)]
    return engine(sites, policy(rules or [JOBS_RULE]))


def _jobs(*shapes: tuple[float, int, float]) -> list[SimWorkload]:
    """(arrival h, GPUs, hours) -> L4 training jobs."""
    return [SimWorkload(i, at, job(f"j{i}", gpu="L4", count=n, hours=h))
            for i, (at, n, h) in enumerate(shapes)]


def _replay(name: str, wls: list[SimWorkload],
            rules: list[dict[str, object]] | None = None) -> tuple[list[Run], dict[str, Any]]:
    e = _engine(rules)
    runs = Replay(e, _decider(name)).run(wls)
    return runs, metrics(runs, wls, e)


PROV_H = PROVISION_MIN / 60
# Job A takes all 4 on-prem GPUs for 2 h at t=0; job B (2 GPUs, 1 h) arrives at t=1.
TWO_JOBS = ((0.0, 4, 2.0), (1.0, 2, 1.0))
ON_PREM_THEN_OD = 4 * ONPREM_PRICE * 2 + 2 * OD_PRICE * (PROV_H + 1)
CASES = [
    # policy, kinds chosen, total USD worked out from the prices. B cannot start on-prem
    # within the rule's 0.25 h max wait (A holds the GPUs until t=2) and spot is not allowed.
    ("engine", [ONPREM, ON_DEMAND], ON_PREM_THEN_OD),
    ("overflow", [ONPREM, ON_DEMAND], ON_PREM_THEN_OD),
    ("price-only", [ONPREM, ON_DEMAND], ON_PREM_THEN_OD),
    ("nearest", [ONPREM, ON_DEMAND], ON_PREM_THEN_OD),  # jobs go as overflow
    ("overflow-on-demand-only", [ONPREM, ON_DEMAND], ON_PREM_THEN_OD),
    ("all-cloud-on-demand", [ON_DEMAND, ON_DEMAND],
     4 * OD_PRICE * (PROV_H + 2) + 2 * OD_PRICE * (PROV_H + 1)),
]


@pytest.mark.parametrize(("name", "kinds", "usd"), CASES, ids=[c[0] for c in CASES])
def test_each_policy_places_and_bills_as_worked_out_by_hand(
        name: str, kinds: list[int], usd: float) -> None:
    runs, m = _replay(name, _jobs(*TWO_JOBS))
    assert [r.kind for r in runs] == kinds
    assert m["used_usd"] == pytest.approx(usd, abs=0.01)
    assert m["avoidable_usd"] == pytest.approx(usd - m["onprem_amortized_usd"], abs=0.01)
    assert m["unmet_gpu_hours"] == 0 and m["unmet_usd"] == 0
    cloud_h = sum(r.gpus * r.billed_h for r in runs if r.kind != ONPREM)
    assert m["burst_gpu_hours"] == pytest.approx(cloud_h, abs=0.1)


def test_a_job_that_cannot_burst_queues_fifo_and_its_wait_is_measured() -> None:
    onprem_only = {**JOBS_RULE, "max_wait_hours": 10, "burst": {"allowed": False}}
    wls = _jobs((0.0, 4, 2.0), (0.5, 4, 1.0), (0.75, 2, 1.0))
    runs, m = _replay("engine", wls, [onprem_only])
    # B waits for A (t=2); C queues behind B and starts when B ends (t=3).
    assert [r.start_h for r in runs] == pytest.approx([0.0, 2.0, 3.0])
    waits = sorted([0.0, 1.5, 2.25])
    assert m["job_wait_p50_h"] == pytest.approx(waits[1])
    assert m["onprem_amortized_usd"] == pytest.approx(ONPREM_PRICE * (8 + 4 + 2))
    assert m["utilization"]["dc"] == pytest.approx((8 + 4 + 2) / (4 * 4.0))


def test_the_engine_sees_the_queue_ahead_when_it_estimates_a_wait() -> None:
    onprem_only = {**JOBS_RULE, "max_wait_hours": 10, "burst": {"allowed": False}}
    wls = _jobs((0.0, 4, 2.0), (0.5, 4, 1.0), (0.75, 2, 1.0))
    seen: list[float] = []
    decider = deciders([])[0]
    e = _engine([onprem_only])

    class Spy:
        name = "spy"

        def decide(self, eng: Engine, sw: SimWorkload) -> Pick | None:
            pick = decider.decide(eng, sw)
            seen.append(pick.wait_hours if pick is not None else math.nan)
            return pick

    Replay(e, Spy()).run(wls)
    assert seen == pytest.approx([0.0, 1.5, 2.25])


@pytest.mark.parametrize(("name", "b_end"), [
    ("engine", -1.0),  # on-prem finishes b at 4.0 > 0.1 + 2.5 and cloud is not allowed
    ("overflow", 4.0),  # the rule forbids bursting: it waits on-prem and finishes late
    ("overflow-on-demand-only", 4.0),
], ids=["the engine rejects a job it cannot finish in time",
        "overflow queues it and misses the deadline", "so does the on-demand-only rule"])
def test_deadline_misses_count_late_and_rejected_jobs_and_both_are_charged(
        name: str, b_end: float) -> None:
    wls = [SimWorkload(0, 0.0, job("a", gpu="L4", count=4, hours=2.0, deadline=3.0)),
           SimWorkload(1, 0.1, job("b", gpu="L4", count=4, hours=2.0, deadline=2.5))]
    onprem_only = {**JOBS_RULE, "max_wait_hours": 10, "burst": {"allowed": False}}
    runs, m = _replay(name, wls, [onprem_only])
    assert m["deadline_misses"] == 1
    if b_end < 0:
        assert runs[1].site == -1
    else:
        assert runs[1].end_h == pytest.approx(b_end)
    # rejected or late, b's 8 GPU-hours are unmet work, charged at what the cloud would bill
    # for them on-demand from the request: 4 GPUs x (provisioning + 2 h); late, b also paid
    # for its on-prem run
    assert m["unmet_gpu_hours"] == pytest.approx(8.0)
    assert m["unmet_usd"] == pytest.approx(4 * OD_PRICE * (PROV_H + 2.0))
    assert m["avoidable_usd"] == pytest.approx(4 * OD_PRICE * (PROV_H + 2.0))
    assert m["used_usd"] == pytest.approx(m["onprem_amortized_usd"] + m["avoidable_usd"])


def test_spot_interruptions_are_seeded_per_workload_and_cost_run_time() -> None:
    a = spot_run(10.0, 0.5, 0.5, 10 / 60, seed=42)
    assert a == spot_run(10.0, 0.5, 0.5, 10 / 60, seed=42)
    assert a[1] > 0 and a[0] > 10.0
    assert a[0] <= 10.0 + a[1] * (0.5 + 10 / 60) + 1e-9
    assert spot_run(10.0, 0.0, 0.5, 1.0, seed=1) == (10.0, 0)


def _service_engine(sites: list[Any], when: str) -> Engine:
    return engine(sites, policy([{"name": "svc", "match": {"kinds": ["inference"]},
                                  "burst": {"allowed": True, "when": when}}]),
                  clients=[client("users", 50.1, 8.7)])


def _window(i: int, name: str, at: float, requests: int = 100) -> SimWorkload:
    """Window i of service `name`: 1 h, SLO 100 ms, 20 ms service time, users at Frankfurt."""
    spec = service(name, slo_ms=100, service_ms=20).model_dump()
    spec["spec"]["duration_hours"] = 1.0
    spec["metadata"]["name"] = f"{name}-w{i}"
    return SimWorkload(i, at, Workload.model_validate(spec), requests=requests)


def _decider(name: str) -> Decider:
    return next(d for d in deciders(["all"]) if d.name == name)


def test_service_slo_attainment_counts_requests_served_within_the_slo() -> None:
    sites = [onprem("near", {"L4": (1, 1.0)}, lat=50.0, lon=8.0),
             cloud("far", {"L4": [("l4.x1", 1, 2.0, None)]}, lat=-33.9, lon=151.2,
                   provisioning_minutes=0)]
    e = _service_engine(sites, "onprem_unavailable")
    wls = [_window(i, "s", 0.0, r) for i, r in enumerate((300, 100))]
    runs = Replay(e, _decider("overflow-on-demand-only")).run(wls)
    # the first window fits on-prem near the users; the second overflows to Sydney (no SLO)
    assert [sites[r.site].name for r in runs] == ["near", "far"]
    m = metrics(runs, wls, e)
    assert m["slo_attainment"] == pytest.approx(300 / 400)
    # the window outside its SLO is unmet work: its GPU-hour, charged at Sydney's on-demand $
    assert m["unmet_gpu_hours"] == pytest.approx(1.0)
    assert m["unmet_usd"] == pytest.approx(2.0)


def test_the_fleet_view_prices_owned_gpus_used_or_idle() -> None:
    e = _engine()
    wls = _jobs(*TWO_JOBS)
    runs, _ = _replay("engine", wls)
    m = metrics(runs, wls, e, horizon_h=10.0)
    fleet = 4 * ONPREM_PRICE * 10.0
    assert m["fleet_usd"] == pytest.approx(fleet + 2 * OD_PRICE * (PROV_H + 1), abs=0.01)
    assert m["onprem_idle_usd"] == pytest.approx(fleet - 4 * ONPREM_PRICE * 2, abs=0.01)
    assert m["utilization"]["dc"] == pytest.approx(8 / 40)


def _inventory() -> Inventory:
    e = _engine()
    return e.inventory


def test_load_scaling_sets_offered_gpu_hours_to_the_share_of_onprem_gpus() -> None:
    records = [Job(0.0, 3600.0, 2, 2), Job(7200.0, 7200.0, 1, 3), Job(36000.0, 1800.0, 4, 4)]
    trace = Trace(Path("t.csv"), "philly", "jobs", records)
    syn = synthesize(trace, _inventory(), seed=3, load=0.5)
    work = 2 * 1 + 1 * 2 + 4 * 0.5  # GPU-hours
    span_h = 10.0
    assert syn.time_scale == pytest.approx(work / (0.5 * 4) / span_h)
    assert [w.arrival_h for w in syn.workloads] == pytest.approx(
        [0.0, 2 * syn.time_scale, 10 * syn.time_scale])
    assert [w.workload.spec.gpu.count for w in syn.workloads] == [2, 1, 4]
    again = synthesize(trace, _inventory(), seed=3, load=0.5)
    assert [w.workload for w in again.workloads] == [w.workload for w in syn.workloads]


def test_a_shape_no_site_can_run_is_drawn_again() -> None:
    records = [Job(float(i), 3600.0, 1, i + 2) for i in range(20)]
    trace = Trace(Path("t.csv"), "philly", "jobs", records)
    only_a100 = lambda wl: False  # noqa: E731 - nothing is feasible: every draw is kept last
    syn = synthesize(trace, _inventory(), seed=1, feasible=only_a100)
    assert syn.notes["jobs no site can run (kept; every policy rejects them)"] == 20


@pytest.fixture()
def philly_excerpt(tmp_path: Path) -> Path:
    return philly_head(tmp_path, 300)


def test_simulate_cli_writes_summary_and_report(philly_excerpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["simulate", "--trace", str(philly_excerpt), "--out", str(out),
                                   "--config", "policies/examples", "--bound-time-s", "20"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["workloads"] == 300
    assert set(summary["policies"]) == {"engine", "overflow", "price-only", "nearest",
                                        "overflow-on-demand-only", "all-cloud-on-demand"}
    for m in summary["policies"].values():
        assert m["avoidable_usd"] == pytest.approx(
            m["cloud_gpu_usd"] + m["egress_usd"] + m["unmet_usd"], abs=0.05)
        assert m["used_usd"] == pytest.approx(
            m["onprem_amortized_usd"] + m["avoidable_usd"], abs=0.05)
        assert sum(m["placements"].values()) + m["rejected"] == 300
    for view in ("used", "avoidable", "fleet"):
        usd = summary["bound"][view]["usd"]
        assert usd is not None  # a bound for every policy compared, never nothing
        for m in summary["policies"].values():
            assert usd <= m[f"{view}_usd"] + 0.01
    assert summary["headline"][0].startswith("At equal work over 1 seed, engine's avoidable")
    report = (out / "report.html").read_text()
    assert html.escape(summary["headline"][0]) in report
    for png in ("avoidable_spend.png", "cost_over_time.png", "utilization.png",
                "placements.png", "slo_attainment.png"):
        assert png in report and (out / png).stat().st_size > 1000


@pytest.mark.parametrize(("args", "needle"), [
    (["--format", "nope"], "unknown format 'nope'"),
    (["--baselines", "random"], "unknown baseline(s) random"),
    (["--load", "-1"], "--load must be >= 0"),
], ids=["unknown format", "unknown baseline", "negative load"])
def test_simulate_cli_refuses_bad_input_clearly(philly_excerpt: Path, tmp_path: Path,
                                                args: list[str], needle: str) -> None:
    res = CliRunner().invoke(app, ["simulate", "--trace", str(philly_excerpt), "--out",
                                   str(tmp_path / "o"), "--no-bound", *args])
    assert res.exit_code == 1
    assert needle in res.output and "Traceback" not in res.output


def test_simulate_cli_says_which_rows_it_could_not_read(philly_excerpt: Path,
                                                        tmp_path: Path) -> None:
    lines = philly_excerpt.read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3].replace(",", ",x", 1)  # line 4: an unreadable duration
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["simulate", "--trace", str(bad), "--out", str(tmp_path / "o"),
                                   "--no-bound", "--baselines", "overflow"])
    assert res.exit_code == 0, res.output
    assert f"warning: {bad}:4:" in res.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["workloads"] == 299
    assert summary["inputs"]["trace_problem_lines"][0].startswith(f"{bad}:4:")

    only_header = tmp_path / "empty.csv"
    only_header.write_text(lines[0] + "\n" + lines[3].replace(",", ",x", 1) + "\n")
    res = CliRunner().invoke(app, ["simulate", "--trace", str(only_header), "--out",
                                   str(tmp_path / "o2"), "--no-bound"])
    assert res.exit_code == 1 and "gave no workloads (1 rows could not be read" in res.output


def test_simulate_cli_names_the_known_formats_for_an_unknown_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["simulate", "--trace", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert "known formats: philly" in res.output


def test_cloud_service_windows_pay_provisioning_only_when_they_start_cold() -> None:
    sites = [cloud("region", {"L4": [("l4.x1", 1, 2.0, None)]}, lat=50.0, lon=8.5,
                   provisioning_minutes=15)]
    e = _service_engine(sites, "always")
    # a at the trace start (already up), a again (same region: warm), b new at t=1 (cold),
    # a after a gap of 3 h (its nodes went with its last window: cold)
    wls = [_window(0, "a", 0.0), _window(1, "a", 1.0), _window(2, "b", 1.0),
           _window(3, "a", 5.0)]
    runs = Replay(e, _decider("engine")).run(wls)
    assert [r.start_h - r.arrival_h for r in runs] == pytest.approx([0.0, 0.0, 0.25, 0.25])
    assert metrics(runs, wls, e)["slo_attainment"] == pytest.approx(
        (100 + 100 + 75 + 75) / 400, abs=1e-5)


def _onprem_engine(gpus: int, datasets: list[Any] | None = None) -> Engine:
    rule = {**JOBS_RULE, "max_wait_hours": 100, "burst": {"allowed": False}}
    sites = [onprem("dc", {"L4": (gpus, ONPREM_PRICE)}, wan_gbps=10),
             onprem("lake", {"A100": (1, 1.0)}, wan_gbps=10)]
    return engine(sites, policy([rule]), datasets=datasets)


class _WaitSpy:
    """The engine, remembering the wait it expected for each workload it placed."""

    name = "spy"

    def __init__(self) -> None:
        self.expected: dict[int, float] = {}

    def decide(self, eng: Engine, sw: SimWorkload) -> Pick | None:
        pick = _decider("engine").decide(eng, sw)
        if pick is not None:
            self.expected[sw.index] = max(pick.wait_hours, pick.transfer_hours)
        return pick


WAITS = [
    # GPUs, jobs as (arrival h, GPUs, hours)
    ("two running, one queued ahead", 10,
     [(0.0, 6, 1.0), (0.0, 2, 3.0), (0.1, 4, 2.0), (0.2, 4, 1.0)]),
    ("a full-size job queued ahead, then a small one", 10,
     [(0.0, 8, 2.0), (0.0, 2, 1.0), (0.5, 10, 1.0), (0.6, 1, 1.0), (1.5, 4, 1.0)]),
    ("a queue three deep", 4, [(0.0, 4, 1.0), (0.1, 4, 1.0), (0.2, 4, 1.0), (0.3, 4, 1.0)]),
]


@pytest.mark.parametrize(("gpus", "shapes"), [w[1:] for w in WAITS], ids=[w[0] for w in WAITS])
def test_the_wait_the_engine_expects_is_the_wait_the_replay_gives(
        gpus: int, shapes: list[tuple[float, int, float]]) -> None:
    wls = _jobs(*shapes)
    spy = _WaitSpy()
    runs = Replay(_onprem_engine(gpus), spy).run(wls)
    assert all(r.site >= 0 for r in runs)
    for r in runs:
        assert r.start_h - r.arrival_h == pytest.approx(spy.expected[r.index]), r


def test_a_queued_job_moves_its_data_while_it_waits() -> None:
    # 4,500 GB over 10 Gbit/s: 1 h; the GPUs free up at 2 h, so it starts at 2 h, not 3 h
    e = _onprem_engine(4, [dataset("lake-data", 4500, ["lake"])])
    wls = [SimWorkload(0, 0.0, job("a", gpu="L4", count=4, hours=2.0)),
           SimWorkload(1, 0.0, job("b", gpu="L4", count=4, hours=1.0,
                                   datasets=[{"name": "lake-data"}]))]
    spy = _WaitSpy()
    runs = Replay(e, spy).run(wls)
    assert runs[1].start_h == pytest.approx(2.0)
    assert spy.expected[1] == pytest.approx(2.0)


def test_back_to_back_service_windows_never_hold_their_gpus_twice() -> None:
    sites = [cloud("region", {"L4": [("l4.x1", 1, 2.0, None)]}, lat=50.0, lon=8.5, quota=1,
                   provisioning_minutes=15)]
    e = _service_engine(sites, "always")
    width = 0.1
    wls = []
    for k in range(30):
        w = _window(k, "a", k * width)
        spec = w.workload.model_dump()
        spec["spec"]["duration_hours"] = width
        wls.append(SimWorkload(k, k * width, Workload.model_validate(spec), requests=10))
    runs = Replay(e, _decider("engine")).run(wls)
    assert all(r.site >= 0 for r in runs)
    assert sum(r.billed_h for r in runs) == pytest.approx(30 * width)  # warm from the start


def test_team_burst_budgets_run_out_in_the_replay() -> None:
    pol = policy([{**JOBS_RULE, "burst": {"allowed": True, "when": "always"}}])
    pol = pol.model_copy(update={"spec": pol.spec.model_copy(
        update={"team_budgets": {"research": 10.0}})})
    sites = [cloud("region", {"L4": [("l4.x1", 1, 2.0, None)]}, provisioning_minutes=0)]
    e = engine(sites, pol)
    wls = [SimWorkload(i, i * 0.01, job(f"j{i}", gpu="L4", count=1, hours=1.0))
           for i in range(10)]
    runs = Replay(e, _decider("engine")).run(wls)
    # $2 each: five fit in the $10 monthly budget, the rest have nowhere to go
    assert [r.site >= 0 for r in runs] == [True] * 5 + [False] * 5


def test_a_service_keeps_one_replica_through_windows_without_requests() -> None:
    inv = Inventory(sites=_engine().inventory.sites, client_locations=[client("users", 50, 8)])
    records = [Request(at, 100, 10, None, i + 2)
               for i, at in enumerate([0.0, 60.0, 3 * 900.0 + 5, 3 * 900.0 + 10])]
    trace = Trace(Path("r.csv"), "azure-llm", "requests", records)
    syn = synthesize(trace, inv, seed=0, window_h=0.25)
    by_service: dict[str, list[SimWorkload]] = {}
    for w in syn.workloads:
        by_service.setdefault(w.workload.name.rsplit("-w", 1)[0], []).append(w)
    assert sum(w.requests for w in syn.workloads) == 4
    assert any(w.requests == 0 for w in syn.workloads)  # a service spans windows 0 to 3
    for windows in by_service.values():
        starts = [round(w.arrival_h / 0.25) for w in windows]
        assert starts == list(range(starts[0], starts[-1] + 1))  # no gap: it never went cold
        for w in windows:
            if w.requests == 0:
                assert w.workload.spec.replicas == 1


@pytest.mark.parametrize(("size", "gpus", "instances"), [(1, 1, 1), (1, 4, 4), (4, 8, 2)])
def test_spot_risk_is_per_instance_hour_times_the_instances(size: int, gpus: int,
                                                            instances: int) -> None:
    sites = [cloud("region", {"L4": [(f"l4.x{size}", size, 1.0 * size, 0.3 * size)]},
                   quota=8, spot_rate=0.5)]
    e = engine(sites, policy([{**JOBS_RULE, "burst": {"allowed": True, "spot": "always"}}]))
    wl = job("j", gpu="L4", count=gpus, hours=10.0)
    ctx = e.context(wl)
    spot = int(next(i for i in range(ctx.n) if ctx.kind[i] == SPOT))
    assert ctx.billing.instances[ctx.rows[spot]] == instances
    assert ctx.spot_rate[spot] == pytest.approx(0.5 * instances)
    lost_h = wl.spec.checkpoint_minutes / 120 + 10 / 60  # half a checkpoint + the restart
    assert ctx.run_hours[spot] == pytest.approx(10.0 * (1 + 0.5 * instances * lost_h))
    pick = Pick.of(ctx, spot, "burst")
    assert pick.spot_rate == pytest.approx(0.5 * instances)  # what the replay draws from


def test_leaving_work_undone_costs_what_doing_it_on_demand_would() -> None:
    sites = [onprem("dc", {"L4": (4, ONPREM_PRICE)}),
             cloud("region", {"L4": [("l4.x1", 1, OD_PRICE, SPOT_PRICE)]}, quota=8,
                   provisioning_minutes=PROVISION_MIN, spot_rate=0.0, egress=0.09),
             cloud("pricier", {"L4": [("l4.x1", 1, 3 * OD_PRICE, None)]}, quota=8)]
    e = engine(sites, policy([JOBS_RULE]), datasets=[dataset("d", 50.0, ["dc"])])
    wl = job("j", gpu="L4", count=2, hours=1.0, datasets=[{"name": "d"}])
    runs = Replay(e, _decider("all-cloud-on-demand")).run([SimWorkload(0, 0.0, wl)])
    done = runs[0].gpu_usd + runs[0].egress_usd  # billed from the request, its data moved in
    assert runs[0].site == e.ci.site_index["region"]
    assert unmet_usd(e, wl) == pytest.approx(done)
    assert unmet_usd(e, wl) > 2 * OD_PRICE * 1.0  # more than its bare GPU-hours
