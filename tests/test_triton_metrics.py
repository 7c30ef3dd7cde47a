"""Triton's metrics text as service times and GPU readings (expected values computed here)."""

from __future__ import annotations

import math

import pytest

from placement.actuators.triton.metrics import (
    MetricsFormatError,
    parse_gpus,
    parse_models,
    service_times,
)


def scrape(success: int, request_us: float, queue_us: float, infer_us: float,
           p99_us: float | None = None, failure: int = 0) -> str:
    labels = 'model="echo",version="1"'
    lines = [
        "# HELP nv_inference_request_success Number of successful inference requests",
        "# TYPE nv_inference_request_success counter",
        f"nv_inference_request_success{{{labels}}} {success}",
        "# TYPE nv_inference_request_failure counter",
        f'nv_inference_request_failure{{{labels},reason="BACKEND"}} {failure}',
        "# TYPE nv_inference_request_duration_us counter",
        f"nv_inference_request_duration_us{{{labels}}} {request_us}",
        "# TYPE nv_inference_queue_duration_us counter",
        f"nv_inference_queue_duration_us{{{labels}}} {queue_us}",
        "# TYPE nv_inference_compute_infer_duration_us counter",
        f"nv_inference_compute_infer_duration_us{{{labels}}} {infer_us}",
        "# TYPE nv_gpu_utilization gauge",
        'nv_gpu_utilization{gpu_uuid="GPU-1"} 0.5',
        "# TYPE nv_gpu_memory_used_bytes gauge",
        'nv_gpu_memory_used_bytes{gpu_uuid="GPU-1"} 1000000000',
    ]
    if p99_us is not None:
        lines += ["# TYPE nv_inference_request_summary_us summary",
                  f'nv_inference_request_summary_us{{{labels},quantile="0.99"}} {p99_us}',
                  f"nv_inference_request_summary_us_count{{{labels}}} {success}",
                  f"nv_inference_request_summary_us_sum{{{labels}}} {request_us}"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("before", "after", "mean", "p99", "basis"), [
    (scrape(10, 100_000, 10_000, 50_000), scrape(30, 500_000, 50_000, 250_000, p99_us=41_000),
     (500_000 - 100_000) / 20 / 1000, 41.0, "summary"),
    (scrape(10, 100_000, 10_000, 50_000), scrape(30, 500_000, 50_000, 250_000),
     20.0, 20.0 * math.log(100), "mean"),
    (scrape(500, 9e6, 1e6, 5e6), scrape(20, 400_000, 40_000, 200_000),
     20.0, 20.0 * math.log(100), "mean"),
    (scrape(10, 100_000, 10_000, 50_000), scrape(30, 500_000, 50_000, 250_000, p99_us=4_000),
     20.0, 20.0, "summary"),
    (scrape(10, 9e6, 1e6, 5e6), scrape(20, 400_000, 40_000, 200_000),
     20.0, 20.0 * math.log(100), "mean"),
], ids=["p99 from Triton's summary", "p99 estimated from the mean", "a restart reads from 0",
        "a summary below the mean is raised to it",
        "a restart seen only in the durations reads from 0"])
def test_interval_service_time(before: str, after: str, mean: float, p99: float,
                               basis: str) -> None:
    times = service_times(parse_models(before), parse_models(after))
    echo = times["echo"]
    assert echo.requests == 20
    assert echo.mean_ms == pytest.approx(mean)
    assert echo.queue_ms == pytest.approx(2.0)
    assert echo.compute_ms == pytest.approx(10.0)
    assert echo.p99_ms == pytest.approx(p99)
    assert echo.basis == basis


def test_no_requests_in_the_interval_gives_no_reading() -> None:
    text = scrape(10, 100_000, 10_000, 50_000)
    assert service_times(parse_models(text), parse_models(text)) == {}


def test_failures_are_counted() -> None:
    times = service_times(parse_models(scrape(10, 1e5, 1e4, 5e4, failure=1)),
                          parse_models(scrape(20, 2e5, 2e4, 1e5, failure=4)))
    assert times["echo"].failures == 3


def test_gpu_readings() -> None:
    (gpu,) = parse_gpus(scrape(1, 1, 1, 1))
    assert (gpu.uuid, gpu.utilization, gpu.memory_used_bytes) == ("GPU-1", 0.5, 1e9)
    assert gpu.power_w is None


def test_text_that_is_not_metrics_is_an_error() -> None:
    with pytest.raises(MetricsFormatError):
        parse_models('nv_inference_request_success{model="x" 1\n')
