"""Jobs end to end against KMock's Kubernetes emulator with the production client code: a
placed training job is created on its site's cluster, the emulated Job's status drives the
workload to the end and releases its GPUs, a cancel deletes it, an evicted spot pod leads to a
new decision and a resubmission from the checkpoint, and an unreachable cluster is retried."""

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

from placement.actuators.jobs.actuator import JobActuator, JobOptions
from placement.actuators.kube import Clusters
from placement.store.tables import CapacityRow, EventRow, JobRunRow

from .conftest import Api, api_on
from .factories import Clock
from .services import KubeEmulator, free_port, kube_emulator

NS = "train"
API = "placement.dev/v1alpha1"


def site(name: str, price: float) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "Site", "metadata": {"name": name},
            "spec": {"type": "onprem", "location": {"lat": 50.1, "lon": 8.7},
                     "kube_context": name, "wan_gbps": 10, "egress_usd_per_gb": 0,
                     "gpus": [{"type": "A100", "count": 8, "usd_per_gpu_hour": price}],
                     "jobs": {"namespace": NS}}}


def config_dir(tmp: Path) -> Path:
    corpus = {"apiVersion": API, "kind": "Dataset", "metadata": {"name": "corpus"},
              "spec": {"size_gb": 200, "replicas": ["dc-b"],
                       "uris": {"dc-b": "s3://dc-b-data/corpus"}}}
    policy = {"apiVersion": API, "kind": "Policy", "metadata": {"name": "test"},
              "spec": {"defaults": {"weights": {"cost": 4, "data_gravity": 1, "wait": 1,
                                                "latency": 0}}}}
    (tmp / "inventory.yaml").write_text(yaml.safe_dump_all(
        [site("dc-a", 2.0), site("dc-b", 3.0), corpus]))
    (tmp / "policy.yaml").write_text(yaml.safe_dump(policy))
    return tmp


def training(name: str) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "Workload", "metadata": {"name": name},
            "spec": {"kind": "training", "team": "research", "gpu": {"types": ["A100"],
                                                                      "count": 4},
                     "duration_hours": 4, "checkpoint_minutes": 30,
                     "datasets": [{"name": "corpus"}],
                     "job": {"image": "ghcr.io/example/train:1", "command": ["python", "t.py"],
                             "checkpoint_uri": f"s3://ckpt/{name}"}}}


@pytest.fixture(scope="module")
def kube() -> Iterator[KubeEmulator]:
    with kube_emulator() as emu:
        yield emu


@dataclass
class Env:
    api: Api
    actuator: JobActuator
    clock: Clock
    kube: KubeEmulator
    client: Any

    def submit(self, name: str) -> uuid.UUID:
        res = self.api.client.post("/v1/workloads", json=training(name),
                                   headers=self.api.h("admin"))
        assert res.status_code == 201, res.text
        assert (res.json()["action"], res.json()["site"]) == ("place", "dc-a"), res.json()
        return uuid.UUID(res.json()["id"])

    def workload(self, wid: uuid.UUID) -> dict[str, Any]:
        return dict(self.api.client.get(f"/v1/workloads/{wid}", headers=self.api.h("admin"))
                    .json())

    def run(self, wid: uuid.UUID) -> JobRunRow:
        with self.api.runtime.db.read() as s:
            row = s.get(JobRunRow, wid)
            assert row is not None
            s.expunge(row)
            return row

    def events(self, wid: uuid.UUID) -> list[str]:
        with self.api.runtime.db.read() as s:
            return list(s.scalars(select(EventRow.type).where(EventRow.workload_id == wid)
                                  .order_by(EventRow.id)))

    def job(self, wid: uuid.UUID) -> dict[str, Any] | None:
        return self.kube.stored("batch/v1", "jobs", NS, self.run(wid).name)

    def set_status(self, wid: uuid.UUID, status: dict[str, Any]) -> None:
        from kubernetes import client as k

        k.BatchV1Api(self.client).patch_namespaced_job(self.run(wid).name, NS,
                                                       {"status": status})

    def add_pod(self, wid: uuid.UUID, name: str, status: dict[str, Any], run: int = 0) -> None:
        """A pod as the kubelet would report it (container statuses filled in)."""
        from kubernetes import client as k

        for key in ("initContainerStatuses", "containerStatuses"):
            status[key] = [{"image": "x", "imageID": "", "ready": False, "restartCount": 0,
                            **c} for c in status.get(key, [])]

        body: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS,
                         "labels": {"placement.io/workload-id": str(wid),
                                    "placement.io/run": str(run)}},
            "spec": {"containers": [{"name": "main", "image": "x"}]}, "status": status}
        k.CoreV1Api(self.client).create_namespaced_pod(NS, body)  # type: ignore[arg-type]

    def later(self) -> int:
        self.clock.advance(self.actuator.options.poll_s + 1)
        return self.actuator.reconcile()


@pytest.fixture()
def env(tmp_path: Path, kube: KubeEmulator) -> Iterator[Env]:
    config = kube.kubeconfig(tmp_path / "kubeconfig", ["dc-a", "dc-b"])
    clock = Clock()
    with api_on(f"sqlite:///{tmp_path / 'placement.db'}", config_dir(tmp_path)) as api:
        clusters = Clusters(config)
        yield Env(api, JobActuator(api.runtime, clusters, JobOptions(poll_s=15), clock=clock),
                  clock, kube, clusters.client("dc-a"))


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def reserved(env: Env) -> int:
    with env.api.runtime.db.read() as s:
        return sum(r.reserved for r in s.scalars(select(CapacityRow)))


def test_a_job_runs_to_the_end_and_its_actuals_are_recorded(env: Env) -> None:
    wid = env.submit("pretrain")
    assert reserved(env) == 4
    assert env.actuator.reconcile() == 1
    job = env.job(wid)
    assert job is not None
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "4"
    (stager,) = pod["initContainers"]  # corpus lives at dc-b only
    assert {"name": "SOURCE", "value": "s3://dc-b-data/corpus"} in stager["env"]
    assert env.run(wid).status == "submitted"

    start = env.clock.now - timedelta(hours=1)
    env.set_status(wid, {"active": 1, "startTime": iso(start)})
    env.add_pod(wid, "pretrain-0", {"phase": "Running", "initContainerStatuses": [
        {"name": "stage-corpus", "state": {"terminated": {"exitCode": 0,
                                                          "message": "200000000000"}}}]})
    env.later()
    assert env.workload(wid)["phase"] == "running"

    env.set_status(wid, {"active": 0, "succeeded": 1, "completionTime": iso(
        start + timedelta(hours=2)), "conditions": [{"type": "Complete", "status": "True"}]})
    env.later()
    assert env.workload(wid)["phase"] == "succeeded"
    assert reserved(env) == 0  # released without anyone calling the API
    run = env.run(wid)
    assert run.status == "succeeded" and run.actual_hours == pytest.approx(2.0)
    assert run.usd_per_hour == pytest.approx(4 * 2.0)
    assert run.actual_usd == pytest.approx(2.0 * 4 * 2.0)
    assert run.staged_bytes == 200_000_000_000 and run.estimated_egress_gb == pytest.approx(200)
    shown = env.workload(wid)["job"]
    assert shown["actual"] == {"hours": pytest.approx(2.0), "usd": pytest.approx(16.0),
                               "egress_gb": pytest.approx(200.0)}
    assert shown["estimated"]["hours"] == 4
    ratio = env.api.runtime.metrics.job_estimate_ratio.labels("hours")
    assert ratio._sum.get() == pytest.approx(2.0 / 4)  # 2 h actual against 4 h estimated
    assert env.events(wid) == ["submitted", "placed", "job", "job_submitted", "running",
                               "succeeded"]


def test_a_failed_job_fails_the_workload_with_its_reason(env: Env) -> None:
    wid = env.submit("oom")
    env.actuator.reconcile()
    env.set_status(wid, {"conditions": [{"type": "Failed", "status": "True",
                                         "reason": "BackoffLimitExceeded"}]})
    env.add_pod(wid, "oom-0", {"phase": "Failed", "containerStatuses": [
        {"name": "main", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]})
    env.later()
    body = env.workload(wid)
    assert body["phase"] == "failed" and reserved(env) == 0
    assert "OOMKilled" in env.run(wid).message
    with env.api.runtime.db.read() as s:
        failed = s.scalar(select(EventRow.message).where(EventRow.workload_id == wid,
                                                         EventRow.type == "failed"))
    assert failed is not None and "BackoffLimitExceeded: container main OOMKilled" in failed


def test_cancel_deletes_the_job_and_its_pods(env: Env) -> None:
    wid = env.submit("cancelled")
    env.actuator.reconcile()
    env.add_pod(wid, "cancelled-0", {"phase": "Running"})
    assert env.api.client.post(f"/v1/workloads/{wid}/cancel",
                               headers=env.api.h("admin")).status_code == 200
    env.actuator.reconcile()
    assert env.job(wid) is None
    assert env.kube.stored("v1", "pods", NS, "cancelled-0") is None
    assert env.run(wid).status == "removed"
    assert env.events(wid)[-1] == "job_removed"


def test_an_evicted_spot_pod_leads_to_a_new_decision_from_the_checkpoint(env: Env) -> None:
    wid = env.submit("evicted")
    env.actuator.reconcile()
    env.set_status(wid, {"active": 1, "startTime": iso(env.clock.now - timedelta(hours=1.2))})
    env.add_pod(wid, "evicted-0", {"phase": "Failed", "conditions": [
        {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
         "message": "spot node reclaimed"}]})
    env.later()
    assert env.job(wid) is None and env.kube.stored("v1", "pods", NS, "evicted-0") is None
    body = env.workload(wid)
    assert body["spec"]["interruptions"] == 1
    assert body["spec"]["duration_hours"] == pytest.approx(3.0)  # 1.0 h kept at checkpoints
    assert "interrupted" in env.events(wid)
    assert body["phase"] == "placed" and reserved(env) == 4  # the new decision's GPUs
    assert env.actuator.reconcile() >= 1  # adopted again and resubmitted
    job = env.job(wid)
    assert job is not None
    main = job["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "PLACEMENT_INTERRUPTIONS", "value": "1"} in main["env"]
    assert {"name": "CHECKPOINT_URI", "value": "s3://ckpt/evicted"} in main["env"]
    assert env.run(wid).interruptions == 1 and env.run(wid).started_at is None
    assert env.run(wid).actual_hours == pytest.approx(1.2 + 16 / 3600)  # billed, though lost

    # The new run starts; a pod of the old run still terminating on its node is not this run's.
    env.add_pod(wid, "evicted-old", {"phase": "Failed", "conditions": [
        {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager"}]})
    env.set_status(wid, {"active": 1, "startTime": iso(env.clock.now)})
    env.add_pod(wid, "evicted-1", {"phase": "Running"}, run=1)
    env.later()
    assert env.workload(wid)["phase"] == "running" and env.run(wid).status == "running"


def test_an_unreachable_cluster_leaves_a_clear_retried_state(env: Env, tmp_path: Path) -> None:
    down = env.kube.kubeconfig(tmp_path / "down", ["dc-a", "dc-b"],
                               server=f"http://127.0.0.1:{free_port()}")
    clusters = Clusters(down)
    clusters.client("dc-a").configuration.retries = 0
    env.actuator.clusters = clusters
    wid = env.submit("unreachable")
    assert env.actuator.reconcile() == 1
    run = env.run(wid)
    assert run.status == "retrying" and "cannot reach the cluster" in run.message
    assert env.workload(wid)["phase"] == "placed"
    assert env.events(wid)[-1] == "job_error"
