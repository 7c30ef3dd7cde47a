"""Inventory routes (admin writes, anyone reads) and queue re-evaluation after a release."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import Api, api_on

SITE: dict[str, Any] = {"metadata": {"name": "dc-berlin", "labels": {"residency": "eu"}},
        "spec": {"type": "onprem", "location": {"lat": 52.52, "lon": 13.40},
                 "kube_context": "dc-berlin", "wan_gbps": 10, "egress_usd_per_gb": 0,
                 "gpus": [{"type": "L4", "count": 8, "usd_per_gpu_hour": 0.75}]}}


def test_site_crud(api: Api) -> None:
    h = api.h("admin")
    assert api.client.post("/v1/sites", json=SITE, headers=h).status_code == 201
    assert api.client.post("/v1/sites", json=SITE, headers=h).status_code == 409
    got = api.client.get("/v1/sites/dc-berlin", headers=api.h("vision"))
    assert got.status_code == 200 and got.json()["document"]["spec"]["wan_gbps"] == 10
    bigger = {**SITE, "spec": {**SITE["spec"], "wan_gbps": 40}}
    assert api.client.put("/v1/sites/dc-berlin", json=bigger, headers=h).status_code == 200
    assert api.client.get("/v1/sites/dc-berlin", headers=h).json()["document"]["spec"][
        "wan_gbps"] == 40
    names = [s["name"] for s in api.client.get("/v1/sites", headers=h).json()]
    assert "dc-berlin" in names and "aws-us-east-1" in names
    assert api.client.delete("/v1/sites/dc-berlin", headers=h).status_code == 204
    assert api.client.get("/v1/sites/dc-berlin", headers=h).status_code == 404


def test_new_site_is_used_by_the_next_decision(api: Api) -> None:
    """Even with the engine cached (a long TTL here), a change through this process is seen by
    its next decision."""
    api.runtime.capacity_ttl = 3600.0
    site = {**SITE, "spec": {**SITE["spec"], "location": {"lat": 48.7758, "lon": 9.1829},
                             "network_boundary": "stuttgart-ot",
                             "gpus": [{"type": "L4", "count": 8, "usd_per_gpu_hour": 0.01}]}}
    wl = {"metadata": {"name": "det"}, "spec": {
        "kind": "inference", "team": "quality", "gpu": {"types": ["L4"], "count": 1},
        "latency": {"p99_slo_ms": 50, "service_time_p99_ms": 10,
                    "clients": [{"location": "stuttgart-plant-floor"}]}}}

    def preview() -> str | None:
        res = api.client.post("/v1/placements/preview", json=wl, headers=api.h("quality"))
        assert res.status_code == 200
        site: str | None = res.json()["site"]
        return site

    assert preview() != "dc-berlin"
    assert api.client.post("/v1/sites", json=site, headers=api.h("admin")).status_code == 201
    assert preview() == "dc-berlin"
    assert api.client.delete("/v1/sites/dc-berlin", headers=api.h("admin")).status_code == 204
    assert preview() != "dc-berlin"


WRITES = [
    ("member cannot create a site", "post", "/v1/sites", "vision", 403),
    ("member cannot delete a site", "delete", "/v1/sites/plant-austin", "vision", 403),
    ("site referenced by a dataset cannot go", "delete", "/v1/sites/plant-austin", "admin", 409),
    ("unknown site", "delete", "/v1/sites/atlantis", "admin", 404),
]


@pytest.mark.parametrize(("method", "path", "who", "status"), [w[1:] for w in WRITES],
                         ids=[w[0] for w in WRITES])
def test_inventory_write_rules(api: Api, method: str, path: str, who: str,
                               status: int) -> None:
    kwargs: dict[str, Any] = {"headers": api.h(who)}
    if method == "post":
        kwargs["json"] = SITE
    assert getattr(api.client, method)(path, **kwargs).status_code == status


INVALID = [
    ("dataset on an unknown site", "/v1/datasets",
     {"metadata": {"name": "d"}, "spec": {"size_gb": 1, "replicas": ["atlantis"]}},
     ["body", "spec", "replicas", 0]),
    ("negative dataset size", "/v1/datasets",
     {"metadata": {"name": "d"}, "spec": {"size_gb": -1, "replicas": ["dc-frankfurt"]}},
     ["body", "spec", "size_gb"]),
    ("site without GPUs", "/v1/sites",
     {**SITE, "spec": {**SITE["spec"], "gpus": []}}, ["body", "spec", "gpus"]),
    ("client RTT to an unknown site", "/v1/client-locations",
     {"metadata": {"name": "c"}, "spec": {"location": {"lat": 1, "lon": 2},
                                          "rtt_ms": {"atlantis": 3}}},
     ["body", "spec", "rtt_ms", "atlantis"]),
]


@pytest.mark.parametrize(("path", "body", "loc"), [i[1:] for i in INVALID],
                         ids=[i[0] for i in INVALID])
def test_invalid_inventory_is_422_naming_the_field(api: Api, path: str, body: dict[str, Any],
                                                   loc: list[Any]) -> None:
    res = api.client.post(path, json=body, headers=api.h("admin"))
    assert res.status_code == 422, res.text
    assert res.headers["content-type"] == "application/problem+json"
    errors = res.json()["errors"]
    assert loc in [e["loc"] for e in errors], res.json()
    assert all(e["location"] == "body" and e["fix"] for e in errors)


def test_capacity_cannot_drop_below_reserved(api: Api) -> None:
    h = api.h("admin")
    job = {"metadata": {"name": "j"}, "spec": {"kind": "training", "team": "vision",
           "gpu": {"types": ["L4"], "count": 16}, "duration_hours": 1}}
    assert api.client.post("/v1/workloads", json=job, headers=h).json()["site"] == \
        "plant-stuttgart"
    site = api.client.get("/v1/sites/plant-stuttgart", headers=h).json()["document"]
    site["spec"]["gpus"][0]["count"] = 4
    res = api.client.put("/v1/sites/plant-stuttgart", json=site, headers=h)
    assert res.status_code == 409 and "16 L4 GPUs reserved" in res.json()["detail"]


QUEUE = Path(__file__).parent / "data" / "queue"


def _job(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"kind": "training", "team": "vision",
            "gpu": {"types": ["A100"], "count": 8}, "duration_hours": 4}}


def test_queued_workload_is_placed_when_gpus_are_released(db_url: str) -> None:
    with api_on(db_url, QUEUE) as a:
        h = a.h("vision")
        first = a.client.post("/v1/workloads", json=_job("first"), headers=h).json()
        second = a.client.post("/v1/workloads", json=_job("second"), headers=h).json()
        assert (first["phase"], second["phase"]) == ("placed", "queued")
        assert "queue at dc" in second["decision"]["decision"]["summary"]
        a.client.post(f"/v1/workloads/{first['id']}/release", headers=h)
        deadline = time.monotonic() + 10  # the queue is re-evaluated in the background
        while (now := a.client.get(f"/v1/workloads/{second['id']}", headers=h).json())[
                "phase"] == "queued" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (now["phase"], now["site"]) == ("placed", "dc")
        events = [e["type"] for e in a.client.get(f"/v1/workloads/{second['id']}/events",
                                                  headers=h).json()]
        assert events == ["submitted", "queued", "placed"]


CRUD: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    ("sites", "dc-berlin", SITE, {"spec": {**SITE["spec"], "wan_gbps": 40}}),
    ("datasets", "manuals", {"metadata": {"name": "manuals"}, "spec": {
        "size_gb": 20, "replicas": ["dc-frankfurt"]}},
     {"spec": {"size_gb": 25, "replicas": ["dc-frankfurt", "plant-stuttgart"]}}),
    ("client-locations", "berlin-office", {"metadata": {"name": "berlin-office"}, "spec": {
        "location": {"lat": 52.52, "lon": 13.40}}},
     {"spec": {"location": {"lat": 52.52, "lon": 13.40}, "rtt_ms": {"dc-frankfurt": 11.0}}}),
]


@pytest.mark.parametrize(("path", "name", "body", "change"), CRUD, ids=[c[0] for c in CRUD])
def test_inventory_crud_for_every_resource(api: Api, path: str, name: str, body: dict[str, Any],
                                           change: dict[str, Any]) -> None:
    h = api.h("admin")
    url = f"/v1/{path}"
    assert api.client.post(url, json=body, headers=h).status_code == 201
    assert name in [d["name"] for d in api.client.get(url, headers=api.h("vision")).json()]
    updated = {**body, **change}
    res = api.client.put(f"{url}/{name}", json=updated, headers=h)
    assert res.status_code == 200 and res.json()["document"]["spec"] == \
        api.client.get(f"{url}/{name}", headers=h).json()["document"]["spec"]
    assert api.client.put(f"{url}/{name}", json=updated, headers=api.h("vision")).status_code \
        == 403
    assert api.client.delete(f"{url}/{name}", headers=h).status_code == 204
    assert api.client.get(f"{url}/{name}", headers=h).status_code == 404
