"""Database.snapshot: a read in several statements sees one state of the store (team spend
sums bursts, pending bursts and fleets in several statements)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from placement.store.db import open_database, utcnow
from placement.store.migrate import upgrade
from placement.store.spend import team_spend
from placement.store.tables import BurstRow, WorkloadRow


def _burst(db_url: str, team: str, rate: float) -> None:
    db = open_database(db_url)
    try:
        with db.write() as s:
            wid = uuid.uuid4()
            s.add(WorkloadRow(id=wid, name=f"b-{wid.hex[:6]}", team=team, kind="training",
                              phase="placed", action="burst", document={"spec": {}}))
            s.flush()
            now = utcnow()
            s.add(BurstRow(workload_id=wid, stack=f"burst-{wid.hex}", team=team,
                           site="aws-us-east-1", status="ready",
                           usd_per_hour=rate, created_at=now - timedelta(hours=1),
                           ready_at=now - timedelta(hours=1), expires_at=now))
    finally:
        db.dispose()


def test_a_burst_committed_during_a_snapshot_is_not_seen_until_the_next(db_url: str) -> None:
    db = open_database(db_url)
    upgrade(db)
    try:
        _burst(db_url, "vision", 10.0)
        with db.snapshot() as s:
            before = team_spend(s, now=utcnow())
            _burst(db_url, "vision", 100.0)  # committed by another connection meanwhile
            again = team_spend(s, now=utcnow())
        assert round(before["vision"]) == round(again["vision"]) == 10
        with db.snapshot() as s:
            assert round(team_spend(s, now=utcnow())["vision"]) == 110
    finally:
        db.dispose()
