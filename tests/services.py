"""Real services for tests: PostgreSQL databases and `placement serve` processes.

A service that cannot be had skips the test with the reason, unless PLACEMENT_REQUIRE_SERVICES=1
(set by .ci/run): then the test fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
             ready_path: str, log: Path | None = None) -> Iterator[str]:
    """Start `cmd`, yield `url` once GET url+ready_path answers 200 (fail if the process
    exits or 60 s pass), and stop the process afterwards. Output goes to `log` if given."""
    sink = log.open("w") if log is not None else subprocess.PIPE
    proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                out = proc.stdout.read() if proc.stdout else log.read_text() if log else ""
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
        if log is not None:
            sink.close()  # type: ignore[union-attr]


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


# --- Kubernetes API emulator ------------------------------------------------------------------
class KubeEmulator:
    """KMock's stateful Kubernetes API emulator, served on 127.0.0.1 from a background thread."""

    def __init__(self) -> None:
        import asyncio
        import threading

        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.url = ""
        self.emulator: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="kmock", daemon=True)

    def _serve(self) -> None:
        import asyncio

        import kmock

        async def main() -> None:
            async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as srv:
                self.emulator, self.url = emulator, str(srv.url).rstrip("/")
                self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
                self._ready.set()
                await self._stop.wait()

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    def start(self) -> KubeEmulator:
        self._thread.start()
        if not self._ready.wait(20) or self._error is not None:
            raise RuntimeError(f"KMock did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def kubeconfig(self, path: Path, contexts: list[str], server: str | None = None) -> Path:
        """A kubeconfig whose contexts all point at this emulator (or at `server`)."""
        import yaml

        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": server or self.url}}],
            "users": [{"name": "tester", "user": {"token": "test-token"}}],
            "contexts": [{"name": c, "context": {"cluster": "emulator", "user": "tester"}}
                         for c in contexts],
            "current-context": contexts[0]}))
        return path

    def requests(self) -> list[Any]:
        """Every request the emulator has served so far, oldest first."""
        return list(self.emulator)

    def stored(self, api_version: str, plural: str, namespace: str, name: str
               ) -> dict[str, Any] | None:
        """The live object the emulator holds, or None when absent or deleted."""
        group_version = api_version if "/" in api_version else f"/{api_version}"
        group, version = group_version.split("/")
        for key, obj in list(self.emulator.objects.items()):
            res, ns, n = key
            if ((res.group or "") == group and res.version == version and res.plural == plural
                    and ns == namespace and n == name and not obj.deleted):
                return dict(obj.raw)
        return None


@contextmanager
def kube_emulator() -> Iterator[KubeEmulator]:
    try:
        import kmock  # noqa: F401
    except ImportError:
        unavailable("kmock is not installed (pip install -e '.[dev]')")
    emu = KubeEmulator().start()
    try:
        yield emu
    finally:
        emu.stop()


# --- Triton Inference Server --------------------------------------------------------------------
@dataclass
class Triton:
    url: str  # HTTP endpoint
    metrics_url: str
    log: Path


def _triton_dist() -> Path:
    """The tritonserver distribution the nvidia-pytriton wheel bundles."""
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        unavailable("nvidia-pytriton is not installed (make .venv/.installed installs it)")
        raise AssertionError("unreachable")
    dist = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    if not (dist / "bin" / "tritonserver").exists():
        unavailable(f"no tritonserver binary under {dist}")
    stub_libpython = Path("/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0")
    if not stub_libpython.exists():
        unavailable("the Python backend needs Debian's libpython3.11 (apt-get install "
                    "libpython3.11)")
    if not Path("/usr/lib/python3/dist-packages/numpy").exists():
        unavailable("the Python backend's models import numpy from the system Python "
                    "(apt-get install python3-numpy)")
    return dist


@contextmanager
def tritonserver(repository: Path, tmp: Path, extra: list[str] | None = None
                 ) -> Iterator[Triton]:
    """A real tritonserver (from the nvidia-pytriton wheel) on 127.0.0.1 with the flags the
    rendered Deployment uses (explicit model control, summaries, non-strict readiness) and the
    Python backend; yields once it answers /v2/health/ready."""
    import shutil

    dist = _triton_dist()
    backends = tmp / "triton-backends"
    if not backends.exists():
        shutil.copytree(dist / "backends", backends)
        shutil.copy(dist / "python_backend_stubs" / "3.11" / "triton_python_backend_stub",
                    backends / "python" / "triton_python_backend_stub")
    http, grpc, metrics = free_port(), free_port(), free_port()
    from .triton_models import stub_environment  # PATH and PYTHON* pinned for the stub

    env = stub_environment(os.environ,
                           LD_LIBRARY_PATH=str(dist.parent.parent / "nvidia_pytriton.libs"))
    cmd = [str(dist / "bin" / "tritonserver"), f"--model-repository={repository}",
           f"--backend-directory={backends}", "--model-control-mode=explicit",
           "--http-address=127.0.0.1", f"--http-port={http}", "--grpc-address=127.0.0.1",
           f"--grpc-port={grpc}", "--metrics-address=127.0.0.1", f"--metrics-port={metrics}",
           "--metrics-config=summary_latencies=true", "--strict-readiness=false",
           "--exit-timeout-secs=5", *(extra or [])]
    url = f"http://127.0.0.1:{http}"
    log = tmp / f"tritonserver-{http}.log"
    with _running(cmd, env, "tritonserver", url, "/v2/health/ready", log) as url:
        yield Triton(url, f"http://127.0.0.1:{metrics}/metrics", log)


@contextmanager
def chromium(args: list[str]) -> Iterator[Any]:
    """Debian's headless Chromium driven by Playwright (no browser download), with `args`."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        unavailable("Debian's chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[dev]')")
        raise
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=binary, headless=True, args=args)
        try:
            yield browser
        finally:
            browser.close()
