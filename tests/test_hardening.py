"""No request can hurt another: hostile values get their own 4xx, one bad item in a batch
fails only itself, overdue work never makes GPUs look free, bad inventory never breaks
decisions, and bodies have a size limit."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from placement.control import submit as batching
from placement.control.submit import Pending
from placement.errors import ConfigError, StoreUnavailableError, UnprocessableError
from placement.model import Workload
from placement.model.common import Strict, check_gpu, check_text
from placement.policy.loader import load_bundle
from placement.store.tables import ReservationRow, WorkloadRow, utcnow

from .conftest import EXAMPLES, Api, api_on

QUEUE_BUNDLE = Path(__file__).parent / "data" / "queue"


def job(name: str, gpus: int = 1, hours: float = 1.0, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name},
            "spec": {"kind": "training", "team": "vision", "duration_hours": hours,
                     "gpu": {"types": ["A100"], "count": gpus}, **spec}}


def raw_post(api: Api, path: str, body: str | bytes) -> Any:
    return api.client.post(path, content=body, headers={
        **api.h("admin"), "Content-Type": "application/json"})


def stored_workloads(api: Api) -> int:
    with api.runtime.db.read() as s:
        return int(s.scalar(select(func.count()).select_from(WorkloadRow)) or 0)


# --- 1. hostile values: a 4xx naming the field, nothing stored ------------------------------

HOSTILE_JSON = [  # (field path, JSON text of the value)
    ("spec.priority", "2147483648"), ("spec.priority", str(2**63)),
    ("spec.gpu.count", str(2**63)), ("spec.replicas", str(2**63)),
    ("spec.interruptions", str(2**63)), ("spec.duration_hours", "1e308"),
    ("spec.duration_hours", "NaN"), ("spec.duration_hours", "Infinity"),
    ("spec.deadline_hours", "-Infinity"), ("spec.gpu.count", "true"),
    ("spec.priority", "false"), ("spec.gpu.count", "1.0"),
    ("metadata.labels.tier", '"a\\u0000b"'), ("metadata.labels.tier", '"\\ud800"'),
    ("spec.team", '"vision\\u0000"'), ("metadata.labels.tier", json.dumps("x" * 2000)),
]


def _with(field: str, value_json: str) -> str:
    body = job("hostile")
    body["metadata"]["labels"] = {"tier": "PLACEHOLDER"}
    marker = "__HOSTILE__"
    node = body
    parts = field.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = marker
    return json.dumps(body).replace(f'"{marker}"', value_json)


@pytest.fixture(scope="module")
def shared_api(tmp_path_factory: pytest.TempPathFactory) -> Any:
    url = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'p.db'}"
    with api_on(url, QUEUE_BUNDLE) as a:
        yield a


@pytest.mark.parametrize(("field", "value"), HOSTILE_JSON)
def test_a_hostile_value_is_a_422_naming_its_field(shared_api: Api, field: str,
                                                   value: str) -> None:
    a = shared_api
    before = stored_workloads(a)
    res = raw_post(a, "/v1/workloads", _with(field, value))
    assert res.status_code == 422, res.text
    assert res.headers["content-type"] == "application/problem+json"
    locs = [e["field"] for e in res.json()["errors"]]
    assert any(field.split(".")[-1] in loc for loc in locs), locs
    assert stored_workloads(a) == before


def test_bounds_are_in_the_published_schema() -> None:
    schema = Workload.model_json_schema()
    spec = schema["$defs"]["WorkloadSpec"]["properties"]
    assert spec["priority"]["maximum"] < 2**31
    assert spec["replicas"]["maximum"] < 2**31
    assert spec["duration_hours"]["anyOf"][0]["maximum"] <= 1e6
    gpu = schema["$defs"]["GpuRequest"]["properties"]["count"]
    assert gpu["maximum"] < 2**31


HOSTILE_VALUES = st.one_of(
    st.integers(min_value=10**13), st.integers(max_value=-(2**31)),  # past every bound
    st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e308, -1e308]),
    st.booleans(),
    st.text(min_size=1, max_size=8).map(lambda s: s + "\x00"),
    st.sampled_from(["\ud800", "a\udfffb", "\ud83d"]),
)
FIELDS = ["spec.priority", "spec.gpu.count", "spec.replicas", "spec.interruptions",
          "spec.duration_hours", "spec.deadline_hours", "spec.budget_usd",
          "spec.checkpoint_minutes", "metadata.labels.tier", "metadata.name", "spec.team"]


def _encode(value: Any) -> str:
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, str):  # lone surrogates as JSON escapes, as a client would send them
        return json.dumps(value, ensure_ascii=True)
    return json.dumps(value)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FIELDS), value=HOSTILE_VALUES)
def test_hostile_values_are_4xx_and_store_nothing(shared_api: Api, field: str,
                                                  value: Any) -> None:
    before = stored_workloads(shared_api)
    res = raw_post(shared_api, "/v1/workloads", _with(field, _encode(value)))
    if field == "metadata.labels.tier" and isinstance(value, bool):
        assert res.status_code == 422  # a label value is text, not a boolean
    assert 400 <= res.status_code < 500, (field, value, res.status_code, res.text)
    assert stored_workloads(shared_api) == before


def test_valid_submissions_beside_a_hostile_one_all_succeed(db_url: str) -> None:
    """Twenty concurrent good submissions and one out-of-range priority: the bad one is a 422
    and every good one is stored (today the batch failed together with 500s)."""
    with api_on(db_url, QUEUE_BUNDLE) as a:
        results: dict[str, int] = {}

        def send(name: str, body: str) -> None:
            results[name] = raw_post(a, "/v1/workloads", body).status_code

        threads = [threading.Thread(target=send, args=(f"good-{i}", json.dumps(
            job(f"good-{i}", 1, 0.5 + i)))) for i in range(20)]
        threads.append(threading.Thread(target=send, args=(
            "bad", _with("spec.priority", "2147483648"))))
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert results.pop("bad") == 422
        assert sorted(set(results.values())) == [201], results
        assert stored_workloads(a) == 20


def _forged(name: str, **spec: Any) -> Workload:
    """A workload past the model's checks (as a bug or an older client could hand the
    batch): only the store can refuse it."""
    good = Workload.model_validate(job(name))
    return good.model_copy(update={"spec": good.spec.model_copy(update=spec)})


def test_an_item_the_store_refuses_fails_alone_and_the_batch_commits(db_url: str) -> None:
    with api_on(db_url, QUEUE_BUNDLE) as a:
        batch = [Pending(Workload.model_validate(job(f"ok-{i}")), None) for i in range(3)]
        bad = Pending(_forged("bad", priority=2**70), None)
        batch.insert(1, bad)
        batching.place_batch(a.runtime, batch)
        with pytest.raises(UnprocessableError, match="store refused"):
            bad.future.result(timeout=10)
        for p in batch:
            if p is not bad:
                row, _, created = p.future.result(timeout=10)
                assert created and row["phase"] == "placed"
        assert stored_workloads(a) == 3
        with a.runtime.db.read() as s:
            held = s.scalar(select(func.sum(ReservationRow.count)).where(
                ReservationRow.released_at.is_(None)))
        assert held == 3


def test_an_item_the_engine_cannot_decide_fails_alone(db_url: str) -> None:
    with api_on(db_url, QUEUE_BUNDLE) as a:
        good = Pending(Workload.model_validate(job("fine")), None)
        bad = Pending(_forged("broken", gpu=None), None)  # the engine trips over it
        batching.place_batch(a.runtime, [bad, good])
        with pytest.raises(UnprocessableError, match="engine could not decide"):
            bad.future.result(timeout=10)
        assert good.future.result(timeout=10)[2] is True


# --- 2. an overrunning job never blocks its site ---------------------------------------------

def test_overdue_work_keeps_its_gpus_and_later_submissions_queue(db_url: str) -> None:
    """A job past its expected end still holds its GPUs: the next one queues (with one client,
    no 409), its wait is the policy's assumption, and the explanation says so."""
    with api_on(db_url, QUEUE_BUNDLE) as a:
        first = a.client.post("/v1/workloads", json=job("overrun", 8, 1), headers=a.h("admin"))
        assert first.json()["phase"] == "placed"
        with a.runtime.db.write() as s:
            s.execute(update(ReservationRow).values(expected_end_at=utcnow() - timedelta(hours=3)))
        a.runtime.invalidate_capacity()
        for i in range(3):
            res = a.client.post("/v1/workloads", json=job(f"next-{i}", 4, 1),
                                headers=a.h("admin"))
            assert res.status_code == 201, res.text
            body = res.json()
            assert body["phase"] == "queued", body
            decision = body["decision"]["decision"]
            assert decision["estimates"]["wait_hours"] == pytest.approx(1.0, abs=0.01)
            assert "overdue_release_hours" in decision["summary"], decision["summary"]
        with a.runtime.db.read() as s:
            reserved = s.execute(text("SELECT reserved, total FROM capacity")).one()
        assert tuple(reserved) == (8, 8)


# --- 3. bad inventory never breaks decisions --------------------------------------------------

SITE: dict[str, Any] = {"metadata": {"name": "dc-extra"},
        "spec": {"type": "onprem", "location": {"lat": 52.5, "lon": 13.4},
                 "kube_context": "dc-extra", "wan_gbps": 10, "egress_usd_per_gb": 0,
                 "gpus": [{"type": "A100", "count": 8, "usd_per_gpu_hour": 2.0}]}}


@pytest.mark.parametrize(("path", "value", "field"), [
    ("wan_gbps", "Infinity", "wan_gbps"), ("wan_gbps", "NaN", "wan_gbps"),
    ("gpus", '[{"type": "A100", "count": 2147483648, "usd_per_gpu_hour": 2.0}]', "count"),
    ("gpus", '[{"type": "A100", "count": true, "usd_per_gpu_hour": 2.0}]', "count"),
    ("egress_usd_per_gb", "1e309", "egress_usd_per_gb"),
])
def test_inventory_writes_validate_like_the_loader(tmp_path: Path, path: str, value: str,
                                                   field: str) -> None:
    with api_on(f"sqlite:///{tmp_path / 'p.db'}", QUEUE_BUNDLE) as a:
        body = json.dumps({**SITE, "spec": {**SITE["spec"], path: "__V__"}}).replace(
            '"__V__"', value)
        res = raw_post(a, "/v1/sites", body)
        assert res.status_code == 422, res.text
        assert field in res.text
        assert a.client.get("/v1/sites/dc-extra", headers=a.h("admin")).status_code == 404
        ok = a.client.post("/v1/workloads", json=job("after"), headers=a.h("admin"))
        assert ok.status_code == 201, ok.text


@pytest.mark.parametrize("name", ["%00", "a%00b", "UPPER", "x" * 64, "%ED%A0%80"])
def test_path_names_validate(api: Api, name: str) -> None:
    res = api.client.get(f"/v1/sites/{name}", headers=api.h("admin"))
    assert res.status_code == 422, res.text


def test_a_stored_row_that_does_not_load_is_skipped_and_reported(db_url: str) -> None:
    with api_on(db_url, QUEUE_BUNDLE) as a:
        assert raw_post(a, "/v1/sites", json.dumps(SITE)).status_code == 201
        with a.runtime.db.write() as s:  # as an older version could have stored it
            broken = {**SITE, "kind": "Site", "spec": {**SITE["spec"], "wan_gbps": None}}
            s.execute(text("UPDATE sites SET document = :d WHERE name = 'dc-extra'"),
                      {"d": json.dumps(broken)})
            s.execute(text("UPDATE inventory_version SET version = version + 1"))
        a.runtime.invalidate_capacity()
        res = a.client.post("/v1/workloads", json=job("still-works"), headers=a.h("admin"))
        assert res.status_code == 201, res.text
        assert res.json()["site"] == "dc"
        ready = a.client.get("/readyz").json()
        assert any("dc-extra" in p for p in ready["inventory_skipped"]), ready
        assert "placement_inventory_rows_skipped 1.0" in a.client.get("/metrics").text


# --- 4. limits ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/workloads", "/v1/sites", "/v1/placements/preview"])
def test_a_body_over_the_limit_is_413_before_parsing(api: Api, path: str) -> None:
    body = json.dumps({**job("big"), "metadata": {"name": "big",
                                                  "labels": {"x": "y" * (2 << 20)}}})
    res = raw_post(api, path, body)
    assert res.status_code == 413, res.text
    assert res.headers["content-type"] == "application/problem+json"
    problem = res.json()
    assert problem["status"] == 413 and problem["instance"] == path
    assert "PLACEMENT_MAX_BODY_BYTES" in problem["detail"]


def test_a_chunked_body_over_the_limit_is_413(api: Api) -> None:
    def chunks() -> Any:
        for _ in range(3):
            yield b"x" * (1 << 19)

    res = api.client.post("/v1/workloads", content=chunks(), headers={
        **api.h("admin"), "Content-Type": "application/json"})
    assert res.status_code == 413


@pytest.mark.parametrize("content", ["", "# nothing here\n", "---\n"])
def test_an_empty_policy_file_is_an_invalid_bundle(tmp_path: Path, content: str) -> None:
    site = (QUEUE_BUNDLE / "bundle.yaml").read_text().split("---")[0]
    (tmp_path / "sites.yaml").write_text(site)
    (tmp_path / "policy.yaml").write_text(content)
    with pytest.raises(ConfigError) as err:
        load_bundle(tmp_path)
    text_ = str(err.value)
    assert "policy.yaml:1" in text_ or "no Policy document" in text_, text_


def test_the_example_bundle_still_loads() -> None:
    assert load_bundle(EXAMPLES).policy.spec.rules


# --- 5. a COMMIT whose outcome is unknown is never stored twice ------------------------------

LOST: dict[str, Any] = {  # what a driver raises when the connection drops at COMMIT
    "operational": lambda: OperationalError("COMMIT", None, Exception("server closed")),
    "interface": lambda: InterfaceError("COMMIT", None, Exception("connection is closed")),
    "invalidated": lambda: DBAPIError("COMMIT", None, Exception("connection reset"),
                                      connection_invalidated=True),
}


def _lost_reply(db: Any, *, committed: bool, error: str = "operational") -> Any:
    """db.write as it behaves when the connection drops at COMMIT: the transaction did (or
    did not) take, and the client sees a driver error either way."""
    real = db.write

    @contextmanager
    def write() -> Iterator[Any]:
        if committed:
            with real() as s:
                yield s
        else:
            with real() as s:
                yield s
                s.rollback()
        raise LOST[error]()

    return write


@pytest.mark.parametrize(("key", "error"), [(None, "operational"), ("retry-1", "operational"),
                                            (None, "interface"), ("retry-1", "invalidated")])
@pytest.mark.parametrize("committed", [True, False])
def test_an_unknown_commit_outcome_never_stores_twice(db_url: str, monkeypatch: Any,
                                                      committed: bool, key: str | None,
                                                      error: str) -> None:
    """Whatever the driver calls a dropped connection, it is an outage (a 503 or the stored
    result), never blamed on the workload's values (a 422)."""
    with api_on(db_url, QUEUE_BUNDLE) as a:
        db = a.runtime.db
        monkeypatch.setattr(db, "write", _lost_reply(db, committed=committed, error=error))
        first = Pending(Workload.model_validate(job("once")), key)
        batching.place_batch(a.runtime, [first])
        monkeypatch.undo()
        if committed:  # it was stored: the submission succeeded, and says so
            row, _, created = first.future.result(timeout=10)
            assert created and row["phase"] == "placed"
        else:
            with pytest.raises(StoreUnavailableError, match="nothing was stored"):
                first.future.result(timeout=10)
        assert stored_workloads(a) == (1 if committed else 0)
        if key is not None:  # the client's retry with its key: answered, never a second row
            again = a.client.post("/v1/workloads", json=job("once"),
                                  headers={**a.h("admin"), "Idempotency-Key": key})
            assert again.status_code == (200 if committed else 201), again.text
            assert stored_workloads(a) == 1
        with db.read() as s:
            held = s.scalar(select(func.coalesce(func.sum(ReservationRow.count), 0)).where(
                ReservationRow.released_at.is_(None)))
            reserved = s.scalar(text("SELECT reserved FROM capacity"))
        assert held == reserved


def test_a_store_that_cannot_be_asked_answers_503_saying_the_outcome_is_unknown(
        tmp_path: Path, monkeypatch: Any) -> None:
    with api_on(f"sqlite:///{tmp_path / 'p.db'}", QUEUE_BUNDLE) as a:
        db = a.runtime.db
        monkeypatch.setattr(db, "write", _lost_reply(db, committed=True))
        monkeypatch.setattr(batching, "_stored_ids", lambda rt, stored: None)
        monkeypatch.setattr(batching, "UNKNOWN_OUTCOME_WAIT_S", 0.2)
        p = Pending(Workload.model_validate(job("unknown")), "k")
        batching.place_batch(a.runtime, [p])
        with pytest.raises(StoreUnavailableError, match="unknown"):
            p.future.result(timeout=10)
        monkeypatch.undo()
        again = a.client.post("/v1/workloads", json=job("unknown"),
                              headers={**a.h("admin"), "Idempotency-Key": "k"})
        assert again.status_code == 200 and stored_workloads(a) == 1


def test_the_api_answers_an_unknown_commit_with_503_and_stores_once(
        tmp_path: Path, monkeypatch: Any) -> None:
    """Through the HTTP front (the token cached): the 503 is
    final, the submission is not decided a second time behind it."""
    with api_on(f"sqlite:///{tmp_path / 'p.db'}", QUEUE_BUNDLE) as a:
        assert a.client.get("/v1/sites", headers=a.h("admin")).status_code == 200
        db = a.runtime.db
        monkeypatch.setattr(db, "write", _lost_reply(db, committed=True))
        monkeypatch.setattr(batching, "_stored_ids", lambda rt, stored: None)
        monkeypatch.setattr(batching, "UNKNOWN_OUTCOME_WAIT_S", 0.2)
        res = a.client.post("/v1/workloads", json=job("unknown"), headers=a.h("admin"))
        monkeypatch.undo()
        assert res.status_code == 503, res.text
        assert "unknown" in res.json()["detail"]
        assert stored_workloads(a) == 1


@pytest.mark.parametrize(("line", "value"), [
    ("  wan_gbps: 10", "  wan_gbps: .inf"), ("  wan_gbps: 10", "  wan_gbps: .nan"),
    ("  kube_context: dc", '  kube_context: "dc\\0"'),
    ("  egress_usd_per_gb: 0", "  egress_usd_per_gb: true"),
])
def test_yaml_with_a_hostile_value_is_invalid_at_its_line(tmp_path: Path, line: str,
                                                          value: str) -> None:
    bundle = (QUEUE_BUNDLE / "bundle.yaml").read_text()
    assert line in bundle
    (tmp_path / "bundle.yaml").write_text(bundle.replace(line, value))
    with pytest.raises(ConfigError) as err:
        load_bundle(tmp_path)
    lineno = bundle.splitlines().index(line) + 1
    assert f"bundle.yaml:{lineno}" in str(err.value), str(err.value)


def _unchecked_text(annotation: Any, metadata: list[Any]) -> bool:
    """True when `annotation` holds a plain str that neither check_text nor a pattern
    guards."""
    from typing import Annotated, get_args, get_origin

    def guarded(meta: list[Any]) -> bool:  # a Field() nests its own metadata
        return any(getattr(m, "func", None) in (check_text, check_gpu)
                   or getattr(m, "pattern", None) or guarded(getattr(m, "metadata", []))
                   for m in meta)

    if get_origin(annotation) is Annotated:
        inner, *meta = get_args(annotation)
        return _unchecked_text(inner, [*metadata, *meta])
    if annotation is str:
        return not guarded(metadata)
    return any(_unchecked_text(a, []) for a in get_args(annotation))


def test_every_string_field_of_every_document_is_checked_text() -> None:
    """NUL and lone surrogates are refused by the `Text` type: a str field without it (or a
    pattern, which admits neither) would let them through to the store."""
    import placement.model as models

    seen, missing = 0, []
    classes = {c for name in dir(models) if isinstance(c := getattr(models, name), type)}
    todo = [c for c in classes if issubclass(c, Strict)]
    done: set[type] = set()
    while todo:
        cls = todo.pop()
        if cls in done:
            continue
        done.add(cls)
        todo.extend(c for c in cls.__subclasses__())
        for fname, info in cls.model_fields.items():
            seen += 1
            if _unchecked_text(info.annotation, list(info.metadata)):
                missing.append(f"{cls.__name__}.{fname}")
            for sub in _models_in(info.annotation):
                todo.append(sub)
    assert seen > 100 and not missing, missing


def _models_in(annotation: Any) -> list[type]:
    from typing import get_args
    found = [annotation] if isinstance(annotation, type) and issubclass(annotation, Strict) \
        else []
    for a in get_args(annotation):
        found += _models_in(a)
    return found


def test_a_workload_may_not_hold_more_gpus_than_a_column_can_count(api: Api) -> None:
    body = {"metadata": {"name": "huge"},
            "spec": {"kind": "inference", "team": "vision", "replicas": 10_000,
                     "gpu": {"types": ["A100"], "count": 10_000},
                     "latency": {"p99_slo_ms": 100, "service_time_p99_ms": 10,
                                 "clients": [{"location": "x"}]}}}
    res = api.client.post("/v1/workloads", json=body, headers=api.h("admin"))
    assert res.status_code == 422 and "gpu.count x replicas" in res.text, res.text
