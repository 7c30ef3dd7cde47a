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
    ("scheduling and names", {**PG, "nameOverride": "gpu-placement",
                              "podAnnotations": {"team": "platform"},
                              "nodeSelector": {"pool": "system"},
                              "affinity": {"nodeAffinity": {
                                  "requiredDuringSchedulingIgnoredDuringExecution": {
                                      "nodeSelectorTerms": [{"matchExpressions": [{
                                          "key": "pool", "operator": "In",
                                          "values": ["system"]}]}]}}},
                              "tolerations": [{"key": "dedicated", "operator": "Equal",
                                               "value": "system", "effect": "NoSchedule"}],
                              "topologySpreadConstraints": [{
                                  "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                  "whenUnsatisfiable": "ScheduleAnyway"}]}),
]
SCHEDULING = dict(CASES[-1][1])


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


def deployments(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["labels"]["app.kubernetes.io/component"]: d
            for d in rendered(values) if d["kind"] == "Deployment"}


@pytest.mark.parametrize(("value", "field"), [
    ("nodeSelector", "nodeSelector"), ("affinity", "affinity"),
    ("tolerations", "tolerations"),
], ids=["node selector", "affinity", "tolerations"])
def test_scheduling_values_reach_every_deployment(value: str, field: str) -> None:
    found = deployments(SCHEDULING)
    assert set(found) == {"api", "operator"}
    for deploy in found.values():
        assert deploy["spec"]["template"]["spec"][field] == SCHEDULING[value]
    for deploy in deployments(PG).values():  # unset: not rendered at all
        assert field not in deploy["spec"]["template"]["spec"]


def test_pod_annotations_and_spread_constraints_reach_every_deployment() -> None:
    for component, deploy in deployments(SCHEDULING).items():
        template = deploy["spec"]["template"]
        assert template["metadata"]["annotations"] == {"team": "platform"}
        (spread,) = template["spec"]["topologySpreadConstraints"]
        assert spread["topologyKey"] == "topology.kubernetes.io/zone"
        # no labelSelector given: the pods of the same component are spread
        assert spread["labelSelector"]["matchLabels"] == template["metadata"]["labels"]
        assert template["metadata"]["labels"]["app.kubernetes.io/component"] == component
    given = {"maxSkew": 2, "topologyKey": "kubernetes.io/hostname",
             "whenUnsatisfiable": "DoNotSchedule",
             "labelSelector": {"matchLabels": {"tier": "control"}}}
    for deploy in deployments({**PG, "topologySpreadConstraints": [given]}).values():
        assert deploy["spec"]["template"]["spec"]["topologySpreadConstraints"] == [given]
        assert "annotations" not in deploy["spec"]["template"]["metadata"]


@pytest.mark.parametrize(("values", "prefix", "label"), [
    ({}, "placement", "placement"),
    ({"nameOverride": "gpu-placement"}, "placement-gpu-placement", "gpu-placement"),
    ({"fullnameOverride": "sched"}, "sched", "placement"),
    ({"fullnameOverride": "x" * 54}, "x" * 54, "placement"),
], ids=["defaults", "name override", "full name override", "longest full name"])
def test_name_overrides_name_every_resource(values: dict[str, Any], prefix: str,
                                            label: str) -> None:
    docs = rendered(values)
    for doc in docs:
        if doc["kind"] in ("CustomResourceDefinition",):
            continue
        name = doc["metadata"]["name"]
        assert name == prefix or name.startswith(f"{prefix}-"), (doc["kind"], name)
        assert len(name) <= 63
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == label
    for deploy in (d for d in docs if d["kind"] == "Deployment"):
        selector = deploy["spec"]["selector"]["matchLabels"]
        assert selector["app.kubernetes.io/name"] == label
        assert deploy["spec"]["template"]["metadata"]["labels"].items() >= selector.items()


def test_the_api_has_a_startup_probe_before_liveness() -> None:
    api = deployments(PG)["api"]["spec"]["template"]["spec"]["containers"][0]
    startup = api["startupProbe"]
    assert startup["httpGet"] == {"path": "/healthz", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"


def rbac(values: dict[str, Any]) -> dict[tuple[str, str | None], dict[str, Any]]:
    return {(d["kind"], d["metadata"].get("namespace")): d for d in rendered(values)
            if d["kind"] in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
                             "ClusterKopfPeering", "KopfPeering")}


def resources_of(role: dict[str, Any]) -> set[str]:
    return {r for rule in role["rules"] for r in rule["resources"]}


@pytest.mark.parametrize(("namespaces", "kinds", "cluster_rights"), [
    ([], {("ClusterRole", None), ("ClusterRoleBinding", None), ("ClusterKopfPeering", None)},
     {"sites", "customresourcedefinitions", "namespaces", "workloads", "workloads/status",
      "events", "clusterkopfpeerings"}),
    (["ml", "research"], {("ClusterRole", None), ("ClusterRoleBinding", None),
                          ("Role", "ml"), ("RoleBinding", "ml"), ("KopfPeering", "ml"),
                          ("Role", "research"), ("RoleBinding", "research"),
                          ("KopfPeering", "research")},
     {"sites", "customresourcedefinitions", "namespaces"}),
], ids=["whole cluster", "given namespaces"])
def test_rbac_is_namespaced_when_the_operator_watches_namespaces(
        namespaces: list[str], kinds: set[tuple[str, str | None]],
        cluster_rights: set[str]) -> None:
    found = rbac({**PG, "operator": {"namespaces": namespaces}})
    assert set(found) == kinds
    assert resources_of(found[("ClusterRole", None)]) == cluster_rights
    for ns in namespaces:
        role, binding = found[("Role", ns)], found[("RoleBinding", ns)]
        assert resources_of(role) == {"workloads", "workloads/status", "events",
                                      "kopfpeerings"}
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": role["metadata"]["name"]}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "placement",
                                        "namespace": "placement"}]
        verbs = {v for rule in role["rules"] for v in rule["verbs"]}
        assert not verbs & {"*", "delete", "deletecollection", "escalate", "bind"}


@pytest.mark.parametrize(("values", "field"), [
    ({"api": {"replicas": "two"}}, "replicas"),
    ({"api": {"replicas": 0}}, "replicas"),
    ({"image": {"pullPolicy": "Sometimes", "repository": "x"}}, "pullPolicy"),
    ({"serviceMonitor": {"interval": "often"}}, "interval"),
    ({"policies": {"gitSync": {"enabled": True}}}, "repo"),
    ({"databse": {"existingSecret": "typo"}}, "databse"),
    ({"nameOverride": "Placement"}, "nameOverride"),
    ({"fullnameOverride": "x" * 55}, "fullnameOverride"),
    ({"podAnnotations": {"replicas": 2}}, "podAnnotations"),
    ({"affinity": {"nodeAfinity": {}}}, "nodeAfinity"),
    ({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
                                     "whenUnsatisfiable": "Sometimes"}]},
     "whenUnsatisfiable"),
    ({"topologySpreadConstraints": [{"maxSkew": 1, "whenUnsatisfiable": "ScheduleAnyway"}]},
     "topologyKey"),
], ids=["replicas not a number", "no replicas", "unknown pull policy", "bad interval",
        "git-sync without a repository", "misspelt key", "name not a DNS label",
        "full name too long", "annotation not a string", "misspelt affinity",
        "unknown whenUnsatisfiable", "spread without a topology key"])
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


def crd_version(name: str) -> dict[str, Any]:
    version: dict[str, Any] = definitions()[name]["spec"]["versions"][0]
    return version


@pytest.mark.parametrize("name", ["workloads.yaml", "sites.yaml"])
def test_the_committed_crds_are_plain_yaml(name: str) -> None:
    """No anchors or aliases (`&id001`, `*id001`): some tools refuse them and they hide what a
    reader looks for."""
    text = (CHART / "crds" / name).read_text()
    events = list(yaml.parse(text))
    assert not [e for e in events if isinstance(e, yaml.AliasEvent)
                or getattr(e, "anchor", None)]
    assert yaml.safe_load(text) == definitions()[name]


def test_the_workload_crd_speaks_kubernetes_conventions() -> None:
    crd = definitions()["workloads.yaml"]
    assert crd["spec"]["names"]["shortNames"] == ["wl"]
    version = crd_version("workloads.yaml")
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["observedGeneration"]["type"] == "integer"
    conditions = status["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert set(item["properties"]) == {"type", "status", "reason", "message",
                                       "lastTransitionTime", "observedGeneration"}
    assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert item["properties"]["lastTransitionTime"]["format"] == "date-time"


@pytest.mark.parametrize("field", ["kind", "team", "gpu"])
def test_fields_that_may_not_change_carry_a_cel_rule(field: str) -> None:
    spec = crd_version("workloads.yaml")["schema"]["openAPIV3Schema"]["properties"]["spec"]
    (rule,) = spec["properties"][field]["x-kubernetes-validations"]
    assert rule["rule"] == "self == oldSelf"
    assert f"spec.{field} cannot change" in rule["message"]
    assert field in spec["required"]  # a transition rule on an optional field would not run


def test_only_the_immutable_fields_carry_cel_rules() -> None:
    spec = crd_version("workloads.yaml")["schema"]["openAPIV3Schema"]["properties"]["spec"]
    ruled = {name for name, node in spec["properties"].items()
             if "x-kubernetes-validations" in node}
    assert ruled == {"kind", "team", "gpu"}  # serving.version must stay changeable


def readme_tool() -> Any:
    """helm/placement/gen_readme.py, a script beside the chart rather than a package module."""
    import importlib.util
    import sys

    name = "placement_chart_gen_readme"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, CHART / "gen_readme.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_the_chart_readme_is_generated_from_the_values() -> None:
    tool = readme_tool()
    assert (CHART / "README.md").read_text() == tool.render(), \
        "regenerate with `python helm/placement/gen_readme.py`"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    keys = {v.key for v in tool.parse((CHART / "values.yaml").read_text())}
    for top in values:  # every top-level value is in the table, or its keys
        assert top in keys or any(k.startswith(f"{top}.") for k in keys), top
    assert "gen_readme.py" in (CHART / ".helmignore").read_text()


@pytest.mark.parametrize(("text", "rows"), [
    ("# -- The image.\nimage: x\n", [("image", "string", "x", "The image.")]),
    ("# -- Spread over zones; one\n# per zone.\nspread: []\n",
     [("spread", "list", [], "Spread over zones; one per zone.")]),
    ("api:\n  # -- Pods.\n  replicas: 2\n  # -- Sizes.\n  resources:\n    cpu: 1\n",
     [("api.replicas", "int", 2, "Pods."), ("api.resources", "object", {"cpu": 1}, "Sizes.")]),
    ("# A section, not a value.\nserviceMonitor:\n  # -- On.\n  enabled: false\n",
     [("serviceMonitor.enabled", "bool", False, "On.")]),
], ids=["one value", "continued comment", "documented map taken whole", "plain comment"])
def test_the_readme_tool_reads_the_comments(text: str, rows: list[tuple[str, str, Any, str]]
                                            ) -> None:
    got = [(v.key, v.type, v.default, v.description) for v in readme_tool().parse(text)]
    assert got == rows


@pytest.mark.parametrize(("text", "key"), [
    ("image: x\n", "image"),
    ("api:\n  # -- Pods.\n  replicas: 2\n  workers: 2\n", "api.workers"),
    ("# -- Spread.\n\nspread: []\n", "spread"),  # a blank line ends the comment
    ("api: {}\n", "api"),
], ids=["no comment", "one key of a section", "comment detached", "empty section"])
def test_the_readme_tool_refuses_an_undocumented_value(text: str, key: str) -> None:
    tool = readme_tool()
    with pytest.raises(tool.UndocumentedValue, match=rf"{key} has no"):
        tool.parse(text)
