"""Burst spend: what each team's cloud bursts cost this month, for the budget filter."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from placement.store.db import as_utc
from placement.store.tables import BurstRow


def team_spend(s: Session, *, now: datetime) -> dict[str, float]:
    """Burst USD per team this calendar month (UTC): what ended bursts spent, and for live
    ones what they may still spend until they expire (so bursts decided together cannot all
    fit under one budget). A burst that began last month counts from the month's start."""
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
    return out
