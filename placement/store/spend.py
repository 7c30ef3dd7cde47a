"""Spend: what each team's cloud bursts cost this month (for the budget filter), and for the
dashboard the decided placements' estimated totals and the bursts live now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from placement.model.workload import SERVICE_KINDS
from placement.store.db import as_utc
from placement.store.tables import BurstRow, DecisionRow, WorkloadRow
from placement.store.workloads import LIVE_PHASES, DecisionView, WorkloadView


def team_spend(s: Session, *, now: datetime) -> dict[str, float]:
    """Burst USD per team this calendar month (UTC): what ended bursts spent, and for live
    ones what they may still spend until they expire (so bursts decided together cannot all
    fit under one budget); a live fleet's cloud members until the month ends. A burst that
    began last month counts from the month's start."""
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    out: dict[str, float] = {}
    rows = s.execute(select(BurstRow.team, BurstRow.status, BurstRow.usd_per_hour,
                            BurstRow.ready_at, BurstRow.created_at, BurstRow.ended_at,
                            BurstRow.expires_at)
                     .where(or_(BurstRow.ended_at.is_(None), BurstRow.ended_at >= month)))
    for team, status, rate, ready, created, ended, expires in rows:
        start = max(as_utc(ready) or as_utc(created) or now, month)
        stop = as_utc(ended) if status in ("failed", "destroyed") else as_utc(expires)
        hours = max(0.0, ((stop or now) - start).total_seconds() / 3600)
        if status == "failed" and ready is None:
            hours = 0.0  # never ran
        out[team] = out.get(team, 0.0) + rate * hours
    # A fleet's cloud members run on node pools their sites have (no burst row): a live fleet
    # commits its cloud members' $/h from its decision to the end of the month. What an ended
    # fleet spent is not recorded (no burst row tracks it), so it counts no more.
    month_end = (month + timedelta(days=32)).replace(day=1)
    for team, explanation, decided in s.execute(
            select(WorkloadRow.team, DecisionRow.explanation, DecisionRow.created_at)
            .join(DecisionRow, DecisionRow.id == WorkloadRow.decision_id)
            .where(WorkloadRow.kind.in_(SERVICE_KINDS), WorkloadRow.action == "burst",
                   WorkloadRow.phase.in_(LIVE_PHASES))):
        fleet = (explanation or {}).get("fleet")
        if not fleet:
            continue
        rate = sum(float(m["usd_per_hour"]) for m in fleet["members"]
                   if m["capacity"] != "onprem")
        hours = max(0.0, (month_end - max(as_utc(decided) or now, month)).total_seconds()
                    / 3600)
        out[team] = out.get(team, 0.0) + rate * hours
    return out


@dataclass(frozen=True)
class Totals:
    """Estimated USD and egress GB of the placements decided in a window."""

    placements: int
    usd: float
    egress_gb: float


def estimate_totals(s: Session, *, since: datetime, team: str | None) -> Totals:
    """Sum the stored decisions' estimates (place and burst) since `since`, in SQL."""
    est = DecisionRow.explanation["estimates"]
    q = (select(func.count(DecisionRow.id),
                func.coalesce(func.sum(est["total_usd"].as_float()), 0.0),
                func.coalesce(func.sum(est["egress_gb"].as_float()), 0.0))
         .join(WorkloadRow, WorkloadRow.id == DecisionRow.workload_id)
         .where(DecisionRow.action.in_(("place", "burst")), DecisionRow.created_at >= since))
    if team is not None:
        q = q.where(WorkloadRow.team == team)
    n, usd, gb = s.execute(q).one()
    return Totals(int(n), float(usd), float(gb))


def active_bursts(s: Session, *, team: str | None
                  ) -> list[tuple[WorkloadView, DecisionView]]:
    """Workloads running on burst (cloud) capacity now, with the decision that put them there."""
    q = (select(WorkloadRow, DecisionRow).join(DecisionRow,
                                               DecisionRow.id == WorkloadRow.decision_id)
         .where(WorkloadRow.action == "burst", WorkloadRow.phase.in_(LIVE_PHASES))
         .order_by(WorkloadRow.created_at.desc()))
    if team is not None:
        q = q.where(WorkloadRow.team == team)
    return [(WorkloadView.of(w), DecisionView.of(d)) for w, d in s.execute(q).all()]
