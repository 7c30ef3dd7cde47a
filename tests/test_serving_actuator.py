"""The serving actuator end to end: a placed inference workload is applied to its site's
cluster (KMock's emulator, production client code), served by a real tritonserver, recorded
and exposed in the API, removed on cancel; failures become a retried status; Triton's metrics
feed the latency estimate."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from placement.actuators.kube import Clusters
from placement.actuators.triton.actuator import DUE, ServingActuator, ServingOptions
from placement.actuators.triton.control import TritonControl
from placement.actuators.triton.feed import TritonFeed
from placement.store.tables import EventRow, ServingRow, WorkloadRow
from placement.store.work import claim_next

from .conftest import Api, api_on
from .factories import Clock
from .services import KubeEmulator, Triton, free_port, kube_emulator, tritonserver
from .triton_models import python_model, served

NAMESPACE = "serving"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    python_model(root, served(version=1), factor=2)
    python_model(root, served(version=2), factor=3)
    python_model(root, served(model="bad"), broken=True)
    return root


@pytest.fixture(scope="module")
def triton(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Triton]:
    with tritonserver(repo, tmp_path_factory.mktemp("triton")) as t:
        yield t


@pytest.fixture(scope="module")
def kube() -> Iterator[KubeEmulator]:
    with kube_emulator() as emu:
        yield emu


def config_dir(tmp: Path, triton: Triton, repo: Path) -> Path:
    site = {"apiVersion": "placement.dev/v1alpha1", "kind": "Site",
            "metadata": {"name": "edge-a"},
            "spec": {"type": "onprem", "location": {"lat": 48.1, "lon": 11.6},
                     "kube_context": "edge-a", "wan_gbps": 10, "egress_usd_per_gb": 0,
                     "gpus": [{"type": "L4", "count": 4, "usd_per_gpu_hour": 0.75}],
                     "serving": {"namespace": NAMESPACE, "repository": str(repo),
                                 "endpoint": triton.url, "metrics_url": triton.metrics_url}}}
    client = {"apiVersion": "placement.dev/v1alpha1", "kind": "ClientLocation",
              "metadata": {"name": "users"}, "spec": {"location": {"lat": 48.2, "lon": 11.5}}}
    policy = {"apiVersion": "placement.dev/v1alpha1", "kind": "Policy",
              "metadata": {"name": "test"}, "spec": {}}
    (tmp / "inventory.yaml").write_text(yaml.safe_dump_all([site, client]))
    (tmp / "policy.yaml").write_text(yaml.safe_dump(policy))
    return tmp


@dataclass
class Env:
    api: Api
    actuator: ServingActuator
    clock: Clock
    kube: KubeEmulator
    triton: Triton

    def submit(self, **kw: Any) -> uuid.UUID:
        doc = served(**kw).model_dump(mode="json", exclude_none=True)
        res = self.api.client.post("/v1/workloads", json=doc, headers=self.api.h("admin"))
        assert res.status_code == 201, res.text
        assert res.json()["action"] == "place" and res.json()["site"] == "edge-a"
        return uuid.UUID(res.json()["id"])

    def get(self, wid: uuid.UUID) -> dict[str, Any]:
        res = self.api.client.get(f"/v1/workloads/{wid}", headers=self.api.h("admin"))
        assert res.status_code == 200
        return dict(res.json())

    def events(self, wid: uuid.UUID) -> list[str]:
        with self.api.runtime.db.read() as s:
            return list(s.scalars(select(EventRow.type).where(EventRow.workload_id == wid)
                                  .order_by(EventRow.id)))

    def deployment(self, name: str) -> dict[str, Any] | None:
        return self.kube.stored("apps/v1", "deployments", NAMESPACE, name)


@pytest.fixture()
def env(tmp_path: Path, triton: Triton, kube: KubeEmulator, repo: Path) -> Iterator[Env]:
    config = config_dir(tmp_path, triton, repo)
    kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig", ["edge-a"])
    clock = Clock()
    with api_on(f"sqlite:///{tmp_path / 'placement.db'}", config) as api:
        actuator = ServingActuator(api.runtime, Clusters(kubeconfig),
                                   ServingOptions(ready_timeout_s=10, model_timeout_s=60),
                                   clock=clock)
        yield Env(api, actuator, clock, kube, triton)


def test_a_placed_service_is_served_recorded_and_removed_on_cancel(env: Env) -> None:
    wid = env.submit(name="served-svc")
    assert env.actuator.reconcile() == 1
    body = env.get(wid)
    serving = body["serving"]
    assert serving["status"] == "ready", serving["message"]
    assert (serving["endpoint"], serving["version"], serving["namespace"]) == (
        env.triton.url, 1, NAMESPACE)
    assert "smoke inference on v1" in serving["message"]
    assert body["phase"] == "running"
    deploy = env.deployment(serving["name"])
    assert deploy is not None and deploy["spec"]["template"]["spec"]["containers"][0][
        "resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert TritonControl(env.triton.url).model_ready("echo", 1)
    assert env.actuator.reconcile() == 0  # nothing due: applying again is not even tried

    res = env.api.client.post(f"/v1/workloads/{wid}/cancel", headers=env.api.h("admin"))
    assert res.status_code == 200
    assert env.actuator.reconcile() == 1
    assert env.get(wid)["serving"]["status"] == "removed"
    assert env.deployment(serving["name"]) is None
    actions = env.api.runtime.metrics.serving_actions
    assert actions.labels("edge-a", "serve", "ok")._value.get() == 1
    assert actions.labels("edge-a", "remove", "ok")._value.get() == 1
    assert env.events(wid) == ["submitted", "placed", "serving", "serving_ready", "running",
                               "cancelled", "serving_removed"]


def test_a_new_model_version_is_rolled(env: Env) -> None:
    wid = env.submit(name="rolled-svc")
    env.actuator.reconcile()
    with env.api.runtime.db.write() as s:
        row = s.get(WorkloadRow, wid)
        assert row is not None
        doc = {**row.document}
        doc["spec"] = {**doc["spec"], "serving": {**doc["spec"]["serving"], "version": 2}}
        row.document = doc  # as the operator does when the Workload resource changes
    assert env.actuator.reconcile() == 1
    serving = env.get(wid)["serving"]
    assert (serving["status"], serving["version"]) == ("ready", 2)
    assert "unloaded echo v1" in serving["message"]
    assert TritonControl(env.triton.url).loaded_versions("echo") == {2}


def test_a_model_that_fails_to_load_is_retried_with_backoff(env: Env) -> None:
    wid = env.submit(name="bad-svc", model="bad")
    assert env.actuator.reconcile() == 1
    serving = env.get(wid)["serving"]
    assert (serving["status"], serving["attempts"]) == ("retrying", 1)
    assert "weights file is corrupt" in serving["message"]
    actions = env.api.runtime.metrics.serving_actions
    assert actions.labels("edge-a", "serve", "error")._value.get() == 1
    assert env.get(wid)["phase"] == "placed"
    assert env.events(wid)[-1] == "serving_error"
    assert env.actuator.reconcile() == 0  # not due before the backoff ends
    env.clock.advance(5.5)
    assert env.actuator.reconcile() == 1
    serving = env.get(wid)["serving"]
    assert serving["attempts"] == 2
    due = datetime.fromisoformat(serving["next_attempt_at"])
    assert due - env.clock.now == timedelta(seconds=10)


def test_an_unreachable_cluster_leaves_a_clear_retried_status(env: Env, tmp_path: Path) -> None:
    down = env.kube.kubeconfig(tmp_path / "down", ["edge-a"],
                               server=f"http://127.0.0.1:{free_port()}")
    clusters = Clusters(down)
    clusters.client("edge-a").configuration.retries = 0
    env.actuator.clusters = clusters
    wid = env.submit(name="unreachable-svc")
    assert env.actuator.reconcile() == 1
    serving = env.get(wid)["serving"]
    assert serving["status"] == "retrying"
    assert "cannot reach the cluster" in serving["message"]


def test_triton_metrics_replace_the_declared_service_time(env: Env) -> None:
    wid = env.submit(name="measured-svc")
    env.actuator.reconcile()
    assert env.get(wid)["serving"]["status"] == "ready"
    preview = served(name="next").model_dump(mode="json", exclude_none=True)

    def decide() -> dict[str, Any]:
        res = env.api.client.post("/v1/placements/preview", json=preview,
                                  headers=env.api.h("admin"))
        assert res.status_code == 200, res.text
        return dict(res.json())

    declared = decide()
    feed = TritonFeed(env.api.runtime.db, max_age_s=60)
    env.api.runtime.triton = feed
    feed.poll()  # baseline
    import numpy as np
    import tritonclient.http as th

    ctl = TritonControl(env.triton.url)
    item = th.InferInput("INPUT0", [1, 4], "FP32")
    item.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
    for _ in range(10):
        ctl.client.infer("echo", [item])
    feed.poll()
    measured = feed.seen[("edge-a", "echo")].value
    observed = decide()
    (reading,) = [s for s in observed["signals"] if s["signal"] == "triton_service_p99_ms"]
    assert (reading["site"], reading["key"], reading["status"]) == ("edge-a", "echo", "fresh")
    assert reading["value"] == pytest.approx(measured.p99_ms, abs=1e-3)
    shift = (declared["estimates"]["p99_latency_ms"]
             - observed["estimates"]["p99_latency_ms"])
    assert shift == pytest.approx(20 - measured.p99_ms, abs=0.05)


def test_a_workload_that_never_became_ready_is_still_removed(env: Env) -> None:
    wid = env.submit(name="never-ready-svc", model="absent")
    env.actuator.reconcile()
    serving = env.get(wid)["serving"]
    assert serving["status"] == "retrying" and "absent" in serving["message"]
    assert env.deployment(serving["name"]) is not None
    env.api.client.post(f"/v1/workloads/{wid}/cancel", headers=env.api.h("admin"))
    assert env.actuator.reconcile() == 1  # due at once, whatever the backoff said
    assert env.get(wid)["serving"]["status"] == "removed"
    assert env.deployment(serving["name"]) is None


def test_replicas_claim_each_row_once_and_a_lapsed_claim_changes_nothing(env: Env) -> None:
    other = ServingActuator(env.api.runtime, env.actuator.clusters, env.actuator.options,
                            clock=env.clock)
    wid = env.submit(name="claimed-svc")
    env.actuator._adopt()
    first = claim_next(env.api.runtime.db, ServingRow, DUE, set(), env.clock, 900)
    assert first is not None and first[0] == wid
    assert claim_next(env.api.runtime.db, ServingRow, DUE, set(), env.clock, 900) is None
    env.clock.advance(901)  # the first replica died
    second = claim_next(env.api.runtime.db, ServingRow, DUE, set(), env.clock, 900)
    assert second is not None and second[0] == wid
    with env.api.runtime.db.read() as s:
        row = s.get(ServingRow, wid)
        assert row is not None
        s.expunge(row)
    env.actuator._failed(row, first[1], RuntimeError("late report from the dead replica"))
    other._work(*second)
    serving = env.get(wid)["serving"]
    assert serving["status"] == "ready" and serving["attempts"] == 0
    assert "late report" not in serving["message"]
