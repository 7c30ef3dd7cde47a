"""Autoscaling fleets: replicas per site follow the requests/s measured on the fleet's sites,
with hysteresis; the new size is a new decision with only the net GPUs moved by the guarded
update (capacity rows always equal the active reservations), the phase kept; the serving
actuator then resizes, adds and removes member sites. On SQLite and PostgreSQL."""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import func, select

from placement.actuators.kube import Clusters
from placement.actuators.triton.actuator import ServingActuator
from placement.control.fleets import demand_at, observed_rps, rescale_fleets
from placement.model.workload import WorkloadSpec
from placement.policy.loader import load_bundle
from placement.signals import Observed
from placement.store.tables import CapacityRow, EventRow, ReservationRow, ServingRow, WorkloadRow

from .conftest import EXAMPLES, Api, api_on
from .services import KubeEmulator, kube_emulator

MODEL = "assistant-llm"


class Rates:
    """The requests/s a Triton feed measured per (site, model): the autoscaler's input."""

    def __init__(self) -> None:
        self.now: dict[tuple[str, str], float] = {}

    def rates(self) -> dict[tuple[str, str], float]:
        return dict(self.now)

    def merge(self, observed: Observed | None, site_index: dict[str, int], groups: int
              ) -> Observed | None:
        return observed

    def stop(self) -> None:
        pass


def spec(clients: list[dict[str, Any]], rps: float = 0) -> WorkloadSpec:
    return WorkloadSpec.model_validate({
        "kind": "inference", "team": "t", "gpu": {"types": ["L4"], "count": 1},
        "requests_per_s": rps, "latency": {"p99_slo_ms": 300, "service_time_p99_ms": 50,
                                           "clients": clients}})


@pytest.mark.parametrize(("clients", "rps", "total", "expected"), [
    ([{"location": "a", "requests_per_s": 30}, {"location": "b", "requests_per_s": 10}], 0,
     80, [60, 20]),  # the declared mix, scaled
    ([{"location": "a", "share": 0.75}, {"location": "b", "share": 0.25}], 40, 8, [6, 2]),
    ([{"location": "a"}, {"location": "b"}], 0, 10, [5, 5]),  # nothing declared: equal shares
    # nothing above 0 declared: the shares (a's default 1.0 against b's 0.5)
    ([{"location": "a", "requests_per_s": 0}, {"location": "b", "share": 0.5}], 0, 3, [2, 1]),
])
def test_demand_is_spread_by_the_declared_mix(clients: list[dict[str, Any]], rps: float,
                                              total: float, expected: list[float]) -> None:
    got = demand_at(spec(clients, rps), total)
    assert got.latency is not None and got.requests_per_s == total
    assert [c.requests_per_s for c in got.latency.clients] == pytest.approx(expected)


@pytest.mark.parametrize(("rates", "ready", "expected"), [
    ({("x", "w"): 3.0, ("y", "w"): 4.5}, None, 7.5),
    ({("x", "w"): 3.0}, None, None),  # y serves but is unread: leave the fleet be
    ({("x", "w"): 3.0}, {"x"}, 3.0),  # y not serving yet (cold start): no traffic there
    ({("x", "w"): 0.0, ("y", "w"): 0.0}, None, 0.0),  # a quiet night reads 0, not unknown
    ({("x", "w"): 3.0, ("y", "w"): 4.5}, set(), None),  # nothing serves: nothing to read
    ({("x", "w"): 3.0, ("y", "w"): 4.5, ("x", "other"): 50.0}, None, 7.5),  # not ours
])
def test_observed_demand(rates: dict[tuple[str, str], float], ready: set[str] | None,
                         expected: float | None) -> None:
    # y appears twice (spot and on-demand members at one site): its rate counts once
    fleet = {"members": [{"site": "x"}, {"site": "y"}, {"site": "y"}]}
    assert observed_rps(fleet, "w", rates, ready) == expected


def _counters(*rows: tuple[str, str, float, float]) -> dict[tuple[str, str], Any]:
    from placement.actuators.triton.metrics import ModelCounters

    return {(m, v): ModelCounters(m, v, success=ok, failure=bad) for m, v, ok, bad in rows}


@pytest.mark.parametrize(("before", "after", "expected"), [
    ([("m", "1", 100, 0)], [("m", "1", 400, 5)], 305),  # served and failed: demand
    ([("m", "1", 100, 0)], [("m", "1", 100, 0)], 0),  # none came in: 0, not unknown
    ([("m", "1", 100, 0)], [("m", "1", 100, 0), ("m", "2", 50, 0)], 50),  # a new version
    ([("m", "1", 900, 0)], [("m", "1", 30, 0)], 30),  # Triton restarted: from zero
    ([("m", "1", 100, 0)], [("m", "1", 150, 0), ("other", "1", 999, 0)], 50),
])
def test_requests_between_two_scrapes(before: list[tuple[str, str, float, float]],
                                      after: list[tuple[str, str, float, float]],
                                      expected: float) -> None:
    from placement.actuators.triton.feed import _requests

    assert _requests(_counters(*before), _counters(*after), "m") == expected



@pytest.fixture(scope="module")
def kube() -> Iterator[KubeEmulator]:
    with kube_emulator() as emu:
        yield emu


def _members(api: Api, wid: str) -> dict[tuple[str, str, str], int]:
    body = api.client.get(f"/v1/workloads/{wid}", headers=api.h("admin")).json()
    fleet = body["decision"]["decision"]["fleet"]
    return {(m["site"], m["gpu_type"], m["capacity"]): m["replicas"] for m in fleet["members"]}


def _consistent(api: Api) -> None:
    """Capacity rows' reserved GPUs equal the active reservations, and never their total."""
    with api.runtime.db.read() as s:
        held = dict(((site, gpu), n) for site, gpu, n in s.execute(
            select(ReservationRow.site, ReservationRow.gpu_type, func.sum(ReservationRow.count))
            .where(ReservationRow.released_at.is_(None))
            .group_by(ReservationRow.site, ReservationRow.gpu_type)))
        for row in s.scalars(select(CapacityRow)):
            assert row.reserved == held.get((row.site, row.gpu_type), 0)
            assert 0 <= row.reserved <= row.total


def _measure(rates: Rates, api: Api, wid: str, total: float) -> None:
    sites = sorted({site for site, _, _ in _members(api, wid)})
    rates.now = {(site, wid): total / len(sites) for site in sites}
    rates.now[(sites[0], "another workload serving the same model")] = 1000.0


def test_a_fleet_follows_its_measured_demand_with_hysteresis(db_url: str, kube: KubeEmulator,
                                                             tmp_path: Any) -> None:
    doc = next(w for w in load_bundle(EXAMPLES).workloads if w.name == "global-assistant")
    with api_on(db_url) as api:
        rates = Rates()
        api.runtime.triton = rates
        res = api.client.post("/v1/workloads", json=doc.model_dump(mode="json"),
                              headers=api.h("admin"))
        assert res.status_code == 201, res.text
        wid = res.json()["id"]
        first = _members(api, wid)
        assert sum(first.values()) == 3  # 28 requests/s declared (see the example)
        assert rescale_fleets(api.runtime) == 0  # no reading yet: left as it is
        kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig", [
            s.name for s in load_bundle(EXAMPLES).inventory.sites])
        actuator = ServingActuator(api.runtime, Clusters(kubeconfig))
        actuator._adopt()
        with api.runtime.db.write() as s:  # as if the actuator had served every site
            for row in s.scalars(select(ServingRow)):
                row.status = "ready"
            s.get(WorkloadRow, uuid.UUID(wid)).phase = "running"  # type: ignore[union-attr]

        _measure(rates, api, wid, 3 * 28.0)  # three times the declared demand
        assert rescale_fleets(api.runtime) == 1
        grown = _members(api, wid)
        assert sum(grown.values()) > sum(first.values())
        body = api.client.get(f"/v1/workloads/{wid}", headers=api.h("admin")).json()
        assert body["phase"] == "running"  # a running fleet stays running
        fleet = body["decision"]["decision"]["fleet"]
        assert fleet["demand_rps"] == pytest.approx(84.0)
        assert all(m["utilization"] <= 0.7 + 1e-9 for m in fleet["members"])
        _consistent(api)

        actuator._adopt()  # the serving rows follow the new size
        with api.runtime.db.read() as s:
            live = {r.site: r.replicas for r in s.scalars(select(ServingRow).where(
                ServingRow.status.not_in(("removing", "removed"))))}
            resized = s.scalar(select(func.count()).select_from(EventRow).where(
                EventRow.type == "serving_resize"))
        by_site: dict[str, int] = {}
        for (site, _, _), n in grown.items():
            by_site[site] = by_site.get(site, 0) + n
        assert live == by_site and resized == 1

        with api.runtime.db.write() as s:
            for row in s.scalars(select(ServingRow)):
                if row.status == "pending":
                    row.status = "ready"
        _measure(rates, api, wid, 3 * 28.0 * 0.9)  # a dip: replicas stay (hysteresis)
        assert rescale_fleets(api.runtime) == 0
        assert _members(api, wid) == grown

        _measure(rates, api, wid, 5.0)  # demand fell away: the fleet shrinks, GPUs freed
        assert rescale_fleets(api.runtime) == 1
        small = _members(api, wid)
        assert sum(small.values()) < sum(grown.values())
        _consistent(api)
        with api.runtime.db.read() as s:
            kinds = list(s.scalars(select(EventRow.type).where(
                EventRow.workload_id == uuid.UUID(wid))))
        assert kinds.count("fleet_rescaled") == 2
        actuator._adopt()
        with api.runtime.db.read() as s:
            left = [r.replicas or 0 for r in s.scalars(select(ServingRow).where(
                ServingRow.status.not_in(("removing", "removed"))))]
        assert sum(left) == sum(small.values())


@pytest.mark.parametrize(("status", "targets", "note"), [
    # a site added by a scale-out gets traffic once ready, while the location has one serving
    ({"a": "ready", "b": "pending"}, {"a": 1.0}, "starting (cold start"),
    ({"a": "rolling", "b": "unserved"}, {"a": 1.0}, "starting (cold start"),
    # nothing serves yet (a new fleet): every planned site stays a target
    ({"a": "pending", "b": "unserved"}, {"a": 0.75, "b": 0.25}, None),
    ({"a": "ready", "b": "ready"}, {"a": 0.75, "b": 0.25}, None),
    ({"a": "failed", "b": "pending"}, {"b": 1.0}, "drained a (failed)"),
])
def test_a_site_still_starting_waits_for_traffic(status: dict[str, str],
                                                 targets: dict[str, float],
                                                 note: str | None) -> None:
    from placement.store.routing import drain

    route = drain("loc", 10.0, [("a", 0.75, 20.0), ("b", 0.25, 30.0)], status)
    assert {t.site: round(t.weight, 6) for t in route.targets} == targets
    assert (route.note is None) if note is None else (note in (route.note or ""))


def test_a_fleet_bills_its_cloud_members_to_its_team_live_rescaled_and_ended(
        db_url: str) -> None:
    """No burst row is made for a fleet's cloud members. Live, the team's burst budget counts
    its cloud $/h from its decision to the month's end; each rescale bills the old size up to
    the new decision; cancelled, what it ran stays counted (up to the cancel), no more."""
    from datetime import timedelta

    from placement.store.db import utcnow
    from placement.store.spend import team_spend
    from placement.store.tables import DecisionRow

    doc = next(w for w in load_bundle(EXAMPLES).workloads if w.name == "global-assistant")
    with api_on(db_url) as api:
        res = api.client.post("/v1/workloads", json=doc.model_dump(mode="json"),
                              headers=api.h("admin"))
        assert res.status_code == 201, res.text
        wid = uuid.UUID(res.json()["id"])
        fleet = res.json()["decision"]["decision"]["fleet"]
        cloud = sum(m["usd_per_hour"] for m in fleet["members"] if m["capacity"] != "onprem")
        assert cloud > 0  # Tokyo's users are served from the cloud
        now = utcnow()
        month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        month_end = (month + timedelta(days=32)).replace(day=1)

        def hours(a: Any, b: Any) -> float:  # the part of [a, b) inside this month
            return max(0.0, float((min(b, month_end) - max(a, month)).total_seconds()) / 3600)

        with api.runtime.db.read() as s:
            decided = s.scalars(select(DecisionRow.created_at)
                                .where(DecisionRow.workload_id == wid)).one()
            got = team_spend(s, now=now).get("customer-care", 0.0)
        assert got == pytest.approx(cloud * hours(decided.replace(tzinfo=now.tzinfo),
                                                  month_end), rel=1e-3)
        # three hours ago decided; two hours ago rescaled to twice the cloud $/h
        t0, t1 = now - timedelta(hours=3), now - timedelta(hours=2)
        with api.runtime.db.write() as s:
            first = s.scalars(select(DecisionRow).where(DecisionRow.workload_id == wid)).one()
            first.created_at = t0
            doubled = {**first.explanation, "fleet": {**fleet, "members": [
                {**m, "usd_per_hour": 2 * m["usd_per_hour"]} for m in fleet["members"]]}}
            s.add(DecisionRow(workload_id=wid, action=first.action, site=first.site,
                              policy_version=first.policy_version, explanation=doubled,
                              created_at=t1))
        with api.runtime.db.read() as s:
            got = team_spend(s, now=now).get("customer-care", 0.0)
        assert got == pytest.approx(cloud * hours(t0, t1) + 2 * cloud * hours(t1, month_end),
                                    rel=1e-3)
        assert api.client.post(f"/v1/workloads/{wid}/cancel",
                               headers=api.h("admin")).status_code == 200
        t2 = now - timedelta(hours=1)  # cancelled an hour ago
        with api.runtime.db.write() as s:
            ev = s.scalars(select(EventRow).where(EventRow.workload_id == wid,
                                                  EventRow.type == "cancelled")).one()
            ev.at = t2
        with api.runtime.db.read() as s:
            got = team_spend(s, now=now).get("customer-care", 0.0)
        assert got == pytest.approx(cloud * hours(t0, t1) + 2 * cloud * hours(t1, t2),
                                    rel=1e-3, abs=1e-9)


def _serving_everywhere(api: Api, wid: str) -> list[str]:
    """As if the serving actuator had the fleet ready on every member site; the sites."""
    from placement.store.db import utcnow
    from placement.store.servings import add_serving

    sites = sorted({site for site, _, _ in _members(api, wid)})
    with api.runtime.db.write() as s:
        for site in sites:
            add_serving(s, workload_id=uuid.UUID(wid), site=site, namespace="ns", name="n",
                        model=MODEL, now=utcnow(), fleet=True)
        for row in s.scalars(select(ServingRow)):
            row.status = "ready"
    return sites


def _text_server(body: Callable[[], str]) -> ThreadingHTTPServer:
    """A real HTTP server on 127.0.0.1 answering every GET with Prometheus text from `body`
    (read per request); shut it down when done."""
    class Text(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = body().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Text)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_two_workloads_serving_one_model_at_a_site_each_read_their_own_demand(
        db_url: str) -> None:
    """Each workload's Triton servers are its own (their own metrics URL): the feed's
    requests/s are per (site, workload), so two services of one model at one site do not
    take each other's demand; the model's service time there is the slower reading. Two
    real HTTP metrics endpoints, counters from Triton's names."""
    from placement.actuators.triton.feed import TritonFeed
    from placement.store.tables import ServingRow

    counts = {"a": 0, "b": 0}
    us = {"a": 900, "b": 5000}  # each request's time on a's and on b's servers

    def metrics(key: str) -> str:
        n, t = counts[key], us[key]
        return "\n".join([
            "# TYPE nv_inference_request_success counter",
            f'nv_inference_request_success{{model="{MODEL}",version="1"}} {n}',
            "# TYPE nv_inference_request_failure counter",
            f'nv_inference_request_failure{{model="{MODEL}",version="1"}} 0',
            "# TYPE nv_inference_request_duration_us counter",
            f'nv_inference_request_duration_us{{model="{MODEL}",version="1"}} {n * t}',
            "# TYPE nv_inference_queue_duration_us counter",
            f'nv_inference_queue_duration_us{{model="{MODEL}",version="1"}} {n * 100}',
            "# TYPE nv_inference_compute_infer_duration_us counter",
            f'nv_inference_compute_infer_duration_us{{model="{MODEL}",version="1"}} '
            f"{n * (t - 200)}", ""])

    servers = {k: _text_server(functools.partial(metrics, k)) for k in counts}
    clock = [1000.0]
    try:
        with api_on(db_url) as api:
            ids = {}
            with api.runtime.db.write() as s:
                for key, srv in servers.items():
                    w = WorkloadRow(name=f"svc-{key}", team="t", kind="inference",
                                    phase="running", document={})
                    s.add(w)
                    s.flush()
                    ids[key] = str(w.id)
                    s.add(ServingRow(workload_id=w.id, site="edge", namespace="ns",
                                     name=f"svc-{key}", model=MODEL, version=1, status="ready",
                                     metrics_url=f"http://127.0.0.1:{srv.server_port}/metrics"))
            feed = TritonFeed(api.runtime.db, clock=lambda: clock[0])
            feed.poll()
            counts.update(a=300, b=30)  # in 10 s: 30 and 3 requests/s
            clock[0] += 10
            feed.poll()
            assert feed.rates() == {("edge", ids["a"]): pytest.approx(30.0),
                                    ("edge", ids["b"]): pytest.approx(3.0)}
            # the service time of the model at the site: the slower servers' reading stands
            assert feed.seen[("edge", MODEL)].value.p99_ms >= 5.0
    finally:
        for srv in servers.values():
            srv.shutdown()


def test_a_fleet_follows_where_its_requests_come_from_by_promql(db_url: str,
                                                                tmp_path: Any) -> None:
    """Every client location has a requests_per_s_query: the autoscaler reads each from a
    real Prometheus (scraping a gateway's per-location gauge) and plans for that mix, not the
    declared one; with one query failing it says so and falls back to Triton's rates."""
    import time

    from placement.signals import PrometheusClient, SignalCache

    from .services import prometheus

    doc = next(w for w in load_bundle(EXAMPLES).workloads if w.name == "global-assistant")
    assert doc.spec.latency is not None
    locations = [c.location for c in doc.spec.latency.clients]
    now = {loc: 1.0 for loc in locations}
    now[locations[-1]] = 60.0  # nearly all the traffic from the last location

    gateway = _text_server(lambda: "".join(["# TYPE gateway_requests_per_s gauge\n"] + [
        f'gateway_requests_per_s{{location="{loc}"}} {v}\n' for loc, v in now.items()]))
    lat = doc.spec.latency
    queried = doc.model_copy(update={"spec": doc.spec.model_copy(update={
        "latency": lat.model_copy(update={"clients": [
            c.model_copy(update={"requests_per_s_query":
                                 f'gateway_requests_per_s{{location="{c.location}"}}'})
            for c in lat.clients]})})})
    try:
        with prometheus({"gateway": f"127.0.0.1:{gateway.server_port}"}, tmp_path,
                        scrape_s=0.5) as prom, api_on(db_url) as api:
            client = PrometheusClient(prom, timeout_s=5)
            deadline = time.monotonic() + 30
            while len(client.query("gateway_requests_per_s")) < len(locations):
                assert time.monotonic() < deadline, "Prometheus never scraped the gateway"
                time.sleep(0.2)
            api.runtime.signals = SignalCache(client, lambda: None)
            res = api.client.post("/v1/workloads", json=queried.model_dump(mode="json"),
                                  headers=api.h("admin"))
            assert res.status_code == 201, res.text
            wid = res.json()["id"]
            assert rescale_fleets(api.runtime) == 1
            body = api.client.get(f"/v1/workloads/{wid}", headers=api.h("admin")).json()
            fleet = body["decision"]["decision"]["fleet"]
            assert {r["location"]: r["demand_rps"] for r in fleet["routing"]} == {
                loc: pytest.approx(v) for loc, v in now.items()}
            with api.runtime.db.read() as s:
                (message,) = s.scalars(select(EventRow.message).where(
                    EventRow.workload_id == uuid.UUID(wid), EventRow.type == "fleet_rescaled"))
            assert "measured per location (PromQL: " in message, message
            _consistent(api)

            # one location's query finds nothing: no Triton reading either, so left as it is
            now.pop(locations[0])
            deadline = time.monotonic() + 30
            while len(client.query("gateway_requests_per_s")) == len(locations):
                assert time.monotonic() < deadline, "the series never went stale"
                time.sleep(0.5)
            rates = Rates()
            api.runtime.triton = rates
            assert rescale_fleets(api.runtime) == 0
            # with Triton's readings on every member site: their sum, by the declared mix
            sites = _serving_everywhere(api, wid)
            rates.now = {(site, wid): 2.0 / len(sites) for site in sites}
            assert rescale_fleets(api.runtime) == 1
            with api.runtime.db.read() as s:
                messages = list(s.scalars(select(EventRow.message).where(
                    EventRow.workload_id == uuid.UUID(wid),
                    EventRow.type == "fleet_rescaled").order_by(EventRow.id)))
            assert (f"measured on the fleet's sites (the query of {locations[0]} gave 0 "
                    "sample(s)") in messages[-1], messages[-1]
    finally:
        gateway.shutdown()


def test_rescaling_a_fleet_does_not_count_its_own_commitment_against_its_team(
        db_url: str, tmp_path: Any) -> None:
    """The team's burst budget fits the grown fleet (5% spare) but not the grown fleet plus
    what the fleet already committed to the month's end: re-planning gives the fleet its own
    commitment back, so it grows (it would be left as it is if it counted twice)."""
    import shutil

    from sqlalchemy import delete, update

    from placement.store.tables import DecisionRow

    doc = next(w for w in load_bundle(EXAMPLES).workloads if w.name == "global-assistant")
    payload = doc.model_dump(mode="json")

    def grow(config: Any) -> tuple[int, float]:
        with api_on(db_url, config) as api:
            rates = Rates()
            api.runtime.triton = rates
            res = api.client.post("/v1/workloads", json=payload, headers=api.h("admin"))
            assert res.status_code == 201, res.text
            wid = res.json()["id"]
            with api.runtime.db.write() as s:
                for w in s.scalars(select(WorkloadRow)):
                    w.phase = "running"
            sites = _serving_everywhere(api, wid)  # every member site read
            rates.now = {(site, wid): 3 * 28.0 / len(sites) for site in sites}
            api.runtime._spend = None  # team spend is read at most every 5 s: read it now
            changed = rescale_fleets(api.runtime)
            fleet = api.client.get(f"/v1/workloads/{wid}", headers=api.h("admin")).json()[
                "decision"]["decision"]["fleet"]
            cloud = sum(m["usd_per_hour"] for m in fleet["members"] if m["capacity"] != "onprem")
            # a fresh database for the next run
            with api.runtime.db.write() as s:
                for table in (EventRow, ServingRow, ReservationRow):
                    s.execute(delete(table))
                s.execute(update(WorkloadRow).values(decision_id=None))
                s.execute(delete(DecisionRow))
                s.execute(delete(WorkloadRow))
                s.execute(update(CapacityRow).values(reserved=0))
            return changed, cloud

    changed, grown = grow(EXAMPLES)  # no team budget: how much cloud the grown fleet takes
    assert changed == 1 and grown > 0
    config = tmp_path / "policies"
    shutil.copytree(EXAMPLES, config)
    policy = (config / "policy.yaml").read_text()
    budget = grown * 720 * 1.05  # the service horizon: 720 h
    (config / "policy.yaml").write_text(policy.replace(
        "spec:\n", f"spec:\n  team_budgets:\n    customer-care: {budget:.2f}\n", 1))
    changed, again = grow(config)
    assert changed == 1 and again >= 0.9 * grown  # grown (cloud members within the budget)


def test_per_location_queries_are_all_or_none() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"requests_per_s_query is set for some client "
                                              r"locations but not for b; set it on every"):
        spec([{"location": "a", "requests_per_s_query": "x"}, {"location": "b"}])
    got = spec([{"location": "a", "requests_per_s_query": "x"},
                {"location": "b", "requests_per_s_query": "y"}])
    assert got.latency is not None and got.latency.clients[1].requests_per_s_query == "y"


def test_prometheus_down_falls_back_to_triton_for_the_pass(db_url: str) -> None:
    """Queries to a Prometheus that refuses connections: the pass plans with Triton's rates
    (and stops asking Prometheus for the rest of it)."""
    from placement.signals import PrometheusClient, SignalCache

    from .services import free_port

    doc = next(w for w in load_bundle(EXAMPLES).workloads if w.name == "global-assistant")
    assert doc.spec.latency is not None
    lat = doc.spec.latency
    queried = doc.model_copy(update={"spec": doc.spec.model_copy(update={
        "latency": lat.model_copy(update={"clients": [
            c.model_copy(update={"requests_per_s_query": "gateway_requests_per_s"})
            for c in lat.clients]})})})
    with api_on(db_url) as api:
        api.runtime.signals = SignalCache(
            PrometheusClient(f"http://127.0.0.1:{free_port()}", timeout_s=2), lambda: None)
        rates = Rates()
        api.runtime.triton = rates
        res = api.client.post("/v1/workloads", json=queried.model_dump(mode="json"),
                              headers=api.h("admin"))
        assert res.status_code == 201, res.text
        wid = res.json()["id"]
        sites = _serving_everywhere(api, wid)
        rates.now = {(site, wid): 3 * 28.0 / len(sites) for site in sites}
        assert rescale_fleets(api.runtime) == 1
        with api.runtime.db.read() as s:
            (message,) = s.scalars(select(EventRow.message).where(
                EventRow.workload_id == uuid.UUID(wid), EventRow.type == "fleet_rescaled"))
        assert "requests/s measured on the fleet's sites (planned for" in message, message
