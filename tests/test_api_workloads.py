"""Workload routes: submit, read, list, decisions, preview, lifecycle, auth scoping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from placement.policy.loader import load_bundle

from .conftest import EXAMPLES, Api, api_on
from .factories import without_brief

WL = {w.name: w.model_dump(mode="json") for w in load_bundle(EXAMPLES).workloads}


def submit(api: Api, name: str, who: str = "admin", **headers: str) -> Any:
    return api.client.post("/v1/workloads", json=WL[name], headers={**api.h(who), **headers})


def test_submit_returns_the_decision_and_reserves(api: Api) -> None:
    res = submit(api, "vision-finetune", "vision")
    assert res.status_code == 201, res.text
    body = res.json()
    assert (body["phase"], body["site"], body["action"]) == ("placed", "dc-frankfurt", "place")
    decision = body["decision"]["decision"]
    assert decision["policy_version"] == api.runtime.policy_version
    assert decision["policy_version"].startswith(("git:", "sha256:"))
    got = api.client.get(f"/v1/decisions/{body['decision']['id']}", headers=api.h("vision"))
    assert got.status_code == 200
    full = got.json()["decision"]
    assert {c["site"] for c in full["candidates"]} >= {"aws-us-east-1", "plant-austin"}
    assert decision["candidates"][0] == full["candidates"][0] and decision["candidates_omitted"]
    assert {k: v for k, v in decision.items() if not k.startswith("candidates")} == {
        k: v for k, v in full.items() if not k.startswith("candidates")}
    metrics = api.client.get("/metrics").text
    assert 'placement_gpus_reserved{gpu_type="A100-80GB",site="dc-frankfurt"} 8.0' in metrics
    assert 'placement_decisions_total{action="place",site_kind="onprem"} 1.0' in metrics


def test_idempotency_key_returns_the_first_result(api: Api) -> None:
    first = submit(api, "vision-finetune", "vision", **{"Idempotency-Key": "abc"})
    again = submit(api, "vision-finetune", "vision", **{"Idempotency-Key": "abc"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    listed = api.client.get("/v1/workloads", headers=api.h("admin")).json()["items"]
    assert len(listed) == 1


def test_preview_stores_nothing(api: Api) -> None:
    res = api.client.post("/v1/placements/preview", json=WL["llm-pretrain"],
                          headers=api.h("admin"))
    assert res.status_code == 200 and res.json()["site"] == "aws-us-east-1"
    assert api.client.get("/v1/workloads", headers=api.h("admin")).json()["items"] == []


def test_lifecycle_and_events(api: Api) -> None:
    wid = submit(api, "vision-finetune", "vision").json()["id"]
    url = f"/v1/workloads/{wid}"
    h = api.h("vision")
    assert api.client.post(f"{url}/transitions", json={"phase": "succeeded"},
                           headers=h).status_code == 409  # placed -> succeeded is not allowed
    for phase in ("running", "succeeded"):
        res = api.client.post(f"{url}/transitions", json={"phase": phase}, headers=h)
        assert res.status_code == 200 and res.json()["phase"] == phase
    assert api.client.post(f"{url}/cancel", headers=h).status_code == 409
    events = [e["type"] for e in api.client.get(f"{url}/events", headers=h).json()]
    assert events == ["submitted", "placed", "running", "succeeded"]
    metrics = api.client.get("/metrics").text
    assert 'placement_gpus_reserved{gpu_type="A100-80GB",site="dc-frankfurt"} 0.0' in metrics


def test_list_filters_and_cursor_pagination(api: Api) -> None:
    for name in ("vision-finetune", "llm-pretrain", "sensor-anomaly-batch", "support-chat"):
        assert submit(api, name).status_code == 201
    h = api.h("admin")
    seen, cursor = [], None
    while True:
        page = api.client.get("/v1/workloads", params={"limit": 3, **(
            {"cursor": cursor} if cursor else {})}, headers=h).json()
        seen += [w["name"] for w in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(["vision-finetune", "llm-pretrain", "sensor-anomaly-batch",
                                   "support-chat"])
    burst = api.client.get("/v1/workloads", params={"site": "aws-us-east-1"}, headers=h).json()
    assert [w["name"] for w in burst["items"]] == ["llm-pretrain"]
    jobs = api.client.get("/v1/workloads", params={"kind": "batch", "phase": "placed"},
                          headers=h).json()
    assert [w["name"] for w in jobs["items"]] == ["sensor-anomaly-batch"]
    bad = api.client.get("/v1/workloads", params={"cursor": "nonsense"}, headers=h)
    assert bad.status_code == 422


SCOPING = [
    ("member reads another team's workload", "get", "", 403),
    ("member cancels another team's workload", "post", "/cancel", 403),
    ("member reads another team's events", "get", "/events", 403),
    ("owner reads its workload", "get", "", 200),
]


@pytest.mark.parametrize(("method", "suffix", "status"), [s[1:] for s in SCOPING],
                         ids=[s[0] for s in SCOPING])
def test_members_see_only_their_team(api: Api, method: str, suffix: str, status: int) -> None:
    wid = submit(api, "vision-finetune", "vision").json()["id"]
    who = "vision" if status == 200 else "quality"
    res = getattr(api.client, method)(f"/v1/workloads/{wid}{suffix}", headers=api.h(who))
    assert res.status_code == status, res.text


def test_member_lists_only_its_team_and_cannot_submit_for_another(api: Api) -> None:
    submit(api, "vision-finetune", "vision")
    submit(api, "defect-detector", "quality")
    listed = api.client.get("/v1/workloads", headers=api.h("quality")).json()["items"]
    assert [w["team"] for w in listed] == ["quality"]
    assert api.client.get("/v1/workloads", params={"team": "vision"},
                          headers=api.h("quality")).status_code == 403
    assert submit(api, "vision-finetune", "quality").status_code == 403


AUTH = [
    ("no token", {}, 401),
    ("malformed header", {"Authorization": "Token abc"}, 401),
    ("unknown token", {"Authorization": "Bearer plc_nope"}, 401),
]


@pytest.mark.parametrize(("headers", "status"), [a[1:] for a in AUTH], ids=[a[0] for a in AUTH])
def test_bad_credentials(api: Api, headers: dict[str, str], status: int) -> None:
    res = api.client.get("/v1/workloads", headers=headers)
    assert res.status_code == status and "token" in res.json()["detail"]
    assert res.headers["www-authenticate"] == "Bearer"
    assert res.headers["content-type"] == "application/problem+json"


BAD = [
    ("unknown dataset names the field", {"spec": {"datasets": [{"name": "nope"}]}},
     ["body", "spec", "datasets", 0, "name"]),
    ("negative GPU count", {"spec": {"gpu": {"types": ["A100"], "count": -1}}},
     ["body", "spec", "gpu", "count"]),
    ("unknown GPU type", {"spec": {"gpu": {"types": ["H1000"], "count": 1}}},
     ["body", "spec", "gpu", "types", 0]),
    ("extra field", {"spec": {"colour": "blue"}}, ["body", "spec", "colour"]),
]


@pytest.mark.parametrize(("patch", "loc"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_workload_is_422_naming_the_field(api: Api, patch: dict[str, Any],
                                              loc: list[Any]) -> None:
    body = {**WL["vision-finetune"], "spec": {**WL["vision-finetune"]["spec"], **patch["spec"]}}
    res = api.client.post("/v1/workloads", json=body, headers=api.h("admin"))
    assert res.status_code == 422, res.text
    errors = {tuple(e["loc"]): e for e in res.json()["errors"]}
    assert tuple(loc) in errors, errors
    assert errors[tuple(loc)]["pointer"] == "#/" + "/".join(map(str, loc[1:]))
    assert errors[tuple(loc)]["fix"]


NOT_FOUND = [
    ("unknown workload", "get", "/v1/workloads/00000000-0000-0000-0000-000000000000", 404),
    ("unknown decision", "get", "/v1/decisions/00000000-0000-0000-0000-000000000000", 404),
    ("malformed id", "get", "/v1/workloads/not-a-uuid", 422),
    ("unknown transition target", "post",
     "/v1/workloads/00000000-0000-0000-0000-000000000000/transitions", 422),
]


@pytest.mark.parametrize(("method", "path", "status"), [n[1:] for n in NOT_FOUND],
                         ids=[n[0] for n in NOT_FOUND])
def test_unknown_ids(api: Api, method: str, path: str, status: int) -> None:
    kwargs: dict[str, Any] = {"headers": api.h("admin")}
    if method == "post":
        kwargs["json"] = {"phase": "exploded"}
    assert getattr(api.client, method)(path, **kwargs).status_code == status


def test_policy_active_and_health(api: Api) -> None:
    pol = api.client.get("/v1/policies/active", headers=api.h("vision"))
    assert pol.status_code == 200
    assert pol.json()["version"] == api.runtime.policy_version
    assert pol.json()["rules"][0]["name"] == "confidential-data-stays-onprem"
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/readyz").json()["status"] == "ready"


def test_routes_work_on_postgresql_too(db_url: str) -> None:
    with api_on(db_url) as a:
        first = submit(a, "llm-pretrain", **{"Idempotency-Key": "k1"})
        assert first.status_code == 201 and first.json()["action"] == "burst"
        assert submit(a, "llm-pretrain", **{"Idempotency-Key": "k1"}).status_code == 200
        wid = first.json()["id"]
        assert a.client.post(f"/v1/workloads/{wid}/release", headers=a.h("admin")).json()[
            "phase"] == "released"


def test_what_a_submit_answers_is_what_the_store_kept(db_url: str) -> None:
    """Every field of the reply (timestamps to the microsecond, the document, the full
    decision) reads back the same from the store."""
    with api_on(db_url) as a:
        for name in WL:
            sent = submit(a, name, **{"Idempotency-Key": f"rt-{name}"})
            assert sent.status_code == 201, sent.text
            read = a.client.get(f"/v1/workloads/{sent.json()['id']}", headers=a.h("admin"))
            reply, kept = without_brief(sent.json(), read.json())
            assert kept == reply
            events = a.client.get(f"/v1/workloads/{sent.json()['id']}/events",
                                  headers=a.h("admin")).json()
            assert [e["type"] for e in events] == ["submitted", sent.json()["phase"]]


QUEUE_BUNDLE = EXAMPLES.parents[1] / "tests" / "data" / "queue"


def _job(name: str, gpus: int, hours: float) -> dict[str, Any]:
    return {"metadata": {"name": name},
            "spec": {"kind": "training", "team": "vision", "duration_hours": hours,
                     "gpu": {"types": ["A100"], "count": gpus}}}


def test_queued_wait_comes_from_the_stored_release_times(db_url: str) -> None:
    """The service reads release times only for short groups; the wait they give is the time
    until enough held GPUs come back (here: the 0.25 h job frees 4, the 0.5 h job 4 more)."""
    with api_on(db_url, QUEUE_BUNDLE) as a:
        post = a.client.post
        for name, gpus, hours in (("short", 4, 0.25), ("long", 4, 0.5)):
            assert post("/v1/workloads", json=_job(name, gpus, hours),
                        headers=a.h("admin")).json()["phase"] == "placed"
        cases = [(2, 0.25), (4, 0.25), (6, 0.5), (8, 0.5)]
        for gpus, wait in cases:
            body = a.client.post("/v1/placements/preview", json=_job(f"w{gpus}", gpus, 1),
                                 headers=a.h("admin")).json()
            assert body["action"] == "queue", body
            assert body["estimates"]["wait_hours"] == pytest.approx(wait, abs=0.01)
        queued = post("/v1/workloads", json=_job("next", 8, 1), headers=a.h("admin")).json()
        assert queued["phase"] == "queued"
        assert queued["decision"]["decision"]["estimates"]["wait_hours"] == pytest.approx(
            0.5, abs=0.01)


def test_an_admin_token_from_a_secret_works_at_once_and_is_stored_once(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from prometheus_client import CollectorRegistry
    from sqlalchemy import func, select

    from api.app import create_app
    from placement.metrics import Metrics
    from placement.service.settings import Settings
    from placement.service.wiring import build_runtime
    from placement.store.tables import ApiTokenRow

    token = "s3cr3t-from-a-kubernetes-secret-0123456789"
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'p.db'}", admin_token=token)
    for _ in range(2):  # a restart finds it stored
        rt = build_runtime(settings, Metrics(CollectorRegistry()))
    with rt.db.read() as s:
        assert s.scalar(select(func.count()).select_from(ApiTokenRow)) == 1
    with TestClient(create_app(runtime=rt)) as client:
        res = client.get("/v1/sites", headers={"Authorization": f"Bearer {token}"})
        assert res.status_code == 200
