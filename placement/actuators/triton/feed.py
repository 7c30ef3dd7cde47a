"""Observed service times from the Triton servers this service runs, fed to the latency plugin.

A poller scrapes each ready serving's metrics URL, turns the interval between two scrapes into
a service time per model (see `placement.actuators.triton.metrics`) and keeps the last one
per (site, model) with the time it was read. While fresh, it replaces the workload's declared
`service_time_p99_ms` at that site (where Prometheus also reports one, the larger counts).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from placement.actuators.triton.metrics import (
    ModelCounters,
    ServiceTime,
    parse_models,
    service_times,
)
from placement.periodic import Periodic
from placement.signals import Observed, Reading
from placement.store.db import Database
from placement.store.servings import scrape_targets

log = logging.getLogger("placement.actuators.triton.feed")


def _requests(before: dict[tuple[str, str], ModelCounters],
              after: dict[tuple[str, str], ModelCounters], model: str) -> float:
    """Requests (served and failed) `model` received between two scrapes, versions summed; a
    counter that went down (Triton restarted) counts from zero."""
    total = 0.0
    for key, cur in after.items():
        if cur.model != model:
            continue
        prev = before.get(key)
        now_n, then_n = cur.success + cur.failure, 0.0
        if prev is not None and prev.success <= cur.success and prev.failure <= cur.failure:
            then_n = prev.success + prev.failure
        total += now_n - then_n
    return total
SIGNAL = "triton_service_p99_ms"


@dataclass
class Seen:
    value: ServiceTime
    read_at: float
    interval_s: float = 0.0  # between the two scrapes the value comes from


class TritonFeed:
    """Scrapes the ready servings' Triton metrics; `merge` adds fresh readings to Observed."""

    def __init__(self, db: Database, interval_s: float = 15.0, max_age_s: float = 120.0,
                 timeout_s: float = 2.0, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.interval_s = interval_s
        self.max_age_s = max_age_s
        self.timeout_s = timeout_s
        self.clock = clock
        self.last: dict[str, dict[tuple[str, str], ModelCounters]] = {}  # by metrics URL
        self.last_at: dict[str, float] = {}  # when each URL was last scraped
        # (site, workload id) -> (rps, read at)
        self.rate_seen: dict[tuple[str, str], tuple[float, float]] = {}
        self.seen: dict[tuple[str, str], Seen] = {}  # (site, model)
        self.errors: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()  # poll writes, decisions (other threads) read
        self._loop = Periodic("placement-triton-feed", interval_s, self.poll, log)

    def start(self) -> TritonFeed:
        self._loop.start()
        return self

    def stop(self) -> None:
        self._loop.stop()

    def poll(self) -> None:
        """Scrape every ready serving once (one request per metrics URL); readings of
        servings no longer ready are dropped."""
        with self.db.read() as s:
            targets = scrape_targets(s)
        seen: dict[tuple[str, str], Seen] = {}
        errors: dict[tuple[str, str], str] = {}
        rates: dict[tuple[str, str], tuple[float, float]] = {}
        urls = {t.metrics_url for t in targets}
        for url in urls:
            here = [t for t in targets if t.metrics_url == url]
            models = [(t.site, t.model) for t in here]
            try:
                current = parse_models(self._fetch(url))
            except Exception as exc:  # refused, timeout, truncated, not metrics: next URL
                errors.update({key: f"cannot scrape {url}: {exc!r}" for key in models})
                continue
            previous = self.last.get(url)
            now = self.clock()
            self.last[url] = current
            interval = now - self.last_at.get(url, now)
            self.last_at[url] = now
            times = service_times(previous, current) if previous is not None else {}
            for t in here:
                if t.model in times:  # two workloads' servers of one model at a site: the
                    old = seen.get((t.site, t.model))  # slower reading stands (as in merge)
                    if old is None or times[t.model].p99_ms > old.value.p99_ms:
                        seen[(t.site, t.model)] = Seen(times[t.model], now, interval)
                if previous is not None and interval > 0:  # 0 when nothing came in
                    rates[(t.site, t.workload_id)] = (
                        _requests(previous, current, t.model) / interval, now)
        keep = {(t.site, t.model) for t in targets}
        keep_rates = {(t.site, t.workload_id) for t in targets}
        with self._lock:
            self.seen = {k: v for k, v in self.seen.items() if k in keep} | seen
            self.rate_seen = {k: v for k, v in self.rate_seen.items()
                              if k in keep_rates} | rates
            self.errors = {k: v for k, v in errors.items() if k not in seen}
        for url in set(self.last) - urls:
            del self.last[url]
            self.last_at.pop(url, None)

    def _fetch(self, url: str) -> str:
        with urllib.request.urlopen(url, timeout=self.timeout_s) as res:
            return str(res.read().decode())

    def rates(self) -> dict[tuple[str, str], float]:
        """Requests/s per (site, workload id) over the last interval between two scrapes
        of a ready serving, fresh ones only (served and failed alike: demand, not throughput;
        0 when none came in). Two workloads serving one model at a site each read their own
        servers. A site not scraped twice, or not lately, has none."""
        with self._lock:
            seen_now = dict(self.rate_seen)
        now = self.clock()
        return {key: rps for key, (rps, at) in seen_now.items() if now - at <= self.max_age_s}

    def merge(self, observed: Observed | None, site_index: dict[str, int],
              groups: int) -> Observed | None:
        """Observed with this feed's fresh service times added (the larger value wins where
        Prometheus reports one too) and every reading listed; None when there is nothing."""
        with self._lock:
            seen_now, errors_now = dict(self.seen), dict(self.errors)
        if not seen_now and not errors_now:
            return observed
        out = observed or Observed(np.full(groups, np.nan), {})
        now = self.clock()
        for (site, model), seen in seen_now.items():
            if site not in site_index:
                continue
            age = now - seen.read_at
            fresh = age <= self.max_age_s
            value = seen.value.p99_ms
            out.readings.append(Reading(site, SIGNAL, model, "fresh" if fresh else "stale",
                                        round(value, 3), age, errors_now.get((site, model))))
            if fresh and math.isfinite(value):
                arr = out.service_ms.setdefault(model, np.full(len(site_index), np.nan))
                i = site_index[site]
                arr[i] = value if np.isnan(arr[i]) else max(arr[i], value)
        for (site, model), error in errors_now.items():
            if (site, model) not in seen_now and site in site_index:
                out.readings.append(Reading(site, SIGNAL, model, "unavailable", None, None,
                                            error))
        return out
