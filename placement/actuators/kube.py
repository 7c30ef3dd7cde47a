"""Acting on the sites' Kubernetes clusters with the official `kubernetes` client.

One API client per kube context (from a kubeconfig file; credentials never logged). `apply` is
server-side apply: one PATCH of the whole desired manifest (`application/apply-patch+yaml`)
under the field manager `placement-operator`, forced, since every object applied here is ours.
The API server creates a missing object, merges a changed one, removes the fields we stopped
setting, keeps fields other managers own (an autoscaler's replicas, a mesh's annotations) and
writes nothing when nothing changed. `delete` treats "already gone" as done. Failures become
`KubeError` with whether a retry can help.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from placement.actuators.base import PermanentActuatorError

Manifest = dict[str, Any]
KUBERNETES_VERSION = "1.30.0"  # schema version manifests are checked against
FIELD_MANAGER = "placement-operator"  # who owns the fields `apply` sets (managedFields)
APPLY = "application/apply-patch+yaml"  # JSON is YAML: the client sends the body as JSON
TIMEOUT = (3.0, 15.0)  # connect, read seconds for every call
Outcome = Literal["applied", "created", "deleted", "absent"]


class KubeError(Exception):
    """A cluster call failed; `retryable` says whether trying again later can help."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class ManifestError(PermanentActuatorError):
    """A rendered manifest does not validate against the Kubernetes schema (a bug here)."""


@dataclass(frozen=True)
class Kind:
    """How the typed client reaches one kind: its API class and method suffix, or, for a custom
    resource, its group, version and plural through CustomObjectsApi."""

    api: str
    suffix: str = ""
    plural: str = ""


KINDS: dict[tuple[str, str], Kind] = {
    ("v1", "ConfigMap"): Kind("CoreV1Api", "namespaced_config_map"),
    ("v1", "Service"): Kind("CoreV1Api", "namespaced_service"),
    ("v1", "Secret"): Kind("CoreV1Api", "namespaced_secret"),
    ("v1", "Pod"): Kind("CoreV1Api", "namespaced_pod"),
    ("apps/v1", "Deployment"): Kind("AppsV1Api", "namespaced_deployment"),
    ("batch/v1", "Job"): Kind("BatchV1Api", "namespaced_job"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): Kind("CustomObjectsApi",
                                                         plural="servicemonitors"),
}


class Clusters:
    """API clients for the sites' clusters, one per kube context of a kubeconfig file."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def client(self, context: str) -> Any:
        """The ApiClient for a context; KubeError (not retryable) when it is not configured."""
        with self._lock:
            if context not in self._clients:
                self._clients[context] = self._load(context)
            return self._clients[context]

    def _load(self, context: str) -> Any:
        from kubernetes import config
        from kubernetes.config.config_exception import ConfigException

        try:
            return config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=str(self.kubeconfig), context=context, persist_config=False)
        except (ConfigException, OSError, ValueError, TypeError) as exc:
            raise KubeError(f"cannot use kube context {context!r} from {self.kubeconfig}: "
                            f"{exc}; add the context (cluster and user) to the kubeconfig",
                            retryable=False) from exc


def apply(client: Any, manifest: Manifest) -> Outcome:
    """Server-side apply of the desired manifest: created, changed or left as it is by the API
    server in one call ("applied"). An API server that answers the apply of a missing object
    with 404 instead of creating it (an emulator, an aggregated API) gets a create ("created");
    a 404 from a real one (a missing namespace) comes back from the create as an error."""
    try:
        _call(client, manifest, "apply")
    except KubeError as exc:
        if exc.status != 404:
            raise
        _call(client, manifest, "create")
        return "created"
    return "applied"


def delete(client: Any, manifest: Manifest) -> Outcome:
    """Delete the object; an object already gone counts as done."""
    return "deleted" if _call(client, manifest, "delete") is not None else "absent"


def read(client: Any, manifest: Manifest) -> dict[str, Any] | None:
    """The object as the cluster has it (plain dict), or None when it does not exist."""
    return _call(client, manifest, "read")


def _call(client: Any, manifest: Manifest, verb: str) -> dict[str, Any] | None:
    """One typed-client call; None for a 404 on read or delete."""
    from kubernetes import client as k
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    key = (manifest["apiVersion"], manifest["kind"])
    kind = KINDS.get(key)
    if kind is None:
        raise KubeError(f"{key[1]} ({key[0]}) is not a kind this service manages",
                        retryable=False)
    name, ns = manifest["metadata"]["name"], manifest["metadata"].get("namespace", "default")
    api = getattr(k, kind.api)(client)
    try:
        if kind.plural:
            result = _custom(api, kind, key[0], verb, name, ns, manifest)
        else:
            method = getattr(api, f"{'patch' if verb == 'apply' else verb}_{kind.suffix}")
            args: dict[str, Any] = {"namespace": ns, "_request_timeout": TIMEOUT}
            if verb != "create":
                args["name"] = name
            if verb in ("create", "apply"):
                args["body"] = manifest
                args["field_manager"] = FIELD_MANAGER
            if verb == "apply":
                args.update(_content_type=APPLY, force=True)
            if verb == "delete":  # Jobs orphan their pods by default; never leave them behind
                args["propagation_policy"] = "Background"
            result = method(**args)
    except ApiException as exc:
        if exc.status == 404 and verb in ("read", "delete"):
            return None
        raise _api_error(exc, verb, manifest) from exc
    except (HTTPError, OSError) as exc:
        raise KubeError(f"cannot reach the cluster to {verb} {key[1]} {ns}/{name}: {exc}",
                        retryable=True) from exc
    if isinstance(result, dict):
        return result
    sanitized: dict[str, Any] = client.sanitize_for_serialization(result)
    return sanitized


def _custom(api: Any, kind: Kind, api_version: str, verb: str, name: str, ns: str,
            manifest: Manifest) -> Any:
    group, version = api_version.split("/")
    common = {"group": group, "version": version, "namespace": ns, "plural": kind.plural,
              "_request_timeout": TIMEOUT}
    if verb == "read":
        return api.get_namespaced_custom_object(name=name, **common)
    if verb == "create":
        return api.create_namespaced_custom_object(body=manifest, field_manager=FIELD_MANAGER,
                                                   **common)
    if verb == "apply":
        return api.patch_namespaced_custom_object(name=name, body=manifest,
                                                  field_manager=FIELD_MANAGER, force=True,
                                                  _content_type=APPLY, **common)
    return api.delete_namespaced_custom_object(name=name, **common)


def _api_error(exc: Any, verb: str, manifest: Manifest) -> KubeError:
    status = int(exc.status or 0)
    try:
        detail = json.loads(exc.body).get("message") or exc.reason
    except (TypeError, ValueError, AttributeError):
        detail = exc.reason
    meta = manifest["metadata"]
    where = f"{manifest['kind']} {meta.get('namespace', 'default')}/{meta['name']}"
    hint = {401: "check the kubeconfig credentials", 403: "grant the service account the verb "
            "on this kind in that namespace (RBAC)", 404: "create the namespace first",
            422: "the manifest was refused; report it as a bug"}.get(status, "retried later")
    return KubeError(f"cannot {verb} {where}: HTTP {status} {detail}; {hint}",
                     retryable=status >= 500 or status in (0, 409, 429), status=status)


def list_pods(client: Any, namespace: str, selector: str) -> list[dict[str, Any]]:
    """Pods matching a label selector, as plain dicts."""
    from kubernetes import client as k
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        pods = k.CoreV1Api(client).list_namespaced_pod(namespace, label_selector=selector,
                                                       _request_timeout=TIMEOUT)
    except ApiException as exc:
        raise _api_error(exc, "list pods of", {"kind": "Pod", "metadata": {
            "namespace": namespace, "name": selector}}) from exc
    except (HTTPError, OSError) as exc:
        raise KubeError(f"cannot reach the cluster to list pods in {namespace}: {exc}",
                        retryable=True) from exc
    items: list[dict[str, Any]] = client.sanitize_for_serialization(pods).get("items") or []
    wanted = dict(part.split("=", 1) for part in selector.split(",") if "=" in part)
    return [p for p in items  # the server filtered already; this guards simpler API servers
            if all(((p.get("metadata") or {}).get("labels") or {}).get(k) == v
                   for k, v in wanted.items())]


def delete_pods(client: Any, pods: list[dict[str, Any]]) -> int:
    """Delete the given pods now; returns how many were still there."""
    gone = 0
    for pod in pods:
        meta = pod["metadata"]
        target = {"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": meta["name"], "namespace": meta.get("namespace")}}
        gone += delete(client, target) == "deleted"
    return gone


def validate(manifest: Manifest) -> None:
    """Check a built-in manifest against the Kubernetes schema (strict: no unknown fields).
    Custom resources (ServiceMonitor, kopf's peering) have no schema there: shape only."""
    import kubernetes_validate

    if manifest["apiVersion"].startswith("monitoring.coreos.com/"):
        if not manifest.get("spec", {}).get("endpoints"):
            raise ManifestError("ServiceMonitor without endpoints")
        return
    try:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError as exc:
        if "." not in manifest["apiVersion"].split("/")[0] or not manifest.get(
                "metadata", {}).get("name"):
            raise ManifestError(f"{manifest.get('kind')}: unknown kind ({exc})") from exc
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise ManifestError(f"{manifest['kind']} {manifest['metadata']['name']}: {where}: "
                            f"{exc.message}") from exc
