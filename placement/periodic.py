"""A step run every few seconds on a daemon thread: pollers and reconcilers share it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable


class Periodic:
    """Runs `step` every `period` seconds until stopped (first run at once unless `delay_first`).
    A step that raises is logged and the next one runs: the loop never dies."""

    def __init__(self, name: str, period: float, step: Callable[[], object],
                 log: logging.Logger, delay_first: bool = False) -> None:
        self.name = name
        self.period = period
        self.step = step
        self.log = log
        self.delay_first = delay_first
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Periodic:
        self.thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join(timeout=timeout)

    def _run(self) -> None:
        if self.delay_first and self.stopped.wait(self.period):
            return
        while not self.stopped.is_set():
            try:
                self.step()
            except Exception:  # outages and bugs alike: log, and try again next period
                self.log.exception("%s: step failed", self.name)
            self.stopped.wait(self.period)
