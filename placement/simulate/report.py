"""The run's report: a terminal table, and report.html with PNG plots beside summary.json."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

ROWS = [  # metric, label, format
    ("avoidable_usd", "avoidable $ (cloud + egress + unmet work)", "{:,.0f}"),
    ("gap_to_bound_avoidable", "avoidable $ over the bound", "{:+.1%}"),
    ("used_usd", "used $ (on-prem used + avoidable)", "{:,.0f}"),
    ("gap_to_bound_used", "used $ over the bound", "{:+.1%}"),
    ("fleet_usd", "fleet $ (whole fleet + avoidable)", "{:,.0f}"),
    ("gap_to_bound_fleet", "fleet $ over the bound", "{:+.1%}"),
    ("onprem_amortized_usd", "on-prem amortized $ (used)", "{:,.0f}"),
    ("cloud_gpu_usd", "cloud GPU $", "{:,.0f}"),
    ("egress_usd", "egress $", "{:,.0f}"),
    ("egress_gb", "egress GB", "{:,.0f}"),
    ("unmet_usd", "unmet work charged $", "{:,.0f}"),
    ("unmet_gpu_hours", "unmet GPU-hours", "{:,.1f}"),
    ("rejected", "rejected", "{:,.0f}"),
    ("rejected_gpu_hours", "rejected GPU-hours", "{:,.1f}"),
    ("deadline_misses", "deadline misses", "{:,.0f}"),
    ("slo_attainment", "inference SLO attainment", "{:.2%}"),
    ("job_wait_p50_h", "job wait p50 (h)", "{:.2f}"),
    ("job_wait_p99_h", "job wait p99 (h)", "{:.2f}"),
    ("gpu_hours_run", "GPU-hours run", "{:,.0f}"),
    ("burst_gpu_hours", "burst GPU-hours", "{:,.0f}"),
    ("spot_interruptions", "spot interruptions", "{:,.0f}"),
    ("onprem_idle_usd", "idle on-prem $", "{:,.0f}"),
]


def cell(value: Any, fmt: str) -> str:
    if value is None:
        return "n/a"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def table_rows(summary: dict[str, Any]) -> list[list[str]]:
    """Rows of label + one cell per policy (the table the terminal and the HTML show)."""
    pols = summary["policies"]
    ivs = summary.get("intervals", {})

    def shown(name: str, key: str, fmt: str) -> str:
        text = cell(pols[name].get(key), fmt)
        half = ivs.get(name, {}).get(key, {}).get("half_width")
        return text if half is None else f"{text} ± {cell(half, fmt.replace('+', ''))}"

    rows = [[label, *(shown(n, key, fmt) for n in pols)] for key, label, fmt in ROWS]
    sites = sorted({s for m in pols.values() for s in m["utilization"]})
    for s in sites:
        rows.append([f"utilization {s}",
                     *(cell(m["utilization"].get(s), "{:.1%}") for m in pols.values())])
    for kind in ("onprem", "on_demand", "spot"):
        rows.append([f"placed {kind}", *(str(m["placements"][kind]) for m in pols.values())])
    return rows


def bound_text(summary: dict[str, Any]) -> str:
    """The MILP lower bounds in words."""
    bounds = summary.get("bound")
    if not bounds:
        return "MILP lower bound: not computed"
    parts = [f"{cell(bounds[v].get('usd'), '${:,.0f}')} {v} ({bounds[v].get('status')})"
             for v in ("avoidable", "used", "fleet") if v in bounds]
    return "MILP lower bound (every policy, all work, any start after arrival): " + \
        ", ".join(parts)


def rich_table(summary: dict[str, Any]) -> Any:
    """The comparison as a rich Table."""
    from rich.table import Table

    caption = bound_text(summary)
    seeds = len(summary.get("seeds", [0]))
    t = Table(title=f"{summary['trace']}: {summary['workloads']:,} workloads, {seeds} seed"
              f"{'s' if seeds != 1 else ''}", caption=caption)
    t.add_column("metric")
    for name in summary["policies"]:
        t.add_column(name, justify="right")
    for row in table_rows(summary):
        t.add_row(*row)
    return t


def _plots(out: Path, summary: dict[str, Any], series: dict[str, Any],
           edges: np.ndarray) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pols = summary["policies"]
    names = list(pols)
    mid = (edges[:-1] + edges[1:]) / 2
    made: list[tuple[str, str]] = []

    fig, ax = plt.subplots(figsize=(8, 4))
    ivs = summary.get("intervals", {})
    halves = [ivs.get(n, {}).get("avoidable_usd", {}).get("half_width") or 0.0 for n in names]
    ax.bar(names, [pols[n]["avoidable_usd"] for n in names], yerr=halves, capsize=4)
    ax.set(ylabel="$ (cloud GPU + egress + unmet work)",
           title="Avoidable spend at equal work (95% interval over seeds)")
    ax.tick_params(axis="x", labelrotation=20)
    made.append(("avoidable_spend.png", "Avoidable spend by policy"))
    fig.savefig(out / made[-1][0], dpi=100, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4))
    for name in names:
        ax.plot(mid, series[name]["cumulative_usd"], label=name)
    ax.set(xlabel="hours from the first arrival", ylabel="cumulative $ (GPU + egress)",
           title="Cost over time (first seed)")
    ax.legend()
    made.append(("cost_over_time.png", "Cost over time by policy"))
    fig.savefig(out / made[-1][0], dpi=100, bbox_inches="tight")
    plt.close(fig)

    sites = sorted({s for n in names for s in series[n]["utilization"]})
    fig, axes = plt.subplots(len(sites) or 1, 1, figsize=(8, 2.2 * max(len(sites), 1)),
                             sharex=True, squeeze=False)
    for ax, s in zip(axes[:, 0], sites, strict=False):
        for name in names:
            ax.plot(mid, series[name]["utilization"].get(s, []) or np.zeros(len(mid)),
                    label=name)
        ax.set(ylabel="GPU util.", title=s, ylim=(0, 1.05))
    axes[0, 0].legend(fontsize="small")
    axes[-1, 0].set_xlabel("hours from the first arrival")
    made.append(("utilization.png", "Utilization per on-prem site"))
    fig.savefig(out / made[-1][0], dpi=100, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4))
    bottom = np.zeros(len(names))
    for kind in ("onprem", "on_demand", "spot"):
        vals = np.array([pols[n]["placements"][kind] for n in names], dtype=float)
        ax.bar(names, vals, bottom=bottom, label=kind)
        bottom += vals
    ax.bar(names, [pols[n]["rejected"] for n in names], bottom=bottom, label="rejected")
    ax.set(ylabel="workloads", title="Placements by site kind")
    ax.legend()
    made.append(("placements.png", "Placements by site kind"))
    fig.savefig(out / made[-1][0], dpi=100, bbox_inches="tight")
    plt.close(fig)

    slo = [pols[n]["slo_attainment"] for n in names]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    if any(v is not None for v in slo):
        ax.bar(names, [v or 0.0 for v in slo])
        ax.axhline(0.99, color="grey", linestyle="--", label="99%")
        ax.set(ylim=(0, 1.02), ylabel="requests within the p99 SLO")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no inference or RAG services in this trace", ha="center")
        ax.set_axis_off()
    ax.set_title("Inference SLO attainment")
    made.append(("slo_attainment.png", "Inference SLO attainment"))
    fig.savefig(out / made[-1][0], dpi=100, bbox_inches="tight")
    plt.close(fig)
    return made


def write_report(out: Path, summary: dict[str, Any], series: dict[str, Any],
                 edges: np.ndarray) -> Path:
    """report.html and its PNGs in `out`."""
    images = _plots(out, summary, series, edges)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in summary["policies"])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in table_rows(summary))
    inputs = html.escape(", ".join(f"{k}={v}" for k, v in summary["inputs"].items()))
    figs = "".join(f'<figure><img src="{f}" alt="{html.escape(t)}"><figcaption>'
                   f"{html.escape(t)}</figcaption></figure>" for f, t in images)
    lead = "".join(f"<p><strong>{html.escape(line)}</strong></p>"
                   for line in summary.get("headline", []))
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Placement what-if report</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}
</style></head><body>
<h1>What-if replay of {html.escape(summary['trace'])}</h1>
{lead}
<p>{summary['workloads']:,} workloads ({html.escape(summary.get('format', ''))}).
{html.escape(bound_text(summary))}.</p>
<table><thead><tr><th>metric</th>{head}</tr></thead><tbody>{body}</tbody></table>
<p><small>Inputs: {inputs}</small></p>
{figs}
</body></html>
"""
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
