"""Logging: formats, levels, request ids (in-process and in a real `placement serve`), the
access-log switch and kopf's JSON in the operator."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from api.app import create_app
from placement.metrics import Metrics
from placement.service.logs import LEVELS, configure
from placement.service.settings import Settings
from placement.service.wiring import build_runtime

from .conftest import EXAMPLES
from .services import _running, free_port

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Each test configures the root logger; put back what was there."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    access = logging.getLogger("uvicorn.access")
    disabled = access.disabled
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    access.disabled = disabled


def _lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


@pytest.mark.parametrize(("level", "shown"), [
    ("debug", ["debug", "info", "warning", "error"]),
    ("info", ["info", "warning", "error"]),
    ("WARNING", ["warning", "error"]),
    ("error", ["error"]),
])
def test_the_level_filters_records(level: str, shown: list[str],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    configure(level, "json")
    log = logging.getLogger("placement.test")
    for name in ("debug", "info", "warning", "error"):
        getattr(log, name)("a %s record", name)
    records = [json.loads(line) for line in _lines(capsys.readouterr().err)]
    assert [r["level"] for r in records if r["logger"] == "placement.test"] == shown


def test_text_records_have_a_utc_timestamp_level_and_logger_name(
        capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "text")
    logging.getLogger("placement.test").warning("disk %s is full", "/data")
    [line] = [x for x in _lines(capsys.readouterr().err) if "placement.test" in x]
    assert re.fullmatch(rf"{STAMP} WARNING placement.test disk /data is full", line), line


def test_json_records_carry_extra_fields_and_the_traceback_as_one_string(
        capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "json")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("placement.test").exception("failed", extra={"site": "dc-1"})
    [line] = [x for x in _lines(capsys.readouterr().err) if "placement.test" in x]
    record = json.loads(line)
    assert re.fullmatch(STAMP, record["time"])
    assert record["level"] == "error" and record["message"] == "failed"
    assert record["site"] == "dc-1" and "ValueError: boom" in record["exception"]


def test_text_records_of_a_kubernetes_object_name_it(capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "text")
    ref = {"kind": "Workload", "name": "train-1", "namespace": "ml"}
    logging.getLogger("kopf.objects").info("decided", extra={"k8s_ref": ref})
    [line] = [x for x in _lines(capsys.readouterr().err) if "decided" in x]
    assert re.fullmatch(rf"{STAMP} INFO kopf.objects \[ml/train-1\] decided", line), line


@pytest.mark.parametrize(("level", "fmt", "wrong"), [
    ("loud", "text", "log level"), ("info", "xml", "log format")])
def test_a_bad_level_or_format_is_refused(level: str, fmt: str, wrong: str) -> None:
    with pytest.raises(ValueError, match=wrong):
        configure(level, fmt)


def test_levels_match_the_settings_model() -> None:
    assert set(LEVELS) == set(Settings.model_fields["log_level"].annotation.__args__)  # type: ignore[union-attr]


def test_kopf_json_in_the_operator(capsys: pytest.CaptureFixture[str]) -> None:
    from placement.operator import json_formatter

    configure("info", "json", json_formatter=json_formatter())
    ref = {"apiVersion": "placement.dev/v1alpha1", "kind": "Workload", "name": "w1",
           "namespace": "ml"}
    logging.getLogger("kopf.objects").info("decided", extra={"k8s_ref": ref})
    [line] = [x for x in _lines(capsys.readouterr().err) if "decided" in x]
    record = json.loads(line)
    assert record["object"] == ref and record["severity"] == "info"
    assert record["name"] == "kopf.objects" and "timestamp" in record


# --- request ids ------------------------------------------------------------------------------

@pytest.fixture()
def client(tmp_path: Path) -> Iterator[TestClient]:
    rt = build_runtime(Settings(database_url=f"sqlite:///{tmp_path / 'p.db'}",
                                config_dir=EXAMPLES), Metrics(CollectorRegistry()))
    app = create_app(runtime=rt)

    @app.get("/test-log")
    def logs_something() -> dict[str, str]:  # a sync route: it runs in a worker thread
        logging.getLogger("placement.test").warning("inside the request")
        return {}

    with TestClient(app) as c:
        yield c


@pytest.mark.parametrize(("sent", "kept"), [
    (None, False),
    ("abc-123", True),
    ("trace/4bf92f3577b34da6.a3ce929d0e0e4736:01", True),
    ("x" * 129, False),  # too long
    ("evil\u00e9id".encode("latin-1"), False),  # not ASCII
    ("has space", False),
])
def test_every_response_has_a_request_id(client: TestClient, sent: str | bytes | None,
                                         kept: bool) -> None:
    headers: dict[str, str | bytes] = {} if sent is None else {"X-Request-ID": sent}
    res = client.get("/healthz", headers=headers)
    rid = res.headers["x-request-id"]
    assert (rid == sent) is kept
    assert re.fullmatch(r"[A-Za-z0-9\-_.:/+=]{1,128}", rid)


def test_fresh_ids_differ(client: TestClient) -> None:
    assert len({client.get("/healthz").headers["x-request-id"] for _ in range(5)}) == 5


def test_an_error_response_has_one_too(client: TestClient) -> None:
    res = client.post("/v1/workloads", content=b"x" * (2 << 20),
                      headers={"X-Request-ID": "big-1", "Content-Type": "application/json"})
    assert res.status_code == 413 and res.headers["x-request-id"] == "big-1"
    assert client.get("/v1/sites").headers["x-request-id"]  # 401


def test_records_logged_under_a_request_carry_its_id(
        client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "json")
    capsys.readouterr()
    res = client.get("/test-log", headers={"X-Request-ID": "req-42"})
    assert res.status_code == 200
    logging.getLogger("placement.test").warning("outside any request")
    records = [json.loads(x) for x in _lines(capsys.readouterr().err)]
    inside = [r for r in records if r["message"] == "inside the request"]
    outside = [r for r in records if r["message"] == "outside any request"]
    assert [r.get("request_id") for r in inside] == ["req-42"]
    assert [r.get("request_id") for r in outside] == [None]


# --- a real `placement serve` -----------------------------------------------------------------

@pytest.mark.parametrize(("fmt", "access"), [("json", True), ("text", False)])
def test_serve_logs_in_the_format_asked(tmp_path: Path, fmt: str, access: bool) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "placement.cli", "serve", "--port", str(port), "--config",
           str(EXAMPLES), "--database-url", f"sqlite:///{tmp_path / 'p.db'}",
           "--log-format", fmt, "--log-level", "info",
           "--access-log" if access else "--no-access-log"]
    with _running(cmd, None, "placement serve", f"http://127.0.0.1:{port}", "/readyz",
                  log=log) as url:
        res = httpx.get(f"{url}/v1/sites", headers={"X-Request-ID": "probe-7"})
        assert res.status_code == 401 and res.headers["x-request-id"] == "probe-7"
    lines = [x for x in log.read_text().splitlines()
             if x.strip() and not x.startswith("placement API on")]
    assert lines, "nothing was logged"
    if fmt == "json":
        records = [json.loads(x) for x in lines]  # every line is one JSON record
        assert all(re.fullmatch(STAMP, r["time"]) and r["logger"] for r in records)
        [hit] = [r for r in records if r.get("request_id") == "probe-7"]
        assert hit["logger"] == "uvicorn.access"
        assert (hit["method"], hit["path"], hit["status"]) == ("GET", "/v1/sites", 401)
    else:
        assert all(re.match(rf"{STAMP} [A-Z]+ \S+ ", x) for x in lines
                   if not x.startswith((" ", "Traceback"))), lines
        assert any("uvicorn.error" in x and "startup complete" in x for x in lines)
        assert not any("uvicorn.access" in x or "probe-7" in x for x in lines)


def test_a_command_logs_its_traceback_only_when_asked(tmp_path: Path) -> None:
    """With --log-level debug the failure's traceback is a JSON log record; the terminal still
    gets one error line."""
    down = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none"
    out = subprocess.run([sys.executable, "-m", "placement.cli", "--log-format", "json",
                          "--log-level", "debug", "token", "create", "--role", "admin",
                          "--database-url", down], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 1 and out.stdout == ""
    errors = [x for x in out.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "cannot use the database" in errors[0]
    records = [json.loads(x) for x in out.stderr.splitlines() if x.startswith("{")]
    assert len(records) + 1 == len([x for x in out.stderr.splitlines() if x.strip()])
    assert any("Traceback" in r.get("exception", "") for r in records
               if r["logger"] == "placement.cli")
