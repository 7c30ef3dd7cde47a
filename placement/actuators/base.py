"""The skeleton every actuator shares: claim due work rows, work each, back off on failure."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

from placement.periodic import Periodic
from placement.store.db import utcnow
from placement.store.work import owned, record_failure, retry_wait, work_due

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from placement.control.runtime import Runtime
    from placement.model import Site

Failed = Literal["temporary", "permanent", "unexpected"]
Outcome = Literal["ok", "temporary", "permanent", "unexpected", "lapsed"]
STOP_TIMEOUT_S = 30.0  # a pass may be in a Pulumi update or a rollout when the service stops


class ActuatorError(Exception):
    """A failure an actuator knows how to pace; see the two kinds below."""


class TemporaryActuatorError(ActuatorError):
    """An outage (a cluster, a server, a cloud API): retried with exponential backoff."""


class PermanentActuatorError(ActuatorError, ValueError):
    """The spec or the inventory is wrong as it stands: retried after the longest wait, in
    case someone fixes it meanwhile; the message says what to change."""


@dataclass(frozen=True)
class ActuatorOptions:
    """Retry pacing and claim length; each kind's options extend these."""

    backoff_base_s: float = 5.0
    backoff_max_s: float = 300.0
    claim_s: float = 300.0  # a claim older than this is taken to be from a dead process


@dataclass(frozen=True)
class Failure:
    """A failed attempt, as recorded on the row: for a kind's own status and event."""

    attempts: int
    wait: timedelta
    message: str
    permanent: bool


class ActuatorLoop(Periodic):
    """An actuator's loop: stopping gives the pass it is in time to finish."""

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        super().stop(timeout)


Opts = TypeVar("Opts", bound=ActuatorOptions)


class Actuator(Generic[Opts]):
    """Reconciles one work table: adopt new work, then work the due rows one claim at a time.
    A kind sets NAME, TABLE, DUE and LOG, and implements `work` (and `_adopt`, `classify`,
    `on_failure` where it needs to)."""

    NAME: ClassVar[str]  # the kind, a metric label: serving, jobs, bursts
    TABLE: ClassVar[Any]  # a table with the work columns (see placement.store.work)
    DUE: ClassVar[tuple[str, ...]]  # statuses whose rows are worked when due
    LOG: ClassVar[logging.Logger]
    LIMIT: ClassVar[int] = 100  # rows worked per pass at most
    SPEC_ERROR: ClassVar[type[PermanentActuatorError]] = PermanentActuatorError

    def __init__(self, rt: Runtime, options: Opts, clock: Callable[[], datetime] = utcnow) -> None:
        self.rt = rt
        self.options = options
        self.clock = clock

    def reconcile(self, limit: int | None = None) -> int:
        """One pass; returns how many rows it worked on. Rows are claimed one at a time, so a
        slow row never holds claims on rows this pass has not reached."""
        started = time.perf_counter()
        try:
            try:
                self._adopt()
            except Exception:  # e.g. the database is down: still work what is claimable
                self.LOG.exception("%s: adopting new work failed", self.NAME)
            return work_due(self.rt.db, self.TABLE, self.DUE, self.clock, self.options.claim_s,
                            self._work, self.LOG, limit or self.LIMIT)
        finally:
            self.rt.metrics.actuator_seconds.labels(self.NAME).observe(
                time.perf_counter() - started)

    def start(self, interval_s: float) -> Periodic:
        """Run passes every `interval_s` on a daemon thread until stopped."""
        return ActuatorLoop(f"placement-{self.NAME}", interval_s, self.reconcile,
                            self.LOG).start()

    def _site(self, name: str) -> Site:
        """The row's site from the inventory; SPEC_ERROR when it is gone."""
        site = self.rt.site(name)
        if site is None:
            raise self.SPEC_ERROR(f"site {name} is no longer in the inventory; add it back or "
                                  "cancel the workload")
        return site

    def _adopt(self) -> None:
        """Rows for new work, and rows whose work changed; each kind its own."""

    def work(self, wid: uuid.UUID, token: str) -> None:
        """Work the claimed row; raise to fail the attempt (see `classify`)."""
        raise NotImplementedError

    def classify(self, exc: Exception) -> Failed:
        """What a failure is: the typed errors say; anything else is unexpected (a bug, or a
        failure nobody typed), logged with its traceback and retried like an outage."""
        if isinstance(exc, PermanentActuatorError):
            return "permanent"
        if isinstance(exc, TemporaryActuatorError):
            return "temporary"
        return "unexpected"

    def on_failure(self, s: Session, row: Any, failure: Failure) -> None:
        """The kind's own record of a failure (status, event), in the failure's transaction."""

    def _work(self, wid: uuid.UUID, token: str) -> None:
        """`work` with the shared failure path; every outcome counted."""
        try:
            self.work(wid, token)
        except Exception as exc:
            outcome: Outcome = self.fail(wid, token, exc)
        else:
            outcome = "ok"
        self.rt.metrics.actuator_rows.labels(self.NAME, outcome).inc()

    def fail(self, wid: uuid.UUID, token: str, exc: Exception) -> Outcome:
        """Record a failed attempt on a claimed row: one more attempt counted, the claim
        released, the next attempt after the backoff. A lapsed claim writes nothing (whoever
        holds it now decides)."""
        kind = self.classify(exc)
        if kind == "unexpected":
            self.LOG.error("%s %s failed unexpectedly", self.NAME, wid, exc_info=exc)
        message = str(exc) or repr(exc)
        with self.rt.db.write() as s:
            row = owned(s, self.TABLE, wid, token)
            if row is None:
                return "lapsed"
            attempts, permanent = row.attempts + 1, kind == "permanent"
            wait = retry_wait(attempts, permanent, self.options.backoff_base_s,
                              self.options.backoff_max_s)
            failure = Failure(attempts, wait, message, permanent)
            record_failure(row, attempts=failure.attempts, retry_at=self.clock() + failure.wait,
                           message=message)
            self.on_failure(s, row, failure)
        if kind != "unexpected":
            self.LOG.warning("%s %s: %s", self.NAME, wid, message)
        return kind

    def _failed(self, row: Any, token: str, exc: Exception) -> Outcome:
        """`fail` for a caller holding a snapshot of the row."""
        return self.fail(row.workload_id, token, exc)
