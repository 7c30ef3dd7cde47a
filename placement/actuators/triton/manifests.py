"""Kubernetes manifests that serve a placed workload with Triton on its site's cluster.

A ConfigMap with the rendered config.pbtxt (the configuration the actuator loads the model
with, and the one to publish next to the model's files), a Deployment running tritonserver in
explicit model control mode (GPU requests, probes on Triton's health endpoints, non-root,
read-only root file system), a Service for HTTP, gRPC and metrics, and a ServiceMonitor where
the site asks for one. Every built-in manifest is checked against the Kubernetes schemas
before it is applied.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from placement.actuators.kube import ManifestError as ManifestError
from placement.actuators.kube import validate as validate
from placement.actuators.triton.render import config_pbtxt, serving_of
from placement.model import Site, Workload

Manifest = dict[str, Any]
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
MANAGED_BY = "hybrid-placement"
LABEL_WORKLOAD = "placement.io/workload-id"
LABEL_TEAM = "placement.io/team"
VERSION_ANNOTATION = "placement.io/model-version"
TRITON_UID = 1000  # the tritonserver image's non-root user


def serving_name(wl: Workload, workload_id: uuid.UUID) -> str:
    """A DNS-1035 label naming the workload's Triton objects, unique per workload."""
    base = re.sub(r"[^a-z0-9-]", "-", wl.name.lower()).strip("-")[:40].rstrip("-")
    return f"triton-{base}-{workload_id.hex[:8]}" if base else f"triton-{workload_id.hex[:8]}"


def render(wl: Workload, workload_id: uuid.UUID, site: Site, burst: bool = False
           ) -> list[Manifest]:
    """The manifests for the workload on the site, in apply order; on a burst, the pods run
    on the node pool provisioned for the workload."""
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
    deploy_meta = {**meta(), "annotations": version} if wl.spec.replicas == 1 else meta()
    out: list[Manifest] = [
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": meta(f"{name}-model-config"),
         "data": {"config.pbtxt": config_pbtxt(wl)}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": deploy_meta,
         "spec": {"replicas": wl.spec.replicas, "selector": {"matchLabels": selector},
                  # no surge: a new pod would need GPUs the placement did not reserve
                  "strategy": {"type": "RollingUpdate",
                               "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
                  "template": _pod(wl, repository, dict(labels), site, burst)}},
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
         site: Site, burst: bool) -> dict[str, Any]:
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
    if burst:  # the burst's node pool labels and taints (infra.config)
        selector["placement.io/burst-workload"] = wl.name
        pod["tolerations"].append({"key": "placement.io/spot", "operator": "Exists",
                                   "effect": "NoSchedule"})
    if selector:
        pod["nodeSelector"] = selector
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT),
                   "prometheus.io/path": "/metrics"}
    if wl.spec.replicas > 1:
        annotations[VERSION_ANNOTATION] = str(spec.version)
    return {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod}
