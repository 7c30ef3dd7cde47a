"""A workload's serving spec as Triton's model configuration (config.pbtxt) and repository layout.

The configuration is built as Triton's own protobuf message (`model_config_pb2` from
tritonclient), so what is written is exactly what Triton parses: the text form goes into the
repository and a ConfigMap, the JSON form rides on explicit-mode load requests.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from placement.actuators.base import PermanentActuatorError
from placement.model import TensorSpec, Workload
from placement.model.workload import ServingSpec

# Backends that manage their GPUs themselves get one model-level instance (KIND_MODEL).
SELF_MANAGED_BACKENDS = frozenset({"vllm", "tensorrtllm"})


class ServingSpecError(PermanentActuatorError):
    """The workload cannot be served as written; the message says what to add."""


def serving_of(wl: Workload) -> ServingSpec:
    """The workload's serving spec, or ServingSpecError when it has none."""
    if wl.spec.serving is None:
        raise ServingSpecError(f"workload {wl.name} has no 'serving' section; add model and "
                               "backend to serve it with Triton")
    return wl.spec.serving


def model_config(wl: Workload, versions: Iterable[int] | None = None) -> Any:
    """Triton's ModelConfig message for the workload; `versions` pins what Triton loads
    (default: the spec's version only)."""
    from tritonclient.grpc import model_config_pb2 as mc

    spec = serving_of(wl)
    cfg = mc.ModelConfig(name=spec.model, backend=spec.backend,
                         max_batch_size=spec.max_batch_size)
    cfg.version_policy.specific.versions.extend(sorted(set(versions or [spec.version])))
    for tensor in spec.inputs:
        cfg.input.append(_tensor(mc.ModelInput, tensor))
    for tensor in spec.outputs:
        cfg.output.append(_tensor(mc.ModelOutput, tensor))
    if spec.backend in SELF_MANAGED_BACKENDS:
        cfg.instance_group.add(kind=mc.ModelInstanceGroup.KIND_MODEL, count=1)
    elif spec.instance_kind == "cpu":
        cfg.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU,
                               count=spec.instances_per_gpu)
    else:
        cfg.instance_group.add(kind=mc.ModelInstanceGroup.KIND_GPU,
                               count=spec.instances_per_gpu)
    if spec.dynamic_batching and spec.max_batch_size > 0:
        cfg.dynamic_batching.max_queue_delay_microseconds = spec.max_queue_delay_us
    return cfg


def _tensor(cls: Any, t: TensorSpec) -> Any:
    from tritonclient.grpc import model_config_pb2 as mc

    return cls(name=t.name, data_type=mc.DataType.Value(f"TYPE_{t.data_type}"), dims=t.dims)


def config_pbtxt(wl: Workload, versions: Iterable[int] | None = None) -> str:
    """config.pbtxt text for the workload's model."""
    from google.protobuf import text_format

    return str(text_format.MessageToString(model_config(wl, versions)))


def config_json(wl: Workload, versions: Iterable[int] | None = None) -> str:
    """The same configuration as JSON, as Triton's load request takes it."""
    from google.protobuf import json_format

    return str(json_format.MessageToJson(model_config(wl, versions),
                                         preserving_proto_field_name=True, indent=None))


def parse_pbtxt(text: str) -> Any:
    """Parse config.pbtxt text back into a ModelConfig (raises ServingSpecError if invalid)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    try:
        return text_format.Parse(text, mc.ModelConfig())
    except text_format.ParseError as exc:
        raise ServingSpecError(f"not a valid Triton model configuration: {exc}") from exc


def write_repository(wl: Workload, root: Path) -> Path:
    """Lay the model out as Triton expects: root/<model>/config.pbtxt and root/<model>/<version>/.
    The version directory is created empty for the model's files; returns it."""
    spec = serving_of(wl)
    model_dir = root / spec.model
    version_dir = model_dir / str(spec.version)
    version_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(config_pbtxt(wl))
    return version_dir
