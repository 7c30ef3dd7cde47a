"""Driving a running Triton server with `tritonclient`: readiness, explicit model control,
version rolls (load new, check, unload old) and a smoke inference."""

from __future__ import annotations

import contextlib
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import numpy as np

from placement.actuators.triton.render import config_json, serving_of
from placement.model import TensorSpec, Workload

NUMPY_TYPES = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
               "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
               "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
               "BYTES": np.object_}


class TritonError(Exception):
    """Triton is unreachable, not ready in time, or refused a model; the message says which."""


class TritonControl:
    """One Triton server, reached over HTTP at `url` (http[s]://host:port)."""

    def __init__(self, url: str, timeout_s: float = 10.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        import tritonclient.http as th

        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise TritonError(f"endpoint {url!r} is not an http(s)://host:port URL; fix the "
                              "site's serving.endpoint")
        self.url = url
        self.sleep = sleep
        self.client = th.InferenceServerClient(parts.netloc, ssl=parts.scheme == "https",
                                               connection_timeout=timeout_s,
                                               network_timeout=timeout_s)

    def _try(self, what: str, fn: Callable[[], Any]) -> Any:
        from tritonclient.utils import InferenceServerException

        try:
            return fn()
        except InferenceServerException as exc:
            raise TritonError(f"{what} at {self.url}: {exc.message()}") from exc
        except (OSError, ValueError) as exc:  # refused, reset, DNS, timeouts (gevent/socket)
            raise TritonError(f"{what} at {self.url}: cannot reach Triton ({exc!r})") from exc

    def wait_ready(self, timeout_s: float) -> None:
        """Until the server is live and ready; TritonError after `timeout_s`."""
        deadline, last = time.monotonic() + timeout_s, "no answer"
        while True:
            try:
                if self._try("live", self.client.is_server_live) and self._try(
                        "ready", self.client.is_server_ready):
                    return
                last = "live but not ready"
            except TritonError as exc:
                last = str(exc)
            if time.monotonic() >= deadline:
                raise TritonError(f"Triton at {self.url} not ready within {timeout_s:g} s "
                                  f"({last})")
            self.sleep(min(1.0, max(0.05, deadline - time.monotonic())))

    def model_ready(self, model: str, version: int) -> bool:
        ready: bool = self._try(f"model {model} v{version} readiness",
                                lambda: self.client.is_model_ready(model, str(version)))
        return ready

    def loaded_versions(self, model: str) -> set[int]:
        """Versions of the model Triton reports READY."""
        index = self._try("repository index", self.client.get_model_repository_index)
        return {int(m["version"]) for m in index
                if m.get("name") == model and m.get("state") == "READY" and m.get("version")}

    def load(self, wl: Workload, versions: set[int]) -> None:
        """Load the model with the rendered configuration pinned to `versions`."""
        model = serving_of(wl).model
        config = config_json(wl, versions)
        self._try(f"load of {model} versions {sorted(versions)}",
                  lambda: self.client.load_model(model, config=config))

    def unload(self, model: str) -> None:
        self._try(f"unload of {model}", lambda: self.client.unload_model(model))

    def wait_model(self, model: str, version: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.model_ready(model, version):
            if time.monotonic() >= deadline:
                raise TritonError(f"model {model} v{version} not ready within {timeout_s:g} s")
            self.sleep(0.2)

    def roll(self, wl: Workload, current: int | None, timeout_s: float) -> list[str]:
        """Serve the spec's version: load new (beside the old one), check it with a smoke
        inference, then unload the old one. A new version that fails leaves the old one
        serving. Returns the steps taken."""
        spec = serving_of(wl)
        new, steps = spec.version, []
        keep = {current} if current is not None and current != new else set()
        try:
            self.load(wl, keep | {new})
            steps.append(f"loaded {spec.model} v{new}")
            self.wait_model(spec.model, new, timeout_s)
            ms = self.smoke(wl, new)
            if ms is not None:
                steps.append(f"smoke inference on v{new} answered in {ms:.1f} ms")
        except TritonError:
            if keep:  # pin the old version again so it keeps serving
                with contextlib.suppress(TritonError):
                    self.load(wl, keep)
            raise
        if keep:
            self.load(wl, {new})
            steps.append(f"unloaded {spec.model} v{current}")
        return steps

    def verify(self, wl: Workload, timeout_s: float) -> list[str]:
        """Without loading anything: wait until the spec's version is ready and smoke-test it
        (replicated serving, where each pod loads the model as it starts)."""
        spec = serving_of(wl)
        self.wait_model(spec.model, spec.version, timeout_s)
        steps = [f"{spec.model} v{spec.version} ready on the pods (loaded at start)"]
        ms = self.smoke(wl, spec.version)
        if ms is not None:
            steps.append(f"smoke inference on v{spec.version} answered in {ms:.1f} ms")
        return steps

    def smoke(self, wl: Workload, version: int) -> float | None:
        """One inference with zero-filled inputs; its latency in ms (None: no inputs declared,
        nothing to send)."""
        import tritonclient.http as th

        spec = serving_of(wl)
        if not spec.inputs:
            return None
        batch = [1] if spec.max_batch_size > 0 else []
        inputs = []
        for tensor in spec.inputs:
            data = sample(tensor, batch)
            item = th.InferInput(tensor.name, list(data.shape), tensor.data_type)
            item.set_data_from_numpy(data)
            inputs.append(item)
        outputs = [th.InferRequestedOutput(t.name) for t in spec.outputs]
        start = time.perf_counter()
        result = self._try(f"smoke inference on {spec.model} v{version}", lambda: self.client.infer(
            spec.model, inputs, model_version=str(version), outputs=outputs or None))
        elapsed = (time.perf_counter() - start) * 1000
        for t in spec.outputs:
            if result.as_numpy(t.name) is None:
                raise TritonError(f"smoke inference on {spec.model} v{version} returned no "
                                  f"{t.name}; check the model's outputs")
        return elapsed

    def close(self) -> None:
        self.client.close()


def sample(tensor: TensorSpec, batch: list[int]) -> np.ndarray[Any, Any]:
    """A zero-filled (or b"" for BYTES) array of the tensor's shape, -1 dims taken as 1."""
    shape = batch + [1 if d == -1 else d for d in tensor.dims]
    if tensor.data_type == "BYTES":
        return np.full(shape, b"", dtype=np.object_)
    if tensor.data_type == "BF16":
        raise TritonError(f"cannot build a smoke input for BF16 tensor {tensor.name}")
    return np.zeros(shape, dtype=NUMPY_TYPES[tensor.data_type])

