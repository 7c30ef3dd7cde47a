"""Real services for tests: PostgreSQL databases and `placement serve` processes.

A service that cannot be had skips the test with the reason, unless PLACEMENT_REQUIRE_SERVICES=1
(set by .ci/run): then the test fails.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

PG_ADMIN_URL = os.environ.get("PLACEMENT_TEST_PG",
                              "postgresql://postgres@127.0.0.1:5432/postgres")


def unavailable(reason: str) -> None:
    """Skip, or fail when services are required."""
    if os.environ.get("PLACEMENT_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required service unavailable: {reason}")
    pytest.skip(reason)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database; dropped afterwards."""
    import psycopg

    name = f"placement_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        unavailable(f"PostgreSQL at {PG_ADMIN_URL} is not reachable ({exc})")
        raise
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(database_url: str, config: Path, workers: int = 1,
           metrics_dir: Path | None = None) -> Iterator[str]:
    """A `placement serve` process; yields its base URL once /readyz answers."""
    port = free_port()
    env = {**os.environ, "PLACEMENT_DATABASE_URL": database_url}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if metrics_dir is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    cmd = [sys.executable, "-m", "placement.cli", "serve", "--port", str(port), "--config",
           str(config), "--workers", str(workers)]
    with _running(cmd, env, "placement serve", f"http://127.0.0.1:{port}", "/readyz") as url:
        yield url


@contextmanager
def _running(cmd: list[str], env: dict[str, str] | None, name: str, url: str,
             ready_path: str) -> Iterator[str]:
    """Start `cmd`, yield `url` once GET url+ready_path answers 200 (fail if the process
    exits or 60 s pass), and stop the process afterwards."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                out = proc.stdout.read() if proc.stdout else ""
                pytest.fail(f"{name} exited with {proc.returncode}:\n{out}")
            try:
                if httpx.get(f"{url}{ready_path}", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{name} did not become ready in 60 s")
            time.sleep(0.2)
        yield url
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextmanager
def prometheus(targets: dict[str, str], tmp: Path, scrape_s: float = 1.0,
               port: int | None = None) -> Iterator[str]:
    """A real Prometheus server (Debian's `prometheus` package) scraping `targets`
    (job name -> host:port) every `scrape_s`; yields its base URL once ready."""
    import shutil

    binary = shutil.which("prometheus")
    if binary is None:
        unavailable("the prometheus binary is not installed (apt-get install prometheus)")
        raise AssertionError("unreachable")
    config = tmp / "prometheus.yml"
    jobs = "\n".join(f"  - job_name: {job}\n    static_configs:\n      - targets: ['{t}']"
                     for job, t in targets.items())
    ms = int(scrape_s * 1000)
    config.write_text(f"global:\n  scrape_interval: {ms}ms\n  scrape_timeout: "
                      f"{ms}ms\nscrape_configs:\n{jobs}\n")
    port = port or free_port()
    cmd = [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
           f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
    with _running(cmd, None, "prometheus", f"http://127.0.0.1:{port}", "/-/ready") as url:
        yield url
