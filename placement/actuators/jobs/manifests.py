"""Kubernetes manifests that run a placed training, fine-tuning or batch job on its site.

One Job (an indexed Job with a headless Service when the GPUs span several nodes). GPUs are
requested per pod; on a burst node pool the pods select the pool's nodes by the workload's
label and tolerate the GPU taint (and the spot taint on spot capacity). A dataset that is not
at the site is copied in by an init container from the replica that is cheapest to move it
from, which reports the bytes it copied in its termination message. Checkpoints are a volume
or a URI handed to the job.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from placement.actuators.base import PermanentActuatorError
from placement.actuators.kube import ManifestError, validate
from placement.engine.compiled import CompiledInventory
from placement.engine.context import data_move, moves_to
from placement.model import Site, Workload
from placement.model.workload import JobSpec

Manifest = dict[str, Any]
MANAGED_BY = "hybrid-placement"
LABEL_WORKLOAD = "placement.io/workload-id"
LABEL_TEAM = "placement.io/team"
LABEL_RUN = "placement.io/run"  # which run of the workload (interruptions so far)
BURST_NODE_LABEL = "placement.io/burst-workload"  # set on a burst node pool's nodes
SPOT_TAINT = "placement.io/spot"
STAGE_PREFIX = "stage-"


class JobSpecError(PermanentActuatorError):
    """The workload cannot run as a job as written; the message says what to add."""


@dataclass(frozen=True)
class Stage:
    """A dataset copied to the site before the job starts."""

    dataset: str
    source_site: str
    source: str
    size_gb: float


@dataclass(frozen=True)
class Placement:
    """What the decision says about where and how the job runs."""

    site: Site
    action: str  # place | burst
    capacity: str | None  # onprem | on_demand | spot
    stages: tuple[Stage, ...] = ()
    deadline_s: int | None = None  # what is left of the deadline when the Job is created


def job_of(wl: Workload) -> JobSpec:
    if wl.spec.job is None:
        raise JobSpecError(f"workload {wl.name} has no 'job' section; add image (and command) "
                           "to run it")
    return wl.spec.job


def job_name(wl: Workload, workload_id: uuid.UUID) -> str:
    """A DNS-1035 label naming the workload's Job, unique per workload."""
    base = re.sub(r"[^a-z0-9-]", "-", wl.name.lower()).strip("-")[:40].rstrip("-")
    return f"job-{base}-{workload_id.hex[:8]}" if base else f"job-{workload_id.hex[:8]}"


def stages(ci: CompiledInventory, wl: Workload, site: Site,
           decision: Mapping[str, Any] | None = None) -> tuple[Stage, ...]:
    """Bulk datasets the site lacks, each copied from the replica the decision chose (its
    `data_moves`); for a decision stored without them, or for another site, the engine's own
    choice (`data_move`: cheapest egress $, then transfer time)."""
    if decision is not None and decision.get("site") == site.name and "data_moves" in decision:
        moves = list(decision["data_moves"])
    else:
        moves = moves_to(ci, data_move(ci, wl), ci.site_index[site.name])
    datasets = {d.name: d for d in ci.inventory.datasets}
    out = []
    for m in moves:
        name, src = m["dataset"], m["from_site"]
        uri = datasets[name].spec.uris.get(src)
        if uri is None:
            raise JobSpecError(f"dataset {name} must be copied to {site.name} from {src}, "
                               f"but its uris has no entry for {src}; add one")
        out.append(Stage(name, src, uri, float(m["gb"])))
    return tuple(out)


def render(wl: Workload, workload_id: uuid.UUID, where: Placement) -> list[Manifest]:
    """The Job (and, for several nodes, its headless Service) for the workload at the site."""
    job, conf = job_of(wl), where.site.spec.jobs
    name = job_name(wl, workload_id)
    labels = {"app.kubernetes.io/name": "placement-job", "app.kubernetes.io/instance": name,
              "app.kubernetes.io/managed-by": MANAGED_BY, LABEL_WORKLOAD: str(workload_id),
              LABEL_TEAM: wl.spec.team}
    meta = {"name": name, "namespace": conf.namespace, "labels": labels}
    spec: dict[str, Any] = {
        "backoffLimit": job.backoff_limit,
        "ttlSecondsAfterFinished": job.ttl_seconds_after_finished,
        "completions": job.nodes, "parallelism": job.nodes,
        "template": {"metadata": {"labels": {**labels, LABEL_RUN: str(wl.spec.interruptions)}},
                     "spec": _pod(wl, name, where)}}
    if job.nodes > 1:
        spec["completionMode"] = "Indexed"
    if where.deadline_s is not None:
        spec["activeDeadlineSeconds"] = max(1, where.deadline_s)
    out: list[Manifest] = []
    if job.nodes > 1:
        out.append({"apiVersion": "v1", "kind": "Service", "metadata": dict(meta),
                    "spec": {"clusterIP": "None", "selector": {"app.kubernetes.io/instance":
                                                               name},
                             "publishNotReadyAddresses": True,
                             "ports": [{"name": "rendezvous", "port": 29500}]}})
    out.append({"apiVersion": "batch/v1", "kind": "Job", "metadata": dict(meta), "spec": spec})
    for manifest in out:
        try:
            validate(manifest)
        except ManifestError as exc:
            raise ManifestError(f"{exc} (job {wl.name})") from exc
    return out


def _pod(wl: Workload, name: str, where: Placement) -> dict[str, Any]:
    job, conf = job_of(wl), where.site.spec.jobs
    gpus = str(wl.spec.gpu.count // job.nodes)
    env = [{"name": k, "value": v} for k, v in sorted(job.env.items())]
    env += [{"name": "PLACEMENT_WORKLOAD", "value": wl.name},
            {"name": "PLACEMENT_INTERRUPTIONS", "value": str(wl.spec.interruptions)}]
    mounts, volumes = [], []
    if job.checkpoint_uri is not None:
        env.append({"name": "CHECKPOINT_URI", "value": job.checkpoint_uri})
    if job.checkpoint_volume is not None:
        env.append({"name": "CHECKPOINT_DIR", "value": "/checkpoints"})
        mounts.append({"name": "checkpoints", "mountPath": "/checkpoints"})
        volumes.append({"name": "checkpoints",
                        "persistentVolumeClaim": {"claimName": job.checkpoint_volume}})
    init = []
    if where.stages:
        mounts.append({"name": "data", "mountPath": "/data"})
        volumes.append({"name": "data", "emptyDir": {"sizeLimit": conf.scratch}})
        env.append({"name": "DATA_DIR", "value": "/data"})
        init = [_stager(st, conf.stager_image) for st in where.stages]
    if job.nodes > 1:
        env += [{"name": "WORLD_SIZE", "value": str(job.nodes)},
                {"name": "MASTER_ADDR", "value": f"{name}-0.{name}"},
                {"name": "MASTER_PORT", "value": "29500"}]
    container: dict[str, Any] = {
        "name": "main", "image": job.image, "env": env,
        "resources": {"limits": {"nvidia.com/gpu": gpus}, "requests": {"nvidia.com/gpu": gpus}},
        "securityContext": {"allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": mounts}
    if job.command:
        container["command"] = list(job.command)
    if job.args:
        container["args"] = list(job.args)
    tolerations = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    selector = dict(conf.node_selector)
    if where.action == "burst":  # run only on the node pool provisioned for this workload
        selector[BURST_NODE_LABEL] = wl.name
        if where.capacity == "spot":
            tolerations.append({"key": SPOT_TAINT, "operator": "Exists",
                                "effect": "NoSchedule"})
    pod: dict[str, Any] = {
        "restartPolicy": "Never", "containers": [container], "initContainers": init,
        "volumes": volumes, "tolerations": tolerations,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}
    if selector:
        pod["nodeSelector"] = selector
    if conf.service_account:
        pod["serviceAccountName"] = conf.service_account
    if job.nodes > 1:
        pod["subdomain"] = name
    return pod


def _stager(st: Stage, image: str) -> dict[str, Any]:
    """Copies one dataset to /data/<name>; its termination message is the bytes copied."""
    target = f"/data/{st.dataset}"
    script = (f'rclone copy "$SOURCE" {target} && '
              f"du -sb {target} | cut -f1 > /dev/termination-log")
    return {"name": f"{STAGE_PREFIX}{st.dataset}"[:63], "image": image,
            "command": ["sh", "-c", script],
            "env": [{"name": "SOURCE", "value": st.source},
                    {"name": "SOURCE_SITE", "value": st.source_site}],
            "terminationMessagePolicy": "File",
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "securityContext": {"allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]}}}
