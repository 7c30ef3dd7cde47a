"""Triton's Prometheus metrics (port 8002) as per-model service times and GPU readings.

Triton's counters are cumulative since start: request, queue and compute durations (µs) and
the success count. Two scrapes give the means over the interval between them. Started with
`--metrics-config summary_latencies=true` (the rendered Deployment does), Triton also exports
quantile summaries, and the observed p99 is read from `nv_inference_request_summary_us` (but
never taken below the interval's mean).
Without summaries, p99 is estimated from the mean as mean x ln(100), the p99 of an exponential
distribution, and the reading says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

P99_OF_MEAN = math.log(100)  # p99 / mean of an exponential distribution


@dataclass(frozen=True)
class ModelCounters:
    """One model version's cumulative counters at one scrape (durations in µs)."""

    model: str
    version: str
    success: float = 0.0
    failure: float = 0.0
    request_us: float = 0.0
    queue_us: float = 0.0
    compute_us: float = 0.0
    p99_us: float | None = None  # from the request summary, when exported


@dataclass(frozen=True)
class ServiceTime:
    """What one model did between two scrapes, in ms."""

    model: str
    requests: float
    failures: float
    mean_ms: float
    queue_ms: float
    compute_ms: float
    p99_ms: float
    basis: str  # "summary" (Triton's p99) or "mean" (estimated from the mean)

    def as_dict(self) -> dict[str, float | str]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in vars(self).items()}


@dataclass(frozen=True)
class GpuReading:
    """One GPU as Triton reports it (DCGM): utilization 0..1, memory in bytes, power in W."""

    uuid: str
    utilization: float | None
    memory_used_bytes: float | None
    memory_total_bytes: float | None
    power_w: float | None


COUNTERS = {"nv_inference_request_success": "success",
            "nv_inference_request_failure": "failure",
            "nv_inference_request_duration_us": "request_us",
            "nv_inference_queue_duration_us": "queue_us",
            "nv_inference_compute_input_duration_us": "compute_us",
            "nv_inference_compute_infer_duration_us": "compute_us",
            "nv_inference_compute_output_duration_us": "compute_us"}


class MetricsFormatError(ValueError):
    """The text is not Prometheus exposition format."""


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    from prometheus_client.parser import text_string_to_metric_families

    try:
        return [(s.name, dict(s.labels), float(s.value))
                for family in text_string_to_metric_families(text) for s in family.samples]
    except (ValueError, TypeError, IndexError) as exc:
        raise MetricsFormatError(f"cannot parse Triton metrics: {exc}") from exc


def parse_models(text: str) -> dict[tuple[str, str], ModelCounters]:
    """Counters per (model, version) from one scrape."""
    acc: dict[tuple[str, str], dict[str, float]] = {}
    p99: dict[tuple[str, str], float] = {}
    for name, labels, value in _samples(text):
        model = labels.get("model")
        if model is None:
            continue
        key = (model, labels.get("version", ""))
        field = COUNTERS.get(name.removesuffix("_total"))
        if field is not None:
            row = acc.setdefault(key, {})
            row[field] = row.get(field, 0.0) + value
        elif (name == "nv_inference_request_summary_us" and labels.get("quantile") == "0.99"
              and math.isfinite(value)):
            p99[key] = value
    return {key: ModelCounters(key[0], key[1], p99_us=p99.get(key), **fields)
            for key, fields in acc.items()}


def service_times(before: dict[tuple[str, str], ModelCounters],
                  after: dict[tuple[str, str], ModelCounters]) -> dict[str, ServiceTime]:
    """Per model (versions summed), what the interval between two scrapes shows. Models with
    no successful request in the interval are absent; when any counter went down (Triton
    restarted) the model's counters are read from zero."""
    sums: dict[str, list[float]] = {}
    worst_p99: dict[str, float] = {}
    for key, cur in after.items():
        fields = ("success", "failure", "request_us", "queue_us", "compute_us")
        prev = before.get(key)
        if prev is None or any(getattr(cur, f) < getattr(prev, f) for f in fields):
            prev = ModelCounters(cur.model, cur.version)  # new, or Triton restarted
        d = [getattr(cur, f) - getattr(prev, f) for f in fields]
        if d[0] <= 0:
            continue
        row = sums.setdefault(cur.model, [0.0] * 5)
        for i, v in enumerate(d):
            row[i] += v
        if cur.p99_us is not None:
            worst_p99[cur.model] = max(worst_p99.get(cur.model, 0.0), cur.p99_us)
    out = {}
    for model, (n, failures, req, queue, compute) in sums.items():
        mean = req / n / 1000
        p99 = worst_p99.get(model)
        # Never below the interval's mean: Triton's summary window can miss a slow request
        # the counters saw (on an H100, the first, CUDA-initializing one).
        out[model] = ServiceTime(
            model, n, failures, mean, queue / n / 1000, compute / n / 1000,
            max(p99 / 1000, mean) if p99 is not None else mean * P99_OF_MEAN,
            "summary" if p99 is not None else "mean")
    return out


def parse_gpus(text: str) -> list[GpuReading]:
    """The GPUs Triton reports (nv_gpu_* metrics), one reading per GPU uuid."""
    names = {"nv_gpu_utilization": "utilization", "nv_gpu_memory_used_bytes": "memory_used_bytes",
             "nv_gpu_memory_total_bytes": "memory_total_bytes", "nv_gpu_power_usage": "power_w"}
    found: dict[str, dict[str, float]] = {}
    for name, labels, value in _samples(text):
        if name in names and "gpu_uuid" in labels:
            found.setdefault(labels["gpu_uuid"], {})[names[name]] = value
    return [GpuReading(uuid, v.get("utilization"), v.get("memory_used_bytes"),
                       v.get("memory_total_bytes"), v.get("power_w"))
            for uuid, v in sorted(found.items())]
