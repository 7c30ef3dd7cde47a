"""Job rendering and status reading: manifests validate and carry what the run needs; Job and
pod states map to the lifecycle with their reason."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from placement.actuators.jobs.manifests import JobSpecError, Placement, render, stages
from placement.actuators.jobs.status import observe
from placement.actuators.triton.manifests import validate
from placement.engine import Engine
from placement.engine.compiled import compile_inventory
from placement.model import Dataset, Inventory, Workload
from placement.model.inventory import SiteJobs

from .factories import BURST_ALL, cloud, engine, job, onprem, policy

WID = uuid.UUID("abcdef00-0000-0000-0000-000000000001")


def trained(nodes: int = 1, count: int = 4, **job_fields: Any) -> Workload:
    doc = job(name="train-llm", gpu="A100", count=count, hours=4,
              datasets=[{"name": "corpus"}]).model_dump(exclude_none=True)
    doc["spec"]["job"] = {"image": "ghcr.io/example/train:1", "command": ["python", "train.py"],
                          "env": {"EPOCHS": "3"}, "nodes": nodes, **job_fields}
    return Workload.model_validate(doc)


def corpus(uris: dict[str, str]) -> Dataset:
    return Dataset.model_validate({"metadata": {"name": "corpus"}, "spec": {
        "size_gb": 200, "replicas": list(uris), "uris": uris}})


SITES = [onprem("dc-a", {"A100": (8, 2.0)}), onprem("dc-b", {"A100": (8, 2.0)}),
         cloud("aws-a", {"A100": [("p4d.24xlarge", 8, 32.0, 12.0)]})]


def place(wl: Workload, site: str, action: str = "place", capacity: str | None = "onprem",
          uris: dict[str, str] | None = None) -> list[dict[str, Any]]:
    inv = Inventory(sites=SITES, datasets=[corpus(uris or {"dc-a": "s3://a/corpus"})])
    target = inv.site(site)
    return render(wl, WID, Placement(target, action, capacity,
                                     stages(compile_inventory(inv), wl, target)))


def test_a_local_dataset_needs_no_staging_and_the_job_validates() -> None:
    (manifest,) = place(trained(checkpoint_uri="s3://ckpt/train-llm"), "dc-a")
    validate(manifest)
    pod = manifest["spec"]["template"]["spec"]
    (main,) = pod["containers"]
    assert main["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert {"name": "CHECKPOINT_URI", "value": "s3://ckpt/train-llm"} in main["env"]
    assert pod["initContainers"] == [] and pod["restartPolicy"] == "Never"
    assert manifest["metadata"]["namespace"] == SiteJobs().namespace
    assert manifest["spec"]["backoffLimit"] == 3


def test_a_remote_dataset_is_staged_from_its_cheapest_replica() -> None:
    (manifest,) = place(trained(), "dc-a", uris={"dc-b": "s3://b/corpus",
                                                 "aws-a": "s3://aws/corpus"})
    (stager,) = manifest["spec"]["template"]["spec"]["initContainers"]
    env = {e["name"]: e["value"] for e in stager["env"]}
    assert env == {"SOURCE": "s3://b/corpus", "SOURCE_SITE": "dc-b"}  # on-prem egress is free
    assert "/dev/termination-log" in stager["command"][-1]


@pytest.mark.parametrize(("decision", "source"), [
    ({"site": "dc-a", "data_moves": [{"dataset": "corpus", "from_site": "aws-a", "gb": 200}]},
     "aws-a"),
    ({"site": "dc-a", "data_moves": []}, None),
    ({"site": "dc-b", "data_moves": [{"dataset": "corpus", "from_site": "aws-a", "gb": 200}]},
     "dc-b"),
    ({"site": "dc-a"}, "dc-b"),
], ids=["the decision's replica is the one copied", "the decision says nothing to move",
        "a decision for another site is not used", "a decision stored without data moves"])
def test_staging_reads_the_replica_the_decision_chose(decision: dict[str, Any],
                                                      source: str | None) -> None:
    inv = Inventory(sites=SITES, datasets=[corpus({"dc-b": "s3://b/corpus",
                                                   "aws-a": "s3://aws/corpus"})])
    got = stages(compile_inventory(inv), trained(), inv.site("dc-a"), decision)
    assert [s.source_site for s in got] == ([source] if source else [])


def test_the_decision_records_the_replica_staging_copies() -> None:
    inv = Inventory(sites=SITES, datasets=[corpus({"dc-b": "s3://b/corpus",
                                                   "aws-a": "s3://aws/corpus"})])
    pol = policy([{"name": "here", "require": {"sites": ["dc-a"]}, "weights": {"cost": 1}}])
    eng = Engine(inv, pol, "v")
    decision = eng.explain_dict(eng.decide(trained()))
    assert decision["site"] == "dc-a"
    assert decision["data_moves"] == [{"dataset": "corpus", "from_site": "dc-b", "gb": 200.0}]
    assert stages(eng.ci, trained(), inv.site("dc-a"), decision) == stages(
        eng.ci, trained(), inv.site("dc-a"))


def test_a_replica_without_a_uri_is_a_clear_error() -> None:
    bare = Dataset.model_validate({"metadata": {"name": "corpus"},
                                   "spec": {"size_gb": 1, "replicas": ["dc-b"]}})
    inv = Inventory(sites=SITES, datasets=[bare])
    with pytest.raises(JobSpecError, match="uris has no entry for dc-b"):
        stages(compile_inventory(inv), trained(), inv.site("dc-a"))


def test_a_spot_burst_selects_its_node_pool_and_tolerates_spot() -> None:
    (manifest,) = place(trained(), "aws-a", action="burst", capacity="spot",
                        uris={"aws-a": "s3://aws/corpus"})
    pod = manifest["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"placement.io/burst-workload": "train-llm"}
    assert {t["key"] for t in pod["tolerations"]} == {"nvidia.com/gpu", "placement.io/spot"}


def test_several_nodes_make_an_indexed_job_with_a_headless_service() -> None:
    service, manifest = place(trained(nodes=2, count=8), "dc-a")
    validate(service)
    assert service["spec"]["clusterIP"] == "None"
    assert manifest["spec"]["completionMode"] == "Indexed"
    assert manifest["spec"]["completions"] == manifest["spec"]["parallelism"] == 2
    main = manifest["spec"]["template"]["spec"]["containers"][0]
    assert main["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert {"name": "WORLD_SIZE", "value": "2"} in main["env"]
    name = manifest["metadata"]["name"]
    assert manifest["spec"]["template"]["spec"]["subdomain"] == service["metadata"]["name"] \
        == name
    assert service["spec"]["selector"] == {"app.kubernetes.io/instance": name}
    assert {"name": "MASTER_ADDR", "value": f"{name}-0.{name}"} in main["env"]


def test_gpus_must_split_over_the_nodes() -> None:
    with pytest.raises(ValueError, match=r"does not split over job\.nodes"):
        trained(nodes=3, count=8)


def test_after_the_policy_limit_of_spot_interruptions_only_on_demand_is_eligible() -> None:
    burst: dict[str, Any] = {**BURST_ALL["burst"], "max_spot_interruptions": 1}  # type: ignore[dict-item]
    rule = {**BURST_ALL, "burst": burst}
    sites = [cloud("aws-a", {"A100": [("p4d.24xlarge", 8, 32.0, 12.0)]})]
    fresh = engine(sites, policy([rule])).place(job(gpu="A100", count=8, hours=4))
    assert fresh.capacity == "spot"
    doc = job(gpu="A100", count=8, hours=4).model_dump(exclude_none=True)
    doc["spec"]["interruptions"] = 1
    again = engine(sites, policy([rule])).place(Workload.model_validate(doc))
    assert again.capacity == "on_demand"
    (spot,) = [c for c in again.candidates if c.capacity == "spot"]
    assert "interrupted on spot 1 times" in (spot.reason or "")


def pod(name: str = "p0", phase: str = "Running", **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"phase": phase, **status}}


def cond(kind: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {"type": kind, "status": "True", "reason": reason, "message": message,
            "lastTransitionTime": "2026-11-27T12:00:00Z"}


STAGED: dict[str, Any] = {"initContainerStatuses": [{"name": "stage-corpus", "state": {
    "terminated": {"exitCode": 0, "message": "200000000000\n"}}}]}


@pytest.mark.parametrize(("job_status", "pods", "state", "reason"), [
    (None, [], "missing", "gone"),
    ({}, [pod(phase="Pending")], "pending", "waiting"),
    ({"active": 1, "startTime": "2026-11-27T10:00:00Z"}, [pod(phase="Pending")], "pending",
     "waiting"),
    ({"active": 1, "startTime": "2026-11-27T10:00:00Z"}, [pod()], "running", "running"),
    ({"conditions": [cond("Complete")], "completionTime": "2026-11-27T12:00:00Z"}, [],
     "succeeded", "completed"),
    ({"conditions": [cond("Failed", "BackoffLimitExceeded")]},
     [pod(phase="Failed", containerStatuses=[{"name": "main", "state": {"terminated": {
         "exitCode": 137, "reason": "OOMKilled"}}}])],
     "failed", "BackoffLimitExceeded: container main OOMKilled (exit 137)"),
    ({"conditions": [cond("Failed", "DeadlineExceeded", "Job was active longer than "
                                                        "specified deadline")]}, [],
     "failed", "DeadlineExceeded: Job was active longer"),
    ({"active": 1}, [pod(phase="Pending", containerStatuses=[{"name": "main", "state": {
        "waiting": {"reason": "ImagePullBackOff", "message": "not found"}}}])],
     "failed", "image pull: container main ImagePullBackOff"),
    ({"active": 1}, [pod(conditions=[cond("DisruptionTarget", "DeletionByTaintManager",
                                          "node reclaimed")])],
     "interrupted", "disrupted: DeletionByTaintManager node reclaimed"),
    ({"active": 1}, [pod(phase="Failed", reason="Evicted", message="low memory")],
     "interrupted", "Evicted: low memory"),
], ids=["job gone", "pending", "active but still scheduling or staging", "running",
        "complete", "oom killed", "deadline", "image pull", "spot node reclaimed", "evicted"])
def test_job_and_pod_states(job_status: dict[str, Any] | None, pods: list[dict[str, Any]],
                            state: str, reason: str) -> None:
    seen = observe(None if job_status is None else {"status": job_status}, pods)
    assert seen.state == state
    assert reason in seen.reason


def test_staged_bytes_come_from_the_stagers_termination_messages() -> None:
    seen = observe({"status": {"active": 1}}, [pod("p0", "Running", **STAGED),
                                                pod("p1", "Running", **STAGED)])
    assert seen.staged_bytes == 400_000_000_000
