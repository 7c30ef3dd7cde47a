"""The Helm chart, linted and rendered by Helm's own Go SDK (helm-python-sdk), for the default
values and for non-default ones; every rendered manifest checked against the Kubernetes schema;
values the chart's schema must refuse; and the CRDs, generated from the models, against the
example workloads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from placement.actuators.triton.manifests import validate
from placement.policy.crds import definitions, render

from .conftest import EXAMPLES, ROOT

CHART = ROOT / "helm" / "placement"
PG = {"database": {"existingSecret": "placement-db"}}
CASES: list[tuple[str, dict[str, Any]]] = [
    ("defaults", {}),
    ("external postgresql", PG),
    ("git-sync on", {**PG, "policies": {"gitSync": {
        "enabled": True, "repo": "https://git.example.com/platform/policies.git",
        "path": "bundles/prod", "existingSecret": "git-creds"}}}),
    ("service monitor and network policy on", {**PG, "serviceMonitor": {"enabled": True},
                                               "networkPolicy": {"enabled": True,
                                                                 "fromNamespaceLabels": {
                                                                     "team": "ingress"}}}),
    ("everything wired", {**PG, "kubeconfig": {"existingSecret": "site-kubeconfigs"},
                          "tokens": {"existingSecret": "placement-admin"},
                          "bursts": {"enabled": True, "backend": "s3://acme-pulumi",
                                     "credentialsSecret": "cloud-creds"},
                          "prometheus": {"url": "http://prometheus:9090"},
                          "policies": {"files": {"policy.yaml": "kind: Policy\n"}},
                          "operator": {"namespaces": ["ml", "research"]}}),
]


def helm() -> Any:
    try:
        import helm_python
    except ImportError:
        pytest.skip("helm-python-sdk is not installed (pip install -e '.[dev]')")
    return helm_python


def rendered(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm().Chart.load(str(CHART)) as chart:
        chart.validate_schema(values)
        files = chart.render(values, name="placement", namespace="placement")
    return [doc for name, text in files.items() if name.endswith(".yaml")
            for doc in yaml.safe_load_all(text) if doc]


def test_the_chart_lints_clean() -> None:
    report = helm().lint(str(CHART))
    assert report["errors"] == []
    assert all(m["severity"] < 3 for m in report["messages"]), report["messages"]


@pytest.mark.parametrize(("case", "values"), CASES, ids=[c for c, _ in CASES])
def test_every_rendered_manifest_is_valid(case: str, values: dict[str, Any]) -> None:
    docs = rendered(values)
    assert docs
    for doc in docs:
        validate(doc)  # strict Kubernetes schema; ServiceMonitor by shape


@pytest.mark.parametrize(("case", "values"), CASES, ids=[c for c, _ in CASES])
def test_pods_are_locked_down_and_sized(case: str, values: dict[str, Any]) -> None:
    for doc in rendered(values):
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["resources"]["limits"] and c["resources"]["requests"]


def replicas(values: dict[str, Any]) -> dict[str, int]:
    return {d["metadata"]["name"].rsplit("-", 1)[-1]: d["spec"]["replicas"]
            for d in rendered(values) if d["kind"] == "Deployment"}


def test_replicas_follow_the_database_and_the_pdb_only_guards_several() -> None:
    assert replicas({}) == {"api": 1, "operator": 1}  # SQLite: one pod each
    assert not [d for d in rendered({}) if d["kind"] == "PodDisruptionBudget"]
    assert replicas(PG) == {"api": 2, "operator": 1}  # one acting operator, Recreate
    (pdb,) = [d for d in rendered(PG) if d["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"]["minAvailable"] == 1


def test_only_the_operator_may_talk_to_the_kubernetes_api() -> None:
    docs = rendered(PG)
    (api,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"]
              .endswith("-api")]
    assert api["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    (binding,) = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    bound = {s["name"] for s in binding["subjects"]}
    assert api["spec"]["template"]["spec"]["serviceAccountName"] not in bound


def site_schema() -> dict[str, Any]:
    crd = definitions()["sites.yaml"]
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return dict(openapi_to_jsonschema(spec))


@pytest.mark.parametrize("path", ["sites-onprem.yaml", "sites-cloud.yaml"])
def test_the_site_crd_accepts_every_example_site(path: str) -> None:
    import jsonschema

    for doc in yaml.safe_load_all((EXAMPLES / path).read_text()):
        if doc:
            jsonschema.validate(doc["spec"], site_schema())


def test_the_site_crd_defaults_nothing_one_site_type_lacks() -> None:
    """The API server fills defaults in; a cloud-only default on an on-prem Site would make
    the engine's model refuse it."""
    spec = definitions()["sites.yaml"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
        "properties"]["spec"]["properties"]
    for cloud_only in ("provisioning_minutes", "spot_interruptions_per_hour", "burst"):
        assert "default" not in spec[cloud_only]


def test_git_sync_feeds_the_policy_directory() -> None:
    (operator,) = [d for d in rendered(CASES[2][1]) if d["kind"] == "Deployment"
                   and d["metadata"]["name"].endswith("operator")]
    pod = operator["spec"]["template"]["spec"]
    names = [c["name"] for c in pod["containers"]]
    assert names == ["operator", "git-sync"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["PLACEMENT_CONFIG_DIR"] == "/git/current/bundles/prod"
    args = pod["containers"][1]["args"]
    assert "--ssh-key-file=/etc/git-secret/ssh" in args
    assert "--ssh-known-hosts-file=/etc/git-secret/known_hosts" in args


def test_rbac_is_least_privilege() -> None:
    (role,) = [d for d in rendered({}) if d["kind"] == "ClusterRole"]
    verbs = {v for rule in role["rules"] for v in rule["verbs"]}
    assert not verbs & {"*", "delete", "deletecollection", "escalate", "bind"}
    assert all("*" not in rule["resources"] for rule in role["rules"])


@pytest.mark.parametrize(("values", "field"), [
    ({"api": {"replicas": "two"}}, "replicas"),
    ({"api": {"replicas": 0}}, "replicas"),
    ({"image": {"pullPolicy": "Sometimes", "repository": "x"}}, "pullPolicy"),
    ({"serviceMonitor": {"interval": "often"}}, "interval"),
    ({"policies": {"gitSync": {"enabled": True}}}, "repo"),
    ({"databse": {"existingSecret": "typo"}}, "databse"),
], ids=["replicas not a number", "no replicas", "unknown pull policy", "bad interval",
        "git-sync without a repository", "misspelt key"])
def test_values_the_schema_refuses(values: dict[str, Any], field: str) -> None:
    h = helm()
    with h.Chart.load(str(CHART)) as chart, pytest.raises(Exception, match=field):
        chart.validate_schema(values)


def test_the_committed_crds_match_the_models() -> None:
    for name, doc in definitions().items():
        assert (CHART / "crds" / name).read_text() == render(doc), \
            f"regenerate with `make schema` ({name})"
        validate_crd(doc)


def validate_crd(doc: dict[str, Any]) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(doc, "1.30.0", strict=True)


def openapi_to_jsonschema(node: Any) -> Any:
    """Kubernetes' OpenAPI v3 dialect as JSON Schema (nullable, x-kubernetes-* dropped)."""
    if isinstance(node, list):
        return [openapi_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: openapi_to_jsonschema(v) for k, v in node.items()
           if not k.startswith("x-kubernetes") and k not in ("nullable", "exclusiveMinimum",
                                                             "exclusiveMaximum")}
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if node.get(bound) is True:  # OpenAPI's boolean flag is JSON Schema's number
            out[bound] = out.pop(limit)
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in out and node.get("type") == "object":
        out["additionalProperties"] = False  # the API server would prune unknown fields
    return out


def workload_schema() -> dict[str, Any]:
    crd = definitions()["workloads.yaml"]
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return dict(openapi_to_jsonschema(spec))


def example_workloads() -> list[Path]:
    return sorted((EXAMPLES / "workloads").glob("*.yaml"))


@pytest.mark.parametrize("path", example_workloads(), ids=lambda p: p.stem)
def test_the_workload_crd_accepts_every_example(path: Path) -> None:
    import jsonschema

    doc = yaml.safe_load(path.read_text())
    jsonschema.validate(doc["spec"], workload_schema())


@pytest.mark.parametrize(("change", "why"), [
    ({"kind": "pretraining"}, "is not one of"),
    ({"gpu": {"types": ["A100"], "count": 0}}, "less than"),
    ({"gpu": {"types": [], "count": 1}}, "should be non-empty|is too short"),
    ({"team": "Research Team"}, "does not match"),
    ({"replicas": "two"}, "is not of type"),
], ids=["unknown kind", "no GPUs", "no GPU type", "team not a DNS name", "replicas a word"])
def test_the_workload_crd_rejects_bad_specs(change: dict[str, Any], why: str) -> None:
    import jsonschema

    doc = yaml.safe_load((EXAMPLES / "workloads" / "llm-pretrain.yaml").read_text())
    with pytest.raises(jsonschema.ValidationError, match=why):
        jsonschema.validate({**doc["spec"], **change}, workload_schema())
