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
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from placement.actuators.base import Actuator, ActuatorOptions, Failed, Failure
from placement.actuators.kube import Clusters, KubeError, Manifest, apply, delete
from placement.actuators.triton.control import TritonControl, TritonError
from placement.actuators.triton.manifests import render, serving_name
from placement.actuators.triton.render import ServingSpecError
from placement.control.lifecycle import event
from placement.control.runtime import Runtime
from placement.model import Site, Workload
from placement.model.workload import SERVICE_KINDS, ServingSpec
from placement.store import servings as store
from placement.store.db import utcnow
from placement.store.servings import ServingRecord
from placement.store.work import release

log = logging.getLogger("placement.actuators.triton")
SERVED_PHASES = ("placed", "running")
ENDED_PHASES = ("succeeded", "failed", "cancelled", "released")
DUE = ("pending", "retrying", "failed", "removing")


@dataclass(frozen=True)
class ServingOptions(ActuatorOptions):
    """Timeouts and retry pacing of the actuator."""

    ready_timeout_s: float = 120.0
    model_timeout_s: float = 300.0
    client_timeout_s: float = 10.0
    claim_s: float = 900.0  # a rollout and model load can take minutes


class ServingActuator(Actuator[ServingOptions]):
    """Reconciles the `servings` rows with the sites' clusters and Triton servers."""

    NAME = "serving"
    TABLE = ServingRecord
    DUE = DUE
    LOG = log
    SPEC_ERROR = ServingSpecError

    def __init__(self, rt: Runtime, clusters: Clusters, options: ServingOptions | None = None,
                 control: Callable[[str], TritonControl] | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        super().__init__(rt, options or ServingOptions(), clock)
        self.clusters = clusters
        self.control = control or (lambda url: TritonControl(url, self.options.client_timeout_s))

    def _adopt(self) -> None:
        """Rows for new service workloads; ended workloads' rows go to `removing`; a changed
        model version re-opens a ready row. Each workload on its own: one bad document or a
        replica adopting the same workload at once never stops the rest."""
        with self.rt.db.read() as s:  # a burst is served once its capacity is ready
            fresh = store.unserved(s, kinds=SERVICE_KINDS, phases=SERVED_PHASES)
        for wid, site, document in fresh:
            spec = _serving_spec(wid, document)
            if spec is None or site is None:
                continue
            try:
                with self.rt.db.write() as s:
                    store.add_serving(s, workload_id=wid, site=site,
                                      namespace=self._namespace(site),
                                      name=serving_name(Workload.model_validate(document), wid),
                                      model=spec.model, now=self.clock())
                    event(s, wid, "serving", f"serving {spec.model} on {site} with Triton")
            except IntegrityError:
                continue  # another replica adopted it first
        now = self.clock()
        with self.rt.db.write() as s:
            store.mark_ended(s, phases=ENDED_PHASES, now=now)
            for srow, document in store.ready_with_documents(s):
                spec = _serving_spec(srow.workload_id, document)
                if spec is not None and spec.version != srow.version:
                    srow.status, srow.message = "pending", f"rolling to v{spec.version}"
                    srow.next_attempt_at = now

    def _namespace(self, site: str) -> str:
        try:
            return self._site(site).spec.serving.namespace
        except ServingSpecError:
            return ""

    def work(self, wid: uuid.UUID, token: str) -> None:
        with self.rt.db.read() as s:
            found = store.detached_serving(s, workload_id=wid)
        if found is None:
            return
        row, wrow = found
        action = "remove" if row.status == "removing" else "serve"
        try:
            site = self._site(row.site)
            if action == "remove":
                self._remove(row, token, site)
            else:
                self._serve(row, token, Workload.model_validate(wrow.document), site,
                            wrow.action == "burst")
        except Exception:
            self.rt.metrics.serving_actions.labels(row.site, action, "error").inc()
            raise
        self.rt.metrics.serving_actions.labels(row.site, action, "ok").inc()

    def classify(self, exc: Exception) -> Failed:
        if isinstance(exc, KubeError):
            return "temporary" if exc.retryable else "permanent"
        if isinstance(exc, TritonError | ValidationError):
            return "temporary"
        return super().classify(exc)

    def _serve(self, row: ServingRecord, token: str, wl: Workload, site: Site,
               burst: bool) -> None:
        client = self.clusters.client(site.spec.kube_context)
        changes = [f"{m['kind']} {apply(client, m)}"
                   for m in render(wl, row.workload_id, site, burst)]
        conf = site.spec.serving
        endpoint = conf.endpoint.format(name=row.name, namespace=conf.namespace)
        triton = self.control(endpoint)
        try:
            triton.wait_ready(self.options.ready_timeout_s)
            if wl.spec.replicas == 1:
                steps = triton.roll(wl, row.version, self.options.model_timeout_s)
            else:  # the Service reaches one pod: the Deployment's rollout moves them all
                steps = triton.verify(wl, self.options.model_timeout_s)
        finally:
            triton.close()
        assert wl.spec.serving is not None
        with self.rt.db.write() as s:
            srow, w = store.claimed_with_workload(s, workload_id=row.workload_id, token=token)
            if srow is None or w is None:
                return  # our claim lapsed: whoever holds it now decides
            release(srow)
            if srow.status == "removing":
                return  # ended while we worked: the next claim removes it
            srow.status, srow.endpoint, srow.version = "ready", endpoint, wl.spec.serving.version
            srow.namespace = conf.namespace
            srow.metrics_url = conf.metrics_url.format(name=row.name, namespace=conf.namespace)
            srow.attempts, srow.ready_at = 0, self.clock()
            srow.message = "; ".join(steps)
            event(s, w.id, "serving_ready", f"Triton serves {wl.spec.serving.model} "
                  f"v{wl.spec.serving.version} at {endpoint}", manifests=changes, steps=steps)
            if w.phase == "placed":
                w.phase = "running"
                event(s, w.id, "running", "serving ready")

    def _remove(self, row: ServingRecord, token: str, site: Site) -> None:
        """Delete what was applied, by the names and namespace recorded on the row (the spec
        or the site's settings may have changed since)."""
        client = self.clusters.client(site.spec.kube_context)
        namespace = row.namespace or site.spec.serving.namespace
        gone = [f"{m['kind']} {delete(client, m)}" for m in applied(row.name, namespace)]
        with self.rt.db.write() as s:
            srow = store.claimed(s, workload_id=row.workload_id, token=token)
            if srow is None:
                return
            release(srow)
            srow.status, srow.attempts, srow.endpoint = "removed", 0, None
            srow.message = "removed from the cluster"
            event(s, row.workload_id, "serving_removed",
                  f"Triton objects removed from {site.name}", manifests=gone)

    def on_failure(self, s: Session, row: ServingRecord, failure: Failure) -> None:
        removing = row.status == "removing"
        if not removing:
            row.status = "failed" if failure.permanent else "retrying"
        event(s, row.workload_id, "serving_error",
              f"{'removing' if removing else 'serving'} failed (attempt {failure.attempts}, "
              f"next in {failure.wait.total_seconds():g} s): {failure.message}",
              permanent=failure.permanent)


def applied(name: str, namespace: str) -> list[Manifest]:
    """What serving applies under `name`, as delete targets, in delete order (a missing
    ServiceMonitor, or its kind, counts as already gone)."""
    meta = {"name": name, "namespace": namespace}
    return [{"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": meta},
            {"apiVersion": "v1", "kind": "Service", "metadata": meta},
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta},
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {**meta, "name": f"{name}-model-config"}}]


def _serving_spec(wid: uuid.UUID, document: dict[str, Any]) -> ServingSpec | None:
    """The stored workload's serving spec; None (logged) when the document does not validate."""
    try:
        return Workload.model_validate(document).spec.serving
    except ValidationError as exc:
        log.error("workload %s: stored document does not validate: %s", wid, exc)
        return None
