"""The Triton control client and metrics parser against a real tritonserver on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from placement.actuators.triton.control import TritonControl, TritonError
from placement.actuators.triton.metrics import parse_models, service_times

from .services import Triton, free_port, tritonserver
from .triton_models import STUB_PATH, probe_model, python_model, served


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    python_model(root, served(version=1), factor=2)
    python_model(root, served(version=2), factor=3)
    python_model(root, served(version=3), broken=True)
    python_model(root, served(model="other", version=1), factor=1)
    return root


@pytest.fixture(scope="module")
def triton(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Triton]:
    with tritonserver(repo, tmp_path_factory.mktemp("triton")) as t:
        yield t


def infer(ctl: TritonControl, model: str, version: int) -> np.ndarray:
    import tritonclient.http as th

    item = th.InferInput("INPUT0", [1, 4], "FP32")
    item.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
    result = ctl.client.infer(model, [item], model_version=str(version))
    return np.asarray(result.as_numpy("OUTPUT0"))


def test_ready_load_smoke_and_unload(triton: Triton) -> None:
    ctl = TritonControl(triton.url)
    ctl.wait_ready(10)
    steps = ctl.roll(served(model="other"), None, timeout_s=60)
    assert steps[0] == "loaded other v1" and "smoke inference on v1" in steps[1]
    assert ctl.model_ready("other", 1)
    assert infer(ctl, "other", 1).tolist() == [[2.0, 2.0, 2.0, 2.0]]  # x * 1 + 1
    ctl.unload("other")
    deadline = time.monotonic() + 30
    while ctl.model_ready("other", 1) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not ctl.model_ready("other", 1)


def test_version_roll_loads_new_checks_it_then_unloads_old(triton: Triton) -> None:
    ctl = TritonControl(triton.url)
    ctl.roll(served(version=1), None, timeout_s=60)
    assert ctl.loaded_versions("echo") == {1}
    assert infer(ctl, "echo", 1).tolist() == [[3.0] * 4]  # x * 2 + 1
    steps = ctl.roll(served(version=2), 1, timeout_s=60)
    assert steps[-1] == "unloaded echo v1"
    assert ctl.loaded_versions("echo") == {2}
    assert infer(ctl, "echo", 2).tolist() == [[4.0] * 4]  # x * 3 + 1


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(triton: Triton) -> None:
    ctl = TritonControl(triton.url)
    ctl.roll(served(version=2), None, timeout_s=60)
    with pytest.raises(TritonError, match="weights file is corrupt"):
        ctl.roll(served(version=3), 2, timeout_s=60)
    assert ctl.loaded_versions("echo") == {2}
    assert infer(ctl, "echo", 2).tolist() == [[4.0] * 4]
    assert ctl.client.is_server_ready()  # the failed version is not left behind


def test_a_model_missing_from_the_repository_is_a_clear_error(triton: Triton) -> None:
    ctl = TritonControl(triton.url)
    with pytest.raises(TritonError, match="load of absent"):
        ctl.roll(served(model="absent"), None, timeout_s=10)


def test_an_unavailable_server_fails_within_the_timeout() -> None:
    ctl = TritonControl(f"http://127.0.0.1:{free_port()}", timeout_s=1)
    start = time.monotonic()
    with pytest.raises(TritonError, match="not ready within 1 s"):
        ctl.wait_ready(1)
    assert time.monotonic() - start < 5


def test_metrics_give_a_service_time_per_model(triton: Triton) -> None:
    import urllib.request

    ctl = TritonControl(triton.url)
    ctl.roll(served(version=2), None, timeout_s=60)

    def scrape() -> str:
        with urllib.request.urlopen(triton.metrics_url, timeout=5) as res:
            return str(res.read().decode())

    before = parse_models(scrape())
    for _ in range(20):
        infer(ctl, "echo", 2)
    # Triton counts a request once its response is sent: a scrape right after the last
    # answer can still miss it (seen in CI: 19 of 20), so read until all 20 are in (10 s).
    deadline = time.monotonic() + 10
    while True:
        times = service_times(before, parse_models(scrape()))
        if ("echo" in times and times["echo"].requests >= 20) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    echo = times["echo"]
    assert echo.requests == 20 and echo.failures == 0
    assert echo.basis == "summary" and echo.p99_ms >= echo.compute_ms > 0
    assert 0 < echo.mean_ms < 1000


def _venv(tmp: Path) -> Path:
    """The virtual environment the tests run in, else a fresh one (its pyvenv.cfg is what
    misleads an embedded interpreter)."""
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv")],
                   check=True)
    return tmp / "venv"


@pytest.mark.parametrize("entered", ["activated", "plain"])
def test_the_stub_runs_the_system_python_however_the_tests_are_started(
        entered: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a venv's bin first on PATH (`. .venv/bin/activate`) and PYTHON* variables set,
    the Python backend still runs Debian's python3.11 with python3-numpy."""
    if entered == "activated":
        venv = _venv(tmp_path)
        monkeypatch.setenv("PATH", f"{venv / 'bin'}:{STUB_PATH}")
        monkeypatch.setenv("VIRTUAL_ENV", str(venv))
        monkeypatch.setenv("PYTHONPATH", str(venv / "lib"))
        monkeypatch.setenv("PYTHONHOME", str(venv))
    report = tmp_path / "stub.json"
    root = tmp_path / "models"
    probe_model(root, served(model="probe"), report)
    with tritonserver(root, tmp_path / "triton") as t:
        ctl = TritonControl(t.url)
        ctl.wait_ready(10)
        ctl.roll(served(model="probe"), None, timeout_s=60)
        assert infer(ctl, "probe", 1).tolist() == [[2.0] * 4]
    stub = json.loads(report.read_text())
    assert stub["prefix"] == "/usr", stub
    assert stub["numpy"].startswith("/usr/lib/python3/dist-packages/numpy/"), stub
