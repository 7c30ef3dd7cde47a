"""Spend: what each team's cloud bursts cost this month (for the budget filter), and for the
dashboard the decided placements' estimated totals and the bursts live now."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from placement.model.workload import SERVICE_KINDS
from placement.store.db import as_utc
from placement.store.tables import BurstRow, DecisionRow, EventRow, WorkloadRow
from placement.store.workloads import LIVE_PHASES, DecisionView, WorkloadView


def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    """The start of `now`'s calendar month (UTC) and of the next one."""
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return month, (month + timedelta(days=32)).replace(day=1)


def team_spend(s: Session, *, now: datetime) -> dict[str, float]:
    """Burst USD per team this calendar month (UTC): what ended bursts spent, and for live
    ones what they may still spend until they expire (so bursts decided together cannot all
    fit under one budget); a burst decided but not yet requested, its estimated total;
    fleets' cloud members (fleet_spend). A burst that began last month counts from the
    month's start. Several statements: read it in one snapshot (`Database.snapshot`), so that
    a burst row committed between them is neither missed nor counted twice."""
    month, _ = month_bounds(now)
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
    # A burst decided but not yet requested (the burst actuator adopts it on its next pass)
    # commits what the budget filter charged it: its decision's estimated total.
    live_bursts = select(BurstRow.workload_id).where(BurstRow.status.not_in(("failed",
                                                                             "destroyed")))
    for team, total, fleet_demand in s.execute(  # two small JSON values, not the documents
            select(WorkloadRow.team, DecisionRow.explanation["estimates"]["total_usd"],
                   DecisionRow.explanation["fleet"]["demand_rps"])
            .join(DecisionRow, DecisionRow.id == WorkloadRow.decision_id)
            .where(WorkloadRow.action == "burst", WorkloadRow.phase.in_(LIVE_PHASES),
                   WorkloadRow.id.not_in(live_bursts))):
        if fleet_demand is not None:
            continue  # a fleet has no burst row: fleet_spend counts it
        out[team] = out.get(team, 0.0) + committed({"estimates": {"total_usd": total}},
                                                   now=now)
    for team, usd in fleet_spend(s, month=month, now=now).items():
        out[team] = out.get(team, 0.0) + usd
    return out


# The events that take a fleet out of service (lifecycle transitions: their type is the phase)
FLEET_ENDS = ("succeeded", "failed", "cancelled", "released")


def _cloud_usd_h(fleet: dict[str, Any] | None) -> float:
    if not fleet:
        return 0.0
    return sum(float(m["usd_per_hour"]) for m in fleet.get("members", [])
               if m.get("capacity") != "onprem")


def committed(decision: Mapping[str, Any], *, now: datetime) -> float:
    """What a new burst decision commits of its team's burst budget this month: a fleet's
    cloud $/h to the month's end, else the estimated total the budget filter charged it."""
    fleet = decision.get("fleet")
    if fleet:
        return committed_ahead(fleet, now=now)
    return float((decision.get("estimates") or {}).get("total_usd") or 0.0)


def committed_ahead(fleet: dict[str, Any], *, now: datetime) -> float:
    """What a live fleet's decision commits from `now` to the month's end (its cloud $/h):
    the part of its team's spend that re-planning it gives back to it."""
    _, month_end = month_bounds(now)
    return _cloud_usd_h(fleet) * max(0.0, (month_end - now).total_seconds() / 3600)


def fleet_spend(s: Session, *, month: datetime, now: datetime) -> dict[str, float]:
    """Cloud USD per team this month of fleets' cloud members, which run on node pools their
    sites have (no burst row tracks them). Each of a fleet's decisions (the first and every
    rescale) bills its cloud members' $/h from when it was made until the next decision or
    the event that ended the fleet; the live fleet's last decision commits its $/h to the
    month's end (as a live burst commits to its expiry), so fleets decided together cannot all
    fit under one budget. Only the part inside this month counts."""
    _, month_end = month_bounds(month)
    services = (select(WorkloadRow.id)  # any action now: a fleet may have been requeued
                .where(WorkloadRow.kind.in_(SERVICE_KINDS),
                       or_(WorkloadRow.phase.in_(LIVE_PHASES), WorkloadRow.updated_at >= month))
                .subquery())
    fleets = {wid: (team, phase, as_utc(updated)) for wid, team, phase, updated in s.execute(
        select(WorkloadRow.id, WorkloadRow.team, WorkloadRow.phase, WorkloadRow.updated_at)
        .join(services, services.c.id == WorkloadRow.id))}
    if not fleets:
        return {}
    decisions: dict[uuid.UUID, list[tuple[datetime, float]]] = {}
    for wid, fleet, at in s.execute(
            select(DecisionRow.workload_id, DecisionRow.explanation["fleet"],
                   DecisionRow.created_at)
            .join(services, services.c.id == DecisionRow.workload_id)
            .order_by(DecisionRow.workload_id, DecisionRow.created_at, DecisionRow.id)):
        decisions.setdefault(wid, []).append((as_utc(at) or now, _cloud_usd_h(fleet)))
    ends: dict[uuid.UUID, list[datetime]] = {}
    for wid, at in s.execute(select(EventRow.workload_id, EventRow.at)
                             .join(services, services.c.id == EventRow.workload_id)
                             .where(EventRow.type.in_(FLEET_ENDS))
                             .order_by(EventRow.at)):
        ends.setdefault(wid, []).append(as_utc(at) or now)
    out: dict[str, float] = {}
    for wid, steps in decisions.items():
        team, phase, updated = fleets[wid]
        for i, (start, rate) in enumerate(steps):
            if rate <= 0:
                continue
            stop = steps[i + 1][0] if i + 1 < len(steps) else None
            ended = next((e for e in ends.get(wid, []) if e >= start), None)
            if ended is not None and (stop is None or ended < stop):
                stop = ended
            if stop is None:  # the last decision: live, to the month's end; else its last change
                stop = month_end if phase in LIVE_PHASES else (updated or now)
            hours = (min(stop, month_end) - max(start, month)).total_seconds() / 3600
            if hours > 0:
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
