"""Live signals through a real Prometheus: DCGM- and Triton-named metrics change decisions;
Prometheus stale, stopped or slow makes decisions fall back to the store and say so.

One stack for the module: an exporter served here, Prometheus scraping it and the service's
own /metrics every second, and `placement serve` polling Prometheus every 0.2 s.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from placement.engine import Engine
from placement.model import Inventory, SignalQueries
from placement.policy.loader import load_bundle
from placement.signals import PrometheusClient, Sample, SignalCache, SignalError

from .conftest import EXAMPLES
from .services import free_port, prometheus, server

CHAT = next(w for w in load_bundle(EXAMPLES).workloads if w.name == "support-chat")
MAX_AGE_S = 2.0


class Exporter:
    """Serves DCGM exporter and Triton metric families; tests change the values."""

    def __init__(self) -> None:
        self.busy = {"A100-80GB": 0, "H100": 0}  # GPUs at 100 % per type (of 4 each)
        self.service_us: float | None = 250_000.0
        self.dcgm = True
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def text(self) -> str:
        lines = []
        if self.dcgm:
            lines.append("# TYPE DCGM_FI_DEV_GPU_UTIL gauge")
            for gpu_type, busy in self.busy.items():
                for i in range(4):
                    util = 100 if i < busy else 0
                    lines.append(f'DCGM_FI_DEV_GPU_UTIL{{gpu="{i}",gpu_type="{gpu_type}",'
                                 f'modelName="NVIDIA {gpu_type}",site="dc-frankfurt"}} {util}')
        if self.service_us is not None:
            lines += ["# TYPE nv_inference_request_summary_us summary",
                      f'nv_inference_request_summary_us{{model="support-llm",version="1",'
                      f'site="dc-frankfurt",quantile="0.99"}} {self.service_us}',
                      'nv_inference_request_summary_us_count{model="support-llm",version="1",'
                      'site="dc-frankfurt"} 100',
                      'nv_inference_request_summary_us_sum{model="support-llm",version="1",'
                      'site="dc-frankfurt"} 20000000']
        return "\n".join(lines) + "\n"


@dataclass
class Stack:
    exporter: Exporter
    prom: str
    service: str
    headers: dict[str, str]
    stop_prometheus: Callable[[], None]

    def decide(self) -> dict[str, Any]:
        res = httpx.post(f"{self.service}/v1/placements/preview", headers=self.headers,
                         json=CHAT.model_dump(mode="json"), timeout=30)
        assert res.status_code == 200, res.text
        body: dict[str, Any] = res.json()
        return body

    def query(self, promql: str) -> list[dict[str, Any]]:
        res = httpx.get(f"{self.prom}/api/v1/query", params={"query": promql}, timeout=5)
        result: list[dict[str, Any]] = res.json()["data"]["result"]
        return result


def _until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting until {what}")


def _bundle(tmp: Path) -> Path:
    """The example bundle: dc-frankfurt's `signals` query DCGM and Triton metric names."""
    out = tmp / "policies"
    shutil.copytree(EXAMPLES, out, ignore=shutil.ignore_patterns("workloads"))
    site = next(s for s in load_bundle(out).inventory.sites if s.name == "dc-frankfurt")
    assert site.spec.signals is not None and site.spec.signals.free_gpus is not None
    return out


def _token(db: str) -> str:
    return subprocess.run([sys.executable, "-m", "placement.cli", "token", "create", "--role",
                           "admin", "--database-url", db], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("signals")
    bundle, db = _bundle(tmp), f"sqlite:///{tmp / 'p.db'}"
    exporter = Exporter()
    prom_port = free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLACEMENT_PROMETHEUS_URL", f"http://127.0.0.1:{prom_port}")
        mp.setenv("PLACEMENT_SIGNALS_INTERVAL_S", "0.2")
        mp.setenv("PLACEMENT_SIGNALS_TIMEOUT_S", "2")  # generous: CI machines are busy
        mp.setenv("PLACEMENT_SIGNALS_MAX_AGE_S", str(MAX_AGE_S))
        with server(db, bundle) as service:
            targets = {"gpus": exporter.address, "placement": service.split("//")[1]}
            prom_cm = prometheus(targets, tmp, port=prom_port)
            prom = prom_cm.__enter__()
            stopped = False

            def stop_prometheus() -> None:
                nonlocal stopped
                if not stopped:
                    stopped = True
                    prom_cm.__exit__(None, None, None)

            try:
                yield Stack(exporter, prom, service, {"Authorization": f"Bearer {_token(db)}"},
                            stop_prometheus)
            finally:
                stop_prometheus()
    exporter.httpd.shutdown()


def _signal(decision: dict[str, Any], signal: str, key: str | None) -> dict[str, Any]:
    for s in decision["signals"]:
        if (s["signal"], s["key"]) == (signal, key):
            found: dict[str, Any] = s
            return found
    raise AssertionError(f"no {signal} {key} in {decision['signals']}")


def _candidate(decision: dict[str, Any], site: str, gpu: str) -> dict[str, Any]:
    return next(c for c in decision["candidates"]
                if c["site"] == site and c["gpu_type"] == gpu)


def test_prometheus_scrapes_both_targets(stack: Stack) -> None:
    _until(lambda: len([r for r in stack.query("up") if r["value"][1] == "1"]) == 2,
           "both targets are up")
    _until(lambda: bool(stack.query("placement_gpus_free")), "the service's metrics arrive")


@pytest.mark.parametrize(("promql", "error"), [
    ("sum(", "HTTP 400: "),  # PromQL syntax error, Prometheus' message passed on
    ('label_replace(vector(1), "a", "b", "c", "(")', "HTTP 422: invalid regular expression"),
    ("DCGM_FI_DEV_GPU_UTIL[1m]", "expected an instant vector, got a matrix"),
])
def test_query_errors_are_clear(stack: Stack, promql: str, error: str) -> None:
    with pytest.raises(SignalError, match=re.escape(error)):
        PrometheusClient(stack.prom).query(promql)


def test_fresh_signals_are_used(stack: Stack) -> None:
    _until(lambda: _signal(stack.decide(), "free_gpus", "A100-80GB")["status"] == "fresh",
           "the free-GPU signal is fresh")
    d = stack.decide()
    assert d["site"] == "dc-frankfurt"
    assert _signal(d, "free_gpus", "A100-80GB")["value"] == 4
    assert _signal(d, "service_p99_ms", "support-llm")["value"] == pytest.approx(250)
    assert "not fresh" not in d["summary"]


def test_busy_gpus_move_the_service(stack: Stack) -> None:
    """The store says dc-frankfurt has free A100s and H100s; DCGM says every one is busy."""
    stack.exporter.busy = {"A100-80GB": 4, "H100": 4}
    _until(lambda: stack.decide()["site"] != "dc-frankfurt", "the decision moves")
    d = stack.decide()
    assert _signal(d, "free_gpus", "A100-80GB") | {"age_s": 0} == {
        "site": "dc-frankfurt", "signal": "free_gpus", "key": "A100-80GB", "status": "fresh",
        "value": 0.0, "age_s": 0, "error": None}
    assert _candidate(d, "dc-frankfurt", "A100-80GB")["rejected_by"] in ("capacity", "wait")
    stack.exporter.busy = {"A100-80GB": 0, "H100": 0}
    _until(lambda: stack.decide()["site"] == "dc-frankfurt", "the service returns")


def test_observed_service_time_replaces_the_declared_one(stack: Stack) -> None:
    base = _candidate(stack.decide(), "dc-frankfurt", "A100-80GB")["estimates"]["p99_latency_ms"]
    stack.exporter.service_us = 150_000.0  # Triton says 150 ms, the workload declared 250 ms
    _until(lambda: _candidate(stack.decide(), "dc-frankfurt", "A100-80GB")["estimates"][
        "p99_latency_ms"] == pytest.approx(base - 100, abs=0.01), "the estimate drops 100 ms")
    stack.exporter.service_us = 350_000.0  # now too slow for the 400 ms SLO from Virginia
    _until(lambda: stack.decide()["site"] != "dc-frankfurt", "the SLO rejects the site")
    frankfurt = _candidate(stack.decide(), "dc-frankfurt", "A100-80GB")
    assert frankfurt["rejected_by"] == "latency"
    stack.exporter.service_us = 250_000.0
    _until(lambda: stack.decide()["site"] == "dc-frankfurt", "the service returns")


def test_stale_signals_fall_back_and_say_so(stack: Stack) -> None:
    """The exporter stops exposing DCGM metrics: Prometheus answers with nothing, the last
    value ages past the bound and the store's state is used instead."""
    stack.exporter.busy = {"A100-80GB": 4, "H100": 4}
    _until(lambda: stack.decide()["site"] != "dc-frankfurt", "the busy GPUs are seen")
    stack.exporter.dcgm = False
    _until(lambda: _signal(stack.decide(), "free_gpus", "A100-80GB")["status"] == "stale",
           "the free-GPU signal goes stale", timeout=MAX_AGE_S + 30)
    d = stack.decide()
    stale = _signal(d, "free_gpus", "A100-80GB")
    assert stale["error"] == "the query returned no samples"
    assert stale["age_s"] >= MAX_AGE_S  # rounded to 0.1 s
    assert d["site"] == "dc-frankfurt"  # back on the store's state
    assert "store state used for signals not fresh:" in d["summary"]
    assert "dc-frankfurt free_gpus A100-80GB (stale)" in d["summary"]
    stack.exporter.dcgm, stack.exporter.busy = True, {"A100-80GB": 0, "H100": 0}
    _until(lambda: _signal(stack.decide(), "free_gpus", "A100-80GB")["status"] == "fresh",
           "the signal is fresh again")


def test_prometheus_stopped_falls_back_and_says_so(stack: Stack) -> None:
    stack.stop_prometheus()

    def failed_and_stale() -> bool:
        s = _signal(stack.decide(), "free_gpus", "A100-80GB")
        return s["status"] == "stale" and "cannot query" in (s["error"] or "")

    _until(failed_and_stale, "the signals fail and go stale", timeout=MAX_AGE_S + 30)
    d = stack.decide()
    assert d["site"] == "dc-frankfurt"
    metrics = httpx.get(f"{stack.service}/metrics").text
    assert 'placement_signal_errors_total{signal="free_gpus",site="dc-frankfurt"}' in metrics


def test_a_slow_prometheus_never_holds_a_decision(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A Prometheus that accepts connections and never answers: each query gives up after the
    timeout, the signals are reported unavailable, and decisions answer meanwhile."""
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)
    monkeypatch.setenv("PLACEMENT_PROMETHEUS_URL", f"http://127.0.0.1:{hung.getsockname()[1]}")
    monkeypatch.setenv("PLACEMENT_SIGNALS_INTERVAL_S", "0.2")
    monkeypatch.setenv("PLACEMENT_SIGNALS_TIMEOUT_S", "0.3")
    db = f"sqlite:///{tmp_path / 'p.db'}"
    try:
        with server(db, _bundle(tmp_path)) as service:
            h = {"Authorization": f"Bearer {_token(db)}"}

            def decide() -> dict[str, Any]:
                res = httpx.post(f"{service}/v1/placements/preview", headers=h,
                                 json=CHAT.model_dump(mode="json"), timeout=30)
                body: dict[str, Any] = res.json()
                return body

            _until(lambda: (_signal(decide(), "free_gpus", "A100-80GB")["error"] or "")
                   .startswith("no answer within 0.3 s"), "the query times out")
            d = decide()
            assert d["site"] == "dc-frankfurt"
            assert _signal(d, "free_gpus", "A100-80GB")["status"] == "unavailable"
            assert "(unavailable)" in d["summary"]
    finally:
        hung.close()


# --- without Prometheus: the client's parsing, the cache, and the engine's use of signals ------

class Canned:
    """An HTTP server answering every request with one canned body (or raw bytes)."""

    def __init__(self, body: bytes, raw: bool = False) -> None:
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if raw:
                    self.wfile.write(canned.body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(canned.body)))
                self.end_headers()
                self.wfile.write(canned.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.body = body
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def _vector(*values: str) -> bytes:
    result = [{"metric": {"gpu_type": f"t{i}"}, "value": [0, v]} for i, v in enumerate(values)]
    return json.dumps({"status": "success",
                       "data": {"resultType": "vector", "result": result}}).encode()


@pytest.mark.parametrize(("body", "raw", "expect"), [
    (_vector("3", "NaN", "+Inf", "-Inf"), False, [3.0]),  # non-finite values count as absent
    (json.dumps({"status": "success", "data": {"resultType": "scalar",
                                               "result": [0, "7"]}}).encode(), False, [7.0]),
    (b"<html>proxy error</html>", False, "cannot query"),
    (b"[1, 2]", False, "not a Prometheus query response"),
    (json.dumps({"status": "success", "data": {}}).encode(), False,
     "not a Prometheus query response"),
    (json.dumps({"status": "error", "error": "bad"}).encode(), False, "query failed: bad"),
    (b"SSH-2.0-OpenSSH_9.2\r\n", True, "cannot query"),  # not HTTP at all
])
def test_the_client_turns_every_bad_answer_into_a_signal_error(
        body: bytes, raw: bool, expect: list[float] | str) -> None:
    server_ = Canned(body, raw)
    try:
        client = PrometheusClient(server_.url, timeout_s=2)
        if isinstance(expect, str):
            with pytest.raises(SignalError, match=re.escape(expect)):
                client.query("up")
        else:
            assert [s.value for s in client.query("up")] == expect
    finally:
        server_.httpd.shutdown()


class FakeClient(PrometheusClient):
    def __init__(self, answers: dict[str, list[Sample]]) -> None:
        super().__init__("http://unused")
        self.answers = answers

    def query(self, promql: str) -> list[Sample]:
        return self.answers.get(promql, [])


def _dc_only(free: str | None, at: str = "dc-frankfurt") -> Inventory:
    """The example inventory with one free-GPU query at one site (and no other signals)."""
    inv = load_bundle(EXAMPLES).inventory
    sites = []
    for site in inv.sites:
        queries = SignalQueries(free_gpus=free) if free and site.name == at else None
        sites.append(site.model_copy(update={"spec": site.spec.model_copy(
            update={"signals": queries})}))
    return inv.model_copy(update={"sites": sites})


def test_an_edited_or_removed_query_stops_counting() -> None:
    current = {"inv": _dc_only("old")}
    cache = SignalCache(FakeClient({"old": [Sample({"gpu_type": "H100"}, 1)]}),
                        lambda: current["inv"])
    cache.refresh()
    assert ("dc-frankfurt", "free_gpus") in cache.entries
    inv = current["inv"] = _dc_only("new")
    engine = Engine(inv, load_bundle(EXAMPLES).policy, "v")
    ci = engine.ci
    obs = cache.observed(inv, ci.site_index, ci.group_index, len(ci.group_site))
    assert {r.status for r in obs.readings} == {"unavailable"}  # old values answer "old"
    cache.refresh()
    assert cache.entries[("dc-frankfurt", "free_gpus")].promql == "new"


@pytest.mark.parametrize(("workload", "site", "gpu", "action"), [
    # services-near-clients may burst when on-prem cannot start in time: it does
    ("support-chat", "dc-frankfurt", "A100-80GB", "burst"),
    # the plant's OT network cannot reach the cloud: it queues at the plant (not rejected)
    ("defect-detector", "plant-stuttgart", "L4", "queue"),
])
def test_gpus_busy_per_signals_delay_but_never_reject(workload: str, site: str, gpu: str,
                                                      action: str) -> None:
    """The store has room; signals say every GPU at the site is busy with other work. That
    is a wait of unknown length (assumed 1 h), not an impossibility."""
    bundle = load_bundle(EXAMPLES)
    wl = next(w for w in bundle.workloads if w.name == workload)
    inv = _dc_only("q", at=site)
    zero = [Sample({"gpu_type": g.type}, 0) for s in inv.sites if s.name == site
            for g in s.spec.gpus]
    cache = SignalCache(FakeClient({"q": zero}), lambda: inv)
    cache.refresh()
    engine = Engine(inv, bundle.policy, "v")
    ci = engine.ci
    observed = cache.observed(inv, ci.site_index, ci.group_index, len(ci.group_site))
    assert engine.explain(engine.decide(wl)).site == site  # without signals: placed there
    decision = engine.explain(engine.with_observed(observed).decide(wl))
    assert decision.action == action
    busy = next(c for c in decision.candidates if (c.site, c.gpu_type) == (site, gpu))
    assert busy.estimates is not None and busy.estimates.wait_hours == 1.0
    if action == "queue":
        assert decision.site == site
    else:
        assert busy.rejected_by == "wait" and "live signals report 0 free" in (busy.reason or "")
    assert {s.status for s in decision.signals} == {"fresh"}
