"""The API's contract as its OpenAPI document states it: stable operation ids, a bearer scheme,
every error an RFC 9457 problem with a documented status, one UTC timestamp format, 405 with
`Allow`, and strict types (true is not 1)."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from placement.policy.loader import load_bundle

from .conftest import EXAMPLES, Api

PROBLEM = "application/problem+json"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
OPERATIONS = {
    "workloads-submit", "workloads-list", "workloads-get", "workloads-events",
    "workloads-transition", "workloads-cancel", "workloads-release", "workloads-routing",
    "decisions-get",
    "placements-preview", "policies-active", "tokens-list", "tokens-create", "tokens-revoke",
    "health-live", "health-ready", "metrics",
    *(f"{r}-{verb}" for r in ("sites", "datasets", "client-locations")
      for verb in ("list", "get", "create", "replace", "delete")),
}
UNAUTHENTICATED = {"health-live", "health-ready", "metrics"}
SITE: dict[str, Any] = {"metadata": {"name": "dc-berlin"}, "spec": {
    "type": "onprem", "location": {"lat": 52.52, "lon": 13.40}, "kube_context": "dc-berlin",
    "wan_gbps": 10, "egress_usd_per_gb": 0,
    "gpus": [{"type": "L4", "count": 8, "usd_per_gpu_hour": 0.75}]}}
WL = {w.name: w.model_dump(mode="json") for w in load_bundle(EXAMPLES).workloads}
NO_ID = "00000000-0000-4000-8000-000000000000"


def _operations(doc: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    return {op["operationId"]: (method.upper(), path, op)
            for path, item in doc["paths"].items() for method, op in item.items()}


def test_every_operation_has_its_stable_id_and_the_bearer_scheme(api: Api) -> None:
    doc = api.client.get("/openapi.json").json()
    ops = _operations(doc)
    assert set(ops) == OPERATIONS
    scheme = doc["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for name, (_, _, op) in ops.items():
        assert (op.get("security") == [{"bearer": []}]) == (name not in UNAUTHENTICATED), name
        assert not any(p["name"].lower() == "authorization" for p in op.get("parameters", []))


def test_every_documented_error_is_a_problem(api: Api) -> None:
    doc = api.client.get("/openapi.json").json()
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for name, (_, _, op) in _operations(doc).items():
        for code, res in op["responses"].items():
            if int(code) >= 400 and name != "health-ready":
                assert res["content"] == {PROBLEM: {"schema": {
                    "$ref": "#/components/schemas/Problem"}}}, (name, code)


def test_submit_links_to_the_workloads_operations(api: Api) -> None:
    op = _operations(api.client.get("/openapi.json").json())["workloads-submit"][2]
    links = op["responses"]["201"]["links"]
    assert {v["operationId"] for v in links.values()} == {
        "workloads-get", "workloads-events", "workloads-transition", "workloads-cancel",
        "workloads-release", "workloads-routing", "decisions-get"}


# id, caller, operation, method, path, body (None: none; bytes: raw), headers, status
ERRORS: list[tuple[str, str, str, str, str, Any, dict[str, str], int]] = [
    ("no token", "", "workloads-list", "GET", "/v1/workloads", None, {}, 401),
    ("a member asks for the tokens", "vision", "tokens-list", "GET", "/v1/tokens", None, {},
     403),
    ("a member writes a site", "vision", "sites-create", "POST", "/v1/sites", SITE, {}, 403),
    ("an unknown workload", "admin", "workloads-get", "GET", f"/v1/workloads/{NO_ID}", None,
     {}, 404),
    ("the routing of an unknown workload", "admin", "workloads-routing", "GET",
     f"/v1/workloads/{NO_ID}/routing", None, {}, 404),
    ("an unknown site", "admin", "sites-get", "GET", "/v1/sites/nowhere", None, {}, 404),
    ("a site that exists", "admin", "sites-create", "POST", "/v1/sites",
     {**SITE, "metadata": {"name": "dc-frankfurt"}}, {}, 409),
    ("a bad id", "admin", "workloads-get", "GET", "/v1/workloads/42", None, {}, 422),
    ("a bad query", "admin", "workloads-list", "GET", "/v1/workloads?limit=0", None, {}, 422),
    ("a field of the wrong type", "admin", "tokens-create", "POST", "/v1/tokens",
     {"role": "admin", "description": 5}, {}, 422),
    ("another kind in a site", "admin", "sites-create", "POST", "/v1/sites",
     {**SITE, "kind": "Dataset"}, {}, 422),
    ("a body as text", "admin", "tokens-create", "POST", "/v1/tokens", b"{}",
     {"Content-Type": "text/plain"}, 415),
    ("a body too large", "admin", "placements-preview", "POST", "/v1/placements/preview",
     b"[" + b"0," * 600_000 + b"0]", {"Content-Type": "application/json"}, 413),
]


@pytest.mark.parametrize(("who", "operation", "method", "path", "body", "headers", "status"),
                         [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_each_error_is_a_documented_problem(api: Api, who: str, operation: str, method: str,
                                            path: str, body: Any, headers: dict[str, str],
                                            status: int) -> None:
    auth = api.h(who) if who else {}
    kw: dict[str, Any] = ({} if body is None else {"content": body} if isinstance(body, bytes)
                          else {"json": body})
    res = api.client.request(method, path, headers={**auth, **headers}, **kw)
    assert res.status_code == status, res.text
    assert res.headers["content-type"] == PROBLEM
    data = res.json()
    assert set(data) == {"type", "title", "status", "detail", "instance", "errors"}
    assert data["status"] == status and data["instance"] == path.split("?")[0]
    assert data["type"] == "about:blank" and data["title"] and data["detail"]
    for e in data["errors"]:
        assert e["location"] in {"body", "query", "path", "header"} and e["fix"], e
    op = _operations(api.client.get("/openapi.json").json())[operation][2]
    assert str(status) in op["responses"], f"{status} is not documented for {operation}"


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("DELETE", "/v1/workloads", "GET, POST"),
    ("PUT", "/v1/sites", "GET, POST"),
    ("POST", "/v1/sites/dc-frankfurt", "GET, PUT, DELETE"),
    ("GET", "/v1/placements/preview", "POST"),
    ("OPTIONS", "/v1/tokens", "GET, POST"),
], ids=["two routes share a path", "an inventory collection", "an inventory object",
        "a POST-only route", "OPTIONS"])
def test_405_says_what_is_allowed(api: Api, method: str, path: str, allow: str) -> None:
    res = api.client.request(method, path, headers=api.h("admin"))
    assert res.status_code == 405 and res.headers["allow"] == allow
    assert res.headers["content-type"] == PROBLEM and allow in res.json()["detail"]


def _with(doc: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node: Any = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


@pytest.mark.parametrize(("path", "body", "loc"), [
    ("/v1/workloads", _with(WL["vision-finetune"], ("spec", "gpu", "count"), True),
     ["body", "spec", "gpu", "count"]),
    ("/v1/placements/preview", _with(WL["vision-finetune"], ("spec", "duration_hours"), True),
     ["body", "spec", "duration_hours"]),
    ("/v1/sites", _with(SITE, ("spec", "gpus", 0, "count"), True),
     ["body", "spec", "gpus", 0, "count"]),
    ("/v1/sites", _with(SITE, ("spec", "wan_gbps"), "10"), ["body", "spec", "wan_gbps"]),
    ("/v1/sites", _with(_with(SITE, ("spec", "type"), "cloud"), ("spec", "region"), 1),
     ["body", "spec", "region"]),
], ids=["true as a GPU count", "true as hours", "true as a site's GPUs",
        "a number as a string", "a number as a cloud site's region"])
def test_types_are_strict(api: Api, path: str, body: dict[str, Any], loc: list[Any]) -> None:
    res = api.client.post(path, json=body, headers=api.h("admin"))
    assert res.status_code == 422, res.text
    errors = res.json()["errors"]
    assert loc in [e["loc"] for e in errors], errors
    assert all(e["pointer"] == "#/" + "/".join(map(str, e["loc"][1:])) for e in errors)


def _timestamps(value: Any, key: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in _timestamps(v, k)]
    if isinstance(value, list):
        return [t for v in value for t in _timestamps(v, key)]
    return [(key, value)] if (key == "at" or key.endswith("_at")) and value else []


def test_every_timestamp_has_one_utc_format(api: Api) -> None:
    h = api.h("admin")
    wl = api.client.post("/v1/workloads", json=WL["vision-finetune"], headers=h).json()
    api.client.post(f"/v1/workloads/{wl['id']}/transitions", json={"phase": "running"},
                    headers=h)
    api.client.post("/v1/tokens", json={"role": "admin"}, headers=h)
    replies = {path: api.client.get(path, headers=h).json() for path in (
        "/v1/workloads", f"/v1/workloads/{wl['id']}", f"/v1/workloads/{wl['id']}/events",
        f"/v1/decisions/{wl['decision']['id']}", "/v1/sites", "/v1/sites/dc-frankfurt",
        "/v1/datasets", "/v1/client-locations", "/v1/tokens", "/v1/policies/active")}
    replies["submit"] = wl
    for path, reply in replies.items():
        found = _timestamps(reply)
        assert found or path == "/v1/policies/active", path
        for key, value in found:
            assert TIMESTAMP.match(value), (path, key, value)


def test_a_bug_is_a_500_problem(api: Api) -> None:
    """A route that fails unexpectedly still answers a problem (and is logged)."""
    def boom() -> None:
        raise RuntimeError("a bug")

    app = create_app(runtime=api.runtime)
    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as client:
        res = client.get("/boom")
    assert res.status_code == 500 and res.headers["content-type"] == PROBLEM
    assert res.json()["status"] == 500 and "a bug" not in res.text
