"""Process and dependency faults: no request, and no dead process, can hurt the others.

A `placement serve --workers N` supervisor killed with SIGKILL takes its workers with it, and a
new start refuses a port that left-over listeners hold (SO_REUSEPORT would let it bind beside
them). A Prometheus that trickles its answer byte by byte is cut off at the query's deadline,
and the failure is counted.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from placement.metrics import Metrics
from placement.model import Inventory, SignalQueries
from placement.policy.loader import load_bundle
from placement.signals import PrometheusClient, SignalCache, SignalError

from .conftest import EXAMPLES
from .services import free_port

linux_only = pytest.mark.skipif(
    not hasattr(socket, "SO_REUSEPORT") or not Path("/proc/self/task").exists(),
    reason="needs SO_REUSEPORT and /proc")


# --- the supervisor and its workers ------------------------------------------------------------

def _serve(tmp_path: Path, port: int, workers: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PLACEMENT_DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    return subprocess.Popen([sys.executable, "-m", "placement.cli", "serve", "--port", str(port),
                             "--config", str(EXAMPLES), "--workers", str(workers)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a live process; None once it is gone or a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, ppid = text.rsplit(")", 1)[1].split()[:2]
    return None if state in ("Z", "X") else (state, int(ppid))


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] == pid:
                found.add(int(entry.name))
    return found


def _workers(pid: int) -> set[int]:
    """The supervisor's worker processes (multiprocessing's spawned children)."""
    found = set()
    for child in _children(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.add(child)
        except OSError:
            pass
    return found


def _until(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@linux_only
def test_workers_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    port = free_port()
    proc = _serve(tmp_path, port, workers=2)
    workers: set[int] = set()
    try:
        _until(lambda: _answers(port), "/healthz", 60)
        _until(lambda: len(_workers(proc.pid)) == 2, "two workers", 30)
        workers = _workers(proc.pid)
        helpers = _children(proc.pid) - workers  # multiprocessing's resource tracker
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        _until(lambda: all(_stat(pid) is None for pid in workers | helpers),
               f"workers {sorted(workers)} to exit with their supervisor", 8)
        assert not _answers(port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in workers:  # orphans left by a supervisor that could not take them along
            if _stat(pid) is not None:
                os.kill(pid, signal.SIGKILL)


ORPHAN = """
import os, sys, time
from pathlib import Path
parent = int(sys.argv[1])
while os.getppid() == parent:  # the parent exits before this worker asks to die with it
    time.sleep(0.05)
from placement.service.workers import _die_with_parent
Path(sys.argv[2]).write_text("armed")  # first: the watchdog may act the moment it starts
_die_with_parent(parent)
time.sleep(60)
"""


@linux_only
def test_a_worker_whose_supervisor_died_before_it_asked_still_exits(tmp_path: Path) -> None:
    """The kernel's death signal covers only a parent that dies after the request: the
    watchdog covers the rest."""
    armed = tmp_path / "armed"
    spawner = ("import subprocess, sys, os; p = subprocess.Popen([sys.executable, '-c', "
               f"{ORPHAN!r}, str(os.getpid()), {str(armed)!r}]); print(p.pid)")
    out = subprocess.run([sys.executable, "-c", spawner], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    orphan = int(out)
    try:
        _until(armed.exists, "the orphan to arm its watchdog", 30)
        _until(lambda: _stat(orphan) is None, "the orphan to exit", 5)
    finally:
        if _stat(orphan) is not None:
            os.kill(orphan, signal.SIGKILL)


@linux_only
def test_a_start_refuses_a_port_that_orphaned_listeners_hold(tmp_path: Path) -> None:
    """A listener bound with SO_REUSEPORT, as a left-over worker's is: a new start could bind
    beside it and share the port with it. It must fail at once, naming the holder."""
    with socket.socket() as orphan:
        orphan.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        orphan.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        orphan.bind(("127.0.0.1", 0))
        orphan.listen()
        port = orphan.getsockname()[1]
        proc = _serve(tmp_path, port, workers=2)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            workers = _workers(proc.pid)
            for pid in [proc.pid, *workers]:  # the workers hold its output open too
                os.kill(pid, signal.SIGKILL)
            out, _ = proc.communicate()
            pytest.fail(f"serve started beside a listener on port {port} (workers "
                        f"{sorted(workers)}):\n{out}")
    assert proc.returncode == 1, out
    assert f"cannot listen on 127.0.0.1:{port}" in out
    assert f"port {port} is in use by process {os.getpid()}" in out


# --- a Prometheus that trickles ------------------------------------------------------------------

TRICKLE_S = 0.3
PADDING = 20  # bytes trickled before the answer: 6 s in all, far past the query's timeout


@contextmanager
def trickling_prometheus() -> Iterator[str]:
    """Answers every query with a valid vector, its headers at once and then its body one byte
    every TRICKLE_S (leading whitespace first): each read gets a byte well within any timeout."""
    answer = json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"gpu_type": "A100-80GB"}, "value": [0, "4"]}]}}).encode()
    body = b" " * PADDING + answer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for i in range(PADDING):
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(TRICKLE_S)
                self.wfile.write(body[PADDING:])
            except OSError:
                pass  # the client gave up

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_trickling_answer_is_cut_off_at_the_query_deadline() -> None:
    with trickling_prometheus() as url:
        client = PrometheusClient(url, timeout_s=1.0)
        start = time.monotonic()
        with pytest.raises(SignalError, match="no answer within 1 s"):
            client.query("free")
        assert time.monotonic() - start < 1.0 + 0.5


def _one_query(promql: str, at: str = "dc-frankfurt") -> Inventory:
    """The example inventory with one free-GPU query at one site and no other signals."""
    inv = load_bundle(EXAMPLES).inventory
    sites = []
    for site in inv.sites:
        queries = SignalQueries(free_gpus=promql) if site.name == at else None
        sites.append(site.model_copy(update={"spec": site.spec.model_copy(
            update={"signals": queries})}))
    return inv.model_copy(update={"sites": sites})


def test_a_trickling_answer_counts_as_a_failed_poll() -> None:
    metrics = Metrics()
    inv = _one_query("free")
    with trickling_prometheus() as url:
        cache = SignalCache(PrometheusClient(url, timeout_s=1.0), lambda: inv,
                            on_error=lambda s, sig: metrics.signal_errors.labels(s, sig).inc())
        start = time.monotonic()
        cache.refresh()
        assert time.monotonic() - start < 1.0 + 0.5
    entry = cache.entries[("dc-frankfurt", "free_gpus")]
    assert entry.samples is None and entry.error == "no answer within 1 s"
    assert metrics.registry.get_sample_value(
        "placement_signal_errors_total", {"site": "dc-frankfurt", "signal": "free_gpus"}) == 1
