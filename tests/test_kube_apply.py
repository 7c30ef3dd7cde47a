"""Applying and removing manifests with the production client code, against KMock's Kubernetes
API emulator on 127.0.0.1."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from placement.actuators.kube import HASH_ANNOTATION, Clusters, KubeError, apply, delete, read
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


def test_apply_creates_then_changes_nothing_then_updates(kube: tuple[KubeEmulator, Clusters]
                                                          ) -> None:
    emu, clusters = kube
    client = clusters.client("dc-a")
    manifests = render(served(), WID, site(service_monitor=True))
    assert [apply(client, m) for m in manifests] == ["created"] * 4
    for m in manifests:
        obj = stored(emu, m)
        assert obj is not None and HASH_ANNOTATION in obj["metadata"]["annotations"]
    seen = len(emu.requests())
    assert [apply(client, m) for m in manifests] == ["unchanged"] * 4
    second = emu.requests()[seen:]
    assert len(second) == 4 and {r.method.value.upper() for r in second} == {"GET"}
    changed = render(served(version=2), WID, site(service_monitor=True))
    outcome = {m["kind"]: apply(client, m) for m in changed}
    assert outcome == {"ConfigMap": "updated", "Deployment": "updated",
                       "Service": "unchanged", "ServiceMonitor": "unchanged"}
    deploy = stored(emu, changed[1])
    assert deploy is not None  # one replica: rolled through Triton's API, the pod stays
    assert deploy["metadata"]["annotations"]["placement.io/model-version"] == "2"
    assert "placement.io/model-version" not in deploy["spec"]["template"]["metadata"][
        "annotations"]


def test_delete_removes_and_a_second_delete_is_a_no_op(kube: tuple[KubeEmulator, Clusters]
                                                       ) -> None:
    emu, clusters = kube
    client = clusters.client("dc-b")
    manifests = render(served(name="to-remove"), WID, site())
    for m in manifests:
        apply(client, m)
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
