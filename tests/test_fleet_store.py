"""A fleet decision's per-site reservations in the store: one reservation per member, every
member's GPUs taken by the one guarded update or none, all given back on cancel or release,
and no over-commit when many submitters race for the same sites (SQLite and PostgreSQL)."""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from rich.console import Console
from sqlalchemy import select

from placement.cli.render import print_decision
from placement.control.auth import Principal
from placement.control.lifecycle import DecisionData, decide, record_decision, transition
from placement.control.runtime import Runtime
from placement.control.submit import Pending, _prepare, _store, place_batch, submit
from placement.engine import Engine, Outcome
from placement.metrics import Metrics
from placement.model import Workload
from placement.model.decision import Decision, Fleet
from placement.policy.loader import load_bundle
from placement.service.settings import Settings
from placement.service.wiring import build_runtime
from placement.store import transitions
from placement.store.capacity import CapacityConflict
from placement.store.tables import (
    CapacityRow,
    DecisionRow,
    EventRow,
    ReservationRow,
    WorkloadRow,
)

from .conftest import EXAMPLES, api_on
from .services import postgres_database
from .test_concurrency import Monitor

ADMIN = Principal(role="admin", team=None)
EXAMPLE = {w.name: w for w in load_bundle(EXAMPLES).workloads}
SERVICE = EXAMPLE["quality-assistant"]
GLOBAL = EXAMPLE["global-assistant"]  # users on three continents, under a fleet rule
CLOUD = ("aws-", "gcp-", "azure-")
Member = tuple[str, str, int, str]  # site, GPU type, GPUs, capacity kind


@contextmanager
def runtime(url: str) -> Iterator[Runtime]:
    """The service's runtime over `url`: migrated store, example bundle, seeded capacity."""
    rt = build_runtime(Settings(database_url=url, config_dir=EXAMPLES),
                       Metrics(CollectorRegistry()))
    try:
        yield rt
    finally:
        rt.db.dispose()


def conflicts_counted(rt: Runtime) -> float:
    """placement_capacity_conflicts_total of this runtime."""
    value = rt.metrics.registry.get_sample_value("placement_capacity_conflicts_total")
    return value or 0.0


def fleet(members: list[Member]) -> dict[str, Any]:
    """A decision's `fleet` section (the Fleet model's JSON) with these members."""
    return Fleet.model_validate({
        "members": [{"site": site, "gpu_type": gpu, "capacity": kind, "replicas": gpus,
                     "gpus": gpus, "replica_rps": 2.0, "routed_rps": 1.5 * gpus,
                     "utilization": 0.75, "usd_per_hour": 1.0 * gpus}
                    for site, gpu, gpus, kind in members],
        "routing": [{"location": "stuttgart-plant-floor", "demand_rps": 10.0,
                     "targets": [{"site": members[0][0], "weight": 1.0,
                                  "p99_latency_ms": 900.0}],
                     "why": "nearest site with room"}],
        "usd_per_hour": float(sum(m[2] for m in members)), "demand_rps": 10.0,
        "method": "milp (HiGHS)", "rule": "fleet-test"}).model_dump(mode="json")


def service_decision(rt: Runtime) -> tuple[DecisionData, Outcome]:
    """A real decision of the example service (engine, explanation), to carry a fleet."""
    with rt.db.read() as s:
        engine = rt.engine(s, fresh=True)
    decision, out = decide(rt, engine, SERVICE)
    assert decision["action"] == "place" and out.chosen is not None, decision["summary"]
    return decision, out


def as_fleet(decision: Any, members: list[Member]) -> Any:
    """`decision` turned into a fleet's: site and GPU type of the member with most replicas,
    `burst` when a member is a cloud site."""
    d = copy.deepcopy(decision)
    d["fleet"] = fleet(members)
    top = max(members, key=lambda m: m[2])
    d["site"], d["gpu_type"] = top[0], top[1]
    d["action"] = "burst" if any(m[0].startswith(CLOUD) for m in members) else "place"
    return d


def named(i: int, wl: Workload = SERVICE) -> Workload:
    return wl.model_copy(update={"metadata": wl.metadata.model_copy(
        update={"name": f"assistant-{i}"})})


def submit_fleet(rt: Runtime, wl: Workload, decision: DecisionData, out: Outcome) -> uuid.UUID:
    """Store one new submission through the service's batch path (rows, guarded updates)."""
    prep = _prepare([(Pending(wl, None), decision, out)])
    _store(rt, prep)
    return uuid.UUID(str(prep.stored[0][1]["id"]))


def reserved(rt: Runtime) -> dict[tuple[str, str], int]:
    """Reserved GPUs of every capacity row that has any."""
    with rt.db.read() as s:
        return {(r.site, r.gpu_type): r.reserved for r in s.scalars(select(CapacityRow))
                if r.reserved}


def active(rt: Runtime, wid: uuid.UUID) -> list[tuple[str, str, int]]:
    with rt.db.read() as s:
        return sorted((r.site, r.gpu_type, r.count) for r in s.scalars(select(ReservationRow)
                      .where(ReservationRow.workload_id == wid,
                             ReservationRow.released_at.is_(None))))


def expected(members: list[Member]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for site, gpu, n, _ in members:
        out[(site, gpu)] = out.get((site, gpu), 0) + n
    return out


def requeued(rt: Runtime, decision: DecisionData, out: Outcome) -> uuid.UUID:
    """A stored, queued workload given `decision` as the queue's re-evaluation records it."""
    queued: Any = {**copy.deepcopy(decision), "action": "queue", "site": None, "fleet": None}
    wid = submit_fleet(rt, named(0), queued, out)
    with rt.db.write() as s:
        row = transitions.load(s, workload_id=wid, lock=True)
        assert row is not None and row.phase == "queued"
        record_decision(s, row, decision, out)
    return wid


TWO_ONPREM: list[Member] = [("plant-stuttgart", "L4", 4, "onprem"),
                            ("plant-austin", "L4", 2, "onprem")]
THREE_WITH_CLOUD: list[Member] = [("plant-stuttgart", "L4", 4, "onprem"),
                                  ("plant-austin", "L40S", 2, "onprem"),
                                  ("aws-us-east-1", "L4", 8, "on_demand")]
ONE_SITE_TWO_KINDS: list[Member] = [("aws-us-east-1", "L4", 4, "on_demand"),
                                    ("aws-us-east-1", "L4", 2, "spot"),
                                    ("plant-austin", "L4", 1, "onprem")]
FLEETS = pytest.mark.parametrize("members", [TWO_ONPREM, THREE_WITH_CLOUD, ONE_SITE_TWO_KINDS],
                                 ids=["two on-prem members", "three members, one in a cloud",
                                      "two members at one cloud site (on-demand and spot)"])
HOW = pytest.mark.parametrize("how", ["submitted", "re-queued"])


@FLEETS
@HOW
@pytest.mark.parametrize("end", [("cancelled",), ("running", "released"),
                                 ("running", "failed")],
                         ids=["cancelled", "released after running", "failed while running"])
def test_a_fleet_holds_one_reservation_per_member_and_gives_all_back(
        db_url: str, members: list[Member], how: str, end: tuple[str, ...]) -> None:
    with runtime(db_url) as rt:
        base, out = service_decision(rt)
        decision = as_fleet(base, members)
        wid = (submit_fleet(rt, named(0), decision, out) if how == "submitted"
               else requeued(rt, decision, out))
        assert active(rt, wid) == sorted((s, g, n) for s, g, n, _ in members)
        assert reserved(rt) == expected(members)
        with rt.db.read() as s:
            row = s.get(WorkloadRow, wid)
            assert row is not None and (row.phase, row.site) == ("placed", decision["site"])
        for phase in end:
            transition(rt, workload_id=wid, to=phase, who=ADMIN)
        assert active(rt, wid) == [] and reserved(rt) == {}
        with rt.db.read() as s:
            freed = [e.detail.get("gpus_freed") for e in s.scalars(
                select(EventRow).where(EventRow.workload_id == wid, EventRow.type == end[-1]))]
        assert freed == [sum(m[2] for m in members)]


SHORT = [
    ("the last member (in sorted order) is short",
     [("aws-us-east-1", "L4", 4, "on_demand"), ("plant-austin", "L4", 9, "onprem")]),
    ("the first member (in sorted order) is short",
     [("plant-stuttgart", "L4", 2, "onprem"), ("dc-frankfurt", "H100", 33, "onprem")]),
    ("two members together exceed their one site",
     [("plant-austin", "L4", 5, "onprem"), ("plant-austin", "L4", 4, "onprem")]),
]


@pytest.mark.parametrize(("members"), [m for _, m in SHORT], ids=[i for i, _ in SHORT])
@HOW
def test_a_fleet_is_reserved_all_or_nothing(db_url: str, members: list[Member],
                                            how: str) -> None:
    with runtime(db_url) as rt:
        base, out = service_decision(rt)
        decision = as_fleet(base, members)
        with pytest.raises(CapacityConflict):
            if how == "submitted":
                submit_fleet(rt, named(0), decision, out)
            else:
                requeued(rt, decision, out)
        assert reserved(rt) == {}
        with rt.db.read() as s:
            phases = [r.phase for r in s.scalars(select(WorkloadRow))]
            held = list(s.scalars(select(ReservationRow)))
        assert held == [] and phases == ([] if how == "submitted" else ["queued"])


def test_a_fleet_beside_other_submissions_in_one_batch(db_url: str) -> None:
    """A batch stores a fleet and single-site decisions together; a short fleet member fails
    the whole batch (the service then decides it again)."""
    with runtime(db_url) as rt:
        base, out = service_decision(rt)
        ok = as_fleet(base, TWO_ONPREM)
        batch = [(Pending(named(1), None), base, out), (Pending(named(2), None), ok, out)]
        _store(rt, _prepare(batch))
        single = (str(base["site"]), str(base["gpu_type"]))
        want = expected(TWO_ONPREM)
        want[single] = want.get(single, 0) + out.ctx.gpus_needed
        assert reserved(rt) == want
        short = as_fleet(base, [("plant-austin", "L4", 7, "onprem")])
        with pytest.raises(CapacityConflict):
            _store(rt, _prepare([(Pending(named(3), None), base, out),
                                 (Pending(named(4), None), short, out)]))
        assert reserved(rt) == want


# --- concurrency on PostgreSQL ----------------------------------------------------------------
SUBMITTERS = 12
PER_SUBMITTER = 6
# Every fleet wants 2 of plant-austin's 8 L4s: at most 4 fleets fit, whatever the order.
RACE: list[list[Member]] = [
    [("plant-austin", "L4", 2, "onprem"), ("plant-stuttgart", "L4", 3, "onprem")],
    [("plant-stuttgart", "L4", 3, "onprem"), ("plant-austin", "L4", 2, "onprem"),
     ("aws-us-east-1", "L4", 1, "on_demand")],
    [("aws-us-east-1", "L4", 2, "on_demand"), ("plant-austin", "L4", 2, "onprem")],
]


@pytest.mark.parametrize("cancel", [False, True],
                         ids=["fleets kept", "each stored fleet cancelled at once"])
def test_racing_fleets_never_over_commit_on_postgresql(cancel: bool) -> None:
    with postgres_database() as url, runtime(url) as rt:
        base, out = service_decision(rt)
        monitor = Monitor(url)
        monitor.start()
        monitor.sampled.wait(10)
        stored: list[tuple[uuid.UUID, list[Member]]] = []
        conflicts = [0]
        lock = threading.Lock()

        def submitter(k: int) -> None:
            for j in range(PER_SUBMITTER):
                members = RACE[(k + j) % len(RACE)]
                decision = as_fleet(base, members)
                try:
                    wid = submit_fleet(rt, named(k * 100 + j), decision, out)
                except CapacityConflict:
                    with lock:
                        conflicts[0] += 1
                    continue
                with lock:
                    stored.append((wid, members))
                if cancel:
                    transition(rt, workload_id=wid, to="cancelled", who=ADMIN)

        with ThreadPoolExecutor(SUBMITTERS) as pool:
            list(pool.map(submitter, range(SUBMITTERS)))
        monitor.stop.set()
        monitor.join()
        assert monitor.samples > 5 and not monitor.violations, monitor.violations[:5]
        assert len(stored) + conflicts[0] == SUBMITTERS * PER_SUBMITTER
        final = reserved(rt)
        if cancel:
            assert final == {} and len(stored) >= 4
        else:
            assert len(stored) == 4 and final[("plant-austin", "L4")] == 8
            for wid, members in stored:
                assert active(rt, wid) == sorted((s, g, n) for s, g, n, _ in members)
        with rt.db.read() as s:
            for row in s.scalars(select(CapacityRow)):
                assert 0 <= row.reserved <= row.total
            held = [r for r in s.scalars(select(ReservationRow)) if r.released_at is None]
        assert {r.workload_id for r in held} <= {wid for wid, _ in stored}
        totals: dict[tuple[str, str], int] = {}
        for r in held:
            totals[(r.site, r.gpu_type)] = totals.get((r.site, r.gpu_type), 0) + r.count
        assert totals == final



# --- the fleet in `placement place` -----------------------------------------------------------
def rendered(decision: Any) -> str:
    console = Console(record=True, width=200, color_system=None)
    print_decision(Decision.model_validate(decision), console)
    return console.export_text()


@pytest.mark.parametrize(("members", "shown"), [
    (TWO_ONPREM, ["fleet: 2 sites, $6.00/h for 10.0 req/s | plan: milp (HiGHS) | "
                  "rule: fleet-test", "fleet of quality-assistant", "stuttgart-plant-floor",
                  "plant-stuttgart 100% 900 ms", "nearest site with room"]),
    (THREE_WITH_CLOUD, ["fleet: 3 sites, $14.00/h for 10.0 req/s"]),
], ids=["on-prem members", "a cloud member"])
def test_place_prints_members_and_routing(example_engine: Engine, members: list[Member],
                                          shown: list[str]) -> None:
    out = example_engine.decide(SERVICE)
    plain = example_engine.explain_dict(out)
    text = rendered(as_fleet(plain, members))
    for want in shown:
        assert want in text, (want, text)
    for site, gpu, gpus, kind in members:  # site, GPU, capacity, replicas, rps, load, $/h
        cells = [site, f"{gpus} {gpu}", kind, str(gpus), f"{1.5 * gpus:.1f}", "75%",
                 f"{1.0 * gpus:.2f}"]
        assert any(line.split("│")[1:-1] and [c.strip() for c in line.split("│")[1:-1]]
                   == cells for line in text.splitlines()), (cells, text)
    assert "ranked candidates of quality-assistant" in text  # the rest is printed as before
    assert "fleet of" not in rendered(plain) and "routing" not in rendered(plain)


# --- a real fleet, planned by the engine, through the service ----------------------------------
def members_of(decision: Any) -> list[Member]:
    return [(m["site"], m["gpu_type"], m["gpus"], m["capacity"])
            for m in decision["fleet"]["members"]]


def test_a_planned_fleet_submitted_cancelled_through_the_api(db_url: str) -> None:
    with api_on(db_url) as api:
        res = api.client.post("/v1/workloads", json=GLOBAL.model_dump(mode="json"),
                              headers=api.h("admin"))
        assert res.status_code == 201, res.text
        body = res.json()
        decision = body["decision"]["decision"]
        members = members_of(decision)
        assert body["phase"] == "placed" and len({m[0] for m in members}) >= 2, decision
        wid = uuid.UUID(body["id"])
        assert active(api.runtime, wid) == sorted((s, g, n) for s, g, n, _ in members)
        assert reserved(api.runtime) == expected(members)
        gone = api.client.post(f"/v1/workloads/{wid}/cancel", headers=api.h("admin"))
        assert gone.status_code == 200 and gone.json()["phase"] == "cancelled", gone.text
        assert active(api.runtime, wid) == [] and reserved(api.runtime) == {}


def check_store(rt: Runtime) -> dict[tuple[str, str], int]:
    """Reserved <= total on every capacity row, and reserved equals the active reservations;
    returns the reserved GPUs."""
    with rt.db.read() as s:
        rows = list(s.scalars(select(CapacityRow)))
        held = [r for r in s.scalars(select(ReservationRow)) if r.released_at is None]
    totals: dict[tuple[str, str], int] = {}
    for r in held:
        totals[(r.site, r.gpu_type)] = totals.get((r.site, r.gpu_type), 0) + r.count
    assert all(0 <= r.reserved <= r.total for r in rows)
    assert {(r.site, r.gpu_type): r.reserved for r in rows if r.reserved} == totals
    return totals


FULL_SITE = ("dc-frankfurt", "A100-80GB")  # 32 GPUs; every fleet of the example wants one
BATCH = 80  # enough fleets to fill the Frankfurt GPUs and the cloud L4 quotas beside them


def test_planned_fleets_in_one_batch_see_each_others_gpus(db_url: str) -> None:
    """More fleets in one batch than their sites hold: each decision sees the GPUs every
    member of the earlier fleets took (not only the chosen row's), so the guarded update
    refuses none of them (a refusal fails the whole batch and decides it again)."""
    with runtime(db_url) as rt:
        batch = [Pending(named(i, GLOBAL), None) for i in range(BATCH)]
        place_batch(rt, batch)
        results = [p.future.result(timeout=60) for p in batch]
        assert conflicts_counted(rt) == 0 and all(created for _, _, created in results)
        held = check_store(rt)
        with rt.db.read() as s:
            full = [(r.site, r.gpu_type) for r in s.scalars(select(CapacityRow))
                    if r.reserved == r.total]
            stored = [d.explanation for d in s.scalars(select(DecisionRow))]
        assert FULL_SITE in full and len(full) >= 2, held  # fleets filled sites they shared
        placed = [d for d in stored if d["action"] in ("place", "burst")]
        assert len(placed) == BATCH and all(d["fleet"] for d in placed)
        per_pair: dict[tuple[str, str], int] = {}
        for d in placed:
            for site, gpu, n, _ in members_of(d):
                per_pair[(site, gpu)] = per_pair.get((site, gpu), 0) + n
        assert per_pair == held


def test_racing_planned_fleets_never_over_commit_on_postgresql() -> None:
    with postgres_database() as url, runtime(url) as rt:
        monitor = Monitor(url)
        monitor.start()
        monitor.sampled.wait(10)
        with ThreadPoolExecutor(SUBMITTERS) as pool:
            results = list(pool.map(lambda i: submit(rt, workload=named(i, GLOBAL)),
                                    range(SUBMITTERS * PER_SUBMITTER)))
        monitor.stop.set()
        monitor.join()
        assert monitor.samples > 5 and not monitor.violations, monitor.violations[:5]
        assert all(created for _, _, created in results)
        held = check_store(rt)
        assert held[FULL_SITE] == 32, held


def test_a_queued_decision_is_decided_again_on_a_fresh_read_and_places_are_not(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch with a queue decision re-decides only that one on the fresh read; the
    placement beside it stands (decided once) and both are stored."""
    url = f"sqlite:///{tmp_path}/q.db"
    with runtime(url) as rt:
        calls: list[str] = []
        inner = decide

        def counted(rt_: Runtime, engine: Engine, wl: Workload) -> Any:
            calls.append(wl.name)
            return inner(rt_, engine, wl)

        big = named(1).model_copy(update={"spec": named(1).spec.model_copy(update={
            "gpu": named(1).spec.gpu.model_copy(update={"count": 10_000})})})
        batch = [Pending(named(0), None), Pending(big, None)]
        monkeypatch.setattr("placement.control.submit.decide", counted)
        place_batch(rt, batch)
        results = [p.future.result() for p in batch]
        actions = [row["action"] for row, _, _ in results]
        assert actions[0] in ("place", "burst") and actions[1] in ("queue", "reject")
        assert calls == [named(0).name, big.name, big.name]
