"""What a job run took: its hours and USD billed, its workload ended, actuals against estimates."""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from placement.actuators.jobs.status import Observation
from placement.control.lifecycle import active_reservations, event, free_gpus
from placement.control.runtime import Runtime
from placement.store.db import as_utc
from placement.store.jobs import JobRunRecord, get_run
from placement.store.work import WorkloadRecord


def end_workload(s: Session, w: WorkloadRecord, final: str, message: str) -> int:
    """Move the workload to its final phase and free its GPUs, in the caller's transaction;
    a workload already ended (cancelled meanwhile) is left as it is."""
    if w.phase not in ("placed", "running"):
        return 0
    if w.phase == "placed":  # it ended before a pass saw it run
        event(s, w.id, "running", "the Job started")
    held = active_reservations(s, w)
    w.phase = final
    event(s, w.id, final, message, gpus_freed=sum(r.count for r in held))
    return free_gpus(s, held)


def finish(jrow: JobRunRecord, seen: Observation, now: datetime) -> None:
    """The run's final status and reason, its last hours billed."""
    jrow.status = "succeeded" if seen.state == "succeeded" else "failed"
    jrow.message = seen.reason
    bill(jrow, run_hours(jrow, seen.finished_at, now))
    jrow.finished_at = seen.finished_at or now


def run_hours(jrow: JobRunRecord, end: datetime | None, now: datetime) -> float:
    """Hours the run has run, up to `end` (or now)."""
    start = as_utc(jrow.started_at)
    if start is None:
        return 0.0
    return max(0.0, ((end or now) - start).total_seconds() / 3600)


def bill(jrow: JobRunRecord, hours: float) -> None:
    """Add a run's hours, and their USD at the decision's billed rate, to the actuals."""
    jrow.actual_hours = (jrow.actual_hours or 0.0) + hours
    if jrow.usd_per_hour is not None:
        jrow.actual_usd = (jrow.actual_usd or 0.0) + hours * jrow.usd_per_hour


def count_actuals(rt: Runtime, wid: uuid.UUID) -> None:
    """A finished run's actual / estimated hours, USD and egress, into the metric."""
    with rt.db.read() as s:
        jrow = get_run(s, workload_id=wid)
        if jrow is None:
            return
        pairs = (("hours", jrow.actual_hours, jrow.estimated_hours),
                 ("usd", jrow.actual_usd, jrow.estimated_usd),
                 ("egress_gb", jrow.staged_bytes / 1e9, jrow.estimated_egress_gb))
    for quantity, actual, estimate in pairs:
        if actual is not None and estimate:
            rt.metrics.job_estimate_ratio.labels(quantity).observe(actual / estimate)


def finite(value: Any) -> float | None:
    """A decision's estimate as a float; None when it is missing or not finite."""
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None
