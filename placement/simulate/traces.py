"""Readers for the public GPU-job and LLM-request traces in ../shared/data.

Each format is recognised by its header. A trace becomes records of one of four shapes:
- jobs (arrival, duration, GPUs): Philly, Alibaba GPU 2023 pods, Alibaba DLRM 2025 instances;
- job counts per interval: Helios (Venus, 10 minutes);
- requests (arrival, tokens in and out, or a measured service time): Azure LLM 2023 code and
  conversation, Mooncake, Alibaba GenAI 2026 LoRA requests;
- request rates (QPS samples): Alibaba GenAI 2026.
Arrivals are seconds from the trace's first record. A row that cannot be read is reported with
its line and the reason, never dropped silently; rows that are valid but out of scope (CPU-only
pods, instances never scheduled in the window) are counted and said as such.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

Shape = Literal["jobs", "job_counts", "requests", "rates"]


class TraceError(ValueError):
    """The file is not a known trace, or not readable; the message says which formats are."""


@dataclass(frozen=True)
class Job:
    at_s: float
    duration_s: float
    gpus: int
    line: int


@dataclass(frozen=True)
class JobCount:
    at_s: float
    jobs: int
    gpus: int
    line: int


@dataclass(frozen=True)
class Request:
    at_s: float
    tokens_in: int
    tokens_out: int
    service_s: float | None
    line: int


@dataclass(frozen=True)
class Rate:
    at_s: float
    qps: float
    line: int


@dataclass
class Trace:
    """A read trace: its records, the rows it could not read, the rows out of scope."""

    path: Path
    format: str
    shape: Shape
    records: list[Any] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "file:line: reason"
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> rows


@dataclass(frozen=True)
class Format:
    name: str
    shape: Shape
    columns: frozenset[str]
    row: Callable[[dict[str, str], int], Any]  # a record, a str (skip reason) or raises


def _ts(text: str) -> float:
    """Seconds since the epoch from 'YYYY-MM-DD HH:MM:SS[.fraction]' (UTC assumed)."""
    text = text.strip()
    if "." in text:  # Azure writes 7 fractional digits; Python reads up to 6
        head, frac = text.split(".", 1)
        text = f"{head}.{frac[:6]}"
    return datetime.fromisoformat(text).timestamp()


def _num(row: dict[str, str], key: str) -> float:
    value = (row.get(key) or "").strip()
    if not value:
        raise ValueError(f"{key} is empty")
    return float(value)


def _philly(row: dict[str, str], line: int) -> Job | str:
    gpus = int(_num(row, "num_gpus"))
    if gpus <= 0:
        return "no GPUs"
    return Job(_ts(row["timestamp"]), _num(row, "duration"), gpus, line)


def _pods(row: dict[str, str], line: int) -> Job | str:
    if int(_num(row, "num_gpu")) <= 0:
        return "CPU-only pod"
    start, end = _num(row, "creation_time"), _num(row, "deletion_time")
    if end < start:
        raise ValueError(f"deletion_time {end:g} before creation_time {start:g}")
    return Job(start, end - start, int(_num(row, "num_gpu")), line)


def _dlrm(row: dict[str, str], line: int) -> Job | str:
    if not (row.get("creation_time") or "").strip():
        return "not created within the trace window"
    gpus = int(_num(row, "gpu_request"))
    if gpus <= 0:
        return "no GPUs"
    start = _num(row, "creation_time")
    end = _num(row, "deletion_time") if (row.get("deletion_time") or "").strip() else None
    if end is None:
        return "still running at the end of the trace"
    if end < start:
        raise ValueError(f"deletion_time {end:g} before creation_time {start:g}")
    return Job(start, end - start, gpus, line)


def _helios(row: dict[str, str], line: int) -> JobCount:
    return JobCount(_ts(row["time"]), int(_num(row, "submit_gpu_job")),
                    int(_num(row, "submit_gpu_num")), line)


def _azure(row: dict[str, str], line: int) -> Request:
    return Request(_ts(row["TIMESTAMP"]), int(_num(row, "ContextTokens")),
                   int(_num(row, "GeneratedTokens")), None, line)


def _mooncake(row: dict[str, str], line: int) -> Request:
    return Request(_num(row, "timestamp_ms") / 1000, int(_num(row, "input_length")),
                   int(_num(row, "output_length")), None, line)


def _lora(row: dict[str, str], line: int) -> Request | str:
    if (row.get("predict_status") or "").strip() != "SUCCEED":
        return "request did not succeed"
    return Request(_ts(row["gmt_create"]), int(_num(row, "prompt_length")), 0,
                   _num(row, "exec_time_seconds"), line)


def _qps(row: dict[str, str], line: int) -> Rate:
    return Rate(_num(row, "timestamp_anon"), _num(row, "value"), line)


FORMATS = {f.name: f for f in (
    Format("philly", "jobs", frozenset({"timestamp", "duration", "num_gpus"}), _philly),
    Format("alibaba-gpu2023", "jobs",
           frozenset({"num_gpu", "gpu_milli", "creation_time", "deletion_time"}), _pods),
    Format("alibaba-dlrm2025", "jobs",
           frozenset({"instance_sn", "gpu_request", "creation_time", "deletion_time"}), _dlrm),
    Format("helios", "job_counts", frozenset({"time", "submit_gpu_job", "submit_gpu_num"}),
           _helios),
    Format("azure-llm", "requests",
           frozenset({"TIMESTAMP", "ContextTokens", "GeneratedTokens"}), _azure),
    Format("mooncake", "requests",
           frozenset({"timestamp_ms", "input_length", "output_length"}), _mooncake),
    Format("alibaba-genai-lora", "requests",
           frozenset({"gmt_create", "predict_status", "exec_time_seconds", "prompt_length"}),
           _lora),
    Format("alibaba-genai-qps", "rates", frozenset({"timestamp_anon", "value"}), _qps),
)}


def detect(header: list[str], path: Path) -> Format:
    """The format whose columns the header has (the most specific one)."""
    columns = {h.strip() for h in header}
    found = [f for f in FORMATS.values() if f.columns <= columns]
    if not found:
        raise TraceError(f"{path}: no known trace format has the columns "
                         f"{', '.join(sorted(columns))}; known formats: "
                         + "; ".join(f"{f.name} ({', '.join(sorted(f.columns))})"
                                     for f in FORMATS.values()))
    return max(found, key=lambda f: len(f.columns))


def read(path: Path, fmt: str | None = None) -> Trace:
    """Read a trace (format from its header unless given); arrivals from the first record."""
    try:
        fh = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"cannot read {path}: {exc}") from exc
    with fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise TraceError(f"{path} is empty; a trace starts with a header row")
        if fmt is not None and fmt not in FORMATS:
            raise TraceError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        spec = FORMATS[fmt] if fmt is not None else detect(header, path)
        missing = spec.columns - {h.strip() for h in header}
        if missing:
            raise TraceError(f"{path}:1: format {spec.name} needs the columns "
                             f"{', '.join(sorted(missing))}")
        trace = Trace(path, spec.name, spec.shape)
        for line, values in enumerate(reader, start=2):
            if not values or all(not v.strip() for v in values):
                continue
            if len(values) != len(header):
                trace.problems.append(f"{path}:{line}: {len(values)} fields, the header has "
                                      f"{len(header)}")
                continue
            try:
                got = spec.row(dict(zip(header, values, strict=True)), line)
            except (ValueError, KeyError) as exc:
                trace.problems.append(f"{path}:{line}: {exc}")
                continue
            if isinstance(got, str):
                trace.skipped[got] = trace.skipped.get(got, 0) + 1
            else:
                trace.records.append(got)
    _rebase(trace)
    return trace


def _rebase(trace: Trace) -> None:
    """Arrivals as seconds from the first record, in arrival order."""
    if not trace.records:
        return
    trace.records.sort(key=lambda r: r.at_s)
    t0 = trace.records[0].at_s
    trace.records = [type(r)(**{**vars(r), "at_s": r.at_s - t0}) for r in trace.records]
