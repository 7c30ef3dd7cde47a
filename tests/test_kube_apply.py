"""Applying and removing manifests with the production client code, against KMock's Kubernetes
API emulator on 127.0.0.1: server-side apply under the `placement-operator` field manager."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from placement.actuators.kube import (
    APPLY,
    FIELD_MANAGER,
    Clusters,
    KubeError,
    apply,
    delete,
    read,
)
from placement.actuators.triton.manifests import render

from .services import KubeEmulator, free_port, kube_emulator
from .test_triton_render import site
from .triton_models import served

WID = uuid.UUID("00000000-0000-0000-0000-00000000abcd")
PLURALS = {"ConfigMap": "configmaps", "Deployment": "deployments", "Service": "services",
           "ServiceMonitor": "servicemonitors"}


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KubeEmulator, Clusters]]:
    with kube_emulator() as emu:
        config = emu.kubeconfig(tmp_path_factory.mktemp("kube") / "config", ["dc-a", "dc-b"])
        yield emu, Clusters(config)


def stored(emu: KubeEmulator, manifest: dict[str, Any]) -> dict[str, Any] | None:
    meta = manifest["metadata"]
    return emu.stored(manifest["apiVersion"], PLURALS[manifest["kind"]], meta["namespace"],
                      meta["name"])


def verbs(requests: list[Any]) -> list[tuple[str, str, str, str]]:
    """(method, Content-Type, fieldManager, force) of each request."""
    return [(r.method.value.upper(), r.headers.get("Content-Type", "").split(";")[0],
             r.params.get("fieldManager", ""), r.params.get("force", "")) for r in requests]


SSA = ("PATCH", APPLY, FIELD_MANAGER, "true")


def test_apply_is_one_server_side_apply_per_object(kube: tuple[KubeEmulator, Clusters]) -> None:
    emu, clusters = kube
    client = clusters.client("dc-a")
    manifests = render(served(), WID, site(service_monitor=True))
    seen = len(emu.requests())
    # The emulator answers the apply of a missing object with 404 (a real API server creates
    # it): apply then creates it, under the same field manager.
    assert [apply(client, m) for m in manifests] == ["created"] * 4
    first = verbs(emu.requests()[seen:])
    assert first[0::2] == [SSA] * 4
    assert [(v[0], v[2]) for v in first[1::2]] == [("POST", FIELD_MANAGER)] * 4
    for m in manifests:
        obj = stored(emu, m)
        assert obj is not None and all(obj[k] == m[k] for k in ("spec", "data") if k in m)
    seen = len(emu.requests())
    assert [apply(client, m) for m in manifests] == ["applied"] * 4
    assert verbs(emu.requests()[seen:]) == [SSA] * 4  # no read first
    changed = render(served(version=2), WID, site(service_monitor=True))
    assert [apply(client, m) for m in changed] == ["applied"] * 4
    deploy = stored(emu, changed[1])
    assert deploy is not None  # one replica: rolled through Triton's API, the pod stays
    assert deploy["metadata"]["annotations"]["placement.io/model-version"] == "2"
    assert "placement.io/model-version" not in deploy["spec"]["template"]["metadata"][
        "annotations"]


def test_the_applied_body_is_the_whole_desired_object(kube: tuple[KubeEmulator, Clusters]
                                                       ) -> None:
    """Server-side apply needs apiVersion, kind and name in the body, and nothing the server
    owns (status, resourceVersion, managedFields)."""
    emu, clusters = kube
    client = clusters.client("dc-a")
    manifest = render(served(name="body-check"), WID, site())[0]
    seen = len(emu.requests())
    apply(client, manifest)
    (patch,) = [r for r in emu.requests()[seen:] if r.method.value.upper() == "PATCH"]
    assert patch.data == manifest
    assert not {"status"} & set(patch.data)
    assert not {"resourceVersion", "managedFields"} & set(patch.data["metadata"])


def test_delete_removes_and_a_second_delete_is_a_no_op(kube: tuple[KubeEmulator, Clusters]
                                                       ) -> None:
    emu, clusters = kube
    client = clusters.client("dc-b")
    manifests = render(served(name="to-remove"), WID, site())
    assert [apply(client, m) for m in manifests] == ["created"] * 3
    assert [delete(client, m) for m in reversed(manifests)] == ["deleted"] * 3
    assert [delete(client, m) for m in manifests] == ["absent"] * 3
    assert all(stored(emu, m) is None and read(client, m) is None for m in manifests)


def test_an_unknown_context_is_a_permanent_error(kube: tuple[KubeEmulator, Clusters]) -> None:
    _, clusters = kube
    with pytest.raises(KubeError, match="add the context") as err:
        clusters.client("nowhere")
    assert not err.value.retryable


def test_an_unreachable_cluster_is_a_retryable_error(tmp_path: Path,
                                                     kube: tuple[KubeEmulator, Clusters]) -> None:
    emu, _ = kube
    config = emu.kubeconfig(tmp_path / "config", ["down"], server=f"http://127.0.0.1:{free_port()}")
    client = Clusters(config).client("down")
    client.configuration.retries = 0
    with pytest.raises(KubeError, match="cannot reach the cluster") as err:
        apply(client, render(served(), WID, site())[0])
    assert err.value.retryable
