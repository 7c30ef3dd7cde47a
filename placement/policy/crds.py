"""CustomResourceDefinitions for Workload and Site, generated from the engine's own models.

Kubernetes wants a structural OpenAPI v3 schema: every node typed, no $ref, no `anyOf` that
adds properties, `nullable` instead of a null type. The pydantic JSON Schema is rewritten into
that form: references inlined, `X | None` as nullable X, unions of objects (the Site's onprem
and cloud specs) merged into one object whose properties are all the branches' properties and
whose required ones are the common ones (the operator validates the exact variant with the
same models). The status is the decision as the operator writes it, with `Ready` and `Placed`
conditions in the shape of metav1.Condition and `observedGeneration`, so that `kubectl wait
--for=condition=Ready` and GitOps health checks (Argo CD, Flux's kstatus) read it.

A few spec fields may not change once a Workload exists; a CEL rule makes the API server refuse
the change up front (see `IMMUTABLE`). The output is plain YAML: no anchors or aliases, even
where one schema node is shared.
"""

from __future__ import annotations

from typing import Any

import yaml

from placement.model import Site
from placement.model.workload import WorkloadSpec

GROUP = "placement.dev"
VERSION = "v1alpha1"
DROP = {"title", "discriminator", "$defs", "propertyNames"}  # the API checks map keys
# Spec fields the API server keeps as they were created. `kind` picks the path a workload takes
# (a service is served, a job is run) and `gpu` is what the decision reserved: changing either
# would leave the reservation describing something else. `team` is whose quota and budget the
# reservation is charged to. The operator refuses every other change except
# `serving.version` too, with the same models; those rules stay in one place (the operator)
# rather than a CEL copy of the whole model, and several of those fields are defaulted by the
# API server, which a field-by-field CEL rule would have to repeat.
IMMUTABLE = ("kind", "team", "gpu")
SHORT_NAMES = {"Workload": ["wl"]}


def structural(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> dict[str, Any]:
    """A pydantic JSON Schema node as a Kubernetes structural schema node."""
    defs = schema.get("$defs", {}) if defs is None else defs
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        return structural({**target, **{k: v for k, v in schema.items() if k != "$ref"}}, defs)
    variants = schema.get("anyOf") or schema.get("oneOf")
    if variants:
        real = [v for v in variants if v.get("type") != "null"]
        merged = _merge([structural(v, defs) for v in real])
        if len(real) < len(variants):
            merged["nullable"] = True
        rest = {k: v for k, v in schema.items()
                if k not in ("anyOf", "oneOf", "default") and k not in DROP}
        out = {**merged, **structural_leaf(rest)}
        if "default" in schema and schema["default"] is not None:
            out["default"] = schema["default"]
        return out
    return structural_leaf(schema, defs)


def structural_leaf(schema: dict[str, Any], defs: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
    defs = defs or {}
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in DROP:
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "properties":
            out["properties"] = {k: structural(v, defs) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = structural(value, defs)
        elif key == "exclusiveMinimum" and not isinstance(value, bool):
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum" and not isinstance(value, bool):
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key == "default" and value is None:
            continue
        elif key == "additionalProperties" and value is False:
            continue  # structural schemas prune unknown fields; the operator rejects them
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "string" if all(isinstance(v, str) for v in out["enum"]) else "number"
    if "properties" in out and "type" not in out:
        out["type"] = "object"
    return out


def _merge(branches: list[dict[str, Any]]) -> dict[str, Any]:
    if all(b == branches[0] for b in branches):
        return branches[0]
    if all(b.get("type") == "object" for b in branches):
        names = list(dict.fromkeys(n for b in branches for n in b.get("properties", {})))
        props: dict[str, Any] = {}
        for name in names:  # first branch's order, then what later branches add
            subs = [b["properties"][name] for b in branches if name in b.get("properties", {})]
            merged = _merge(subs)
            if len(subs) < len(branches):  # one variant's field: no default for the others
                merged.pop("default", None)
            props[name] = merged
        required = set.intersection(*(set(b.get("required", [])) for b in branches))
        out: dict[str, Any] = {"type": "object", "properties": props}
        extra = [b["additionalProperties"] for b in branches if "additionalProperties" in b]
        if extra:
            out["additionalProperties"] = _merge(extra)
        if required:
            out["required"] = sorted(required)
        return out
    if all("enum" in b for b in branches):
        return {**branches[0], "enum": sorted({v for b in branches for v in b["enum"]})}
    if all(b.get("type") == "array" for b in branches):
        return {**branches[0], "items": _merge([b.get("items", {}) for b in branches])}
    types = {b.get("type") for b in branches}
    if len(types) == 1:  # same type, different constraints: keep what every branch allows
        common = {k: v for k, v in branches[0].items()
                  if all(b.get(k) == v for b in branches[1:])}
        return common
    return {"x-kubernetes-int-or-string": True} if types == {"integer", "string"} else \
        {"x-kubernetes-preserve-unknown-fields": True}


def _status_schema() -> dict[str, Any]:
    candidate = {"type": "object", "properties": {
        "site": {"type": "string"}, "capacity": {"type": "string", "nullable": True},
        "score": {"type": "number", "nullable": True},
        "rejectedBy": {"type": "string", "nullable": True},
        "reason": {"type": "string", "nullable": True}}}
    route = {"type": "object", "properties": {  # a service's routes (GET .../routing)
        "location": {"type": "string"}, "demand_rps": {"type": "number"},
        "targets": {"type": "array", "items": {"type": "object", "properties": {
            "site": {"type": "string"}, "weight": {"type": "number"},
            "p99_latency_ms": {"type": "number", "nullable": True},
            "status": {"type": "string"}}}},
        "drained": {"type": "array", "items": {"type": "string"}},
        "note": {"type": "string", "nullable": True}}}
    return {"type": "object", "properties": {
        "phase": {"type": "string"}, "action": {"type": "string", "nullable": True},
        "site": {"type": "string", "nullable": True},
        "summary": {"type": "string"}, "policyVersion": {"type": "string"},
        "workloadId": {"type": "string"},
        "estimates": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "candidates": {"type": "array", "items": candidate},
        "rejected": {"type": "array", "items": candidate},
        "routing": {"type": "array", "items": route},
        "message": {"type": "string"},
        "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
        "kopf": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "conditions": {
            "type": "array", "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
            "items": {"type": "object", "required": ["type", "status"], "properties": {
                "type": {"type": "string", "maxLength": 316},
                "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                "reason": {"type": "string", "maxLength": 1024},
                "message": {"type": "string", "maxLength": 32768},
                "lastTransitionTime": {"type": "string", "format": "date-time"},
                "observedGeneration": {"type": "integer", "format": "int64",
                                       "minimum": 0}}}}}}


def immutable(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec schema with a transition rule on each field that may not change."""
    props = dict(spec["properties"])
    for name in IMMUTABLE:
        props[name] = {**props[name], "x-kubernetes-validations": [{
            "rule": "self == oldSelf",
            "message": f"spec.{name} cannot change once the Workload exists; create a new "
                       "Workload"}]}
    return {**spec, "properties": props}


def crd(kind: str, plural: str, spec: dict[str, Any], scope: str,
        columns: list[dict[str, Any]], status: dict[str, Any] | None) -> dict[str, Any]:
    props: dict[str, Any] = {"spec": spec}
    version: dict[str, Any] = {"name": VERSION, "served": True, "storage": True,
                               "additionalPrinterColumns": columns}
    if status is not None:
        props["status"] = status
        version["subresources"] = {"status": {}}
    version["schema"] = {"openAPIV3Schema": {"type": "object", "required": ["spec"],
                                             "properties": props}}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{GROUP}"},
            "spec": {"group": GROUP, "scope": scope,
                     "names": {"kind": kind, "plural": plural, "singular": kind.lower(),
                               "listKind": f"{kind}List", "categories": ["placement"],
                               **({"shortNames": SHORT_NAMES[kind]}
                                  if kind in SHORT_NAMES else {})},
                     "versions": [version]}}


def definitions() -> dict[str, dict[str, Any]]:
    """The CRDs, keyed by file name."""
    age = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    workload = crd("Workload", "workloads",
                   immutable(structural(WorkloadSpec.model_json_schema(mode="validation"))),
                   "Namespaced",
                   [{"name": "Ready", "type": "string",
                     "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                    {"name": "Site", "type": "string", "jsonPath": ".status.site"},
                    {"name": "Action", "type": "string", "jsonPath": ".status.action"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"}, age],
                   _status_schema())
    site_schema = Site.model_json_schema(mode="validation")
    site_spec = structural(site_schema["properties"]["spec"], site_schema.get("$defs", {}))
    site = crd("Site", "sites", site_spec, "Cluster",
               [{"name": "Type", "type": "string", "jsonPath": ".spec.type"},
                {"name": "Region", "type": "string", "jsonPath": ".spec.region"}, age], None)
    return {"workloads.yaml": workload, "sites.yaml": site}


class _PlainDumper(yaml.SafeDumper):
    """Writes a node shared by two places twice instead of as an anchor and an alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(doc: dict[str, Any]) -> str:
    header = "# Generated by `placement crds` from placement.model; do not edit.\n"
    return header + yaml.dump(doc, Dumper=_PlainDumper, sort_keys=False)
