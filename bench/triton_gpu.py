"""GPU check for Triton serving: tritonserver from the nvidia-pytriton wheel with a KIND_GPU
instance group, ready, one inference, metrics parsed by the project's own code.

Two steps, because the GPU machine has no project dependencies beyond prometheus-client:

    python bench/triton_gpu.py prepare DIR   # here: render the model repository with the
                                             # project's renderer (config.pbtxt, KIND_GPU)
    python bench/triton_gpu.py check DIR     # there: start tritonserver, load, infer, scrape

`check` prints one JSON line per step and exits non-zero on the first failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODEL = "gpu-double"
MODEL_PY = '''
import os
import sys

# The stub embeds a Python that ignores PYTHONPATH: the check passes torch's site-packages here.
for extra in reversed(os.environ.get("GPUCHECK_SITE", "").split(os.pathsep)):
    if extra and extra not in sys.path:
        sys.path.insert(0, extra)

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """y = 2x computed on the instance's GPU; tensors cross by DLPack (no numpy copies)."""

    def initialize(self, args):
        import torch

        if args["model_instance_kind"] == "GPU":
            self.device = torch.device("cuda", int(args["model_instance_device_id"]))
        else:
            self.device = torch.device("cpu")

    def execute(self, requests):
        from torch.utils import dlpack

        out = []
        for request in requests:
            x = dlpack.from_dlpack(pb_utils.get_input_tensor_by_name(request, "INPUT0")
                                   .to_dlpack()).to(self.device)
            y = (x * 2).contiguous()
            out.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor.from_dlpack("OUTPUT0", dlpack.to_dlpack(y))]))
        return out
'''


def say(step: str, **data: Any) -> None:
    print(json.dumps({"step": step, **data}, default=str), flush=True)


def prepare(root: Path) -> None:
    from placement.actuators.triton.render import config_json, write_repository
    from placement.model import Workload

    wl = Workload.model_validate({
        "metadata": {"name": "gpu-check"},
        "spec": {"kind": "inference", "team": "platform", "gpu": {"types": ["H100"], "count": 1},
                 "latency": {"p99_slo_ms": 100, "service_time_p99_ms": 10,
                             "clients": [{"location": "users"}]},
                 "serving": {"model": MODEL, "backend": "python", "max_batch_size": 8,
                             "instance_kind": "gpu",
                             "inputs": [{"name": "INPUT0", "data_type": "FP32", "dims": [4]}],
                             "outputs": [{"name": "OUTPUT0", "data_type": "FP32",
                                          "dims": [4]}]}}})
    version_dir = write_repository(wl, root / "repo")
    (version_dir / "model.py").write_text(MODEL_PY)
    (root / "load.json").write_text(json.dumps({"parameters": {"config": config_json(wl)}}))
    say("prepared", repository=str(root / "repo"),
        config=(root / "repo" / MODEL / "config.pbtxt").read_text())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http(url: str, body: bytes | None = None, timeout: float = 30) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, res.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        return 0, repr(exc)


def _libpython_dirs() -> list[str]:
    """Folders that may hold the running Python's libpython (the backend stub links to it)."""
    found = []
    for var in ("LIBDIR", "LIBPL"):
        value = sysconfig.get_config_var(var)
        if value and Path(value).is_dir():
            found.append(value)
    base = Path(sys.base_prefix) / "lib"
    if base.is_dir():
        found.append(str(base))
    return found


def check(root: Path) -> int:
    from placement.actuators.triton.metrics import parse_gpus, parse_models, service_times

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        say("failed", error="nvidia-pytriton is not installed")
        return 1
    dist = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    backends = root / "backends"
    shutil.copytree(dist / "backends", backends, dirs_exist_ok=True)
    shutil.copy(dist / "python_backend_stubs" / version / "triton_python_backend_stub",
                backends / "python" / "triton_python_backend_stub")
    http, grpc, metrics = _free_port(), _free_port(), _free_port()
    libs = [str(dist.parent.parent / "nvidia_pytriton.libs"), *_libpython_dirs()]
    env = {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(
        [*libs, os.environ.get("LD_LIBRARY_PATH", "")]),
        "GPUCHECK_SITE": os.pathsep.join(
            [*os.environ.get("PYTHONPATH", "").split(os.pathsep),
             *(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))])}
    cmd = [str(dist / "bin" / "tritonserver"), f"--model-repository={root / 'repo'}",
           f"--backend-directory={backends}", "--model-control-mode=explicit",
           "--strict-readiness=false", "--http-address=127.0.0.1", f"--http-port={http}",
           f"--grpc-port={grpc}", f"--metrics-port={metrics}",
           "--metrics-config=summary_latencies=true"]
    log = (root / "tritonserver.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base, murl = f"http://127.0.0.1:{http}", f"http://127.0.0.1:{metrics}/metrics"
    try:
        return _drive(proc, base, murl, root, parse_gpus, parse_models, service_times)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        tail = (root / "tritonserver.log").read_text().splitlines()[-25:]
        say("server log tail", lines=tail)


def _drive(proc: subprocess.Popen[bytes], base: str, murl: str, root: Path, parse_gpus: Any,
           parse_models: Any, service_times: Any) -> int:
    start = time.monotonic()
    while _http(f"{base}/v2/health/ready", timeout=2)[0] != 200:
        if proc.poll() is not None or time.monotonic() - start > 120:
            say("failed", error="tritonserver did not become ready", rc=proc.poll())
            return 1
        time.sleep(0.5)
    say("server ready", seconds=round(time.monotonic() - start, 1))
    t0 = time.monotonic()
    status, body = _http(f"{base}/v2/repository/models/{MODEL}/load",
                         (root / "load.json").read_bytes(), timeout=300)
    if status != 200:
        say("failed", error=f"load: HTTP {status} {body}")
        return 1
    status, body = _http(f"{base}/v2/models/{MODEL}/ready")
    say("model ready", http=status, load_seconds=round(time.monotonic() - t0, 1),
        config=json.loads(_http(f"{base}/v2/models/{MODEL}/config")[1]).get("instance_group"))
    request = json.dumps({"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32",
                                      "data": [1.0, 2.0, 3.0, 4.0]}]}).encode()
    before = parse_models(_http(murl)[1])
    t1 = time.perf_counter()
    status, body = _http(f"{base}/v2/models/{MODEL}/infer", request)
    say("inference", http=status, ms=round((time.perf_counter() - t1) * 1000, 2),
        outputs=json.loads(body).get("outputs") if status == 200 else body)
    if status != 200:
        return 1
    for _ in range(50):
        _http(f"{base}/v2/models/{MODEL}/infer", request)
    text = _http(murl)[1]
    times = service_times(before, parse_models(text))
    say("service time (placement.actuators.triton.metrics)",
        **{m: t.as_dict() for m, t in times.items()})
    gpus = parse_gpus(text)
    say("gpu metrics (placement.actuators.triton.metrics)", gpus=[vars(g) for g in gpus])
    return 0 if gpus and MODEL in times else 2


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in ("prepare", "check"):
        print(__doc__)
        return 64
    root = Path(sys.argv[2]).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if sys.argv[1] == "prepare":
        prepare(root)
        return 0
    return check(root)


if __name__ == "__main__":
    sys.exit(main())
