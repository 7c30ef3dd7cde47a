"""Kubernetes manifests that serve a placed workload with Triton on its site's cluster.

A ConfigMap with the rendered config.pbtxt (the configuration the actuator loads the model
with, and the one to publish next to the model's files), a Deployment running tritonserver in
explicit model control mode (GPU requests, probes on Triton's health endpoints, non-root,
read-only root file system), a Service for HTTP, gRPC and metrics, and a ServiceMonitor where
the site asks for one. Every built-in manifest is checked against the Kubernetes schemas
before it is applied.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from typing import Any

from placement.actuators.kube import ManifestError as ManifestError
from placement.actuators.kube import validate as validate
from placement.actuators.triton.render import config_pbtxt, serving_of
from placement.model import Site, Workload
from placement.store.servings import Pool

Manifest = dict[str, Any]
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
MANAGED_BY = "hybrid-placement"
LABEL_WORKLOAD = "placement.io/workload-id"
LABEL_TEAM = "placement.io/team"
VERSION_ANNOTATION = "placement.io/model-version"
LABEL_POOL = "placement.io/pool"  # a fleet member site's (GPU type, capacity) Deployment
TRITON_UID = 1000  # the tritonserver image's non-root user


def serving_name(wl: Workload, workload_id: uuid.UUID) -> str:
    """A DNS-1035 label naming the workload's Triton objects, unique per workload."""
    base = re.sub(r"[^a-z0-9-]", "-", wl.name.lower()).strip("-")[:40].rstrip("-")
    return f"triton-{base}-{workload_id.hex[:8]}" if base else f"triton-{workload_id.hex[:8]}"


def pool_suffix(pool: Pool) -> str:
    """A short stable name part for one (GPU type, capacity) of a site."""
    return hashlib.sha1(f"{pool.gpu_type}/{pool.capacity}".encode()).hexdigest()[:6]


def deployment_names(name: str, pools: Sequence[Pool]) -> list[str]:
    """The Deployments serving applies under `name`: one, or one per pool where several."""
    return [name] if len(pools) <= 1 else [f"{name}-{pool_suffix(p)}" for p in pools]


def render(wl: Workload, workload_id: uuid.UUID, site: Site, burst: bool = False,
           pools: Sequence[Pool] = ()) -> list[Manifest]:
    """The manifests for the workload on the site, in apply order; on a burst, the pods run
    on the node pool provisioned for the workload. `pools`: a fleet member site's replicas
    per (GPU type, capacity); where there are several, each gets its own Deployment (its own
    selector, the pool label) on the nodes its GPU type and capacity name in the site's
    serving settings, and the Service reaches them all."""
    spec, conf = serving_of(wl), site.spec.serving
    name, ns = serving_name(wl, workload_id), conf.namespace
    repository = spec.repository or conf.repository
    if repository is None:
        from placement.actuators.triton.render import ServingSpecError

        raise ServingSpecError(f"workload {wl.name} names no model repository and site "
                               f"{site.name} has no serving.repository; set one of them")
    labels = {"app.kubernetes.io/name": "tritonserver", "app.kubernetes.io/instance": name,
              "app.kubernetes.io/managed-by": MANAGED_BY, LABEL_WORKLOAD: str(workload_id),
              LABEL_TEAM: wl.spec.team}
    selector = {"app.kubernetes.io/instance": name}

    def meta(object_name: str = name) -> dict[str, Any]:
        return {"name": object_name, "namespace": ns, "labels": dict(labels)}

    # One replica: the actuator rolls versions through Triton's API, the pod stays. Several:
    # the version is part of the pod template, so the Deployment rolls the pods to it.
    version = {VERSION_ANNOTATION: str(spec.version)}
    out: list[Manifest] = [
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": meta(f"{name}-model-config"),
         "data": {"config.pbtxt": config_pbtxt(wl)}}]
    several = len(pools) > 1
    each: list[Pool | None] = list(pools) if pools else [None]
    for deploy_name, pool in zip(deployment_names(name, pools), each, strict=True):
        pod_labels, match = dict(labels), dict(selector)
        if several and pool is not None:
            pod_labels[LABEL_POOL] = match[LABEL_POOL] = pool_suffix(pool)
        deploy_meta = meta(deploy_name)
        if wl.spec.replicas == 1:
            deploy_meta["annotations"] = dict(version)
        out.append(
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": deploy_meta,
             "spec": {"replicas": pool.replicas if several and pool is not None
                      else wl.spec.replicas, "selector": {"matchLabels": match},
                      # no surge: a new pod would need GPUs the placement did not reserve
                      "strategy": {"type": "RollingUpdate",
                                   "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
                      "template": _pod(wl, repository, pod_labels, site, burst, pool)}})
    out += [
        {"apiVersion": "v1", "kind": "Service", "metadata": meta(),
         "spec": {"type": "ClusterIP", "selector": selector,
                  "ports": [_port("http", HTTP_PORT), _port("grpc", GRPC_PORT),
                            _port("metrics", METRICS_PORT)]}},
    ]
    if conf.service_monitor:
        out.append({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
                    "metadata": meta(),
                    "spec": {"selector": {"matchLabels": selector},
                             "endpoints": [{"port": "metrics", "path": "/metrics",
                                            "interval": "15s"}]}})
    for manifest in out:
        validate(manifest)
    return out


def _port(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "port": port, "targetPort": name, "protocol": "TCP"}


def _pod(wl: Workload, repository: str, labels: dict[str, str],
         site: Site, burst: bool, pool: Pool | None = None) -> dict[str, Any]:
    spec, conf = serving_of(wl), site.spec.serving
    gpus = str(wl.spec.gpu.count)
    args = ["tritonserver", f"--model-repository={repository}", "--model-control-mode=explicit",
            f"--load-model={spec.model}", f"--http-port={HTTP_PORT}",
            f"--grpc-port={GRPC_PORT}", f"--metrics-port={METRICS_PORT}",
            "--metrics-config=summary_latencies=true", "--strict-readiness=false"]
    probe = {"periodSeconds": 10, "timeoutSeconds": 3}
    container = {
        "name": "tritonserver", "image": conf.image, "args": args,
        "ports": [{"name": "http", "containerPort": HTTP_PORT},
                  {"name": "grpc", "containerPort": GRPC_PORT},
                  {"name": "metrics", "containerPort": METRICS_PORT}],
        "resources": {"requests": {"cpu": conf.cpu, "memory": conf.memory, "nvidia.com/gpu": gpus},
                      "limits": {"memory": conf.memory, "nvidia.com/gpu": gpus}},
        # Until its model is ready the pod gets no traffic; after that, readiness is the
        # server's (non-strict): a model version that fails to load during a roll must not
        # take the pod, still serving the old version, out of the Service.
        "startupProbe": {"httpGet": {"path": f"/v2/models/{spec.model}/ready", "port": "http"},
                         "failureThreshold": 60, **probe},
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": "http"}, **probe},
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "http"}, **probe},
        "securityContext": {"runAsNonRoot": True, "runAsUser": TRITON_UID,
                            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                         {"name": "shm", "mountPath": "/dev/shm"}],
    }
    pod: dict[str, Any] = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": TRITON_UID,
                            "fsGroup": TRITON_UID, "seccompProfile": {"type": "RuntimeDefault"}},
        "automountServiceAccountToken": False,
        "containers": [container],
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": conf.scratch}},
                    {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}],
    }
    selector = dict(conf.node_selector)
    spot = {"key": "placement.io/spot", "operator": "Exists", "effect": "NoSchedule"}
    if burst:  # the burst's node pool labels and taints (infra.config)
        selector["placement.io/burst-workload"] = wl.name
        pod["tolerations"].append(spot)
    elif pool is not None:  # a fleet member: the nodes of its GPU type, spot ones for spot
        selector.update(conf.gpu_node_labels.get(pool.gpu_type, {}))
        if pool.capacity == "spot":
            selector.update(conf.spot_node_labels)
            pod["tolerations"].append(spot)
        elif conf.spot_node_labels:  # on-demand and on-prem replicas stay off spot nodes
            pod["affinity"] = {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": k, "operator": "NotIn", "values": [v]}
                                          for k, v in sorted(conf.spot_node_labels.items())]}]}}}
    if selector:
        pod["nodeSelector"] = selector
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT),
                   "prometheus.io/path": "/metrics"}
    if wl.spec.replicas > 1:
        annotations[VERSION_ANNOTATION] = str(spec.version)
    return {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod}
