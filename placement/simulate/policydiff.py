"""Dry-run a policy change: decide the same workloads under two bundles and say what moves.

Used by `placement policy diff BASE HEAD --workloads ...` in a pull request: which placements
change, from where to where, why (rule, weights, a filter that now rejects the old choice, the
criteria on which the new choice wins) and the $, egress and latency-SLO deltas.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from placement.engine.offline import engine_for
from placement.errors import PlacementError
from placement.model import Candidate, Decision, Reservation, Workload
from placement.policy.loader import Bundle

Held = Callable[[Workload], list[Reservation]]


@dataclass
class Side:
    """One workload's decision under one bundle (or why it could not be decided)."""

    decision: Decision | None
    error: str | None = None

    @property
    def key(self) -> tuple[Any, ...]:
        d = self.decision
        if d is None:
            return ("error", self.error)
        return (d.action, d.site, d.gpu_type, d.capacity)

    def label(self) -> str:
        d = self.decision
        if d is None:
            return f"error: {self.error}"
        if d.site is None:
            return d.action
        return f"{d.action} {d.site} ({d.capacity} {d.gpu_type})"

    def value(self, name: str) -> float | None:
        est = self.decision.estimates if self.decision else None
        return getattr(est, name) if est is not None else None


@dataclass
class Change:
    workload: Workload
    base: Side
    head: Side
    why: list[str] = field(default_factory=list)

    @property
    def moved(self) -> bool:
        return self.base.key != self.head.key

    def delta(self, name: str) -> float | None:
        a, b = self.base.value(name), self.head.value(name)
        return None if a is None or b is None else round(b - a, 4)

    def slo_met(self, side: Side) -> bool | None:
        lat = self.workload.spec.latency
        p99 = side.value("p99_latency_ms")
        if lat is None or p99 is None:
            return None
        return p99 <= lat.p99_slo_ms


@dataclass
class Report:
    base_version: str
    head_version: str
    changes: list[Change]

    @property
    def moved(self) -> list[Change]:
        return [c for c in self.changes if c.moved]

    def total(self, name: str) -> float:
        return round(sum(d for c in self.changes if (d := c.delta(name)) is not None), 2)

    def slo_count(self, side: str) -> tuple[int, int]:
        met = [c.slo_met(getattr(c, side)) for c in self.changes]
        known = [m for m in met if m is not None]
        return sum(known), len(known)


def _decide(bundle: Bundle, wl: Workload, held: Held | None) -> Side:
    try:
        engine = engine_for(bundle, held(wl) if held else None)
        return Side(engine.place(wl))
    except PlacementError as exc:
        return Side(None, str(exc))


def _find(decision: Decision, like: Decision) -> Candidate | None:
    for c in decision.candidates:
        if (c.site, c.gpu_type, c.capacity) == (like.site, like.gpu_type, like.capacity):
            return c
    return None


def explain_change(base: Side, head: Side) -> list[str]:
    """Why the placement moved: rule and weights, the old choice now rejected, or the criteria
    on which the new choice beats the old one under the head policy."""
    b, h = base.decision, head.decision
    if b is None or h is None:
        return [f"{'base' if b is None else 'head'}: {(base if b is None else head).error}"]
    why = []
    if b.rule != h.rule:
        why.append(f"rule {b.rule} -> {h.rule}")
    if b.constraint_rules != h.constraint_rules:
        why.append(f"constraints from {b.constraint_rules or 'none'} -> "
                   f"{h.constraint_rules or 'none'}")
    bw = _weights(b)
    for name, w in _weights(h).items():
        if name in bw and bw[name] != w:
            why.append(f"weight {name} {bw[name]:g} -> {w:g}")
    if b.site is not None and h.site is not None:
        old = _find(h, b)
        new = _find(h, h)
        if old is None:
            why.append(f"{b.site} ({b.capacity} {b.gpu_type}) is no longer a candidate")
        elif not old.feasible:
            why.append(f"{b.site} now rejected by {old.rejected_by}: {old.reason}")
        elif new is not None:
            why += _criteria_won(new, old)
        before = _find(b, h)
        if before is not None and not before.feasible:
            why.append(f"{h.site} was rejected by {before.rejected_by} under base: "
                       f"{before.reason}")
    elif b.action != h.action:
        why.append(f"{b.action} -> {h.action}: {h.summary}")
    return why or [h.summary]


def _weights(d: Decision) -> dict[str, float]:
    for c in d.candidates:
        if c.criteria:
            return {k: v.weight for k, v in c.criteria.items()}
    return {}


def _criteria_won(new: Candidate, old: Candidate) -> list[str]:
    out = []
    for name, crit in new.criteria.items():
        other = old.criteria.get(name)
        if other is None or crit.weight <= 0 or crit.score is None or other.score is None:
            continue
        gap = (crit.score - other.score) * crit.weight
        if abs(gap) >= 0.05:
            side = f"{new.site} wins" if gap > 0 else f"{old.site} wins"
            out.append(f"{name}: {side} ({crit.score:.1f} vs {other.score:.1f}, "
                       f"weight {crit.weight:g})")
    return out


def diff(base: Bundle, head: Bundle, workloads: list[Workload],
         held: Held | None = None) -> Report:
    """Decide every workload under both bundles (each against the same reservations)."""
    changes = []
    for wl in workloads:
        a, b = _decide(base, wl, held), _decide(head, wl, held)
        change = Change(wl, a, b)
        if change.moved:
            change.why = explain_change(a, b)
        changes.append(change)
    return Report(base.policy_version, head.policy_version, changes)


def _money(v: float | None) -> str:
    return "–" if v is None else f"{v:+,.2f}"


def _num(v: float | None, unit: str = "") -> str:
    return "–" if v is None else f"{v:+,.1f}{unit}"


def _slo(change: Change) -> str:
    lat = change.workload.spec.latency
    if lat is None:
        return "–"
    b, h = change.base.value("p99_latency_ms"), change.head.value("p99_latency_ms")
    mark = {True: "met", False: "missed", None: "?"}
    return (f"{b if b is not None else '?'} -> {h if h is not None else '?'} ms "
            f"(SLO {lat.p99_slo_ms:g}: {mark[change.slo_met(change.base)]} -> "
            f"{mark[change.slo_met(change.head)]})")


def to_markdown(report: Report) -> str:
    moved = report.moved
    lines = [f"### Placement diff: `{report.base_version}` -> `{report.head_version}`", ""]
    if not moved:
        lines.append(f"No placement changes: {len(report.changes)} workload(s) decided the same "
                     "under both bundles.")
        lines += _unchanged(report)
        return "\n".join(lines) + "\n"
    met_b, n = report.slo_count("base")
    met_h, _ = report.slo_count("head")
    lines += [f"**{len(moved)} of {len(report.changes)} workload(s) change placement.** "
              f"Estimated cost {_money(report.total('total_usd'))} USD, egress "
              f"{_num(report.total('egress_gb'), ' GB')}; latency SLOs met: {met_b}/{n} -> "
              f"{met_h}/{n}.", "",
              "| Workload | Base | Head | Δ USD | Δ egress GB | p99 latency |",
              "|---|---|---|---:|---:|---|"]
    for c in moved:
        lines.append(f"| {c.workload.name} | {c.base.label()} | {c.head.label()} | "
                     f"{_money(c.delta('total_usd'))} | {_num(c.delta('egress_gb'))} | "
                     f"{_slo(c)} |")
    lines += ["", "<details><summary>Why each placement changes</summary>", ""]
    for c in moved:
        lines.append(f"- **{c.workload.name}**: " + "; ".join(c.why))
    lines += ["", "</details>"]
    lines += _unchanged(report)
    return "\n".join(lines) + "\n"


def _unchanged(report: Report) -> list[str]:
    lines = []
    failed = [c for c in report.changes if not c.moved and c.base.decision is None]
    same = [c.workload.name for c in report.changes if not c.moved and c.base.decision]
    if same:
        lines += ["", f"Unchanged ({len(same)}): " + ", ".join(same)]
    if failed:
        lines += ["", f"Could not be decided under either bundle ({len(failed)}):"]
        lines += [f"- {c.workload.name}: {c.base.error}" for c in failed]
    return lines


def _side_json(change: Change, side: Side) -> dict[str, Any]:
    d = side.decision
    return {"action": d.action if d else None, "site": d.site if d else None,
            "gpu_type": d.gpu_type if d else None, "capacity": d.capacity if d else None,
            "rule": d.rule if d else None, "error": side.error,
            "total_usd": side.value("total_usd"), "egress_gb": side.value("egress_gb"),
            "p99_latency_ms": side.value("p99_latency_ms"), "slo_met": change.slo_met(side)}


def to_json(report: Report) -> dict[str, Any]:
    met_b, n = report.slo_count("base")
    met_h, _ = report.slo_count("head")
    return {
        "base_version": report.base_version, "head_version": report.head_version,
        "workloads": [{"name": c.workload.name, "changed": c.moved, "why": c.why,
                       "base": _side_json(c, c.base), "head": _side_json(c, c.head),
                       "delta": {"total_usd": c.delta("total_usd"),
                                 "egress_gb": c.delta("egress_gb"),
                                 "p99_latency_ms": c.delta("p99_latency_ms")}}
                      for c in report.changes],
        "summary": {"workloads": len(report.changes), "changed": len(report.moved),
                    "undecidable": sum(1 for c in report.changes
                                       if c.base.decision is None and c.head.decision is None),
                    "delta_total_usd": report.total("total_usd"),
                    "delta_egress_gb": report.total("egress_gb"),
                    "slo_met_base": met_b, "slo_met_head": met_h, "with_slo": n},
    }


def from_store(url: str) -> tuple[list[Workload], Held]:
    """The store's live workloads (placed, queued, running) and, for each, the GPUs every other
    workload holds: each is decided as if submitted now beside the others."""
    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    from placement.store.db import as_utc, is_sqlite, normalize_url, open_database, utcnow
    from placement.store.workloads import held_gpus, in_phases

    try:
        url = normalize_url(url)
        if is_sqlite(url) and ":memory:" not in url:
            path = url.split("///", 1)[-1]
            if not Path(path).is_file():
                raise PlacementError(f"--from-store: no SQLite database at {path}")
        db = open_database(url)
        try:
            with db.read() as s:
                rows = in_phases(s, phases=("placed", "queued", "running"))
                held = held_gpus(s)
        finally:
            db.dispose()
    except (SQLAlchemyError, ValueError) as exc:
        raise PlacementError(f"--from-store: cannot read the store at {url}: "
                             f"{str(exc).splitlines()[0]}") from exc
    now = utcnow()
    workloads, owner = [], {}
    for row in rows:
        try:
            wl = Workload.model_validate(row.document)
        except ValidationError as exc:
            raise PlacementError(f"--from-store: stored workload {row.name} ({row.id}) no "
                                 f"longer validates: {exc.errors()[0]['msg']}") from exc
        workloads.append(wl)
        owner[id(wl)] = row.id
    reservations = []
    for h in held:
        end_utc = as_utc(h.expected_end_at)
        hours = None if end_utc is None else max(0.0, (end_utc - now).total_seconds() / 3600)
        reservations.append((h.workload_id, Reservation(site=h.site, gpu_type=h.gpu_type,
                                                        count=h.count, remaining_hours=hours)))

    def others(wl: Workload) -> list[Reservation]:
        mine = owner.get(id(wl))
        return [r for wid, r in reservations if wid != mine]

    return workloads, others
