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
from functools import cached_property
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from placement.actuators.base import Actuator, ActuatorOptions, Failed, Failure
from placement.actuators.jobs import accounting
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
from placement.control.lifecycle import (
    DecisionData,
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
from placement.store import jobs as store
from placement.store.capacity import CapacityConflict
from placement.store.db import as_utc, utcnow
from placement.store.jobs import JobRunRecord
from placement.store.work import DecisionRecord, WorkloadRecord, release

log = logging.getLogger("placement.actuators.jobs")
DUE = ("pending", "retrying", "submitted", "running", "interrupted", "removing")
LIVE = ("pending", "retrying", "submitted", "running", "interrupted")
MAX_INTERRUPTIONS = 6  # of any kind (evictions too): beyond this the workload fails


@dataclass(frozen=True)
class JobOptions(ActuatorOptions):
    """Pacing of the job actuator."""

    poll_s: float = 15.0  # how often a submitted or running Job is read


@dataclass
class _Pass:
    """What one pass over a run reads: its rows, and the workload validated once, when first
    needed (removing a run never needs its document)."""

    row: JobRunRecord
    wrow: WorkloadRecord
    drow: DecisionRecord | None

    @cached_property
    def wl(self) -> Workload:
        return Workload.model_validate(self.wrow.document)


class JobActuator(Actuator[JobOptions]):
    """Reconciles `job_runs` rows with the Jobs on the sites' clusters."""

    NAME = "jobs"
    TABLE = JobRunRecord
    DUE = DUE
    LOG = log
    SPEC_ERROR = JobSpecError
    LIMIT = 200

    def __init__(self, rt: Runtime, clusters: Clusters, options: JobOptions | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        super().__init__(rt, options or JobOptions(), clock)
        self.clusters = clusters

    def _adopt(self) -> None:
        now = self.clock()
        with self.rt.db.read() as s:  # a burst runs once its capacity is ready
            placed = store.placed_jobs(s, kinds=JOB_KINDS)
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
                        store.add_run(s, workload_id=wid, deadline_hours=wl.spec.deadline_hours,
                                      fields=values)
                    else:
                        store.restart_requeued(s, workload_id=wid, fields=values)
                    event(s, wid, "job", f"running {wl.name} as a Job on {site}")
            except IntegrityError:
                continue  # another replica adopted it first
        with self.rt.db.write() as s:
            store.mark_cancelled(s, statuses=(*LIVE, "requeued"),
                                 phases=("cancelled", "released"), now=now)

    def _namespace(self, site: str) -> str:
        try:
            return self._site(site).spec.jobs.namespace
        except JobSpecError:
            return ""

    def work(self, wid: uuid.UUID, token: str) -> None:
        with self.rt.db.read() as s:
            found = store.detached_run(s, workload_id=wid)
        if found is None:
            return
        p = _Pass(*found)
        row = p.row
        action = {"pending": "submit", "retrying": "submit", "removing": "remove",
                  "interrupted": "resubmit"}.get(row.status, "track")
        try:
            site = self._site(row.site)
            client = self.clusters.client(site.spec.kube_context)
            if action == "submit":
                self._submit(p, token, site, client)
            elif action == "remove":
                self._remove(row, token, client)
            elif action == "resubmit":  # an earlier pass saw the interruption
                self._delete_run(row, client)
                self._resubmit(p, token, "interrupted earlier")
            else:
                self._track(p, token, site, client)
        except Exception:
            self.rt.metrics.job_actions.labels(row.site, action, "error").inc()
            raise
        self.rt.metrics.job_actions.labels(row.site, action, "ok").inc()

    def classify(self, exc: Exception) -> Failed:
        if isinstance(exc, KubeError):
            return "temporary" if exc.retryable else "permanent"
        if isinstance(exc, ValidationError):  # the stored document: a spec problem
            return "permanent"
        return super().classify(exc)

    def _manifests(self, p: _Pass, site: Site) -> list[Manifest]:
        row, wrow, drow, wl = p.row, p.wrow, p.drow, p.wl
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
                          stages(engine.ci, wl, site, decision), deadline_s)
        return render(wl, row.workload_id, where)

    def _submit(self, p: _Pass, token: str, site: Site, client: Any) -> None:
        row = p.row
        manifests = self._manifests(p, site)
        changes = [f"{m['kind']} {apply(client, m)}" for m in manifests]
        est = ((p.drow.explanation if p.drow is not None else {}).get("estimates") or {})
        job = manifests[-1]
        stage_info = [c["env"][0]["value"] for c in job["spec"]["template"]["spec"]
                      ["initContainers"]]
        with self.rt.db.write() as s:
            jrow = store.claimed(s, workload_id=row.workload_id, token=token)
            if jrow is None:
                return
            release(jrow)
            if jrow.status == "removing":
                return
            jrow.status, jrow.attempts = "submitted", 0
            jrow.namespace = site.spec.jobs.namespace
            jrow.next_attempt_at = self.clock() + timedelta(seconds=self.options.poll_s)
            jrow.estimated_hours = p.wl.spec.duration_hours
            jrow.estimated_usd = accounting.finite(est.get("gpu_usd"))
            jrow.estimated_egress_gb = accounting.finite(est.get("egress_gb"))
            jrow.usd_per_hour = accounting.finite(est.get("usd_per_hour"))
            jrow.message = f"Job {jrow.name} submitted to {site.name}"
            event(s, row.workload_id, "job_submitted", jrow.message, manifests=changes,
                  staging_from=stage_info)

    def _job_and_pods(self, row: JobRunRecord, client: Any
                      ) -> tuple[Manifest, dict[str, Any] | None, list[dict[str, Any]]]:
        """The Job and the pods of this run (an earlier run's pods may linger on a node
        being reclaimed)."""
        target = _job_target(row)
        job = kube_read(client, target)
        pods = list_pods(client, row.namespace, f"{LABEL_WORKLOAD}={row.workload_id},"
                                                f"{LABEL_RUN}={row.interruptions}")
        return target, job, pods

    def _delete_run(self, row: JobRunRecord, client: Any) -> None:
        """Delete the Job, its pods and its headless Service (each may be gone already)."""
        delete(client, _job_target(row))
        delete(client, {"apiVersion": "v1", "kind": "Service",
                        "metadata": {"name": row.name, "namespace": row.namespace}})
        delete_pods(client, list_pods(client, row.namespace,
                                      f"{LABEL_WORKLOAD}={row.workload_id}"))

    def _track(self, p: _Pass, token: str, site: Site, client: Any) -> None:
        row = p.row
        _, job, pods = self._job_and_pods(row, client)
        seen = observe(job, pods)
        if seen.state == "interrupted" and row.interruptions + 1 >= MAX_INTERRUPTIONS:
            seen = Observation("failed", f"{seen.reason}; interrupted {row.interruptions + 1} "
                               "times, giving up", seen.started_at, None, seen.staged_bytes)
        if seen.state == "interrupted":
            with self.rt.db.write() as s:  # remembered first: a failure below resumes here
                jrow = store.claimed(s, workload_id=row.workload_id, token=token)
                if jrow is None:
                    return
                jrow.status, jrow.message = "interrupted", seen.reason
                jrow.started_at = jrow.started_at or seen.started_at
            self._delete_run(row, client)
            self._resubmit(p, token, seen.reason)
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
            jrow, w = store.claimed_and_locked(s, workload_id=row.workload_id, token=token)
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
                accounting.finish(jrow, seen, self.clock())
                freed = accounting.end_workload(s, w, final,
                                                f"Job {row.name} {final}: {seen.reason}")
        if freed:
            self.rt.invalidate_capacity()
            request_requeue(self.rt)
        if final is not None:
            accounting.count_actuals(self.rt, row.workload_id)

    def _resubmit(self, p: _Pass, token: str, reason: str) -> None:
        """Decide again for the work left after the last checkpoint, one more interruption
        counted, and free the interrupted run's GPUs, in one transaction with the workload
        locked (a cancel in between wins: nothing is decided then)."""
        decision: DecisionData | None = None
        for attempt in (1, 2):
            try:
                with self.rt.db.write() as s:
                    jrow, w = store.claimed_and_locked(s, workload_id=p.row.workload_id,
                                                       token=token)
                    if jrow is None or w is None:
                        return
                    if w.phase not in ("placed", "running") or jrow.status != "interrupted":
                        release(jrow)
                        jrow.status, jrow.next_attempt_at = "removing", self.clock()
                        return
                    decision, engine = self._decide_again(s, jrow, w, p.wl, reason)
                break
            except CapacityConflict:
                self.rt.invalidate_capacity()
                if attempt == 2:
                    raise
        self.rt.invalidate_capacity()
        if decision is not None:
            count_decision(self.rt, decision, engine)

    def _decide_again(self, s: Session, jrow: JobRunRecord, w: WorkloadRecord, wl: Workload,
                      reason: str) -> tuple[DecisionData, Any]:
        ran_h = accounting.run_hours(jrow, None, self.clock())
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
        accounting.bill(jrow, ran_h)  # billed, though work since the last checkpoint is lost
        jrow.interruptions, jrow.status = spec.interruptions, "requeued"
        jrow.started_at, jrow.next_attempt_at = None, self.clock()
        jrow.message = (f"interrupted ({reason}); new decision: {decision['action']} "
                        f"{decision['site'] or ''}").rstrip()
        return decision, engine

    def _remove(self, row: JobRunRecord, token: str, client: Any) -> None:
        gone = [delete(client, _job_target(row)), delete(client, {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": row.name, "namespace": row.namespace}})]
        pods = delete_pods(client, list_pods(client, row.namespace,
                                             f"{LABEL_WORKLOAD}={row.workload_id}"))
        with self.rt.db.write() as s:
            jrow = store.claimed(s, workload_id=row.workload_id, token=token)
            if jrow is None:
                return
            release(jrow)
            jrow.status, jrow.message = "removed", "Job and pods deleted"
            event(s, row.workload_id, "job_removed", f"Job {row.name}: {gone[0]}, "
                  f"{pods} pods deleted", job=gone[0], pods=pods)

    def on_failure(self, s: Session, row: JobRunRecord, failure: Failure) -> None:
        status = row.status
        if status in ("pending", "retrying"):
            row.status = "retrying"
        event(s, row.workload_id, "job_error", f"{status} failed (attempt {failure.attempts}, "
              f"next in {failure.wait.total_seconds():g} s): {failure.message}",
              permanent=failure.permanent)


def _job_target(row: JobRunRecord) -> Manifest:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": row.name, "namespace": row.namespace}}

