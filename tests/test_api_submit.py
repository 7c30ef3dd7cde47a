"""POST /v1/workloads, the one door for submissions: every kind of request gets the status and
body it should, a retry returns the first result, and the route is counted under its name."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from placement.policy.loader import load_bundle

from .conftest import EXAMPLES, Api
from .factories import without_brief

WL = {w.name: w.model_dump(mode="json") for w in load_bundle(EXAMPLES).workloads}
VOLATILE = {"id", "workload_id", "created_at", "updated_at", "decided_at"}


def _stable(value: Any) -> Any:
    """The reply without ids and timestamps (they differ between any two submissions)."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _bad_dataset() -> dict[str, Any]:
    wl = copy.deepcopy(WL["vision-finetune"])
    wl["spec"]["datasets"] = [{"name": "no-such-data"}]
    return wl


def _no_team() -> dict[str, Any]:
    wl = copy.deepcopy(WL["vision-finetune"])
    del wl["spec"]["team"]
    return wl


JSON = "application/json"
PROBLEM = "application/problem+json"
CASES: list[tuple[str, str, Any, dict[str, str], int, list[list[Any]] | str]] = [
    # id, caller, body (dict: JSON; bytes: raw), extra headers, status, the errors' locs (or
    # the phase of a 201)
    ("a placement", "vision", WL["vision-finetune"], {}, 201, "placed"),
    ("a burst by an admin", "admin", WL["llm-pretrain"], {}, 201, "placed"),
    ("a service", "quality", WL["quality-assistant"], {}, 201, "placed"),
    ("with an idempotency key", "vision", WL["vision-finetune"], {"Idempotency-Key": "k1"},
     201, "placed"),
    ("content type with a charset", "vision", WL["vision-finetune"],
     {"Content-Type": "application/json; charset=utf-8"}, 201, "placed"),
    ("a member for another team", "quality", WL["vision-finetune"], {}, 403, []),
    ("a missing field", "vision", _no_team(), {}, 422, [["body", "spec", "team"]]),
    ("not JSON", "vision", b"{not json", {"Content-Type": JSON}, 422, [["body"]]),
    ("not UTF-8", "vision", b"\xff\xfe{}", {"Content-Type": JSON}, 422, [["body"]]),
    ("NaN is read, then refused by the model", "vision",
     b'{"kind": "Workload", "spec": {"duration_hours": NaN}}', {"Content-Type": JSON}, 422,
     [["body", "metadata"], ["body", "spec", "kind"], ["body", "spec", "team"],
      ["body", "spec", "gpu"], ["body", "spec", "duration_hours"]]),
    ("an empty idempotency key", "vision", WL["vision-finetune"], {"Idempotency-Key": ""},
     422, [["header", "idempotency-key"]]),
    ("an idempotency key too long", "vision", WL["vision-finetune"],
     {"Idempotency-Key": "k" * 201}, 422, [["header", "idempotency-key"]]),
    ("an unknown dataset (fails after it is queued)", "vision", _bad_dataset(), {}, 422,
     [["body", "spec", "datasets", 0, "name"]]),
    ("another content type", "vision", b"{}", {"Content-Type": "text/plain"}, 415,
     [["header", "content-type"]]),
    ("no content type", "vision", b"{}", {}, 415, [["header", "content-type"]]),
    ("an empty body", "vision", b"", {"Content-Type": JSON}, 422, [["body"]]),
    ("no token", "", WL["vision-finetune"], {}, 401, []),
    ("a bad token", "nobody", WL["vision-finetune"], {}, 401, []),
    ("a bad token and a bad key: the token is checked first", "nobody", WL["vision-finetune"],
     {"Idempotency-Key": ""}, 401, []),
]


def _post(a: Api, who: str, body: Any, headers: dict[str, str]) -> Any:
    auth = {} if not who else (a.h(who) if who in a.tokens else
                               {"Authorization": "Bearer not-a-token"})
    if isinstance(body, bytes):
        return a.client.post("/v1/workloads", content=body, headers={**auth, **headers})
    return a.client.post("/v1/workloads", json=body, headers={**auth, **headers})


@pytest.mark.parametrize(("who", "body", "headers", "status", "expect"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_kind_of_submission_gets_its_answer(
        api: Api, who: str, body: Any, headers: dict[str, str], status: int,
        expect: list[list[Any]] | str) -> None:
    res = _post(api, who, body, headers)
    assert res.status_code == status, res.text
    assert res.headers["content-type"] == (JSON if status < 400 else PROBLEM)
    data = res.json()
    if status == 201:
        assert data["phase"] == expect and data["decision"]["decision"]["candidates"]
        stored = api.client.get(f"/v1/workloads/{data['id']}", headers=api.h("admin")).json()
        sent, kept = without_brief(data, stored)
        assert _stable(kept) == _stable(sent)
        return
    assert [e["loc"] for e in data["errors"]] == expect
    assert data["detail"] and data["status"] == status and data["instance"] == "/v1/workloads"
    assert all(e["fix"] and e["detail"] for e in data["errors"])
    if status == 401:
        assert res.headers["www-authenticate"] == "Bearer"
    listed = api.client.get("/v1/workloads", headers=api.h("admin")).json()["items"]
    assert listed == []  # a refused submission stores nothing


@pytest.mark.parametrize(("path", "body", "content_type", "status", "says"), [
    ("/v1/workloads", b'{\n  "metadata": {"name": "a"}\n  "spec": {}}', JSON, 422,
     "invalid JSON at line 3, column 3: Expecting ',' delimiter"),
    ("/v1/workloads", b"{not json", JSON, 422,
     "invalid JSON at line 1, column 2: Expecting property name enclosed in double quotes"),
    ("/v1/tokens", b'{"role": "admin",\n "team": 1,}', JSON, 422,
     "invalid JSON at line 2, column 12: Expecting property name enclosed in double quotes"),
    ("/v1/workloads", b"{}", "text/plain", 415,
     "send the body as JSON with the header Content-Type: application/json (this request "
     "sent 'text/plain')"),
    ("/v1/tokens", b"{}", "text/plain", 415,
     "send the body as JSON with the header Content-Type: application/json (this request "
     "sent 'text/plain')"),
    ("/v1/sites", b"{}", None, 415,
     "send the body as JSON with the header Content-Type: application/json (this request "
     "sent none)"),
], ids=["malformed JSON says what and where", "a key not in quotes says where",
        "malformed JSON on a route FastAPI reads says where too",
        "another content type says to send JSON", "so it does on a route FastAPI reads",
        "no content type says to send JSON"])
def test_unreadable_bodies_are_explained(api: Api, path: str, body: bytes,
                                         content_type: str | None, status: int,
                                         says: str) -> None:
    headers = api.h("admin") | ({"Content-Type": content_type} if content_type else {})
    res = api.client.post(path, content=body, headers=headers)
    assert res.status_code == status, res.text
    assert res.headers["content-type"] == PROBLEM
    assert res.json()["detail"] == says


def test_a_retry_returns_the_first_result(api: Api) -> None:
    h = {**api.h("vision"), "Idempotency-Key": "same"}
    first = api.client.post("/v1/workloads", json=WL["vision-finetune"], headers=h)
    again = api.client.post("/v1/workloads", json=WL["vision-finetune"], headers=h)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    listed = api.client.get("/v1/workloads", headers=api.h("admin")).json()["items"]
    assert len(listed) == 1


def test_submissions_are_counted_under_their_route(api: Api) -> None:
    res = api.client.post("/v1/workloads", json=WL["vision-finetune"], headers=api.h("vision"))
    assert res.status_code == 201
    text = api.client.get("/metrics").text
    assert ('placement_http_request_duration_seconds_count{method="POST",'
            'route="/v1/workloads",status="201"} 1.0') in text


def test_a_repeated_header_counts_its_first_value(api: Api) -> None:
    """Two Authorization headers: the first counts (a member of vision may not submit for
    quality, though the second is an admin's)."""
    headers = [("Authorization", api.h("vision")["Authorization"]),
               ("Authorization", api.h("admin")["Authorization"])]
    res = api.client.post("/v1/workloads", json=WL["quality-assistant"], headers=headers)
    assert res.status_code == 403
    assert "team 'vision'" in res.json()["detail"]
