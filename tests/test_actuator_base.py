"""The actuators' shared skeleton on the real SQLite store: backoff by error kind, a lapsed claim
that writes nothing, one metric family counting every outcome, and the loop every kind starts."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from placement.actuators.base import (
    Actuator,
    ActuatorLoop,
    ActuatorOptions,
    Failure,
    PermanentActuatorError,
    TemporaryActuatorError,
)
from placement.actuators.bursts.actuator import BurstSpecError
from placement.actuators.jobs.manifests import JobSpecError
from placement.actuators.kube import ManifestError
from placement.actuators.triton.render import ServingSpecError
from placement.control.runtime import Runtime
from placement.store.db import as_utc
from placement.store.tables import ServingRow, WorkloadRow
from placement.store.work import claim_next

from .conftest import Api
from .factories import Clock

OPTIONS = ActuatorOptions(backoff_base_s=5, backoff_max_s=300, claim_s=60)


class Probe(Actuator[ActuatorOptions]):
    """An actuator whose work raises what the test says, over the `servings` table."""

    NAME = "probe"
    TABLE = ServingRow
    DUE = ("pending", "retrying")
    LOG = logging.getLogger("tests.probe")

    def __init__(self, rt: Runtime, clock: Clock, error: Exception | None = None) -> None:
        super().__init__(rt, OPTIONS, clock)
        self.error = error
        self.worked: list[uuid.UUID] = []
        self.failures: list[Failure] = []

    def work(self, wid: uuid.UUID, token: str) -> None:
        self.worked.append(wid)
        if self.error is not None:
            raise self.error

    def on_failure(self, s: Session, row: ServingRow, failure: Failure) -> None:
        row.status = "retrying"
        self.failures.append(failure)


def add_row(api: Api, clock: Clock) -> uuid.UUID:
    wid = uuid.uuid4()
    with api.runtime.db.write() as s:
        s.add(WorkloadRow(id=wid, name="probe", team="apps", kind="inference", phase="placed",
                          site="dc-a", action="place", document={}))
        s.flush()
        s.add(ServingRow(workload_id=wid, site="dc-a", namespace="ns", name="probe",
                         model="m", status="pending", attempts=0, message="new",
                         next_attempt_at=clock()))
    return wid


def row_of(api: Api, wid: uuid.UUID) -> ServingRow:
    with api.runtime.db.read() as s:
        row = s.get(ServingRow, wid)
        assert row is not None
        s.expunge(row)
        return row


def counted(api: Api, outcome: str) -> float:
    value = api.runtime.metrics.registry.get_sample_value(
        "placement_actuator_rows_total", {"kind": "probe", "outcome": outcome})
    return value or 0.0


@pytest.mark.parametrize(("error", "outcome", "waits"), [
    (TemporaryActuatorError("cluster unreachable"), "temporary", [5, 10, 20, 40, 80, 160, 300]),
    (RuntimeError("a bug"), "unexpected", [5, 10, 20, 40]),
    (PermanentActuatorError("site gone"), "permanent", [300, 300, 300]),
    (ManifestError("Job x: spec: bad"), "permanent", [300]),
], ids=["temporary", "unexpected", "permanent", "manifest"])
def test_a_failure_backs_off_by_its_kind(api: Api, error: Exception, outcome: str,
                                         waits: list[float]) -> None:
    clock = Clock()
    probe, wid = Probe(api.runtime, clock, error), add_row(api, clock)
    for attempt, wait in enumerate(waits, start=1):
        assert probe.reconcile() == 1
        row = row_of(api, wid)
        assert (row.attempts, row.status, row.message) == (attempt, "retrying", str(error))
        assert row.claim_token is None and row.claimed_until is None  # released
        due = as_utc(row.next_attempt_at)
        assert due is not None and due - clock() == timedelta(seconds=wait)
        assert probe.failures[-1] == Failure(attempt, timedelta(seconds=wait), str(error),
                                             outcome == "permanent")
        assert probe.reconcile() == 0  # not due before the wait ends
        clock.advance(wait)
    assert counted(api, outcome) == len(waits)
    assert counted(api, "ok") == 0
    passes = api.runtime.metrics.registry.get_sample_value(
        "placement_actuator_pass_seconds_count", {"kind": "probe"})
    assert passes == 2 * len(waits)


def test_a_lapsed_claim_never_writes(api: Api) -> None:
    clock = Clock()
    late, wid = Probe(api.runtime, clock, TemporaryActuatorError("late")), add_row(api, clock)
    first = claim_next(api.runtime.db, ServingRow, Probe.DUE, set(), clock, OPTIONS.claim_s)
    assert first is not None
    clock.advance(OPTIONS.claim_s + 1)  # the first worker was too slow: another claims the row
    second = claim_next(api.runtime.db, ServingRow, Probe.DUE, set(), clock, OPTIONS.claim_s)
    assert second is not None and second[0] == wid
    before = row_of(api, wid)
    late._work(*first)
    assert late.fail(wid, first[1], PermanentActuatorError("late too")) == "lapsed"
    after = row_of(api, wid)
    assert (after.attempts, after.status, after.message, after.claim_token) == (
        before.attempts, before.status, before.message, second[1])
    assert after.next_attempt_at == before.next_attempt_at and late.failures == []
    assert counted(api, "lapsed") == 1


def test_work_that_succeeds_is_counted_and_not_failed(api: Api) -> None:
    clock = Clock()
    probe, wid = Probe(api.runtime, clock), add_row(api, clock)
    assert probe.reconcile() == 1 and probe.worked == [wid]
    assert row_of(api, wid).attempts == 0 and probe.failures == []
    assert counted(api, "ok") == 1


@pytest.mark.parametrize("error", [ManifestError, JobSpecError, ServingSpecError,
                                   BurstSpecError])
def test_spec_errors_of_every_kind_are_permanent(api: Api, error: type[Exception]) -> None:
    assert Probe(api.runtime, Clock()).classify(error("wrong as written")) == "permanent"
    assert issubclass(error, ValueError)  # as before they shared a base


def test_start_runs_passes_on_a_loop_that_lets_a_pass_finish(api: Api) -> None:
    clock = Clock()
    probe, wid = Probe(api.runtime, clock), add_row(api, clock)
    loop = probe.start(0.01)
    try:
        deadline = time.monotonic() + 10
        while not probe.worked and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        loop.stop()
    assert probe.worked == [wid]
    assert isinstance(loop, ActuatorLoop) and loop.name == "placement-probe"
    assert not loop.thread.is_alive()


def test_the_service_starts_every_kind_from_one_registry() -> None:
    from placement.actuators.bursts.actuator import BurstActuator
    from placement.actuators.jobs.actuator import JobActuator
    from placement.actuators.triton.actuator import ServingActuator
    from placement.service.wiring import ACTUATORS

    kinds = [ServingActuator.NAME, JobActuator.NAME, BurstActuator.NAME]
    assert [kind for kind, _ in ACTUATORS] == kinds == ["serving", "jobs", "bursts"]
