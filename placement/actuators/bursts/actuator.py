"""Carrying out `burst` decisions: provision cloud GPU capacity, track what it costs, and tear
it down when it is no longer needed.

A burst's life: requested -> provisioning -> ready -> draining -> destroyed | failed. Passes
(several replicas may run them; each row is claimed, see placement.store.work):
- adopt: a `burst` decision of a live workload gets one row, whose stack name is unique, so
  there is never a second stack for one burst;
- requested: mark provisioning, preview the stack (its plan and $/hour go to the event log
  before anything is created), then `up` it. A failure of either destroys what was made, marks
  the burst failed, and sends the workload back to the queue;
- provisioning (found claimed by a worker that died between `up` and recording it): read the
  stack's outputs; when the stack is there, the burst is ready; otherwise `up` again;
- ready: add the spend since the last pass; drain when the workload ended, the burst expired,
  or its spend reached its budget;
- draining: destroy the stack.
A fleet (a service on several sites, placement.engine.fleet) is not provisioned here: its
cloud members are served on GPU node pools their sites' clusters already have. One stack per
member is not built yet.
The Provisioner does the cloud work: infra.automation.PulumiProvisioner in production; tests
use a double that records calls.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from placement.actuators.base import Actuator, ActuatorOptions, PermanentActuatorError
from placement.control.lifecycle import active_reservations, event, free_gpus, request_requeue
from placement.control.runtime import Runtime
from placement.model import Site, Workload
from placement.model.inventory import CloudSiteSpec
from placement.store import bursts as store
from placement.store.bursts import BurstRecord
from placement.store.db import as_utc, utcnow
from placement.store.work import WorkloadRecord, release, workload_of

log = logging.getLogger("placement.actuators.bursts")
DUE = ("requested", "provisioning", "ready", "draining")
ENDED = ("succeeded", "failed", "cancelled", "released", "rejected")


class BurstSpecError(PermanentActuatorError):
    """The decision cannot become a stack as the inventory stands; the message says why."""


class Provisioner(Protocol):
    """What the lifecycle needs from the cloud side (one stack per burst)."""

    def preview(self, cfg: Any) -> Any: ...  # an infra.automation.Plan

    def up(self, cfg: Any) -> dict[str, Any]: ...

    def outputs(self, stack: str) -> dict[str, Any] | None: ...

    def destroy(self, stack: str) -> None: ...


@dataclass(frozen=True)
class BurstOptions(ActuatorOptions):
    """Pacing of the burst actuator."""

    check_s: float = 60.0  # how often a ready burst's spend and end conditions are checked
    backoff_base_s: float = 10.0
    backoff_max_s: float = 600.0
    claim_s: float = 3600.0  # `up` can take a quarter of an hour; a dead worker's claim lapses


def burst_config(wl: Workload, workload_id: uuid.UUID, decision: dict[str, Any], site: Site,
                 now: datetime) -> Any:
    """The stack configuration a burst decision asks for (infra.config.BurstConfig)."""
    from infra.config import BurstConfig

    spec = site.spec
    if not isinstance(spec, CloudSiteSpec) or spec.burst is None:
        raise BurstSpecError(f"site {site.name} has no 'burst' settings (cluster, and node role "
                             "and subnets on AWS or project on GCP); add them to the site")
    if spec.provider == "azure":
        raise BurstSpecError("bursts to Azure are not provisioned yet; forbid azure sites for "
                             "bursts in the policy or place on AWS or GCP")
    gpu = next(g for g in spec.gpus if g.type == decision["gpu_type"])
    inst = next(i for i in gpu.instances if i.type == decision["instance_type"])
    spot = decision.get("capacity") == "spot"
    hours = (wl.spec.duration_hours or 24.0) * spec.burst.lifetime_factor \
        + spec.provisioning_minutes / 60
    b = spec.burst
    cluster = ({"aws": {"cluster_name": b.cluster, "node_role_arn": b.node_role_arn,
                        "subnet_ids": b.subnet_ids}} if spec.provider == "aws" else
               {"gcp": {"project": b.project, "cluster": b.cluster,
                        "location": b.location or spec.region}})
    try:
        return BurstConfig.model_validate({
            "provider": spec.provider, "region": spec.region, "workload": wl.name,
            "workload_id": str(workload_id), "team": wl.spec.team, "gpu_type": gpu.type,
            "gpus_needed": wl.spec.gpu.count * wl.spec.replicas, "instance_type": inst.type,
            "gpus_per_instance": inst.gpus, "quota_gpus": gpu.quota_gpus, "spot": spot,
            "usd_per_instance_hour": (inst.spot_usd_per_hour if spot and inst.spot_usd_per_hour
                                      else inst.on_demand_usd_per_hour),
            "budget_usd": wl.spec.budget_usd, "expires_at": now + timedelta(hours=hours),
            **cluster})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise BurstSpecError(f"burst for {wl.name} on {site.name}: {problems}") from exc


class BurstActuator(Actuator[BurstOptions]):
    """Reconciles `bursts` rows with their stacks. A failed step (the provisioner's error) is
    retried with backoff; see `_failed_up` for a failed `up`."""

    NAME = "bursts"
    TABLE = BurstRecord
    DUE = DUE
    LOG = log

    def __init__(self, rt: Runtime, provisioner: Provisioner,
                 options: BurstOptions | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        super().__init__(rt, options or BurstOptions(), clock)
        self.provisioner = provisioner

    def _adopt(self) -> None:
        now = self.clock()
        with self.rt.db.read() as s:  # a failed or destroyed burst of one decided again: anew
            fresh = store.undecided_bursts(s, phases=("placed", "running"))
        for wrow, decision in fresh:
            if decision.get("fleet"):
                continue  # a fleet's cloud members run on node pools their sites have (below)
            site = self.rt.site(wrow.site or "")
            try:
                if site is None:
                    raise BurstSpecError(f"site {wrow.site} is not in the inventory")
                cfg = burst_config(Workload.model_validate(wrow.document), wrow.id, decision,
                                   site, now)
            except (BurstSpecError, ValidationError, StopIteration) as exc:
                self._refuse(wrow, str(exc) or "the decision's instance is gone from the site")
                continue
            values = {"stack": cfg.stack, "team": wrow.team, "site": wrow.site,
                      "status": "requested", "message": "requested",
                      "spec": cfg.model_dump(mode="json"), "outputs": {},
                      "usd_per_hour": cfg.usd_per_hour, "budget_usd": cfg.budget_usd,
                      "expires_at": cfg.expires_at, "spent_usd": 0.0, "attempts": 0,
                      "next_attempt_at": now, "created_at": now, "ready_at": None,
                      "ended_at": None}
            try:
                with self.rt.db.write() as s:
                    if not store.request(s, workload_id=wrow.id, fields=values):
                        continue
                    event(s, wrow.id, "burst_requested", f"burst: {cfg.instances} x "
                          f"{cfg.instance_type} ({'spot' if cfg.spot else 'on-demand'}) in "
                          f"{cfg.region}, ${cfg.usd_per_hour:,.2f}/h, expires "
                          f"{cfg.expires_at:%Y-%m-%d %H:%M}Z", stack=cfg.stack)
            except IntegrityError:
                continue  # another replica adopted it (or the stack name is taken)

    def _refuse(self, wrow: WorkloadRecord, why: str) -> None:
        """A burst that cannot be provisioned: the workload goes back to the queue."""
        with self.rt.db.write() as s:
            w = workload_of(s, workload_id=wrow.id, lock=True)
            if w is None or w.phase not in ("placed", "running"):
                return
            free_gpus(s, active_reservations(s, w))
            w.phase = "queued"
            event(s, w.id, "burst_failed", f"cannot provision the burst: {why}")
        self.rt.invalidate_capacity()

    def work(self, wid: uuid.UUID, token: str) -> None:
        with self.rt.db.read() as s:
            found = store.detached_burst(s, workload_id=wid)
        if found is None:
            return
        row, wrow = found
        if row.status == "draining":
            self._destroy(row, token)
        elif row.status == "ready":
            self._check(row, token, wrow)
        else:
            self._provision(row, token)

    def _set(self, wid: uuid.UUID, token: str, keep_claim: bool = False,
             **values: Any) -> BurstRecord | None:
        with self.rt.db.write() as s:
            return store.set_claimed(s, workload_id=wid, token=token, fields=values,
                                     keep_claim=keep_claim)

    def _provision(self, row: BurstRecord, token: str) -> None:
        from infra.config import BurstConfig

        cfg = BurstConfig.model_validate(row.spec)
        if row.status == "provisioning":  # a worker died between `up` and recording it
            found = self.provisioner.outputs(row.stack)
            if found:
                self._ready(row, token, found, "recovered from the stack after an interruption")
                return
        if self._set(row.workload_id, token, keep_claim=True, status="provisioning",
                     message=f"pulumi up {row.stack}") is None:
            return
        try:
            plan = self.provisioner.preview(cfg)  # shown before anything is created
            with self.rt.db.write() as s:
                event(s, row.workload_id, "burst_plan", f"plan for {row.stack}: "
                      f"{plan.changes or 'no changes'}; {plan.instances} instances, "
                      f"${plan.usd_per_hour:,.2f}/h", changes=plan.changes,
                      usd_per_hour=plan.usd_per_hour)
            outputs = self.provisioner.up(cfg)
        except Exception as exc:
            self._failed_up(row, token, exc)
            return
        self._ready(row, token, outputs, "provisioned")

    def _ready(self, row: BurstRecord, token: str, outputs: dict[str, Any], how: str) -> None:
        now = self.clock()
        with self.rt.db.write() as s:
            brow = store.claimed(s, workload_id=row.workload_id, token=token)
            if brow is None:
                return
            release(brow)
            brow.status, brow.outputs, brow.ready_at = "ready", outputs, now
            brow.attempts, brow.message = 0, how
            brow.next_attempt_at = now
            event(s, row.workload_id, "burst_ready", f"burst capacity ready ({how}): "
                  f"{outputs.get('instances', '?')} x {outputs.get('instance_type', '?')}",
                  outputs=outputs)

    def _failed_up(self, row: BurstRecord, token: str, exc: Exception) -> None:
        """`up` failed: remove whatever it made, and send the workload back to the queue."""
        cleanup = "stack destroyed"
        try:
            self.provisioner.destroy(row.stack)
        except Exception as again:  # leave it for a human; the message says so
            cleanup = f"destroying the partial stack failed too ({again}); destroy it by hand"
        with self.rt.db.write() as s:
            brow = store.claimed(s, workload_id=row.workload_id, token=token)
            w = workload_of(s, workload_id=row.workload_id, lock=True)
            if brow is None:
                return
            release(brow)
            brow.status, brow.ended_at = "failed", self.clock()
            brow.message = f"pulumi up failed: {exc}; {cleanup}"
            event(s, row.workload_id, "burst_failed", brow.message)
            if w is not None and w.phase in ("placed", "running"):
                free_gpus(s, active_reservations(s, w))
                w.phase = "queued"
                event(s, w.id, "queued", "back in the queue after the burst failed")
        self.rt.invalidate_capacity()
        request_requeue(self.rt)

    def _check(self, row: BurstRecord, token: str, wrow: WorkloadRecord) -> None:
        """Spend so far; drain when the workload ended, the burst expired or its budget is
        spent."""
        now = self.clock()
        ready = as_utc(row.ready_at) or now
        spent = row.usd_per_hour * max(0.0, (now - ready).total_seconds() / 3600)
        why = None
        if wrow.phase in ENDED:
            why = f"workload {wrow.phase}"
        elif (wrow.phase not in ("placed", "running") or wrow.action != "burst"
              or wrow.site != row.site):
            why = f"workload re-decided ({wrow.phase}, {wrow.action} {wrow.site or ''})".strip()
        elif now >= (as_utc(row.expires_at) or now):
            why = "expired"
        elif row.budget_usd is not None and spent >= row.budget_usd:
            why = f"spent ${spent:,.2f} of its ${row.budget_usd:,.2f} budget"
        values: dict[str, Any] = {"spent_usd": spent,
                                  "next_attempt_at": now + timedelta(seconds=self.options.check_s)}
        if why is not None:
            values.update(status="draining", message=f"draining: {why}", next_attempt_at=now)
        if self._set(row.workload_id, token, **values) is not None and why is not None:
            with self.rt.db.write() as s:
                event(s, row.workload_id, "burst_draining", f"burst {row.stack} draining: "
                      f"{why}; ${spent:,.2f} spent")

    def _destroy(self, row: BurstRecord, token: str) -> None:
        self.provisioner.destroy(row.stack)
        now = self.clock()
        ready = as_utc(row.ready_at)
        spent = row.usd_per_hour * max(0.0, (now - ready).total_seconds() / 3600) \
            if ready is not None else row.spent_usd
        done = self._set(row.workload_id, token, status="destroyed", ended_at=now,
                         spent_usd=spent, message="destroyed")
        if done is not None:
            with self.rt.db.write() as s:
                event(s, row.workload_id, "burst_destroyed",
                      f"burst {row.stack} destroyed; ${spent:,.2f} spent")
