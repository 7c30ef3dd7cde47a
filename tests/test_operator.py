"""The operator's handlers against KMock's Kubernetes emulator on 127.0.0.1: a Workload gets its
decision in its status (and an event), deleting it releases the reservation, a bad spec gets a
permanent error, and a policy reload changes the next decision."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from placement.control.runtime import Runtime
from placement.metrics import Metrics
from placement.service.settings import Settings
from placement.store.tables import CapacityRow, WorkloadRow

from .conftest import EXAMPLES
from .services import KubeEmulator, kube_emulator

NS = "ml"
GROUP, VERSION = "placement.dev", "v1alpha1"


def declare(emu: KubeEmulator) -> None:
    """What the emulator must list in discovery for kopf to watch our resources."""
    every = ["get", "list", "watch", "create", "update", "patch", "delete"]
    for key, kind, namespaced, sub in (
            (f"{GROUP}/{VERSION}/workloads", "Workload", True, ["status"]),
            (f"{GROUP}/{VERSION}/sites", "Site", False, []),
            ("apiextensions.k8s.io/v1/customresourcedefinitions", "CustomResourceDefinition",
             False, []),
            ("v1/namespaces", "Namespace", False, []), ("v1/events", "Event", True, [])):
        emu.emulator.resources[key] = {"namespaced": namespaced, "kind": kind,
                                       "singular": kind.lower(), "verbs": every,
                                       "shortnames": [], "categories": [], "subresources": sub}


@dataclass
class Operator:
    rt: Runtime
    emu: KubeEmulator
    client: Any
    config: Path

    def apply(self, name: str, spec: dict[str, Any]) -> str:
        from kubernetes import client as k

        uid = str(uuid.uuid4())
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Workload",
                "metadata": {"name": name, "namespace": NS, "uid": uid, "resourceVersion": "1",
                             "generation": 1},
                "spec": spec}
        k.CustomObjectsApi(self.client).create_namespaced_custom_object(
            GROUP, VERSION, NS, "workloads", body)
        return uid

    def change(self, name: str, spec: dict[str, Any], generation: int) -> None:
        """A spec change as the API server records it (the emulator does not count
        generations itself)."""
        from kubernetes import client as k

        k.CustomObjectsApi(self.client).patch_namespaced_custom_object(
            GROUP, VERSION, NS, "workloads", name,
            {"metadata": {"generation": generation}, "spec": spec})

    def get(self, name: str) -> dict[str, Any] | None:
        return self.emu.stored(f"{GROUP}/{VERSION}", "workloads", NS, name)

    def delete(self, name: str) -> None:
        from kubernetes import client as k

        k.CustomObjectsApi(self.client).delete_namespaced_custom_object(
            GROUP, VERSION, NS, "workloads", name)

    def until(self, what: Callable[[], Any], timeout: float = 20) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = what()
            if value:
                return value
            time.sleep(0.2)
        pytest.fail("the operator did not get there in time")


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    pytest.importorskip("kopf")
    import kopf

    from placement.service.wiring import build_runtime

    tmp = tmp_path_factory.mktemp("operator")
    config = tmp / "policies"
    shutil.copytree(EXAMPLES, config, ignore=shutil.ignore_patterns("workloads"))
    mp = pytest.MonkeyPatch()
    with kube_emulator() as emu:
        declare(emu)
        kubeconfig = emu.kubeconfig(tmp / "kubeconfig", ["test"])
        mp.setenv("KUBECONFIG", str(kubeconfig))
        mp.setenv("PLACEMENT_RELOAD_SECONDS", "0.5")
        mp.setenv("PLACEMENT_CONFIG_DIR", str(config))
        mp.delenv("PLACEMENT_KUBECONFIG", raising=False)
        rt = build_runtime(Settings(database_url=f"sqlite:///{tmp / 'p.db'}", config_dir=config),
                           Metrics(CollectorRegistry()))
        import placement.operator  # noqa: F401  (registers the handlers)

        @kopf.on.login(id="kmock")  # the emulator, whatever the kubernetes client read first
        def _login(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=emu.url, token="test-token", insecure=True)

        stop, ready = threading.Event(), threading.Event()
        thread = threading.Thread(target=lambda: asyncio.run(kopf.operator(
            clusterwide=True, standalone=True, memo=kopf.Memo(rt=rt), stop_flag=stop,
            ready_flag=ready)), daemon=True)
        thread.start()
        assert ready.wait(30), "kopf did not start"
        from kubernetes import config as kc

        try:
            client = kc.new_client_from_config(str(kubeconfig))  # type: ignore[no-untyped-call]
            yield Operator(rt, emu, client, config)
        finally:
            stop.set()
            thread.join(timeout=20)
            mp.undo()


def example(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((EXAMPLES / "workloads" / f"{name}.yaml")
                                          .read_text())["spec"]
    return spec


def reserved(rt: Runtime) -> int:
    with rt.db.read() as s:
        return sum(r.reserved for r in s.scalars(select(CapacityRow)))


def test_a_workload_gets_its_decision_in_status_and_an_event(operator: Operator) -> None:
    operator.apply("finetune-a", example("vision-finetune"))
    obj = operator.until(lambda: (o := operator.get("finetune-a")) and
                         (o.get("status") or {}).get("phase") and o)
    status = obj["status"]
    assert status["phase"] == "placed" and status["action"] in ("place", "burst")
    assert status["site"] and status["summary"] and status["policyVersion"]
    assert 1 <= len(status["candidates"]) <= 3 and status["candidates"][0]["score"]
    assert all(r["reason"] for r in status["rejected"])
    assert "placement.dev/release" in obj["metadata"]["finalizers"]
    explained = operator.until(lambda: [
        r.data for r in operator.emu.requests()
        if r.method.value.upper() == "POST" and "/events" in str(r.url)
        and isinstance(r.data, dict) and r.data.get("message") == status["summary"]])
    assert explained[0]["reason"] == status["action"].capitalize()


def test_deleting_a_workload_releases_its_gpus(operator: Operator) -> None:
    before = reserved(operator.rt)
    uid = operator.apply("to-delete", example("vision-finetune"))
    operator.until(lambda: reserved(operator.rt) > before)
    operator.delete("to-delete")
    operator.until(lambda: operator.get("to-delete") is None)
    with operator.rt.db.read() as s:
        row = s.scalar(select(WorkloadRow).where(WorkloadRow.idempotency_key == f"k8s:{uid}"))
    assert row is not None and row.phase == "cancelled"
    assert reserved(operator.rt) == before


def test_a_bad_spec_gets_a_permanent_error(operator: Operator) -> None:
    spec = {**example("vision-finetune"), "gpu": {"types": ["A100"], "count": 0}}
    operator.apply("bad-spec", spec)
    obj = operator.until(lambda: (o := operator.get("bad-spec")) and
                         (o.get("status") or {}).get("phase") and o)
    assert obj["status"]["phase"] == "invalid"
    assert "spec.gpu.count" in obj["status"]["message"]


def test_a_policy_reload_changes_the_next_decision(operator: Operator) -> None:
    operator.apply("before-reload", example("vision-finetune"))
    first = operator.until(lambda: (o := operator.get("before-reload")) and
                           (o.get("status") or {}).get("site") and o)["status"]
    policy = yaml.safe_load((operator.config / "policy.yaml").read_text())
    policy["spec"]["rules"].insert(0, {"name": "not-there", "match": {"kinds": ["finetune"]},
                                       "forbid": {"sites": [first["site"]]}})
    (operator.config / "policy.yaml").write_text(yaml.safe_dump(policy))
    version = first["policyVersion"]
    operator.until(lambda: operator.rt.policy_version != version)
    operator.apply("after-reload", example("vision-finetune"))
    second = operator.until(lambda: (o := operator.get("after-reload")) and
                            (o.get("status") or {}).get("phase") and o)["status"]
    assert second["policyVersion"] != version
    assert second["site"] != first["site"]


def test_a_site_resource_joins_and_leaves_the_inventory(operator: Operator) -> None:
    from kubernetes import client as k

    from placement.store import inventory as inv

    site = yaml.safe_load_all((EXAMPLES / "sites-onprem.yaml").read_text())
    spec = next(d for d in site if d and d["metadata"]["name"] == "plant-austin")["spec"]
    api = k.CustomObjectsApi(operator.client)
    api.create_cluster_custom_object(GROUP, VERSION, "sites", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Site",
        "metadata": {"name": "edge-lab", "uid": str(uuid.uuid4()), "resourceVersion": "1"},
        "spec": spec})

    def stored() -> bool:
        with operator.rt.db.read() as s:
            return "edge-lab" in {d.name for d in inv.list_docs(s, kind="site")}

    operator.until(stored)
    api.delete_cluster_custom_object(GROUP, VERSION, "sites", "edge-lab")
    operator.until(lambda: not stored())


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def settled(operator: Operator, name: str, generation: int = 1) -> dict[str, Any]:
    """The Workload once its status speaks of this generation."""
    found: dict[str, Any] = operator.until(
        lambda: (o := operator.get(name)) and (o.get("status") or {}).get(
            "observedGeneration") == generation and conditions(o) and o)
    return found


@pytest.mark.parametrize(("name", "change", "phase", "ready", "placed", "reason"), [
    ("cond-placed", {}, "placed", "True", "True", "Placed"),
    ("cond-rejected", {"gpu": {"types": ["A100"], "count": 5000}}, "rejected", "False",
     "False", "Rejected"),
    ("cond-invalid", {"gpu": {"types": ["A100"], "count": 0}}, "invalid", "False", "False",
     "InvalidSpec"),
], ids=["placed", "rejected", "invalid spec"])
def test_ready_and_placed_conditions_follow_the_decision(
        operator: Operator, name: str, change: dict[str, Any], phase: str, ready: str,
        placed: str, reason: str) -> None:
    """`kubectl wait --for=condition=Ready` and kstatus-style health checks read these: a
    type, a True/False status, a reason, an RFC 3339 lastTransitionTime and the generation the
    status speaks of."""
    operator.apply(name, {**example("vision-finetune"), **change})
    obj = settled(operator, name)
    assert obj["status"]["phase"] == phase
    got = conditions(obj)
    assert set(got) == {"Ready", "Placed"}
    assert (got["Ready"]["status"], got["Placed"]["status"]) == (ready, placed)
    assert got["Ready"]["reason"] == reason
    for c in got.values():
        assert c["observedGeneration"] == 1 and c["reason"] and c["message"]
        assert datetime.strptime(c["lastTransitionTime"], "%Y-%m-%dT%H:%M:%SZ")
    if placed == "True":
        assert got["Placed"]["reason"] in ("Place", "Burst")
        assert obj["status"]["site"] in got["Placed"]["message"]


def test_a_taken_change_and_a_refused_one_move_observed_generation(operator: Operator) -> None:
    spec = {**example("vision-finetune"), "serving": None}
    operator.apply("gen-moves", spec)
    first = conditions(settled(operator, "gen-moves"))
    assert first["Ready"]["status"] == "True"
    operator.change("gen-moves", {"priority": 7}, generation=2)  # not a serving version
    refused = settled(operator, "gen-moves", generation=2)
    ready = conditions(refused)["Ready"]
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == (
        "False", "ChangeRefused", 2)
    assert "only spec.serving.version" in ready["message"]
    assert conditions(refused)["Placed"]["status"] == "True"  # the GPUs are still held
    operator.change("gen-moves", {"priority": spec.get("priority", 0)}, generation=3)
    back = conditions(settled(operator, "gen-moves", generation=3))
    assert back["Ready"]["status"] == "True" and back["Ready"]["observedGeneration"] == 3
    assert back["Placed"]["lastTransitionTime"] == first["Placed"]["lastTransitionTime"]


def view(phase: str, action: str | None, site: str | None) -> Any:
    from placement.store.workloads import WorkloadView

    now = datetime(2026, 1, 1, tzinfo=UTC)
    return WorkloadView(id=uuid.uuid4(), name="w", team="ml", kind="finetune", priority=0,
                        phase=phase, site=site, action=action, document={}, decision_id=None,
                        idempotency_key="k8s:x", created_at=now, updated_at=now)


@pytest.mark.parametrize(("phase", "action", "acting", "ready", "placed"), [
    ("placed", "place", False, ("True", "Placed"), ("True", "Place")),
    ("placed", "burst", True, ("False", "Placed"), ("True", "Burst")),  # not started yet
    ("running", "place", True, ("True", "Running"), ("True", "Place")),
    ("succeeded", "place", True, ("True", "Succeeded"), ("False", "Succeeded")),
    ("queued", "queue", False, ("False", "Queued"), ("False", "Queued")),
    ("rejected", "reject", False, ("False", "Rejected"), ("False", "Rejected")),
    ("failed", "place", True, ("False", "Failed"), ("False", "Failed")),
    ("cancelled", "place", False, ("False", "Cancelled"), ("False", "Cancelled")),
], ids=["placed, nothing acts", "placed, actuators run", "running", "succeeded", "queued",
        "rejected", "failed", "cancelled"])
def test_conditions_of_every_phase(phase: str, action: str, acting: bool,
                                   ready: tuple[str, str], placed: tuple[str, str]) -> None:
    from placement.operator import status_of

    site = None if phase in ("queued", "rejected") else "dc-a"
    status = status_of(view(phase, action, site), {"summary": "why"}, generation=4,
                       acting=acting)
    got = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert got == {"Ready": ready, "Placed": placed}
    assert status["observedGeneration"] == 4
    assert all(c["observedGeneration"] == 4 for c in status["conditions"])


def test_last_transition_time_moves_only_with_the_status() -> None:
    from placement.operator import status_of

    t0, t1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    first = status_of(view("placed", "place", "dc-a"), None, acting=True, now=t0)["conditions"]
    later = status_of(view("running", "place", "dc-a"), None, acting=True, previous=first,
                      now=t1)["conditions"]
    times = {c["type"]: c["lastTransitionTime"] for c in later}
    assert times == {"Ready": "2026-01-02T00:00:00Z",  # False -> True
                     "Placed": "2026-01-01T00:00:00Z"}  # True all along
