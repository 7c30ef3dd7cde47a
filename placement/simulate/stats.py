"""Many seeds into one answer: each metric's mean and 95% interval, paired comparisons, and the
headline sentences that lead the report.

A comparison is paired by seed (both policies replay the same workloads and the same spot
draws for a seed). For money, the per-seed ratio ours / theirs, averaged as a geometric mean
(Student's t at 95% on the log-ratios, turned back into a percentage: a seed where the
baseline spent little does not dominate, and the interval is not symmetric); where some seed
has $0 on either side, the per-seed difference in $ instead. For counts (deadline misses,
rejections, unmet GPU-hours), the per-seed difference. A difference is significant when its
interval leaves out no difference. One seed gives a value without an interval (never
"significant"). Intervals are per comparison, not adjusted for the several made at once.
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


def ratio_interval(ours: list[float], theirs: list[float]) -> dict[str, Any]:
    """The paired relative difference ours / theirs - 1 over seeds (see the module's
    docstring): geometric, or in $ where a seed has $0 on either side."""
    if all(o > 0 and t > 0 for o, t in zip(ours, theirs, strict=True)):
        iv = interval([math.log(o / t) for o, t in zip(ours, theirs, strict=True)])
        low = None if iv.half is None else math.exp(iv.mean - iv.half) - 1
        high = None if iv.half is None else math.exp(iv.mean + iv.half) - 1
        return {"mean": round(math.exp(iv.mean) - 1, 6),
                "low": None if low is None else round(low, 6),
                "high": None if high is None else round(high, 6), "seeds": iv.n,
                "significant": iv.significant, "relative": True}
    d = interval([o - t for o, t in zip(ours, theirs, strict=True)])
    out = d.as_dict()
    out["relative"] = False
    return out


def compare(per_seed: list[dict[str, dict[str, Any]]], ours: str = "engine"
            ) -> dict[str, dict[str, dict[str, Any]]]:
    """Per baseline, per metric: the paired difference of `ours` against it over seeds."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name in per_seed[0]:
        if name == ours:
            continue
        got: dict[str, dict[str, Any]] = {}
        for metric in RELATIVE:
            got[metric] = ratio_interval([float(p[ours][metric]) for p in per_seed],
                                         [float(p[name][metric]) for p in per_seed])
        for metric in ABSOLUTE:
            got[metric] = interval([float(p[ours][metric] - p[name][metric])
                                    for p in per_seed]).as_dict()
        out[name] = got
    return out


def _side(x: float) -> str:
    return f"{abs(x):.1%} {'below' if x < 0 else 'above'}"


def _pct(iv: dict[str, Any], what: str) -> str:
    """A relative difference in words, with its interval."""
    if not iv.get("relative", True):
        spread = f" ± ${iv['half_width']:,.0f}" if iv["half_width"] is not None else ""
        return f"${iv['mean']:+,.0f}{spread} against {what} (in $: a seed spent $0)"
    text = f"{_side(iv['mean'])} {what}"
    if iv.get("low") is None:
        return text
    low, high = iv["low"], iv["high"]
    span = (f"{_side(low)} to {_side(high)}" if (low < 0) == (high < 0) else
            f"{abs(low):.1%} below to {abs(high):.1%} above")
    return f"{text} (95% interval {span})"


def _verdict(iv: dict[str, Any]) -> str:
    if iv.get("half_width") is None and iv.get("low") is None:
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
        iv = got[HEADLINE]
        extras = ", ".join(_count(got[m], label) for m, label in (
            ("deadline_misses", "deadline misses"), ("rejected", "rejections"),
            ("unmet_gpu_hours", "unmet GPU-hours")))
        lines.append(f"At equal work over {seeds} seed{'s' if seeds != 1 else ''}, {ours}'s "
                     f"avoidable spend is {_pct(iv, name)}, {_verdict(iv)}; {extras}.")
    if bound_gap is not None:
        lines.append(f"{ours}'s avoidable spend is {_pct(bound_gap, 'the MILP lower bound')}.")
    return lines
