"""The background loop every poller and reconciler runs on."""

from __future__ import annotations

import logging
import threading

import pytest

from placement.periodic import Periodic

log = logging.getLogger("test.periodic")


def test_a_failing_step_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    calls: list[int] = []
    done = threading.Event()

    def step() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database down")
        if len(calls) == 3:
            done.set()

    loop = Periodic("test-loop", 0.01, step, log).start()
    assert done.wait(5)
    loop.stop()
    assert not loop.thread.is_alive()
    assert "test-loop: step failed" in caplog.text and "database down" in caplog.text


@pytest.mark.parametrize(("delay_first", "runs"), [(False, 1), (True, 0)],
                         ids=["runs at once", "waits a period first"])
def test_first_run(delay_first: bool, runs: int) -> None:
    calls: list[int] = []
    ran = threading.Event()

    def step() -> None:
        calls.append(1)
        ran.set()

    loop = Periodic("test-first", 60, step, log, delay_first=delay_first).start()
    ran.wait(0.5)
    loop.stop()
    assert len(calls) == runs
