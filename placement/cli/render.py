"""Readable terminal rendering of decisions (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from placement.model import Candidate, Decision
from placement.model.decision import Fleet

_STYLE = {"place": "green", "burst": "cyan", "queue": "yellow", "reject": "red"}


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def _cell(c: Candidate, name: str) -> str:
    s = c.criteria.get(name)
    if s is None or s.raw is None or s.weight == 0:
        return "-"
    score = "" if s.score is None else f"{s.score:.0f} "
    raw = f"${s.raw:,.0f}" if s.unit == "USD" else f"{s.raw:.3g} {s.unit}"
    return f"{score}[dim]({raw})[/dim]"


def decision_table(d: Decision) -> Table:
    """Ranked candidates: weighted score, per-criterion score (raw value) and $ total."""
    table = Table(title=f"ranked candidates of {d.workload}", title_justify="left")
    for col in ("#", "site", "capacity", "score", "latency", "data", "cost", "wait", "$ total"):
        table.add_column(col, no_wrap=col in ("#", "site", "capacity"))
    for c in d.candidates:
        if c.rank is None:
            continue
        mark = " [bold green]<- chosen[/]" if c.rank == 1 and d.site else ""
        table.add_row(
            str(c.rank), c.site + mark, f"{c.capacity} {c.gpu_type}", _fmt(c.total_score),
            _cell(c, "latency"), _cell(c, "data_gravity"), _cell(c, "cost"), _cell(c, "wait"),
            _fmt(c.estimates.total_usd if c.estimates else None, ",.0f"),
        )
    return table


def fleet_tables(workload: str, f: Fleet) -> tuple[Table, Table]:
    """A fleet's members (GPUs, replicas, load, $/h) and its routing table (where each client
    location's requests go, at what p99, and why)."""
    members = Table(title=f"fleet of {workload}", title_justify="left")
    for col in ("site", "GPU", "capacity", "replicas", "routed rps", "utilization", "$/h"):
        members.add_column(col, no_wrap=True, justify="left" if col in ("site", "GPU",
                                                                         "capacity") else "right")
    for m in f.members:
        members.add_row(m.site, f"{m.gpus} {m.gpu_type}", m.capacity, str(m.replicas),
                        f"{m.routed_rps:,.1f}", f"{m.utilization:.0%}",
                        f"{m.usd_per_hour:,.2f}")
    routing = Table(title="routing", title_justify="left")
    for col in ("location", "demand rps", "site weight p99", "why"):
        routing.add_column(col, no_wrap=col != "why")
    for r in f.routing:
        targets = "\n".join(f"{t.site} {t.weight:.0%} {t.p99_latency_ms:.0f} ms"
                             for t in r.targets) or "-"
        routing.add_row(r.location, f"{r.demand_rps:,.1f}", targets, r.why)
    return members, routing


def rejected_lines(d: Decision) -> list[str]:
    """One line per (site, filter, reason): why each rejected site lost."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for c in d.candidates:
        if c.rank is not None or c.rejected_by is None:
            continue
        what = f"{c.capacity} {c.gpu_type}" if c.capacity else "-"
        groups.setdefault((c.site, c.rejected_by, c.reason or ""), []).append(what)
    return [
        f"  [bold]{site}[/] ({', '.join(kinds)}) [red]{flt}[/]: {reason}"
        for (site, flt, reason), kinds in groups.items()
    ]


def print_decision(d: Decision, console: Console | None = None) -> None:
    """Print a decision: headline, estimates, then the candidate table."""
    out = console or Console(width=max(Console().width, 132))
    style = _STYLE.get(d.action, "white")
    out.rule(f"[bold]{d.workload}[/bold]")
    out.print(f"[{style} bold]{d.action.upper()}[/] {d.summary}")
    if d.estimates:
        e = d.estimates
        out.print(
            f"  estimates: p99 {_fmt(e.p99_latency_ms)} ms | ${e.total_usd:,.2f} total "
            f"(${e.gpu_usd:,.2f} GPU + ${e.egress_usd:,.2f} egress for {e.egress_gb:,.1f} GB) | "
            f"transfer {e.transfer_hours:.2f} h | wait {_fmt(e.wait_hours, '.2f')} h"
        )
        if e.sources:
            out.print("  sources: " + " | ".join(f"{k.replace('_', ' ')} {v}"
                                                  for k, v in e.sources.items()), highlight=False)
    rules = ", ".join(d.constraint_rules) or "none"
    out.print(f"  rule: {d.rule or 'defaults'} | constraints from: {rules} | "
              f"policy {d.policy_version}")
    if d.fleet is not None:
        f = d.fleet
        out.print(f"  fleet: {len(f.members)} sites, ${f.usd_per_hour:,.2f}/h for "
                  f"{f.demand_rps:,.1f} req/s | plan: {f.method} | rule: {f.rule or 'defaults'}",
                  highlight=False)
        for table in fleet_tables(d.workload, f):
            out.print(table)
    if any(c.rank is not None for c in d.candidates):
        out.print(decision_table(d))
    lines = rejected_lines(d)
    if lines:
        out.print("[bold]rejected:[/]")
        for line in lines:
            out.print(line, highlight=False)
