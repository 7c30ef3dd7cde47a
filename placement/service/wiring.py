"""Build the runtime and start what runs beside requests: the one place the API, the operator and
the CLI assemble a working service from settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.exc import IntegrityError

from placement.control.auth import ensure_token
from placement.control.fleets import rescale_fleets
from placement.control.gitops import PolicyWatcher, bundle_version
from placement.control.lifecycle import Requeuer, requeue
from placement.control.runtime import ReloadStatus, Runtime, activate_policy, active_policy
from placement.control.submit import Batcher
from placement.errors import ConfigError, PlacementError
from placement.metrics import Metrics
from placement.periodic import Periodic
from placement.policy.loader import load_bundle
from placement.signals import PrometheusClient, SignalCache
from placement.store import inventory as inv
from placement.store.db import open_database, utcnow
from placement.store.migrate import ensure_schema

if TYPE_CHECKING:
    from collections.abc import Callable

    from placement.service.settings import Settings

log = logging.getLogger("placement.service")


class StartupError(PlacementError):
    """The service cannot start; the message says why and what to do."""


class _Stoppable(Protocol):
    def stop(self) -> None: ...


def build_runtime(settings: Settings, metrics: Metrics | None = None) -> Runtime:
    """Open and migrate the database, load the GitOps policy (and seed inventory)."""
    db = open_database(settings.database_url.get_secret_value())
    ensure_schema(db, settings.migrate)
    metrics = metrics or Metrics()
    directory = settings.config_dir
    try:
        bundle = load_bundle(directory)
    except ConfigError as exc:
        with db.read() as s:
            stored = active_policy(s)
        if stored is None:
            raise StartupError(f"no valid policy to start with: {exc}") from exc
        log.error("policy bundle in %s is invalid; keeping stored version %s:\n%s",
                  directory, stored[1], exc)
        rt = Runtime(db, stored[0], stored[1], metrics, config_dir=directory)
        now = utcnow()
        rt.note_reload(ReloadStatus(False, now, stored[1], str(exc), now))
        return rt
    version = bundle_version(directory, bundle)
    for attempt in (1, 2):
        try:
            with db.write() as s:
                changed = activate_policy(s, bundle, str(directory), version)
                if settings.seed_inventory:
                    inv.seed(s, bundle.inventory)
                if settings.admin_token:
                    ensure_token(s, token=settings.admin_token.get_secret_value(),
                                 role="admin")
            break
        except IntegrityError:  # another replica starting now stored the same version first
            if attempt == 2:
                raise
    rt = Runtime(db, bundle.policy, version, metrics, config_dir=directory)
    rt.note_reload(ReloadStatus(True, utcnow(), version))
    if changed:
        requeue(rt)
    return rt


def start_serving(rt: Runtime, settings: Settings) -> Periodic | None:
    """With a kubeconfig: the Triton actuator's passes and the feed of measured service
    times (started here, stopped with the loop)."""
    if settings.kubeconfig is None:
        return None
    from placement.actuators.kube import Clusters
    from placement.actuators.triton.actuator import ServingActuator, ServingOptions
    from placement.actuators.triton.feed import TritonFeed

    options = ServingOptions(ready_timeout_s=settings.triton_ready_timeout_s,
                             model_timeout_s=settings.triton_model_timeout_s)
    if rt.triton is None:
        rt.triton = TritonFeed(rt.db, settings.triton_metrics_interval_s,
                               max_age_s=4 * settings.triton_metrics_interval_s).start()
    actuator = ServingActuator(rt, Clusters(settings.kubeconfig), options)
    return actuator.start(settings.serving_interval_s)


def start_bursts(rt: Runtime, settings: Settings) -> Periodic | None:
    """With bursts on: provision, track and destroy burst capacity through Pulumi."""
    if not settings.bursts:
        return None
    from infra.automation import PulumiProvisioner
    from placement.actuators.bursts.actuator import BurstActuator

    why = PulumiProvisioner.available()
    if why is not None:
        log.error("bursts are on but cannot be provisioned: %s", why)
    actuator = BurstActuator(rt, PulumiProvisioner(settings.pulumi_backend))
    return actuator.start(settings.bursts_interval_s)


def start_jobs(rt: Runtime, settings: Settings) -> Periodic | None:
    """With a kubeconfig: run placed jobs on their clusters and track them to the end."""
    if settings.kubeconfig is None:
        return None
    from placement.actuators.jobs.actuator import JobActuator, JobOptions
    from placement.actuators.kube import Clusters

    actuator = JobActuator(rt, Clusters(settings.kubeconfig),
                           JobOptions(poll_s=settings.jobs_interval_s))
    return actuator.start(settings.jobs_interval_s)


# Every actuator kind, in start order: a new kind is a package under placement.actuators and
# one entry here. A starter returns the kind's loop (stopping it lets a pass finish), or None
# when the settings leave the kind off.
ACTUATORS: tuple[tuple[str, Callable[[Runtime, Settings], Periodic | None]], ...] = (
    ("serving", start_serving), ("jobs", start_jobs), ("bursts", start_bursts))


@dataclass
class Loops:
    """What a process runs beside its requests; `stop` ends it all, last started first."""

    rt: Runtime
    batcher: Batcher | None = None
    running: list[_Stoppable] = field(default_factory=list)

    def stop(self) -> None:
        for loop in reversed(self.running):
            loop.stop()
        self.running.clear()
        self.rt.on_release = None


def start(rt: Runtime, settings: Settings, *, batch: bool = True) -> Loops:
    """Start the requeuer, the submission batcher (`batch`), the policy watcher, live signals
    and the actuators the settings turn on; compile the engine now, not on the first request."""
    loops = Loops(rt)
    requeuer = Requeuer(rt, period=settings.requeue_seconds).start()
    rt.on_release = requeuer.wake.set
    loops.running.append(requeuer)
    if batch:
        loops.batcher = Batcher(rt).start()
        loops.running.append(loops.batcher)
    if rt.config_dir is not None and settings.reload_seconds > 0:
        loops.running.append(PolicyWatcher(rt, rt.config_dir, settings.reload_seconds).start())
    with rt.db.read() as session:
        rt.engine(session)
    if settings.prometheus_url and rt.signals is None:
        rt.signals = SignalCache(
            PrometheusClient(settings.prometheus_url, settings.signals_timeout_s),
            rt.current_inventory, settings.signals_interval_s, settings.signals_max_age_s,
            on_error=lambda site, signal: rt.metrics.signal_errors.labels(site, signal).inc(),
        ).start()
    if rt.signals is not None:
        loops.running.append(rt.signals)
    actuators = [loop for _, start_kind in ACTUATORS
                 if (loop := start_kind(rt, settings)) is not None]
    if rt.triton is not None:  # stopped after the actuators that feed on it
        loops.running.append(rt.triton)
        loops.running.append(Periodic("placement-fleet-autoscale", settings.autoscale_seconds,
                                      lambda: rescale_fleets(rt), log).start())
    loops.running += actuators
    return loops

