"""Many seeds into one answer: each metric's mean and 95% interval, paired comparisons, and the
headline sentences that lead the report.

A comparison is paired by seed (both policies replay the same workloads and the same spot
draws for a seed): for money, the per-seed relative difference ours / theirs - 1; for counts
(deadline misses, rejections), the per-seed difference. Its interval is Student's t at 95%
over the seeds; a difference is significant when the interval leaves out 0. One seed gives a
value without an interval (and never "significant").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from scipy.stats import t as student_t

HEADLINE = "avoidable_usd"  # the money view comparisons lead with (see results.py)
RELATIVE = ("avoidable_usd", "used_usd", "fleet_usd", "egress_gb")
ABSOLUTE = ("deadline_misses", "rejected", "unmet_gpu_hours")
INTERVAL_METRICS = ("avoidable_usd", "used_usd", "fleet_usd", "cloud_gpu_usd", "egress_usd",
                    "egress_gb", "unmet_usd", "unmet_gpu_hours", "rejected", "deadline_misses",
                    "slo_attainment", "job_wait_p50_h", "job_wait_p99_h",
                    "gap_to_bound_avoidable")


@dataclass(frozen=True)
class Interval:
    """A mean over seeds and the half-width of its 95% interval (None with one seed)."""

    mean: float
    half: float | None
    n: int

    @property
    def significant(self) -> bool:
        return self.half is not None and abs(self.mean) > self.half

    def as_dict(self) -> dict[str, Any]:
        return {"mean": round(self.mean, 6), "half_width": None if self.half is None else
                round(self.half, 6), "seeds": self.n, "significant": self.significant}


def interval(values: list[float]) -> Interval:
    """Mean and 95% t-interval half-width of per-seed values."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return Interval(mean, None, n)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return Interval(mean, float(student_t.ppf(0.975, n - 1)) * sd / math.sqrt(n), n)


def mean_of(values: list[Any]) -> Any:
    """The mean of per-seed metric values, leaf by leaf (dicts of numbers stay dicts; a leaf
    that is None in some seed is None)."""
    first = values[0]
    if isinstance(first, dict):
        return {k: mean_of([v.get(k) for v in values]) for k in first}
    if any(v is None for v in values) or isinstance(first, (str, bool)):
        return first if all(v == first for v in values) else None
    got = sum(float(v) for v in values) / len(values)
    return round(got, 4) if isinstance(first, float) else round(got, 2)


def _rel(ours: float, theirs: float) -> float | None:
    return ours / theirs - 1 if theirs else None


def compare(per_seed: list[dict[str, dict[str, Any]]], ours: str = "engine"
            ) -> dict[str, dict[str, dict[str, Any]]]:
    """Per baseline, per metric: the paired difference of `ours` against it over seeds."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name in per_seed[0]:
        if name == ours:
            continue
        got: dict[str, dict[str, Any]] = {}
        for metric in RELATIVE:
            diffs = [_rel(p[ours][metric], p[name][metric]) for p in per_seed]
            if all(d is not None for d in diffs):
                got[metric] = interval([d for d in diffs if d is not None]).as_dict()
        for metric in ABSOLUTE:
            got[metric] = interval([float(p[ours][metric] - p[name][metric])
                                    for p in per_seed]).as_dict()
        out[name] = got
    return out


def _pct(iv: dict[str, Any], what: str = "") -> str:
    mean, half = iv["mean"], iv["half_width"]
    side = "below" if mean < 0 else "above"
    spread = f" ± {half:.1%}" if half is not None else ""
    return f"{abs(mean):.1%}{spread} {side} {what}".rstrip()


def _verdict(iv: dict[str, Any]) -> str:
    if iv["half_width"] is None:
        return "one seed, no interval"
    return "significant" if iv["significant"] else "not significant"


def _count(iv: dict[str, Any], label: str) -> str:
    mean, half = iv["mean"], iv["half_width"]
    spread = f" ± {half:,.1f}" if half is not None else ""
    return f"{label} {mean:+,.1f}{spread}"


def headline(comparisons: dict[str, dict[str, dict[str, Any]]], seeds: int,
             bound_gap: dict[str, Any] | None, ours: str = "engine") -> list[str]:
    """One sentence per comparison, the answer first."""
    lines = []
    for name, got in comparisons.items():
        iv = got.get(HEADLINE)
        if iv is None:
            lines.append(f"Against {name}: no avoidable spend to compare (it spent nothing).")
            continue
        extras = ", ".join(_count(got[m], label) for m, label in (
            ("deadline_misses", "deadline misses"), ("rejected", "rejections"),
            ("unmet_gpu_hours", "unmet GPU-hours")))
        lines.append(f"At equal work over {seeds} seed{'s' if seeds != 1 else ''}, {ours}'s "
                     f"avoidable spend is {_pct(iv, name)} ({_verdict(iv)}); {extras}.")
    if bound_gap is not None:
        lines.append(f"{ours}'s avoidable spend is {_pct(bound_gap, 'the MILP lower bound')} "
                     f"({_verdict(bound_gap)}).")
    return lines
