"""Carrying out `place` decisions of inference and RAG workloads: serve them with Triton on the
chosen site (a fleet: on every member site, each with its own replicas), and take them down
when they end.

A pass adopts new service workloads (a `servings` row per site), marks the ones that ended for
removal, rolls a changed model version one site at a time, then works through the rows that
are due. Each row is claimed with a guarded update (several service replicas may run passes)
and worked outside any transaction: apply the manifests to the site's cluster, wait for
Triton, load (or roll) the model version, run a smoke inference, record the endpoint and move
the workload to `running`. A failure is recorded on the row and in the workload's event log
and retried with exponential backoff; nothing here raises into the service.

A new version goes to the sites in site-name order: the next site is re-opened only once every
site that served the workload before is ready again, so a version that fails on one site
stops the roll there (recorded as `serving_roll_stopped`), and the sites not reached keep
serving the old one; the failing site is drained from the routing table while it retries.
There, one replica keeps the old version loaded (Triton's API rolls it in place); several are
rolled back: their Deployment is re-applied at the old version (`serving_rolled_back`).
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

from placement.actuators.base import Actuator, ActuatorOptions, Failed, Failure, Outcome
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
from placement.store.work import release, workload_of

log = logging.getLogger("placement.actuators.triton")
# a replicated site's new version that has not come up in this many attempts is rolled back
ROLL_BACK_AFTER = 2
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
        """Rows for new service workloads (one per site); ended workloads' rows go to
        `removing`; a changed model version re-opens one site at a time. Each workload on
        its own: one bad document or a replica adopting the same workload at once never
        stops the rest."""
        self._adopt_new()
        now = self.clock()
        with self.rt.db.write() as s:
            store.mark_ended(s, phases=ENDED_PHASES, now=now)
            self._resize(s, now)
            self._roll_next(s, now)

    def _adopt_new(self) -> None:
        """A pending row per site of each new service workload, in one transaction each."""
        with self.rt.db.read() as s:  # a burst once its capacity is ready; a fleet at once
            fresh = store.unserved(s, kinds=SERVICE_KINDS, phases=SERVED_PHASES)
        for new in fresh:
            spec = _serving_spec(new.workload_id, new.document)
            if spec is None or not new.seats:
                continue
            name = serving_name(Workload.model_validate(new.document), new.workload_id)
            try:
                with self.rt.db.write() as s:
                    for seat in new.seats:
                        store.add_serving(s, workload_id=new.workload_id, site=seat.site,
                                          namespace=self._namespace(seat.site), name=name,
                                          model=spec.model, now=self.clock(),
                                          replicas=seat.replicas, fleet=new.fleet)
                    event(s, new.workload_id, "serving", _adopted(spec.model, new.seats))
            except IntegrityError:
                continue  # another replica adopted it first

    def _resize(self, s: Session, now: datetime) -> None:
        """Follow an autoscaled fleet (placement.control.fleets): a member site with new
        replicas is re-applied, a new member site gets a row (or its old one re-opened), a
        site that left the fleet is removed."""
        for fleet in store.resized_fleets(s, phases=SERVED_PHASES):
            spec = _serving_spec(fleet.workload_id, fleet.document)
            if spec is None:
                continue
            wanted = {seat.site: seat.replicas for seat in fleet.seats}
            by_site = {r.site: r for r in fleet.rows}
            changes = []
            for site, replicas in wanted.items():
                row = by_site.get(site)
                if row is None:
                    name = serving_name(Workload.model_validate(fleet.document),
                                        fleet.workload_id)
                    store.add_serving(s, workload_id=fleet.workload_id, site=site,
                                      namespace=self._namespace(site), name=name,
                                      model=spec.model, now=now, replicas=replicas, fleet=True)
                    changes.append(f"{site} added with {replicas} replica(s)")
                elif row.status in store.ENDED or row.replicas != replicas:
                    changes.append(f"{site} {row.replicas} -> {replicas} replica(s)"
                                   if row.status not in store.ENDED
                                   else f"{site} back with {replicas} replica(s)")
                    if row.status in store.ENDED:  # its pods are gone: it starts cold, and
                        row.version, row.endpoint = None, None  # is no "rolling" target
                    row.replicas, row.status, row.attempts = replicas, "pending", 0
                    row.next_attempt_at, row.message = now, f"resizing to {replicas} replica(s)"
                    # a pass serving it now applied the old size: its result is not recorded
                    row.claim_token, row.claimed_until = None, None
            for row in fleet.rows:
                if row.site not in wanted and row.status not in store.ENDED:
                    row.status, row.attempts, row.next_attempt_at = "removing", 0, now
                    row.claim_token, row.claimed_until = None, None
                    row.message = "the fleet no longer uses this site; removing"
                    changes.append(f"{row.site} removed")
            event(s, fleet.workload_id, "serving_resize",
                  f"fleet resized: {'; '.join(changes)}")

    def _roll_next(self, s: Session, now: datetime) -> None:
        """Re-open the next site of each workload whose model version changed (see
        `next_to_roll`)."""
        for document, rows in store.live_with_documents(s):
            spec = _serving_spec(rows[0].workload_id, document)
            row = next_to_roll(rows, spec.version) if spec is not None else None
            if row is None or spec is None:
                continue
            row.status, row.next_attempt_at = "pending", now
            row.message = f"rolling to v{spec.version}"
            done = sum(r.version == spec.version for r in rows)
            event(s, row.workload_id, "serving_roll",
                  f"rolling {spec.model} from v{row.version} to v{spec.version} on "
                  f"{row.site} ({done + 1} of {len(rows)} sites)", site=row.site)

    def _namespace(self, site: str) -> str:
        try:
            return self._site(site).spec.serving.namespace
        except ServingSpecError:
            return ""

    def work(self, wid: uuid.UUID, token: str) -> None:
        """Serve or remove the claimed row (`wid`: the serving row's key, one per site)."""
        with self.rt.db.read() as s:
            found = store.detached_serving(s, serving=wid)
        if found is None:
            return
        row, wrow = found
        action = "remove" if row.status == "removing" else "serve"
        try:
            site = self._site(row.site)
            if action == "remove":
                self._remove(row, token, site)
            else:
                wl = Workload.model_validate(wrow.document)
                # a burst's pods run on the node pool provisioned for it; a fleet's members
                # (their replicas on the row) on node pools their sites have
                self._serve(row, token, _seated(wl, row.replicas), site,
                            wrow.action == "burst" and row.replicas is None)
        except Exception:
            self.rt.metrics.serving_actions.labels(row.site, action, "error").inc()
            raise
        self.rt.metrics.serving_actions.labels(row.site, action, "ok").inc()

    def _failed(self, row: Any, token: str, exc: Exception) -> Outcome:
        return self.fail(row.id, token, exc)

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
                try:
                    steps = triton.verify(wl, self.options.model_timeout_s)
                except Exception as exc:
                    try:
                        if row.attempts >= ROLL_BACK_AFTER - 1:  # this is that attempt
                            self._roll_back(row, token, wl, site, burst, exc)
                    except Exception:  # the retry tries again; the first error is the story
                        log.warning("rolling %s back on %s failed", row.name, row.site,
                                    exc_info=True)
                    raise
        finally:
            triton.close()
        assert wl.spec.serving is not None
        with self.rt.db.write() as s:
            srow, w = store.claimed_with_workload(s, serving=row.id, token=token)
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
                  f"v{wl.spec.serving.version} on {row.site} at {endpoint}", site=row.site,
                  manifests=changes, steps=steps)
            if w.phase == "placed":
                w.phase = "running"
                event(s, w.id, "running", "serving ready")

    def _roll_back(self, row: ServingRecord, token: str, wl: Workload, site: Site,
                   burst: bool, exc: Exception) -> None:
        """A replicated site whose pods did not come up on the new version in ROLL_BACK_AFTER
        attempts (a slow rollout gets the time of all of them: the first failure leaves it
        going): its Deployment (and model configuration) re-applied at the version it
        served, so Kubernetes rolls the pods the new template took down back to it. The row
        still retries the new version with backoff (each retry takes one replica down for the
        model timeout, as a healthy roll does), until it loads or the spec's version
        changes."""
        assert wl.spec.serving is not None
        old, new = row.version, wl.spec.serving.version
        if old is None or old == new:
            return  # nothing served before on this site: nothing to go back to
        with self.rt.db.write() as s:
            if store.claimed(s, serving=row.id, token=token) is None:
                return  # our claim lapsed: whoever holds it now applies what it wants
        back = wl.model_copy(update={"spec": wl.spec.model_copy(update={
            "serving": wl.spec.serving.model_copy(update={"version": old})})})
        client = self.clusters.client(site.spec.kube_context)
        changes = [f"{m['kind']} {apply(client, m)}"
                   for m in render(back, row.workload_id, site, burst)]
        with self.rt.db.write() as s:
            event(s, row.workload_id, "serving_rolled_back",
                  f"{row.site}: v{new} did not come up ({exc}); its Deployment is back on "
                  f"v{old} ({wl.spec.replicas} replicas)", site=row.site, version=old,
                  failed_version=new, manifests=changes)

    def _remove(self, row: ServingRecord, token: str, site: Site) -> None:
        """Delete what was applied, by the names and namespace recorded on the row (the spec
        or the site's settings may have changed since)."""
        client = self.clusters.client(site.spec.kube_context)
        namespace = row.namespace or site.spec.serving.namespace
        gone = [f"{m['kind']} {delete(client, m)}" for m in applied(row.name, namespace)]
        with self.rt.db.write() as s:
            srow = store.claimed(s, serving=row.id, token=token)
            if srow is None:
                return
            release(srow)
            srow.status, srow.attempts, srow.endpoint = "removed", 0, None
            srow.message = "removed from the cluster"
            event(s, row.workload_id, "serving_removed",
                  f"Triton objects removed from {site.name}", site=site.name, manifests=gone)

    def on_failure(self, s: Session, row: ServingRecord, failure: Failure) -> None:
        removing = row.status == "removing"
        if not removing:
            row.status = "failed" if failure.permanent else "retrying"
        event(s, row.workload_id, "serving_error",
              f"{'removing' if removing else 'serving'} on {row.site} failed (attempt "
              f"{failure.attempts}, next in {failure.wait.total_seconds():g} s): "
              f"{failure.message}", site=row.site, permanent=failure.permanent)
        if not removing and row.version is not None and failure.attempts == 1:
            self._roll_stopped(s, row, failure)

    def _roll_stopped(self, s: Session, row: ServingRecord, failure: Failure) -> None:
        """A site that served a version failed to take the new one: the roll stops here."""
        w = workload_of(s, workload_id=row.workload_id)
        spec = _serving_spec(row.workload_id, w.document) if w is not None else None
        if spec is None or spec.version == row.version:
            return
        rest = [f"{o.site} (v{o.version})" for o in store.others(s, row=row)
                if o.status not in store.ENDED and o.version is not None]
        event(s, row.workload_id, "serving_roll_stopped",
              f"roll of {spec.model} to v{spec.version} stopped at {row.site}: "
              f"{failure.message}; {row.site} is drained from the routing table while it "
              f"retries" + (f"; still serving: {', '.join(rest)}" if rest else ""),
              site=row.site, version=spec.version, serving=row.version)


def next_to_roll(rows: list[ServingRecord], version: int) -> ServingRecord | None:
    """The site to roll to `version` next (rows of one workload, not being removed): the
    first by name still ready on another version, once no site is mid-roll or stopped on a
    failure (pending, retrying or failed where a version served before)."""
    if any(r.status != "ready" and r.version is not None for r in rows):
        return None
    behind = sorted((r for r in rows if r.status == "ready" and r.version != version),
                    key=lambda r: r.site)
    return behind[0] if behind else None


def _seated(wl: Workload, replicas: int | None) -> Workload:
    """The workload as served on one site: a fleet member's replicas in place of the spec's."""
    if replicas is None or replicas == wl.spec.replicas:
        return wl
    return wl.model_copy(update={"spec": wl.spec.model_copy(update={"replicas": replicas})})


def _adopted(model: str, seats: list[store.Seat]) -> str:
    if len(seats) == 1 and seats[0].replicas is None:
        return f"serving {model} on {seats[0].site} with Triton"
    where = ", ".join(f"{x.site} ({x.replicas} replica{'s' * (x.replicas != 1)})"
                      for x in seats)
    return f"serving {model} with Triton on {len(seats)} sites: {where}"


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
