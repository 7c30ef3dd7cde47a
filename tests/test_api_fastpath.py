"""The submit fast path answers exactly as the FastAPI route does, and hands the route every
request it should not answer itself."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import api.fastpath as fastpath
from placement.policy.loader import load_bundle

from .conftest import EXAMPLES, Api, api_on

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
CASES: list[tuple[str, str, Any, dict[str, str], bool]] = [
    # id, caller, body (dict: JSON; bytes: raw), extra headers, answered by the fast path
    ("a placement", "vision", WL["vision-finetune"], {}, True),
    ("a burst by an admin", "admin", WL["llm-pretrain"], {}, True),
    ("a service", "quality", WL["quality-assistant"], {}, True),
    ("with an idempotency key", "vision", WL["vision-finetune"], {"Idempotency-Key": "k1"},
     True),
    ("content type with a charset", "vision", WL["vision-finetune"],
     {"Content-Type": "application/json; charset=utf-8"}, True),
    ("a member for another team", "quality", WL["vision-finetune"], {}, False),
    ("a missing field", "vision", _no_team(), {}, False),
    ("not JSON", "vision", b"{not json", {"Content-Type": JSON}, False),
    ("NaN is not JSON for the fast path", "vision",
     b'{"kind": "Workload", "spec": {"duration_hours": NaN}}', {"Content-Type": JSON}, False),
    ("an empty idempotency key", "vision", WL["vision-finetune"], {"Idempotency-Key": ""},
     False),
    ("an idempotency key too long", "vision", WL["vision-finetune"],
     {"Idempotency-Key": "k" * 201}, False),
    ("an unknown dataset (fails after it is queued)", "vision", _bad_dataset(), {}, False),
    ("another content type", "vision", b"{}", {"Content-Type": "text/plain"}, False),
    ("no token", "", WL["vision-finetune"], {}, False),
    ("a bad token", "nobody", WL["vision-finetune"], {}, False),
]


@pytest.fixture()
def pair(tmp_path: Path) -> Iterator[tuple[Api, Api]]:
    """Two services on their own databases: one with the fast path, one without."""
    with api_on(f"sqlite:///{tmp_path / 'a.db'}") as fast, \
            api_on(f"sqlite:///{tmp_path / 'b.db'}") as slow:
        yield fast, slow


def _post(a: Api, who: str, body: Any, headers: dict[str, str]) -> Any:
    auth = {} if not who else (a.h(who) if who in a.tokens else
                               {"Authorization": "Bearer not-a-token"})
    a.client.get("/v1/policies/active", headers=auth)  # the route's dependency caches the token
    if isinstance(body, bytes):
        return a.client.post("/v1/workloads", content=body, headers={**auth, **headers})
    return a.client.post("/v1/workloads", json=body, headers={**auth, **headers})


@pytest.mark.parametrize(("who", "body", "headers", "fast"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_the_fast_path_answers_as_the_route_does(
        pair: tuple[Api, Api], who: str, body: Any, headers: dict[str, str], fast: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    answered: list[bool] = []
    real = fastpath._answer

    async def spy(*args: Any) -> Any:
        got = await real(*args)
        answered.append(got is not None)
        return got

    monkeypatch.setattr(fastpath, "_answer", spy)
    a = _post(pair[0], who, body, headers)
    assert answered == [fast]

    async def never(*_: Any) -> None:
        return None

    monkeypatch.setattr(fastpath, "_answer", never)  # every request through the route
    b = _post(pair[1], who, body, headers)
    assert a.status_code == b.status_code, (a.text, b.text)
    assert a.headers["content-type"] == b.headers["content-type"]
    if a.headers["content-type"] == JSON:
        assert _stable(a.json()) == _stable(b.json())
    else:
        assert a.text == b.text


def test_a_retry_through_the_fast_path_returns_the_first_result(api: Api) -> None:
    h = {**api.h("vision"), "Idempotency-Key": "same"}
    api.client.get("/v1/policies/active", headers=api.h("vision"))
    first = api.client.post("/v1/workloads", json=WL["vision-finetune"], headers=h)
    again = api.client.post("/v1/workloads", json=WL["vision-finetune"], headers=h)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    listed = api.client.get("/v1/workloads", headers=api.h("admin")).json()["items"]
    assert len(listed) == 1


def test_fast_path_requests_are_counted_under_their_route(api: Api) -> None:
    api.client.get("/v1/policies/active", headers=api.h("vision"))
    res = api.client.post("/v1/workloads", json=WL["vision-finetune"], headers=api.h("vision"))
    assert res.status_code == 201
    text = api.client.get("/metrics").text
    assert ('placement_http_request_duration_seconds_count{method="POST",'
            'route="/v1/workloads",status="201"} 1.0') in text


def test_a_repeated_header_is_read_as_the_route_reads_it(
        pair: tuple[Api, Api], monkeypatch: pytest.MonkeyPatch) -> None:
    """Two Authorization headers: the first counts (a member of vision may not submit for
    quality), on both paths."""
    replies = []
    for a, fast in zip(pair, (True, False), strict=True):
        if not fast:
            async def never(*_: Any) -> None:
                return None
            monkeypatch.setattr(fastpath, "_answer", never)
        for who in ("vision", "admin"):
            a.client.get("/v1/policies/active", headers=a.h(who))
        headers = [("Authorization", a.h("vision")["Authorization"]),
                   ("Authorization", a.h("admin")["Authorization"])]
        replies.append(a.client.post("/v1/workloads", json=WL["quality-assistant"],
                                     headers=headers))
    assert [r.status_code for r in replies] == [403, 403]
    assert replies[0].json() == replies[1].json()
