"""Rendering: config.pbtxt parses back into Triton's own message and matches the spec; every
manifest validates against the Kubernetes schema."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from placement.actuators.triton.manifests import ManifestError, render, serving_name, validate
from placement.actuators.triton.render import (
    ServingSpecError,
    config_json,
    config_pbtxt,
    parse_pbtxt,
)
from placement.model import Site, SiteServing, Workload

from .factories import onprem
from .triton_models import served

WID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def site(**serving: Any) -> Site:
    base = onprem("dc-a", {"L4": (8, 1.0)})
    return base.model_copy(update={"spec": base.spec.model_copy(
        update={"serving": SiteServing.model_validate({"repository": "s3://models", **serving})})})


@pytest.mark.parametrize(("wl", "kind", "count", "batching"), [
    (served(instance_kind="gpu", instances_per_gpu=2), "KIND_GPU", 2, True),
    (served(instance_kind="cpu"), "KIND_CPU", 1, True),
    (served(max_batch_size=0), "KIND_CPU", 1, False),
    (served(dynamic_batching=False), "KIND_CPU", 1, False),
    (served(backend="vllm", inputs=False), "KIND_MODEL", 1, True),
], ids=["gpu instances per GPU", "cpu instances", "no batching without a batch size",
        "batching switched off", "vllm manages its GPUs"])
def test_config_parses_back_and_matches_the_spec(wl: Workload, kind: str, count: int,
                                                 batching: bool) -> None:
    from tritonclient.grpc import model_config_pb2 as mc

    spec = wl.spec.serving
    assert spec is not None
    cfg = parse_pbtxt(config_pbtxt(wl))
    assert (cfg.name, cfg.backend, cfg.max_batch_size) == (spec.model, spec.backend,
                                                           spec.max_batch_size)
    assert list(cfg.version_policy.specific.versions) == [spec.version]
    assert [(i.name, mc.DataType.Name(i.data_type), list(i.dims)) for i in cfg.input] == [
        (t.name, f"TYPE_{t.data_type}", t.dims) for t in spec.inputs]
    assert [o.name for o in cfg.output] == [t.name for t in spec.outputs]
    group = cfg.instance_group[0]
    assert (mc.ModelInstanceGroup.Kind.Name(group.kind), group.count) == (kind, count)
    assert cfg.HasField("dynamic_batching") == (batching and spec.max_batch_size > 0)


def test_json_config_pins_every_version_asked_for() -> None:
    import json

    assert json.loads(config_json(served(version=2), {1, 2}))["version_policy"] == {
        "specific": {"versions": ["1", "2"]}}


def test_a_broken_pbtxt_is_reported() -> None:
    with pytest.raises(ServingSpecError, match="not a valid Triton model configuration"):
        parse_pbtxt("name: 'x' instance_group { kind: KIND_TPU }")


def test_manifests_validate_and_carry_what_serving_needs() -> None:
    out = render(served(instance_kind="gpu"), WID, site(service_monitor=True,
                                                         node_selector={"pool": "gpu"}))
    kinds = [m["kind"] for m in out]
    assert kinds == ["ConfigMap", "Deployment", "Service", "ServiceMonitor"]
    config, deploy, svc, _ = out
    assert parse_pbtxt(config["data"]["config.pbtxt"]).name == "echo"
    pod = deploy["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert {"--model-repository=s3://models", "--model-control-mode=explicit",
            "--load-model=echo", "--http-port=8000", "--grpc-port=8001",
            "--metrics-port=8002", "--strict-readiness=false"} <= set(container["args"])
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/models/echo/ready"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert {p["port"] for p in svc["spec"]["ports"]} == {8000, 8001, 8002}
    assert deploy["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "8002"
    assert all(m["metadata"]["namespace"] == "placement-serving" for m in out)


@pytest.mark.parametrize(("replicas", "in_template"), [(1, False), (2, True)],
                         ids=["one replica rolls through the API", "replicas roll as pods"])
def test_where_the_model_version_lives(replicas: int, in_template: bool) -> None:
    doc = served(version=3).model_dump(exclude_none=True)
    doc["spec"]["replicas"] = replicas
    deploy = render(Workload.model_validate(doc), WID, site())[1]
    template = deploy["spec"]["template"]["metadata"]["annotations"]
    assert ("placement.io/model-version" in template) == in_template
    assert ("placement.io/model-version" in deploy["metadata"].get("annotations", {})) \
        != in_template
    assert deploy["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}


def test_on_a_burst_the_pods_run_on_the_workloads_node_pool() -> None:
    pod = render(served(), WID, site(node_selector={"pool": "gpu"}), burst=True)[1][
        "spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "gpu", "placement.io/burst-workload": "echo-svc"}
    assert "placement.io/spot" in {t["key"] for t in pod["tolerations"]}


def test_a_manifest_that_breaks_the_schema_is_refused_with_its_field() -> None:
    deploy = render(served(), WID, site())[1]
    deploy["spec"]["replicas"] = "two"
    with pytest.raises(ManifestError, match="spec/replicas"):
        validate(deploy)


def test_without_a_repository_the_error_says_where_to_set_one() -> None:
    with pytest.raises(ServingSpecError, match=r"serving\.repository"):
        render(served(), WID, onprem("dc-a", {"L4": (8, 1.0)}))


@pytest.mark.parametrize(("name", "expected"), [
    ("echo-svc", "triton-echo-svc-12345678"),
    ("9lives.v2", "triton-9lives-v2-12345678"),
    ("a" * 63, "triton-" + "a" * 40 + "-12345678"),
], ids=["plain", "dots become dashes", "long names are cut"])
def test_serving_names_are_dns_labels(name: str, expected: str) -> None:
    assert serving_name(served(name=name), WID) == expected


@pytest.mark.parametrize(("change", "field"), [
    ({"inputs": [{"name": "x", "data_type": "FP32", "dims": [0]}]}, "dims"),
    ({"inputs": [{"name": "x", "data_type": "FLOAT", "dims": [1]}]}, "data_type"),
    ({"version": 0}, "version"),
], ids=["zero dimension", "unknown data type", "version zero"])
def test_bad_serving_specs_name_the_field(change: dict[str, Any], field: str) -> None:
    doc = served().model_dump(exclude_none=True)
    doc["spec"]["serving"].update(change)
    with pytest.raises(ValidationError, match=field):
        Workload.model_validate(doc)


def test_endpoint_templates_accept_only_name_and_namespace() -> None:
    with pytest.raises(ValidationError, match=r"only \{name\} and \{namespace\}"):
        SiteServing(endpoint="http://{workload}:8000")


@pytest.mark.parametrize(("args", "code", "expect"), [
    (["policies/examples/workloads/defect-detector.yaml"], 0, "site plant-stuttgart: 3 manifests"),
    (["policies/examples/workloads/defect-detector.yaml", "--site", "plant-austin"], 0,
     "site plant-austin: 3 manifests"),
    (["policies/examples/workloads/defect-detector.yaml", "--site", "mars"], 1,
     "site 'mars' is not in the inventory"),
    (["policies/examples/workloads/llm-pretrain.yaml", "--site", "plant-austin"], 1,
     "has no 'serving' section"),
], ids=["where the engine places it", "on a named site", "an unknown site",
        "a workload without serving"])
def test_cli_renders_repository_and_manifests(tmp_path: Any, args: list[str], code: int,
                                              expect: str) -> None:
    import yaml
    from typer.testing import CliRunner

    from placement.cli.main import app

    from .conftest import ROOT

    result = CliRunner().invoke(app, ["triton", "render", *[
        str(ROOT / a) if a.endswith(".yaml") else a for a in args],
        "--out", str(tmp_path), "--config", str(ROOT / "policies" / "examples")])
    assert result.exit_code == code, result.output
    assert expect in result.output
    if code == 0:
        manifests = list(yaml.safe_load_all((tmp_path / "manifests.yaml").read_text()))
        for m in manifests:
            validate(m)
        config = (tmp_path / "repository" / "weld-defects" / "config.pbtxt").read_text()
        assert parse_pbtxt(config).backend == "onnxruntime"
        assert (tmp_path / "repository" / "weld-defects" / "1").is_dir()
