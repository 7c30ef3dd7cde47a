"""Carrying out `place` decisions of inference and RAG workloads: serve them with Triton on the
chosen site, and take them down when they end.

A pass adopts new service workloads (a `servings` row each), marks the ones that ended for
removal, then works through the rows that are due. Each row is claimed with a guarded update
(several service replicas may run passes) and worked outside any transaction: apply the
manifests to the site's cluster, wait for Triton, load (or roll) the model version, run a smoke
inference, record the endpoint and move the workload to `running`. A failure is recorded on the
row and in the workload's event log and retried with exponential backoff; nothing here raises
into the service.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from placement.kube import Clusters, KubeError, Manifest, apply, delete
from placement.lifecycle import event
from placement.model import Inventory, Site, Workload
from placement.model.workload import SERVICE_KINDS
from placement.runtime import Runtime
from placement.store.inventory import load_inventory
from placement.store.tables import ServingRow, WorkloadRow, utcnow
from placement.triton.control import TritonControl, TritonError
from placement.triton.manifests import ManifestError, render, serving_name
from placement.triton.render import ServingSpecError

log = logging.getLogger("placement.triton")
SERVED_PHASES = ("placed", "running")
ENDED_PHASES = ("succeeded", "failed", "cancelled", "released")
DUE = ("pending", "retrying", "failed", "removing")


@dataclass(frozen=True)
class ServingOptions:
    """Timeouts and retry pacing of the actuator."""

    ready_timeout_s: float = 120.0
    model_timeout_s: float = 300.0
    client_timeout_s: float = 10.0
    backoff_base_s: float = 5.0
    backoff_max_s: float = 300.0
    claim_s: float = 900.0  # a claim older than this is taken to be from a dead process

    def backoff(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self.backoff_max_s,
                                     self.backoff_base_s * 2 ** max(0, attempts - 1)))


class ServingActuator:
    """Reconciles the `servings` rows with the sites' clusters and Triton servers."""

    def __init__(self, rt: Runtime, clusters: Clusters, options: ServingOptions | None = None,
                 control: Callable[[str], TritonControl] | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.rt = rt
        self.clusters = clusters
        self.options = options or ServingOptions()
        self.control = control or (lambda url: TritonControl(url, self.options.client_timeout_s))
        self.clock = clock

    def reconcile(self) -> int:
        """One pass; returns how many rows it worked on."""
        self._adopt()
        done = 0
        for wid in self._claim_due():
            self._work(wid)
            done += 1
        return done

    def _adopt(self) -> None:
        """Rows for new service workloads; ended workloads' rows go to `removing`; a changed
        model version re-opens a ready row."""
        with self.rt.db.write() as s:
            known = select(ServingRow.workload_id)
            for row in s.scalars(select(WorkloadRow).where(
                    WorkloadRow.kind.in_(SERVICE_KINDS), WorkloadRow.phase.in_(SERVED_PHASES),
                    WorkloadRow.action == "place", WorkloadRow.id.not_in(known))):
                wl = Workload.model_validate(row.document)
                if wl.spec.serving is None or row.site is None:
                    continue
                s.add(ServingRow(workload_id=row.id, site=row.site, namespace="",
                                 name=serving_name(wl, row.id), model=wl.spec.serving.model,
                                 status="pending", message="waiting to be served", attempts=0,
                                 next_attempt_at=self.clock()))
                event(s, row.id, "serving", f"serving {wl.spec.serving.model} on {row.site} "
                      "with Triton")
            s.execute(update(ServingRow).where(
                ServingRow.status.not_in(("removing", "removed")),
                ServingRow.workload_id.in_(select(WorkloadRow.id).where(
                    WorkloadRow.phase.in_(ENDED_PHASES))))
                .values(status="removing", attempts=0, next_attempt_at=self.clock(),
                        claimed_until=None, message="workload ended; removing"))
            for srow, wrow in s.execute(select(ServingRow, WorkloadRow).join(
                    WorkloadRow, WorkloadRow.id == ServingRow.workload_id).where(
                    ServingRow.status == "ready")):
                spec = Workload.model_validate(wrow.document).spec.serving
                if spec is not None and spec.version != srow.version:
                    srow.status, srow.message = "pending", f"rolling to v{spec.version}"
                    srow.next_attempt_at = self.clock()

    def _claim_due(self) -> list[uuid.UUID]:
        now = self.clock()
        claimed = []
        with self.rt.db.read() as s:
            due = list(s.scalars(select(ServingRow.workload_id).where(
                ServingRow.status.in_(DUE), ServingRow.next_attempt_at <= now,
                or_(ServingRow.claimed_until.is_(None), ServingRow.claimed_until < now))))
        for wid in due:
            with self.rt.db.write() as s:
                won = s.execute(update(ServingRow).where(
                    ServingRow.workload_id == wid,
                    or_(ServingRow.claimed_until.is_(None), ServingRow.claimed_until < now))
                    .values(claimed_until=now + timedelta(seconds=self.options.claim_s)))
                if won.rowcount == 1:  # type: ignore[attr-defined]
                    claimed.append(wid)
        return claimed

    def _work(self, wid: uuid.UUID) -> None:
        with self.rt.db.read() as s:
            row, wrow = s.get(ServingRow, wid), s.get(WorkloadRow, wid)
            if row is None or wrow is None:
                return
            s.expunge_all()
        action = "remove" if row.status == "removing" else "serve"
        try:
            wl = Workload.model_validate(wrow.document)
            site = self._site(row.site)
            if action == "remove":
                self._remove(row, wl, site)
            else:
                self._serve(row, wrow, wl, site)
        except (KubeError, TritonError, ServingSpecError, ManifestError) as exc:
            self._failed(row, exc)
        except Exception as exc:  # a bug must not stop the loop; it is recorded and retried
            log.exception("serving %s failed unexpectedly", wid)
            self._failed(row, exc)
        else:
            self.rt.metrics.serving_actions.labels(row.site, action, "ok").inc()
            return
        self.rt.metrics.serving_actions.labels(row.site, action, "error").inc()

    def _site(self, name: str) -> Site:
        inv: Inventory | None = self.rt.current_inventory()
        if inv is None or name not in {s.name for s in inv.sites}:
            with self.rt.db.read() as s:
                inv = load_inventory(s)
        try:
            return inv.site(name)
        except KeyError:
            raise ServingSpecError(f"site {name} is no longer in the inventory; add it back "
                                   "or cancel the workload") from None

    def _manifests(self, wl: Workload, row: ServingRow, site: Site) -> list[Manifest]:
        return render(wl, row.workload_id, site)

    def _serve(self, row: ServingRow, wrow: WorkloadRow, wl: Workload, site: Site) -> None:
        client = self.clusters.client(site.spec.kube_context)
        changes = [f"{m['kind']} {apply(client, m)}" for m in self._manifests(wl, row, site)]
        conf = site.spec.serving
        endpoint = conf.endpoint.format(name=row.name, namespace=conf.namespace)
        triton = self.control(endpoint)
        try:
            triton.wait_ready(self.options.ready_timeout_s)
            steps = triton.roll(wl, row.version, self.options.model_timeout_s)
        finally:
            triton.close()
        assert wl.spec.serving is not None
        with self.rt.db.write() as s:
            srow = s.get(ServingRow, row.workload_id)
            w = s.get(WorkloadRow, row.workload_id)
            if srow is None or w is None or srow.status == "removing":
                return  # ended while we worked: the next pass removes it
            srow.status, srow.endpoint, srow.version = "ready", endpoint, wl.spec.serving.version
            srow.namespace = conf.namespace
            srow.metrics_url = conf.metrics_url.format(name=row.name, namespace=conf.namespace)
            srow.attempts, srow.claimed_until, srow.ready_at = 0, None, self.clock()
            srow.message = "; ".join(steps)
            event(s, w.id, "serving_ready", f"Triton serves {wl.spec.serving.model} "
                  f"v{wl.spec.serving.version} at {endpoint}", manifests=changes, steps=steps)
            if w.phase == "placed":
                w.phase = "running"
                event(s, w.id, "running", "serving ready")

    def _remove(self, row: ServingRow, wl: Workload, site: Site) -> None:
        client = self.clusters.client(site.spec.kube_context)
        gone = [f"{m['kind']} {delete(client, m)}"
                for m in reversed(self._manifests(wl, row, site))]
        with self.rt.db.write() as s:
            srow = s.get(ServingRow, row.workload_id)
            if srow is None:
                return
            srow.status, srow.claimed_until, srow.attempts = "removed", None, 0
            srow.endpoint, srow.message = None, "removed from the cluster"
            event(s, row.workload_id, "serving_removed",
                  f"Triton objects removed from {site.name}", manifests=gone)

    def _failed(self, row: ServingRow, exc: Exception) -> None:
        permanent = isinstance(exc, ServingSpecError | ManifestError) or (
            isinstance(exc, KubeError) and not exc.retryable)
        attempts = row.attempts + 1
        wait = (timedelta(seconds=self.options.backoff_max_s) if permanent
                else self.options.backoff(attempts))
        message = str(exc) or repr(exc)
        with self.rt.db.write() as s:
            srow = s.get(ServingRow, row.workload_id)
            if srow is None:
                return
            removing = srow.status == "removing"
            if not removing:
                srow.status = "failed" if permanent else "retrying"
            srow.attempts, srow.claimed_until = attempts, None
            srow.next_attempt_at, srow.message = self.clock() + wait, message
            event(s, row.workload_id, "serving_error",
                  f"{'removing' if removing else 'serving'} failed (attempt {attempts}, next in "
                  f"{wait.total_seconds():g} s): {message}", permanent=permanent)
        log.warning("serving %s: %s", row.workload_id, message)

