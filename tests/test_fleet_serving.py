"""A fleet served from several sites: one Deployment per member site (KMock's emulator, the
production client code) with the member's replicas, each site served by its own real
tritonserver; a new model version rolled one site at a time, stopping at a version that fails
with the other site still on the old one; the routing table published by the API and the
operator, failing sites drained; servings rows kept across the migration to per-site rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select, text

from placement.actuators.kube import Clusters
from placement.actuators.triton.actuator import ServingActuator, ServingOptions
from placement.actuators.triton.control import TritonControl
from placement.model import Workload
from placement.model.decision import Fleet
from placement.operator import routes_of, status_of
from placement.store import workloads as wstore
from placement.store.db import open_database
from placement.store.migrate import downgrade, upgrade
from placement.store.routing import drain
from placement.store.tables import DecisionRow, EventRow, ServingRow, WorkloadRow

from .conftest import Api, api_on
from .factories import Clock
from .services import KubeEmulator, Triton, free_port, kube_emulator, tritonserver
from .triton_models import python_model, served

SITES = ("edge-a", "edge-b")
NAMESPACE = {"edge-a": "serving-a", "edge-b": "serving-b"}
MODELS = ("fleet-sized", "fleet-roll", "fleet-route", "fleet-back")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    for model in MODELS:
        python_model(root, served(model=model, version=1), factor=2)
    python_model(root, served(model="fleet-roll", version=2), factor=3)
    python_model(root, served(model="fleet-roll", version=3), broken=True)
    python_model(root, served(model="fleet-back", version=3), broken=True)
    return root


@pytest.fixture(scope="module")
def tritons(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Triton]]:
    """One real tritonserver per site, as each site's cluster runs its own."""
    with tritonserver(repo, tmp_path_factory.mktemp("triton-a")) as a, \
            tritonserver(repo, tmp_path_factory.mktemp("triton-b")) as b:
        yield {"edge-a": a, "edge-b": b}


@pytest.fixture(scope="module")
def kube() -> Iterator[KubeEmulator]:
    with kube_emulator() as emu:
        yield emu


FLEET_RULE = {"name": "fleet", "match": {"kinds": ["inference"],
                                         "labels": {"placement.dev/fleet": "true"}},
              "fleet": {}}
NEAR = {"edge-a": (48.1, 11.6), "edge-b": (48.1, 11.9)}
FAR = {"edge-a": (48.1, 11.6), "edge-b": (35.7, 139.7)}  # Munich and Tokyo


def inventory(tmp: Path, tritons: dict[str, Triton], repo: Path,
              where: dict[str, tuple[float, float]] = NEAR) -> Path:
    def site(name: str) -> dict[str, Any]:
        lat, lon = where[name]
        return {"apiVersion": "placement.dev/v1alpha1", "kind": "Site",
                "metadata": {"name": name},
                "spec": {"type": "onprem", "location": {"lat": lat, "lon": lon},
                         "kube_context": name, "wan_gbps": 10, "egress_usd_per_gb": 0,
                         "gpus": [{"type": "L4", "count": 4, "usd_per_gpu_hour": 0.75}],
                         "serving": {"namespace": NAMESPACE[name], "repository": str(repo),
                                     "endpoint": tritons[name].url,
                                     "metrics_url": tritons[name].metrics_url}}}

    def client(name: str, near: str) -> dict[str, Any]:
        lat, lon = where[near]
        return {"apiVersion": "placement.dev/v1alpha1", "kind": "ClientLocation",
                "metadata": {"name": name},
                "spec": {"location": {"lat": lat + 0.1, "lon": lon}}}

    policy = {"apiVersion": "placement.dev/v1alpha1", "kind": "Policy",
              "metadata": {"name": "test"}, "spec": {"rules": [FLEET_RULE]}}
    (tmp / "inventory.yaml").write_text(yaml.safe_dump_all([
        site("edge-a"), site("edge-b"), client("plant-a", "edge-a"),
        client("plant-b", "edge-b")]))
    (tmp / "policy.yaml").write_text(yaml.safe_dump(policy))
    return tmp


def fleet(replicas: dict[str, int]) -> dict[str, Any]:
    """A fleet section in the model's shape: plant-a split over both sites, plant-b on edge-b."""
    members = [{"site": site, "gpu_type": "L4", "capacity": "onprem", "replicas": n,
                "gpus": n, "replica_rps": 50.0, "routed_rps": 20.0,
                "utilization": 20.0 / (50.0 * n), "usd_per_hour": 0.75 * n}
               for site, n in replicas.items()]
    routing = [
        {"location": "plant-a", "demand_rps": 30.0, "why": "split over the two nearest sites",
         "targets": [{"site": "edge-a", "weight": 2 / 3, "p99_latency_ms": 21.0},
                     {"site": "edge-b", "weight": 1 / 3, "p99_latency_ms": 24.0}]},
        {"location": "plant-b", "demand_rps": 10.0, "why": "the nearest site",
         "targets": [{"site": "edge-b", "weight": 1.0, "p99_latency_ms": 21.0}]}]
    return Fleet.model_validate({"members": members, "routing": routing,
                                 "usd_per_hour": 0.75 * sum(replicas.values()),
                                 "demand_rps": 40.0, "method": "milp (HiGHS)",
                                 "rule": "fleet"}).model_dump(mode="json")


@dataclass
class Env:
    api: Api
    actuator: ServingActuator
    clock: Clock
    kube: KubeEmulator
    tritons: dict[str, Triton]

    def submit(self, model: str, as_fleet: dict[str, Any] | None = None,
               action: str = "place", **spec: Any) -> uuid.UUID:
        """A service placed by the engine; with `as_fleet`, its decision made that fleet (by
        hand, in the decision model's shape, with `action`) before the actuator sees it.
        `spec`: the fleet label (`fleet=True`: the engine decides a fleet) or SLO."""
        doc = served(name=f"{model}-svc", model=model).model_dump(mode="json",
                                                                  exclude_none=True)
        doc["spec"]["latency"]["clients"] = [{"location": "plant-a", "requests_per_s": 30},
                                             {"location": "plant-b", "requests_per_s": 10}]
        if spec.pop("fleet", False):
            doc["metadata"]["labels"] = {"placement.dev/fleet": "true"}
        doc["spec"]["latency"].update(spec)
        res = self.api.client.post("/v1/workloads", json=doc, headers=self.api.h("admin"))
        assert res.status_code == 201 and res.json()["action"] == "place", res.text
        wid = uuid.UUID(res.json()["id"])
        if as_fleet is not None:
            with self.api.runtime.db.write() as s:
                w = s.get(WorkloadRow, wid)
                assert w is not None
                d = s.get(DecisionRow, w.decision_id)
                assert d is not None
                d.explanation = {**d.explanation, "fleet": as_fleet, "action": action}
                w.site = max(as_fleet["members"], key=lambda m: m["replicas"])["site"]
                w.action = d.action = action
        return wid

    def rows(self, wid: uuid.UUID) -> dict[str, ServingRow]:
        with self.api.runtime.db.read() as s:
            rows = list(s.scalars(select(ServingRow).where(ServingRow.workload_id == wid)))
            s.expunge_all()
        return {r.site: r for r in rows}

    def state(self, wid: uuid.UUID) -> dict[str, tuple[str, int | None]]:
        return {site: (r.status, r.version) for site, r in self.rows(wid).items()}

    def roll_to(self, wid: uuid.UUID, version: int) -> None:
        with self.api.runtime.db.write() as s:
            row = s.get(WorkloadRow, wid)
            assert row is not None
            doc = {**row.document}
            doc["spec"] = {**doc["spec"],
                           "serving": {**doc["spec"]["serving"], "version": version}}
            row.document = doc  # as the operator does when the Workload resource changes

    def events(self, wid: uuid.UUID) -> list[tuple[str, str]]:
        with self.api.runtime.db.read() as s:
            return [(t, m) for t, m in s.execute(
                select(EventRow.type, EventRow.message).where(EventRow.workload_id == wid)
                .order_by(EventRow.id))]

    def routing(self, wid: uuid.UUID) -> dict[str, Any]:
        res = self.api.client.get(f"/v1/workloads/{wid}/routing", headers=self.api.h("admin"))
        assert res.status_code == 200, res.text
        return dict(res.json())

    def triton(self, site: str) -> TritonControl:
        return TritonControl(self.tritons[site].url)


@pytest.fixture()
def env(request: pytest.FixtureRequest, tmp_path: Path, tritons: dict[str, Triton],
        kube: KubeEmulator, repo: Path) -> Iterator[Env]:
    """The two sites near each other (indirect parameter: where they are)."""
    config = inventory(tmp_path, tritons, repo, getattr(request, "param", NEAR))
    kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig", list(SITES))
    clock = Clock()
    with api_on(f"sqlite:///{tmp_path / 'placement.db'}", config) as api:
        actuator = ServingActuator(api.runtime, Clusters(kubeconfig),
                                   ServingOptions(ready_timeout_s=10, model_timeout_s=60),
                                   clock=clock)
        yield Env(api, actuator, clock, kube, tritons)


def test_a_two_site_fleet_gets_a_deployment_per_site_with_its_replicas(env: Env) -> None:
    wid = env.submit("fleet-sized", fleet({"edge-a": 1, "edge-b": 2}))
    # Two replicas roll with the Deployment, each pod loading the model as it starts
    # (--load-model); edge-b's one server stands for those pods here.
    with env.api.runtime.db.read() as s:
        w = s.get(WorkloadRow, wid)
        assert w is not None
        wl = Workload.model_validate(w.document)
    env.triton("edge-b").load(wl, {1})
    assert env.actuator.reconcile() == 2
    rows = env.rows(wid)
    assert env.state(wid) == {"edge-a": ("ready", 1), "edge-b": ("ready", 1)}, \
        {s: r.message for s, r in rows.items()}
    assert {s: r.replicas for s, r in rows.items()} == {"edge-a": 1, "edge-b": 2}
    for site, replicas in (("edge-a", 1), ("edge-b", 2)):
        deploy = env.kube.stored("apps/v1", "deployments", NAMESPACE[site], rows[site].name)
        assert deploy is not None and deploy["spec"]["replicas"] == replicas
        assert rows[site].endpoint == env.tritons[site].url
    assert env.actuator.reconcile() == 0
    body = env.api.client.get(f"/v1/workloads/{wid}", headers=env.api.h("admin")).json()
    assert (body["serving"]["site"], body["phase"]) == ("edge-b", "running")
    assert env.events(wid)[2][1] == ("serving fleet-sized with Triton on 2 sites: edge-a "
                                     "(1 replica), edge-b (2 replicas)")

    env.api.client.post(f"/v1/workloads/{wid}/cancel", headers=env.api.h("admin"))
    assert env.actuator.reconcile() == 2
    assert {site: status for site, (status, _) in env.state(wid).items()} == {
        "edge-a": "removed", "edge-b": "removed"}
    for site in SITES:
        assert env.kube.stored("apps/v1", "deployments", NAMESPACE[site],
                               rows[site].name) is None


def test_a_replicated_site_whose_new_version_fails_is_rolled_back(env: Env) -> None:
    """Two replicas at edge-a roll with their Deployment. Its pods do not come up on v3 (the
    model fails to load) in two attempts: the Deployment goes back to v1's template, the
    roll stops there and edge-b, not reached, keeps v1."""
    from placement.actuators.triton.manifests import VERSION_ANNOTATION

    wid = env.submit("fleet-back", fleet({"edge-a": 2, "edge-b": 1}))
    with env.api.runtime.db.read() as s:
        w = s.get(WorkloadRow, wid)
        assert w is not None
        wl = Workload.model_validate(w.document)
    env.triton("edge-a").load(wl, {1})  # edge-a's one server stands for its two pods
    quick = ServingActuator(env.api.runtime, env.actuator.clusters,
                            ServingOptions(ready_timeout_s=10, model_timeout_s=2),
                            clock=env.clock)
    assert quick.reconcile() == 2
    assert env.state(wid) == {"edge-a": ("ready", 1), "edge-b": ("ready", 1)}
    name = env.rows(wid)["edge-a"].name

    def template_version() -> str:
        deploy = env.kube.stored("apps/v1", "deployments", NAMESPACE["edge-a"], name)
        assert deploy is not None
        return str(deploy["spec"]["template"]["metadata"]["annotations"][VERSION_ANNOTATION])

    assert template_version() == "1"
    env.roll_to(wid, 3)
    assert quick.reconcile() == 1  # edge-a first: its pods never serve v3
    assert env.state(wid) == {"edge-a": ("retrying", 1), "edge-b": ("ready", 1)}
    assert template_version() == "3"  # one failed attempt: a slow rollout may yet come up
    assert not [m for t, m in env.events(wid) if t == "serving_rolled_back"]
    env.clock.advance(301)
    assert quick.reconcile() == 1  # the second attempt fails too: rolled back
    assert env.state(wid) == {"edge-a": ("retrying", 1), "edge-b": ("ready", 1)}
    assert template_version() == "1"
    (back,) = [m for t, m in env.events(wid) if t == "serving_rolled_back"]
    assert back.startswith("edge-a: v3 did not come up (") and back.endswith(
        "its Deployment is back on v1 (2 replicas)")
    (stopped,) = [m for t, m in env.events(wid) if t == "serving_roll_stopped"]
    assert stopped.startswith("roll of fleet-back to v3 stopped at edge-a: ")
    assert env.triton("edge-a").loaded_versions("fleet-back") == {1}


@pytest.mark.parametrize("env", [FAR], indirect=True, ids=["sites on two continents"])
def test_a_fleet_the_engine_decides_is_served_on_each_member_site(env: Env) -> None:
    wid = env.submit("fleet-route", fleet=True, p99_slo_ms=60)
    with env.api.runtime.db.read() as s:
        w = s.get(WorkloadRow, wid)
        assert w is not None
        d = s.get(DecisionRow, w.decision_id)
        assert d is not None
        decided = d.explanation["fleet"]
    assert decided is not None, d.explanation["summary"]
    members = {m["site"]: m["replicas"] for m in decided["members"]}
    assert set(members) == set(SITES)
    assert env.actuator.reconcile() == 2
    rows = env.rows(wid)
    assert {s: (r.status, r.replicas) for s, r in rows.items()} == {
        s: ("ready", n) for s, n in members.items()}
    table = env.routing(wid)
    assert [(r["location"], [t["site"] for t in r["targets"]]) for r in table["routes"]] == [
        ("plant-a", ["edge-a"]), ("plant-b", ["edge-b"])]


def test_a_fleet_that_bursts_is_served_at_once_on_its_sites_node_pools(env: Env) -> None:
    """No burst is provisioned for a fleet: its members are served without waiting for one,
    and their pods select no burst node pool."""
    wid = env.submit("fleet-route", fleet({"edge-a": 1, "edge-b": 1}), action="burst")
    assert env.actuator.reconcile() == 2
    rows = env.rows(wid)
    assert env.state(wid) == {"edge-a": ("ready", 1), "edge-b": ("ready", 1)}
    for site in SITES:
        deploy = env.kube.stored("apps/v1", "deployments", NAMESPACE[site], rows[site].name)
        assert deploy is not None
        pod = deploy["spec"]["template"]["spec"]
        assert "placement.io/burst-workload" not in pod.get("nodeSelector", {})


def test_a_version_rolls_one_site_at_a_time_and_stops_on_a_failing_one(env: Env) -> None:
    wid = env.submit("fleet-roll", fleet({"edge-a": 1, "edge-b": 1}))
    assert env.actuator.reconcile() == 2
    assert env.state(wid) == {"edge-a": ("ready", 1), "edge-b": ("ready", 1)}

    env.roll_to(wid, 2)
    assert env.actuator.reconcile() == 1  # edge-a first (site order); edge-b waits
    assert env.state(wid) == {"edge-a": ("ready", 2), "edge-b": ("ready", 1)}
    assert env.triton("edge-a").loaded_versions("fleet-roll") == {2}
    assert env.triton("edge-b").loaded_versions("fleet-roll") == {1}
    assert env.actuator.reconcile() == 1  # edge-a is ready with v2: now edge-b
    assert env.state(wid) == {"edge-a": ("ready", 2), "edge-b": ("ready", 2)}
    assert env.triton("edge-b").loaded_versions("fleet-roll") == {2}
    rolls = [m for t, m in env.events(wid) if t == "serving_roll"]
    assert rolls == ["rolling fleet-roll from v1 to v2 on edge-a (1 of 2 sites)",
                     "rolling fleet-roll from v1 to v2 on edge-b (2 of 2 sites)"]

    env.roll_to(wid, 3)  # v3 fails to load
    assert env.actuator.reconcile() == 1
    rows = env.rows(wid)
    assert env.state(wid) == {"edge-a": ("retrying", 2), "edge-b": ("ready", 2)}
    assert "weights file is corrupt" in rows["edge-a"].message
    assert env.triton("edge-a").loaded_versions("fleet-roll") == {2}  # the old one serves
    assert env.triton("edge-b").loaded_versions("fleet-roll") == {2}
    (stopped,) = [m for t, m in env.events(wid) if t == "serving_roll_stopped"]
    assert stopped.startswith("roll of fleet-roll to v3 stopped at edge-a: ")
    assert stopped.endswith("still serving: edge-b (v2)")
    for _ in range(2):  # retried with backoff; edge-b is never re-opened meanwhile
        env.clock.advance(301)
        assert env.actuator.reconcile() == 1
        assert env.state(wid) == {"edge-a": ("retrying", 2), "edge-b": ("ready", 2)}
    assert [t for t, _ in env.events(wid)].count("serving_roll_stopped") == 1

    table = env.routing(wid)
    assert [(r["location"], [(t["site"], t["weight"], t["status"]) for t in r["targets"]],
             r["drained"]) for r in table["routes"]] == [
        ("plant-a", [("edge-b", 1.0, "ready")], ["edge-a"]),
        ("plant-b", [("edge-b", 1.0, "ready")], [])]

    env.roll_to(wid, 2)  # back to the version that works: edge-a takes it, the roll is done
    env.clock.advance(301)
    assert env.actuator.reconcile() == 1
    assert env.state(wid) == {"edge-a": ("ready", 2), "edge-b": ("ready", 2)}
    assert env.routing(wid)["routes"][0]["drained"] == []


def test_the_routing_table_drains_a_failed_site_in_the_api_and_the_operator(
        env: Env, tmp_path: Path) -> None:
    down = tmp_path / "down"  # edge-b's cluster cannot be reached
    down.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "up", "cluster": {"server": env.kube.url}},
                     {"name": "down", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}],
        "users": [{"name": "tester", "user": {"token": "test-token"}}],
        "contexts": [{"name": "edge-a", "context": {"cluster": "up", "user": "tester"}},
                     {"name": "edge-b", "context": {"cluster": "down", "user": "tester"}}],
        "current-context": "edge-a"}))
    env.actuator.clusters = Clusters(down)
    env.actuator.clusters.client("edge-b").configuration.retries = 0
    wid = env.submit("fleet-route", fleet({"edge-a": 1, "edge-b": 1}))
    before = env.routing(wid)  # nothing adopted yet: the plan as decided
    assert [[(t["site"], t["status"]) for t in r["targets"]] for r in before["routes"]] == [
        [("edge-a", "unserved"), ("edge-b", "unserved")], [("edge-b", "unserved")]]

    assert env.actuator.reconcile() == 2
    assert env.state(wid) == {"edge-a": ("ready", 1), "edge-b": ("retrying", None)}
    table = env.routing(wid)
    plant_a, plant_b = table["routes"]
    assert (table["workload"], table["name"]) == (str(wid), "fleet-route-svc")
    assert table["policy_version"] == env.api.runtime.policy_version
    assert plant_a["targets"] == [{"site": "edge-a", "weight": 1.0, "p99_latency_ms": 21.0,
                                   "status": "ready"}]
    assert (plant_a["drained"], plant_a["note"]) == (
        ["edge-b"], "drained edge-b (retrying); weights renormalized over edge-a")
    assert (plant_b["targets"], plant_b["drained"]) == ([], ["edge-b"])
    assert plant_b["note"] == ("no healthy site left: edge-b (retrying); its requests have "
                               "nowhere to go")

    with env.api.runtime.db.read() as s:
        view = wstore.get_workload(s, workload_id=wid, team=None)
    assert view is not None
    routes = routes_of(env.api.runtime, view)  # what the operator writes into .status
    assert routes == table["routes"]
    assert status_of(view, None, routing=routes)["routing"] == table["routes"]


def test_a_service_on_one_site_routes_every_client_location_there(env: Env) -> None:
    wid = env.submit("fleet-route")
    site = env.routing(wid)
    with env.api.runtime.db.read() as s:
        w = s.get(WorkloadRow, wid)
        assert w is not None
        placed = w.site
    assert [(r["location"], r["demand_rps"], [(t["site"], t["weight"], t["status"])
                                              for t in r["targets"]])
            for r in site["routes"]] == [("plant-a", 30.0, [(placed, 1.0, "unserved")]),
                                         ("plant-b", 10.0, [(placed, 1.0, "unserved")])]
    assert all(t["p99_latency_ms"] is not None for r in site["routes"] for t in r["targets"])
    env.actuator.reconcile()
    assert {t["status"] for r in env.routing(wid)["routes"] for t in r["targets"]} == {"ready"}


def test_routing_is_404_for_an_unknown_workload_and_409_for_a_job(env: Env) -> None:
    res = env.api.client.get(f"/v1/workloads/{uuid.uuid4()}/routing",
                             headers=env.api.h("admin"))
    assert res.status_code == 404
    job = {"metadata": {"name": "train"},
           "spec": {"kind": "training", "team": "apps", "gpu": {"types": ["L4"], "count": 1},
                    "duration_hours": 1}}
    res = env.api.client.post("/v1/workloads", json=job, headers=env.api.h("admin"))
    assert res.status_code == 201, res.text
    res = env.api.client.get(f"/v1/workloads/{res.json()['id']}/routing",
                             headers=env.api.h("admin"))
    assert res.status_code == 409
    assert "only services (inference, rag) have a routing table" in res.json()["detail"]


PLAN = [("edge-a", 0.6, 20.0), ("edge-b", 0.3, 25.0), ("edge-c", 0.1, 40.0)]


@pytest.mark.parametrize(("status", "targets", "drained"), [
    ({"edge-a": "ready", "edge-b": "ready", "edge-c": "rolling"},
     {"edge-a": 0.6, "edge-b": 0.3, "edge-c": 0.1}, []),
    ({"edge-a": "failed", "edge-b": "ready", "edge-c": "ready"},
     {"edge-b": 0.75, "edge-c": 0.25}, ["edge-a"]),
    ({"edge-a": "retrying", "edge-b": "removing", "edge-c": "pending"},
     {"edge-c": 1.0}, ["edge-a", "edge-b"]),
    ({"edge-a": "removed", "edge-b": "failed", "edge-c": "retrying"},
     {}, ["edge-a", "edge-b", "edge-c"]),
], ids=["every site healthy keeps the plan's weights",
        "a failed site's share goes to the others in proportion",
        "a site being removed is drained like a failing one",
        "a location with no healthy site left lists none and says so"])
def test_drained_sites_leave_weights_renormalized_over_the_healthy_ones(
        status: dict[str, str], targets: dict[str, float], drained: list[str]) -> None:
    route = drain("plant", 12.0, PLAN, status)
    assert {t.site: t.weight for t in route.targets} == pytest.approx(targets)
    assert route.drained == drained
    if not targets:
        assert route.note is not None and "no healthy site left" in route.note
    assert (route.note is None) == (not drained)


def test_the_migration_keeps_the_servings_rows_stored_before_fleets(db_url: str) -> None:
    db = open_database(db_url)
    try:
        upgrade(db, "0007")
        wid = uuid.uuid4()
        with db.engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO workloads (id, name, team, kind, priority, phase, site, action, "
                "document, created_at, updated_at) VALUES (:id, 'old', 'apps', 'inference', 0, "
                "'running', 'edge-a', 'place', '{}', :now, :now)"),
                {"id": wid.hex if db.dialect == "sqlite" else str(wid), "now": "2026-12-01"})
            conn.execute(text(
                "INSERT INTO servings (workload_id, site, namespace, name, model, version, "
                "status, message, attempts, next_attempt_at, updated_at) VALUES (:id, "
                "'edge-a', 'serving', 'triton-old', 'echo', 3, 'ready', 'ok', 0, :now, :now)"),
                {"id": wid.hex if db.dialect == "sqlite" else str(wid), "now": "2026-12-01"})
        upgrade(db)
        with db.write() as s:
            (row,) = s.scalars(select(ServingRow))
            assert (row.id, row.workload_id, row.site, row.version, row.status,
                    row.replicas) == (wid, wid, "edge-a", 3, "ready", None)
            s.add(ServingRow(id=uuid.uuid5(wid, "edge-b"), workload_id=wid, site="edge-b",
                             namespace="serving", name="triton-old", model="echo",
                             status="pending", attempts=0, message=""))
        downgrade(db, "0007")  # one row per workload: the one keyed by the workload
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT site FROM servings")).scalars().all() == ["edge-a"]
    finally:
        db.dispose()
