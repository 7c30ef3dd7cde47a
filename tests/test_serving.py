"""`placement serve --workers N`: one SO_REUSEPORT socket per worker, restarts, a taken port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .conftest import EXAMPLES
from .services import free_port

pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="needs SO_REUSEPORT")


def _serve(tmp_path: Path, port: int, workers: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PLACEMENT_DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return subprocess.Popen([sys.executable, "-m", "placement.cli", "serve", "--port", str(port),
                             "--config", str(EXAMPLES), "--workers", str(workers)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


def _wait(predicate: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if callable(predicate) and predicate():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def _workers(proc: subprocess.Popen[str]) -> set[int]:
    """Worker processes: children of the supervisor that are not multiprocessing helpers."""
    found = set()
    for pid in _children(proc.pid):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"spawn_main" in cmdline:
            found.add(pid)
    return found


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
def test_a_killed_worker_is_replaced_and_the_port_keeps_answering(tmp_path: Path) -> None:
    port = free_port()
    proc = _serve(tmp_path, port, workers=2)
    url = f"http://127.0.0.1:{port}/readyz"
    try:
        _wait(lambda: httpx.get(url, timeout=1).status_code == 200, "readiness")
        _wait(lambda: len(_workers(proc)) == 2, "two workers")
        before = _workers(proc)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        _wait(lambda: len(_workers(proc)) == 2 and victim not in _workers(proc),
              "a replacement worker")
        # Fresh connections land on either socket; all of them must be answered.
        for _ in range(20):
            with httpx.Client() as c:
                assert c.get(url, timeout=10).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in before - {victim})


def test_a_taken_port_fails_at_once_with_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _serve(tmp_path, port, workers=2)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in out
