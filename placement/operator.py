"""The Kubernetes operator (kopf): Workload and Site resources, decided and carried out through
the same engine, store and actuators as the REST API.

- A Workload's spec is validated by the engine's models. A bad one is a permanent error, in
  its status and an event. It is submitted once (the resource's uid is the idempotency key),
  and the decision goes into `.status`: phase, action, site, estimates, the top candidates
  with their scores, the rejected ones with the reason, the policy version, and two
  conditions in the shape of metav1.Condition: `Placed` (GPUs are held on a site) and `Ready`
  (the workload is doing what it asked for), with `observedGeneration`, so that `kubectl wait
  --for=condition=Ready` and GitOps health checks read it. A Kubernetes event explains it.
- The actuators (Triton serving, jobs, bursts) act on what is stored, as in the service. A
  timer copies the stored phase back into `.status`, and the requeuer re-decides queued
  workloads.
- Deleting a Workload releases its GPUs first, through a finalizer.
- A change of `serving.version` rolls the model (a fleet: one site at a time). Other spec
  changes need a new Workload.
- A service's `.status.routing` is its routing table as GET /v1/workloads/{id}/routing
  publishes it: per client location the sites and weights, failing sites drained.
- Site resources are upserted into the inventory and removed from it when deleted (once no
  workload holds GPUs there).
- Policies come from the mounted directory (a ConfigMap or a git-sync volume) and are reloaded
  when it changes. A broken bundle never replaces the working one.
- Peering (`--peering NAME`) lets one replica act. Liveness is kopf's `/healthz`, with a probe
  reporting the active policy version.

Run with `placement operator [--namespace NS]... [--peering NAME | --standalone]`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from placement.control import submit
from placement.control.auth import Principal
from placement.control.lifecycle import LIVE, transition
from placement.control.runtime import Runtime
from placement.engine.explain import render
from placement.errors import ConflictError, InvalidRequestError, NotFoundError
from placement.model import Workload
from placement.model.workload import SERVICE_KINDS, WorkloadSpec
from placement.store import inventory as inv
from placement.store import workloads as store
from placement.store.routing import routing_of
from placement.store.workloads import WorkloadView

log = logging.getLogger("placement.operator")
GROUP, VERSION = "placement.dev", "v1alpha1"
SYSTEM = Principal(role="admin", team=None)
TOP = 3


def json_formatter() -> logging.Formatter:
    """kopf's JSON log records (timestamp, severity, the object's reference under `object`)
    with the logger's name and level added, for `--log-format json`."""
    before = list(logging.getLogger().handlers)
    kopf.configure(log_format=kopf.LogFormat.JSON)  # builds kopf's formatter on a handler
    root = logging.getLogger()
    added = [h for h in root.handlers if h not in before]
    root.handlers[:] = before
    made = added[0].formatter if added else None
    if made is None:
        return logging.Formatter()
    try:  # the same class, asked for the name and level too
        return type(made)("%(name)s %(levelname)s %(message)s")
    except TypeError:
        return made


def key_of(uid: str) -> str:
    return f"k8s:{uid}"


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}"
                     for e in exc.errors())


HELD = frozenset({"placed", "running"})  # phases in which the workload holds GPUs on a site
DONE = frozenset({"running", "succeeded"})  # phases in which it has done what it asked for
REFUSED = "ChangeRefused"  # the Ready reason of a spec change the operator did not take


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(kind: str, ok: bool, reason: str, message: str, *, generation: int | None,
              previous: list[dict[str, Any]] | None, now: datetime) -> dict[str, Any]:
    """One metav1.Condition; its lastTransitionTime moves only when its status changes."""
    status = "True" if ok else "False"
    before = next((c for c in previous or [] if c.get("type") == kind), None)
    since = (before["lastTransitionTime"] if before is not None
             and before.get("status") == status and before.get("lastTransitionTime")
             else rfc3339(now))
    out = {"type": kind, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": since}
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def status_of(row: WorkloadView, decision: dict[str, Any] | None, *,
              generation: int | None = None, previous: list[dict[str, Any]] | None = None,
              acting: bool = False, now: datetime | None = None,
              routing: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The `.status` the operator writes for a stored workload and its latest decision.

    `Placed` is true while the workload holds GPUs on its site. `Ready` is true once it runs
    (or has succeeded); where this operator carries nothing out itself (`acting` false: no
    kubeconfig for the sites' clusters), a placed workload is as far as it goes and is ready.
    A refused spec change (`ChangeRefused`) keeps `Ready` false for that generation.
    `routing`: a service's routes as GET /v1/workloads/{id}/routing publishes them."""
    now = now or datetime.now(UTC)
    out: dict[str, Any] = {"workloadId": str(row.id), "phase": row.phase,
                           "action": row.action, "site": row.site}
    if routing is not None:
        out["routing"] = routing
    if decision is not None:
        ranked = sorted((c for c in decision.get("candidates", []) if c.get("feasible")),
                        key=lambda c: c.get("rank") or 1e9)
        rejected = [c for c in decision.get("candidates", []) if not c.get("feasible")]
        out.update(
            summary=decision.get("summary", ""), policyVersion=decision.get("policy_version", ""),
            estimates=decision.get("estimates") or {},
            candidates=[{"site": c["site"], "capacity": c.get("capacity"),
                         "score": c.get("total_score"), "rejectedBy": None, "reason": None}
                        for c in ranked[:TOP]],
            rejected=[{"site": c["site"], "capacity": c.get("capacity"), "score": None,
                       "rejectedBy": c.get("rejected_by"), "reason": c.get("reason")}
                      for c in rejected])
    summary = (decision or {}).get("summary", "")
    phase = row.phase.capitalize()
    held = row.phase in HELD
    placed_reason = (row.action or "pending").capitalize() if held else phase
    placed_message = (f"{row.phase} on {row.site}" if held and row.site else summary)
    ready = row.phase in DONE or (row.phase == "placed" and not acting)
    ready_message = (summary if not ready or row.phase == "placed"
                     else f"{row.phase} on {row.site}" if row.site else row.phase)
    def cond(kind: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
        return condition(kind, ok, reason, message, generation=generation, previous=previous,
                         now=now)

    refused = next((c for c in previous or [] if generation is not None
                    and c.get("type") == "Ready" and c.get("reason") == REFUSED
                    and c.get("observedGeneration") == generation), None)
    out["conditions"] = [
        cond("Ready", False, REFUSED, str(refused.get("message", "")))
        if refused is not None else cond("Ready", ready, phase, ready_message),
        cond("Placed", held, placed_reason, placed_message)]
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def stored(rt: Runtime, uid: str) -> tuple[WorkloadView, dict[str, Any] | None] | None:
    """The workload this resource created, with its latest decision, if any."""
    with rt.db.read() as s:
        row = store.find_by_key(s, idempotency_key=key_of(uid))
        if row is None:
            return None
        drow = store.get_decision(s, decision_id=row.decision_id)
    return row, (render(drow.explanation, drow.candidate_columns) if drow is not None
                 else None)


def routes_of(rt: Runtime, row: WorkloadView) -> list[dict[str, Any]] | None:
    """A service's routing table as published (failing sites drained); None for a job."""
    if row.kind not in SERVICE_KINDS:
        return None
    with rt.db.read() as s:
        table = routing_of(s, workload_id=row.id)
    return None if table is None else list(table.as_json()["routes"])


def _workload(name: str, labels: dict[str, str], spec: dict[str, Any]) -> Workload:
    try:
        return Workload.model_validate({"apiVersion": f"{GROUP}/{VERSION}", "kind": "Workload",
                                        "metadata": {"name": name, "labels": labels},
                                        "spec": dict(spec)})
    except ValidationError as exc:
        raise kopf.PermanentError(f"invalid Workload: {_problems(exc)}") from exc


def decide(rt: Runtime, name: str, uid: str, labels: dict[str, str], spec: dict[str, Any],
           body: Any, *, generation: int | None = None, acting: bool = False
           ) -> dict[str, Any]:
    """Submit the Workload once; its status, and an event that explains the decision."""
    wl = _workload(name, labels, spec)
    try:
        submit.submit(rt, workload=wl, idempotency_key=key_of(uid))
    except InvalidRequestError as exc:
        raise kopf.PermanentError(f"invalid Workload: {exc}") from exc
    except OperationalError as exc:
        raise kopf.TemporaryError(f"the database is unavailable ({exc.orig}); retrying",
                                  delay=30) from exc
    found = stored(rt, uid)
    if found is None:
        raise kopf.TemporaryError("the submission is not visible yet; retrying", delay=5)
    row, decision = found
    status = status_of(row, decision, generation=generation, acting=acting,
                       routing=routes_of(rt, row))
    summary = status.get("summary", row.phase)
    if row.action == "reject":
        kopf.warn(body, reason="Rejected", message=summary)
    else:
        kopf.info(body, reason=(row.action or "decided").capitalize(), message=summary)
    return status


def _comparable(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec as the models read it (defaults filled in), without the serving version."""
    try:
        out = WorkloadSpec.model_validate(dict(spec)).model_dump(mode="json")
    except ValidationError as exc:
        raise kopf.PermanentError(f"invalid Workload: {_problems(exc)}") from exc
    if out.get("serving"):
        out["serving"] = {k: v for k, v in out["serving"].items() if k != "version"}
    return out


def roll(rt: Runtime, uid: str, spec: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Only a new serving version is taken from a changed spec. The spec is compared with the
    one submitted (stored), so that undoing a refused change is accepted again."""
    found = stored(rt, uid)
    before = found[0].document.get("spec", {}) if found is not None else dict(old or {})
    version = (dict(spec).get("serving") or {}).get("version")
    if _comparable(before) != _comparable(spec):
        raise kopf.PermanentError("only spec.serving.version can change on a Workload; "
                                  "create a new Workload for other changes")
    with rt.db.write() as s:
        if version is not None:
            store.set_serving_version(s, idempotency_key=key_of(uid), version=version)


def release(rt: Runtime, uid: str) -> str:
    """Free what the workload holds (the finalizer's work); idempotent."""
    found = stored(rt, uid)
    if found is None:
        return "nothing stored"
    row = found[0]
    to = "cancelled" if row.phase in LIVE else "released" if row.phase in (
        "succeeded", "failed") else None
    if to is None:
        return f"already {row.phase}"
    try:
        transition(rt, workload_id=row.id, to=to, who=SYSTEM, message="Workload deleted")
    except (ConflictError, NotFoundError) as exc:
        return str(exc)
    return to


def upsert_site(rt: Runtime, name: str, spec: dict[str, Any]) -> None:
    document = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Site",
                "metadata": {"name": name}, "spec": dict(spec)}
    try:
        with rt.db.write() as s:
            try:
                inv.get_doc(s, kind="site", name=name)
                inv.replace_doc(s, kind="site", name=name, document=document)
            except NotFoundError:
                inv.create_doc(s, kind="site", document=document)
    except (InvalidRequestError, ConflictError) as exc:
        raise kopf.PermanentError(f"invalid Site: {exc}") from exc
    rt.invalidate_capacity()


def remove_site(rt: Runtime, name: str) -> None:
    """Take the site out of the inventory; while it still holds work, wait and retry."""
    try:
        with rt.db.write() as s:
            inv.delete_doc(s, kind="site", name=name)
    except NotFoundError:
        return
    except ConflictError as exc:
        raise kopf.TemporaryError(f"{exc}; retrying", delay=60) from exc
    rt.invalidate_capacity()


# --- kopf handlers: short, idempotent; the work is in the functions above ----------------------
def _rt(memo: kopf.Memo) -> Runtime:
    rt: Runtime = memo["rt"]
    return rt


@kopf.on.startup()
def _startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    from placement.service.settings import Settings
    from placement.service.wiring import build_runtime, start
    from placement.tuning import tune_gc

    settings.persistence.finalizer = f"{GROUP}/release"
    settings.posting.level = logging.INFO  # decisions are explained as events
    config = Settings()
    rt = build_runtime(config) if "rt" not in memo else memo["rt"]
    memo["rt"] = rt
    memo["acting"] = config.kubeconfig is not None  # the actuators run placed workloads
    memo["loops"] = start(rt, config, batch=False)
    tune_gc()


@kopf.on.cleanup()
def _cleanup(memo: kopf.Memo, **_: Any) -> None:
    if "loops" in memo:
        memo["loops"].stop()


@kopf.on.probe(id="policy")
def _policy(memo: kopf.Memo, **_: Any) -> str:
    return _rt(memo).policy_version


def _generation(meta: Any) -> int | None:
    value = (meta or {}).get("generation")
    return int(value) if value is not None else None


def _acting(memo: kopf.Memo) -> bool:
    return bool(memo.get("acting", False))


@kopf.on.create(GROUP, VERSION, "workloads")
def _create(name: str, uid: str, labels: Any, spec: Any, meta: Any, body: Any,
            patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    generation = _generation(meta)
    try:
        patch.status.update(decide(_rt(memo), name, uid, dict(labels), spec, body,
                                   generation=generation, acting=_acting(memo)))
    except kopf.PermanentError as exc:  # said in the status and an event, not retried
        now = datetime.now(UTC)
        patch.status.update({"phase": "invalid", "message": str(exc), "conditions": [
            condition(kind, False, "InvalidSpec", str(exc), generation=generation,
                      previous=None, now=now) for kind in ("Ready", "Placed")],
            **({"observedGeneration": generation} if generation is not None else {})})
        kopf.warn(body, reason="InvalidSpec", message=str(exc))
        raise


@kopf.on.update(GROUP, VERSION, "workloads", field="spec")
def _update(uid: str, new: Any, old: Any, meta: Any, status: Any, body: Any,
            patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    generation = _generation(meta)
    previous = [c for c in (status or {}).get("conditions") or []
                if c.get("reason") != REFUSED]  # a refusal was about an earlier generation
    rt = _rt(memo)
    try:
        roll(rt, uid, new, old)
    except kopf.PermanentError as exc:  # the spec stays changed: say it was not applied
        now = datetime.now(UTC)
        found = stored(rt, uid)
        conditions = [condition("Ready", False, REFUSED, str(exc), generation=generation,
                                previous=previous, now=now)]
        if found is not None:
            conditions += [c for c in status_of(*found, generation=generation,
                                                previous=previous, now=now)["conditions"]
                           if c["type"] != "Ready"]
        patch.status["message"] = str(exc)
        patch.status["conditions"] = conditions
        if generation is not None:
            patch.status["observedGeneration"] = generation
        kopf.warn(body, reason=REFUSED, message=str(exc))
        raise
    found = stored(rt, uid)
    if found is not None:  # the change is taken: this generation is the one observed
        patch.status.update(status_of(*found, generation=generation, previous=previous,
                                      acting=_acting(memo), routing=routes_of(rt, found[0])))
        patch.status["message"] = ""


@kopf.on.delete(GROUP, VERSION, "workloads")
def _delete(uid: str, memo: kopf.Memo, logger: Any, **_: Any) -> None:
    logger.info("released: %s", release(_rt(memo), uid))


@kopf.timer(GROUP, VERSION, "workloads", interval=15, idle=5)
def _refresh(uid: str, status: Any, meta: Any, patch: kopf.Patch, memo: kopf.Memo,
             **_: Any) -> None:
    rt = _rt(memo)
    found = stored(rt, uid)
    if found is None:
        return
    fresh = status_of(*found, generation=_generation(meta),
                      previous=list(status.get("conditions") or []), acting=_acting(memo),
                      routing=routes_of(rt, found[0]))
    if any(status.get(k) != fresh.get(k)
           for k in ("phase", "action", "site", "conditions", "routing")):
        patch.status.update(fresh)


@kopf.on.create(GROUP, VERSION, "sites")
@kopf.on.update(GROUP, VERSION, "sites", field="spec")
def _site(name: str, spec: Any, memo: kopf.Memo, **_: Any) -> None:
    upsert_site(_rt(memo), name, spec)


@kopf.on.delete(GROUP, VERSION, "sites")
def _site_gone(name: str, memo: kopf.Memo, **_: Any) -> None:
    remove_site(_rt(memo), name)
