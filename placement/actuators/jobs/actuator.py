"""Carrying out `place` and `burst` decisions of training, fine-tuning and batch workloads: run
the Job on the chosen cluster, let its real state drive the workload, and fall back when spot
capacity is taken.

A pass adopts newly placed job workloads (a `job_runs` row each), marks cancelled ones for
removal, then works through due rows, each claimed for this worker (see placement.store.work):
- pending / retrying: render and apply the Job (idempotently);
- submitted / running: read the Job and its pods and move the workload: placed -> running ->
  succeeded | failed with the reason; the GPUs are released at the end, and the actual hours,
  $ and staged bytes are recorded beside the estimates;
- interrupted (a pod evicted or its node gone): delete the Job and decide again under the
  policy with the work left since the last checkpoint; after the policy's limit of spot
  interruptions only on-demand or on-prem capacity is eligible;
- removing: delete the Job and its pods.
A cluster that cannot be reached leaves the row with a clear message, retried with backoff.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from placement.actuators.jobs.manifests import (
    LABEL_RUN,
    LABEL_WORKLOAD,
    JobSpecError,
    Placement,
    job_name,
    render,
    stages,
)
from placement.actuators.jobs.status import Observation, observe
from placement.actuators.kube import (
    Clusters,
    KubeError,
    Manifest,
    apply,
    delete,
    delete_pods,
    list_pods,
)
from placement.actuators.kube import read as kube_read
from placement.actuators.triton.manifests import ManifestError
from placement.control.lifecycle import (
    CapacityConflict,
    active_reservations,
    count_decision,
    decide,
    event,
    free_gpus,
    record_decision,
    request_requeue,
)
from placement.control.runtime import Runtime
from placement.model import Site, Workload
from placement.model.workload import JOB_KINDS
from placement.store.db import as_utc
from placement.store.tables import BurstRow, DecisionRow, JobRunRow, WorkloadRow, utcnow
from placement.store.work import owned, record_failure, release, retry_wait, work_due

log = logging.getLogger("placement.actuators.jobs")
DUE = ("pending", "retrying", "submitted", "running", "interrupted", "removing")
LIVE = ("pending", "retrying", "submitted", "running", "interrupted")
MAX_INTERRUPTIONS = 6  # of any kind (evictions too): beyond this the workload fails


@dataclass(frozen=True)
class JobOptions:
    """Pacing of the job actuator."""

    poll_s: float = 15.0  # how often a submitted or running Job is read
    backoff_base_s: float = 5.0
    backoff_max_s: float = 300.0
    claim_s: float = 300.0



class JobActuator:
    """Reconciles `job_runs` rows with the Jobs on the sites' clusters."""

    def __init__(self, rt: Runtime, clusters: Clusters, options: JobOptions | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.rt = rt
        self.clusters = clusters
        self.options = options or JobOptions()
        self.clock = clock

    def reconcile(self, limit: int = 200) -> int:
        """One pass; returns how many rows it worked on."""
        try:
            self._adopt()
        except Exception:
            log.exception("adopting job workloads failed")
        return work_due(self.rt.db, JobRunRow, DUE, self.clock, self.options.claim_s,
                        self._work, log, limit)

    def _adopt(self) -> None:
        now = self.clock()
        with self.rt.db.read() as s:
            placed = list(s.execute(  # a burst runs once its capacity is ready
                select(WorkloadRow.id, WorkloadRow.site, WorkloadRow.document, JobRunRow.status)
                .outerjoin(JobRunRow, JobRunRow.workload_id == WorkloadRow.id)
                .outerjoin(BurstRow, BurstRow.workload_id == WorkloadRow.id)
                .where(WorkloadRow.kind.in_(JOB_KINDS), WorkloadRow.phase == "placed",
                       or_(WorkloadRow.action == "place",
                           (WorkloadRow.action == "burst") & (BurstRow.status == "ready")))))
        for wid, site, document, status in placed:
            if status not in (None, "requeued") or site is None:
                continue
            try:
                wl = Workload.model_validate(document)
            except ValidationError as exc:
                log.error("workload %s: stored document does not validate: %s", wid, exc)
                continue
            if wl.spec.job is None:
                continue
            try:
                with self.rt.db.write() as s:
                    values = {"site": site, "namespace": self._namespace(site),
                              "name": job_name(wl, wid), "status": "pending", "attempts": 0,
                              "message": "waiting to be submitted", "next_attempt_at": now,
                              "started_at": None, "finished_at": None}
                    if status is None:
                        s.add(JobRunRow(workload_id=wid, interruptions=0, staged_bytes=0,
                                        deadline_hours=wl.spec.deadline_hours, **values))
                    else:
                        s.execute(update(JobRunRow).where(JobRunRow.workload_id == wid,
                                                          JobRunRow.status == "requeued")
                                  .values(**values))
                    event(s, wid, "job", f"running {wl.name} as a Job on {site}")
            except IntegrityError:
                continue  # another replica adopted it first
        with self.rt.db.write() as s:
            s.execute(update(JobRunRow).where(
                JobRunRow.status.in_((*LIVE, "requeued")),
                JobRunRow.workload_id.in_(select(WorkloadRow.id).where(
                    WorkloadRow.phase.in_(("cancelled", "released")))))
                .values(status="removing", attempts=0, next_attempt_at=now,
                        message="workload cancelled; deleting the Job"))

    def _namespace(self, site: str) -> str:
        try:
            return self._site(site).spec.jobs.namespace
        except JobSpecError:
            return ""

    def _site(self, name: str) -> Site:
        site = self.rt.site(name)
        if site is None:
            raise JobSpecError(f"site {name} is no longer in the inventory; add it back or "
                         "cancel the workload")
        return site

    def _work(self, wid: uuid.UUID, token: str) -> None:
        with self.rt.db.read() as s:
            row, wrow = s.get(JobRunRow, wid), s.get(WorkloadRow, wid)
            drow = s.get(DecisionRow, wrow.decision_id) if wrow and wrow.decision_id else None
            if row is None or wrow is None:
                return
            s.expunge_all()
        action = {"pending": "submit", "retrying": "submit", "removing": "remove",
                  "interrupted": "resubmit"}.get(row.status, "track")
        try:
            site = self._site(row.site)
            client = self.clusters.client(site.spec.kube_context)
            if action == "submit":
                self._submit(row, token, wrow, drow, site, client)
            elif action == "remove":
                self._remove(row, token, client)
            elif action == "resubmit":  # an earlier pass saw the interruption
                self._delete_run(row, client)
                self._resubmit(row, token, "interrupted earlier")
            else:
                self._track(row, token, wrow, site, client)
        except (KubeError, JobSpecError, ManifestError, ValidationError) as exc:
            self._failed(row, token, exc)
        except Exception as exc:  # a bug must not stop the loop; recorded and retried
            log.exception("job %s failed unexpectedly", wid)
            self._failed(row, token, exc)
        else:
            self.rt.metrics.job_actions.labels(row.site, action, "ok").inc()
            return
        self.rt.metrics.job_actions.labels(row.site, action, "error").inc()

    def _manifests(self, row: JobRunRow, wrow: WorkloadRow, drow: DecisionRow | None,
                   site: Site) -> list[Manifest]:
        wl = Workload.model_validate(wrow.document)
        decision = drow.explanation if drow is not None else {}
        engine = self.rt.current_engine()
        if engine is None:
            with self.rt.db.read() as s:
                engine = self.rt.engine(s)
        deadline_s = None
        if row.deadline_hours is not None:
            elapsed = (self.clock() - (as_utc(wrow.created_at) or self.clock())).total_seconds()
            deadline_s = int(row.deadline_hours * 3600 - elapsed)
        where = Placement(site, wrow.action or "place", decision.get("capacity"),
                          stages(engine.ci, wl, site), deadline_s)
        return render(wl, row.workload_id, where)

    def _submit(self, row: JobRunRow, token: str, wrow: WorkloadRow, drow: DecisionRow | None,
                site: Site, client: Any) -> None:
        manifests = self._manifests(row, wrow, drow, site)
        changes = [f"{m['kind']} {apply(client, m)}" for m in manifests]
        est = ((drow.explanation if drow is not None else {}).get("estimates") or {})
        job = manifests[-1]
        stage_info = [c["env"][0]["value"] for c in job["spec"]["template"]["spec"]
                      ["initContainers"]]
        with self.rt.db.write() as s:
            jrow = owned(s, JobRunRow, row.workload_id, token)
            if jrow is None:
                return
            release(jrow)
            if jrow.status == "removing":
                return
            jrow.status, jrow.attempts = "submitted", 0
            jrow.namespace = site.spec.jobs.namespace
            jrow.next_attempt_at = self.clock() + timedelta(seconds=self.options.poll_s)
            jrow.estimated_hours = Workload.model_validate(wrow.document).spec.duration_hours
            jrow.estimated_usd = _finite(est.get("gpu_usd"))
            jrow.estimated_egress_gb = _finite(est.get("egress_gb"))
            jrow.usd_per_hour = _finite(est.get("usd_per_hour"))
            jrow.message = f"Job {jrow.name} submitted to {site.name}"
            event(s, row.workload_id, "job_submitted", jrow.message, manifests=changes,
                  staging_from=stage_info)

    def _job_and_pods(self, row: JobRunRow, client: Any
                      ) -> tuple[Manifest, dict[str, Any] | None, list[dict[str, Any]]]:
        """The Job and the pods of this run (an earlier run's pods may linger on a node
        being reclaimed)."""
        target = _job_target(row)
        job = kube_read(client, target)
        pods = list_pods(client, row.namespace, f"{LABEL_WORKLOAD}={row.workload_id},"
                                                f"{LABEL_RUN}={row.interruptions}")
        return target, job, pods

    def _delete_run(self, row: JobRunRow, client: Any) -> None:
        """Delete the Job, its pods and its headless Service (each may be gone already)."""
        delete(client, _job_target(row))
        delete(client, {"apiVersion": "v1", "kind": "Service",
                        "metadata": {"name": row.name, "namespace": row.namespace}})
        delete_pods(client, list_pods(client, row.namespace,
                                      f"{LABEL_WORKLOAD}={row.workload_id}"))

    def _track(self, row: JobRunRow, token: str, wrow: WorkloadRow, site: Site,
               client: Any) -> None:
        _, job, pods = self._job_and_pods(row, client)
        seen = observe(job, pods)
        if seen.state == "interrupted" and row.interruptions + 1 >= MAX_INTERRUPTIONS:
            seen = Observation("failed", f"{seen.reason}; interrupted {row.interruptions + 1} "
                               "times, giving up", seen.started_at, None, seen.staged_bytes)
        if seen.state == "interrupted":
            with self.rt.db.write() as s:  # remembered first: a failure below resumes here
                jrow = owned(s, JobRunRow, row.workload_id, token)
                if jrow is None:
                    return
                jrow.status, jrow.message = "interrupted", seen.reason
                jrow.started_at = jrow.started_at or seen.started_at
            self._delete_run(row, client)
            self._resubmit(row, token, seen.reason)
            return
        final = {"succeeded": "succeeded", "failed": "failed", "missing": "failed"}.get(
            seen.state)
        if final is not None:
            if final == "failed":  # a failed Job may still hold nodes (stuck pulls, targets)
                self._delete_run(row, client)
            else:
                delete(client, {"apiVersion": "v1", "kind": "Service",
                                "metadata": {"name": row.name, "namespace": row.namespace}})
        freed = 0
        with self.rt.db.write() as s:
            jrow, w = _locked(s, row.workload_id, token)
            if jrow is None or w is None:
                return
            release(jrow)
            jrow.next_attempt_at = self.clock() + timedelta(seconds=self.options.poll_s)
            jrow.staged_bytes = max(jrow.staged_bytes, seen.staged_bytes)
            jrow.started_at = jrow.started_at or seen.started_at
            if seen.state == "running" and jrow.status != "running":
                jrow.status, jrow.message = "running", "the Job's pods are running"
                if w.phase == "placed":
                    w.phase = "running"
                    event(s, w.id, "running", f"Job {row.name} running on {site.name}")
            elif final is not None:
                self._finish(jrow, seen)
                freed = self._end(s, w, final, f"Job {row.name} {final}: {seen.reason}")
        if freed:
            self.rt.invalidate_capacity()
            request_requeue(self.rt)
        if final is not None:
            self._count_actuals(row.workload_id)

    def _end(self, s: Session, w: WorkloadRow, final: str, message: str) -> int:
        """Move the workload to its final phase and free its GPUs, in the caller's
        transaction; a workload already ended (cancelled meanwhile) is left as it is."""
        if w.phase not in ("placed", "running"):
            return 0
        if w.phase == "placed":  # it ended before a pass saw it run
            event(s, w.id, "running", "the Job started")
        held = active_reservations(s, w)
        w.phase = final
        event(s, w.id, final, message, gpus_freed=sum(r.count for r in held))
        return free_gpus(s, held)

    def _finish(self, jrow: JobRunRow, seen: Observation) -> None:
        jrow.status = "succeeded" if seen.state == "succeeded" else "failed"
        jrow.message = seen.reason
        _bill(jrow, self._run_hours(jrow, seen.finished_at))
        jrow.finished_at = seen.finished_at or self.clock()

    def _run_hours(self, jrow: JobRunRow, end: datetime | None) -> float:
        start = as_utc(jrow.started_at)
        if start is None:
            return 0.0
        return max(0.0, ((end or self.clock()) - start).total_seconds() / 3600)

    def _count_actuals(self, wid: uuid.UUID) -> None:
        with self.rt.db.read() as s:
            jrow = s.get(JobRunRow, wid)
            if jrow is None:
                return
            pairs = (("hours", jrow.actual_hours, jrow.estimated_hours),
                     ("usd", jrow.actual_usd, jrow.estimated_usd),
                     ("egress_gb", jrow.staged_bytes / 1e9, jrow.estimated_egress_gb))
        for quantity, actual, estimate in pairs:
            if actual is not None and estimate:
                self.rt.metrics.job_estimate_ratio.labels(quantity).observe(actual / estimate)

    def _resubmit(self, row: JobRunRow, token: str, reason: str) -> None:
        """Decide again for the work left after the last checkpoint, one more interruption
        counted, and free the interrupted run's GPUs, in one transaction with the workload
        locked (a cancel in between wins: nothing is decided then)."""
        decision: dict[str, Any] | None = None
        for attempt in (1, 2):
            try:
                with self.rt.db.write() as s:
                    jrow, w = _locked(s, row.workload_id, token)
                    if jrow is None or w is None:
                        return
                    if w.phase not in ("placed", "running") or jrow.status != "interrupted":
                        release(jrow)
                        jrow.status, jrow.next_attempt_at = "removing", self.clock()
                        return
                    decision, engine = self._decide_again(s, jrow, w, reason)
                break
            except CapacityConflict:
                self.rt.invalidate_capacity()
                if attempt == 2:
                    raise
        self.rt.invalidate_capacity()
        if decision is not None:
            count_decision(self.rt, decision, engine)

    def _decide_again(self, s: Session, jrow: JobRunRow, w: WorkloadRow,
                      reason: str) -> tuple[dict[str, Any], Any]:
        wl = Workload.model_validate(w.document)
        ran_h = self._run_hours(jrow, None)
        step_h = wl.spec.checkpoint_minutes / 60
        kept_h = math.floor(ran_h / step_h) * step_h  # work up to the last checkpoint survives
        left_h = max(step_h, (wl.spec.duration_hours or step_h) - kept_h)
        deadline = None
        if jrow.deadline_hours is not None:  # the deadline counts from the first submission
            since_h = (self.clock() - (as_utc(w.created_at) or self.clock())).total_seconds()
            deadline = max(1e-3, jrow.deadline_hours - since_h / 3600)
        spec = wl.spec.model_copy(update={
            "duration_hours": left_h, "interruptions": wl.spec.interruptions + 1,
            "deadline_hours": deadline})
        again = wl.model_copy(update={"spec": spec})
        free_gpus(s, active_reservations(s, w))
        engine = self.rt.engine(s, fresh=True)
        decision, out = decide(self.rt, engine, again)
        w.document = again.model_dump(mode="json", exclude_none=True)
        event(s, w.id, "interrupted", f"{reason}; {kept_h:.2f} h kept at the last checkpoint, "
              f"{left_h:.2f} h left; deciding again (interruption {spec.interruptions})",
              interruptions=spec.interruptions, kept_hours=kept_h, left_hours=left_h)
        record_decision(s, w, decision, out)
        release(jrow)
        _bill(jrow, ran_h)  # billed, though the work since the last checkpoint is lost
        jrow.interruptions, jrow.status = spec.interruptions, "requeued"
        jrow.started_at, jrow.next_attempt_at = None, self.clock()
        jrow.message = (f"interrupted ({reason}); new decision: {decision['action']} "
                        f"{decision['site'] or ''}").rstrip()
        return decision, engine

    def _remove(self, row: JobRunRow, token: str, client: Any) -> None:
        gone = [delete(client, _job_target(row)), delete(client, {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": row.name, "namespace": row.namespace}})]
        pods = delete_pods(client, list_pods(client, row.namespace,
                                             f"{LABEL_WORKLOAD}={row.workload_id}"))
        with self.rt.db.write() as s:
            jrow = owned(s, JobRunRow, row.workload_id, token)
            if jrow is None:
                return
            release(jrow)
            jrow.status, jrow.message = "removed", "Job and pods deleted"
            event(s, row.workload_id, "job_removed", f"Job {row.name}: {gone[0]}, "
                  f"{pods} pods deleted", job=gone[0], pods=pods)

    def _failed(self, row: JobRunRow, token: str, exc: Exception) -> None:
        permanent = isinstance(exc, JobSpecError | ManifestError | ValidationError) or (
            isinstance(exc, KubeError) and not exc.retryable)
        attempts = row.attempts + 1
        wait = retry_wait(attempts, permanent, self.options.backoff_base_s,
                          self.options.backoff_max_s)
        message = str(exc) or repr(exc)
        with self.rt.db.write() as s:
            jrow = record_failure(s, JobRunRow, row.workload_id, token, attempts,
                                  self.clock() + wait, message)
            if jrow is None:
                return
            if jrow.status in ("pending", "retrying"):
                jrow.status = "retrying"
            event(s, row.workload_id, "job_error", f"{row.status} failed (attempt {attempts}, "
                  f"next in {wait.total_seconds():g} s): {message}", permanent=permanent)
        log.warning("job %s: %s", row.workload_id, message)


def _locked(s: Session, wid: uuid.UUID, token: str
            ) -> tuple[JobRunRow | None, WorkloadRow | None]:
    """The run (if still claimed by this worker) and its workload, both locked."""
    jrow = owned(s, JobRunRow, wid, token)
    w = s.scalar(select(WorkloadRow).where(WorkloadRow.id == wid).with_for_update())
    return jrow, w


def _bill(jrow: JobRunRow, hours: float) -> None:
    """Add a run's hours, and their USD at the decision's billed rate, to the actuals."""
    jrow.actual_hours = (jrow.actual_hours or 0.0) + hours
    if jrow.usd_per_hour is not None:
        jrow.actual_usd = (jrow.actual_usd or 0.0) + hours * jrow.usd_per_hour


def _job_target(row: JobRunRow) -> Manifest:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": row.name, "namespace": row.namespace}}


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None
