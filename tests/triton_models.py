"""Python-backend models and serving workloads for the Triton tests."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from placement.actuators.triton.render import write_repository
from placement.model import Workload

MODEL_PY = '''
import numpy as np
import triton_python_backend_utils as pb_utils

FACTOR = {factor}


class TritonPythonModel:
    def initialize(self, args):
        if {broken}:
            raise RuntimeError("weights file is corrupt (test model)")

    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", x * FACTOR + 1)]))
        return out
'''


# The Python backend's stub embeds Debian's libpython3.11. Not being a `python3` program itself,
# that interpreter finds its prefix by looking `python3` up on PATH: with a virtual environment
# activated it finds the venv's, reads its pyvenv.cfg and runs on another Python's standard
# library and the venv's numpy (the models then answer empty tensors). So tritonserver runs
# with a fixed PATH and no PYTHON* variables: the stub gets /usr/bin/python3's prefix, standard
# library and dist-packages (python3-numpy), however the tests were started.
STUB_PATH = "/usr/bin:/bin"


def stub_environment(base: Mapping[str, str], **extra: str) -> dict[str, str]:
    """The environment tritonserver runs in: `base` without what points a Python interpreter
    elsewhere (PYTHON*, VIRTUAL_ENV, CONDA_PREFIX), PATH pinned, user site-packages off."""
    env = {k: v for k, v in base.items()
           if not k.startswith("PYTHON") and k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
    return {**env, "PATH": STUB_PATH, "PYTHONNOUSERSITE": "1", **extra}


PROBE_PY = '''
import json
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        with open({report!r}, "w") as f:
            json.dump({{"prefix": sys.prefix, "executable": sys.executable,
                       "numpy": np.__file__}}, f)

    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
            "OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy() + 1)])
            for r in requests]
'''


def probe_model(root: Path, wl: Workload, report: Path) -> Path:
    """A model that answers x + 1 and, on load, writes the stub interpreter's prefix,
    executable and numpy location as JSON to `report`."""
    version_dir = write_repository(wl, root)
    (version_dir / "model.py").write_text(PROBE_PY.format(report=str(report)))
    return version_dir


def served(name: str = "echo-svc", model: str = "echo", version: int = 1,
           repository: str | None = None, team: str = "apps", inputs: bool = True,
           gpu: str = "L4", client: str = "users", instance_kind: str = "cpu",
           **serving: Any) -> Workload:
    """An inference workload whose serving spec names a Python-backend model (on CPU
    instances by default: the machine running the tests has no GPU)."""
    tensors = ({"inputs": [{"name": "INPUT0", "data_type": "FP32", "dims": [4]}],
                "outputs": [{"name": "OUTPUT0", "data_type": "FP32", "dims": [4]}]}
               if inputs else {})
    return Workload.model_validate({
        "metadata": {"name": name},
        "spec": {"kind": "inference", "team": team, "gpu": {"types": [gpu], "count": 1},
                 "latency": {"p99_slo_ms": 200, "service_time_p99_ms": 20,
                             "clients": [{"location": client}]},
                 "serving": {"model": model, "backend": "python", "max_batch_size": 8,
                             "version": version, "repository": repository, **tensors,
                             "instance_kind": instance_kind,
                             **serving}}})


def python_model(root: Path, wl: Workload, factor: float = 2.0, broken: bool = False) -> Path:
    """Write the workload's model (its spec's version) into the repository at root."""
    version_dir = write_repository(wl, root)
    (version_dir / "model.py").write_text(MODEL_PY.format(factor=factor, broken=broken))
    return version_dir
