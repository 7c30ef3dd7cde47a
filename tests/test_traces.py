"""Trace readers: every trace in ../shared/data parses; malformed rows are reported with their
line; unknown files get an error naming the formats known."""

from __future__ import annotations

from pathlib import Path

import pytest

from placement.simulate.traces import FORMATS, Job, TraceError, read

from .conftest import SHARED_DATA

EXPECTED = {
    "trace_philly_jobs.csv": ("philly", "jobs"),
    "trace_alibaba_gpu2023_pods.csv": ("alibaba-gpu2023", "jobs"),
    "trace_alibaba_dlrm2025_instances.csv": ("alibaba-dlrm2025", "jobs"),
    "trace_helios_venus_10min.csv": ("helios", "job_counts"),
    "trace_azure_llm2023_code.csv": ("azure-llm", "requests"),
    "trace_azure_llm2023_conv.csv": ("azure-llm", "requests"),
    "trace_mooncake_conversation.csv": ("mooncake", "requests"),
    "trace_alibaba_genai2026_lora_requests.csv": ("alibaba-genai-lora", "requests"),
    "trace_alibaba_genai2026_qps.csv": ("alibaba-genai-qps", "rates"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_shared_trace_parses(name: str) -> None:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is not here")
    trace = read(path)
    assert (trace.format, trace.shape) == EXPECTED[name]
    assert trace.records and trace.problems == []
    assert trace.records[0].at_s == 0
    assert all(a.at_s <= b.at_s for a, b in zip(trace.records, trace.records[1:], strict=False))
    rows = sum(1 for _ in path.open()) - 1
    assert len(trace.records) + sum(trace.skipped.values()) == rows  # nothing silently lost


def test_a_small_philly_excerpt_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "philly.csv"
    path.write_text("timestamp,duration,num_gpus,gpu_time,cluster\n"
                    "2017-10-01 00:01:40,3600.0,8,28800.0,a\n"
                    "2017-10-01 00:00:00,60.5,1,60.5,b\n"
                    "2017-10-01 00:00:10,10,0,0,c\n")
    trace = read(path)
    assert trace.records == [Job(0.0, 60.5, 1, 3), Job(100.0, 3600.0, 8, 2)]
    assert trace.skipped == {"no GPUs": 1}


def test_malformed_rows_are_reported_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "philly.csv"
    path.write_text("timestamp,duration,num_gpus,gpu_time,cluster\n"
                    "2017-10-01 00:00:00,60,1,60,a\n"
                    "2017-10-01 00:00:05,soon,1,60,a\n"
                    "2017-10-01 00:00:09,60\n"
                    "yesterday,60,1,60,a\n")
    trace = read(path)
    assert len(trace.records) == 1
    assert [p.split(": ", 1)[0] for p in trace.problems] == [
        f"{path}:3", f"{path}:4", f"{path}:5"]
    assert "2 fields, the header has 5" in trace.problems[1]


@pytest.mark.parametrize(("header", "fmt", "message"), [
    ("a,b,c\n", None, "known formats: philly"),
    ("", None, "is empty"),
    ("timestamp,duration\n", "philly", "needs the columns num_gpus"),
    ("timestamp,duration,num_gpus\n", "parquet", "unknown format 'parquet'"),
], ids=["unknown columns", "empty file", "explicit format, columns missing", "unknown format"])
def test_files_that_are_not_traces_get_a_clear_error(tmp_path: Path, header: str,
                                                     fmt: str | None, message: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(header)
    with pytest.raises(TraceError, match=message):
        read(path, fmt)


def test_every_format_is_covered_by_a_shared_trace() -> None:
    assert {f for f, _ in EXPECTED.values()} == set(FORMATS)
