"""Live signals from Prometheus: free GPUs, GPU utilization and observed service p99 per site.

A background poller runs each site's PromQL (from the inventory's `signals`) over the HTTP API
with a per-query timeout and keeps the last good result with the time it was read. Decisions
never wait on Prometheus: they read the cache. A value older than `max_age_s` is stale; one
never read (or gone) is unavailable. Either way the decision falls back to the store's state
for it and its explanation lists the signal with its status and the last error.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import math
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from placement.model import Inventory, Workload
from placement.periodic import Periodic

log = logging.getLogger("placement.signals")
Floats = NDArray[np.float64]
SIGNALS = ("free_gpus", "gpu_utilization_pct", "service_p99_ms")


class SignalError(Exception):
    """A query failed: Prometheus down, slow, or answering with an error."""


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


class PrometheusClient:
    """Instant queries over Prometheus' HTTP API (`/api/v1/query`), each bounded by a timeout.

    The timeout is a deadline for the whole query (connect, request, headers and body), not for
    each socket read: a server that trickles its answer a byte at a time is cut off at it."""

    def __init__(self, url: str, timeout_s: float = 1.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def query(self, promql: str) -> list[Sample]:
        """The samples with finite values (NaN and ±Inf, e.g. from 0/0, count as absent)."""
        late = f"no answer within {self.timeout_s:g} s"
        deadline = time.monotonic() + self.timeout_s
        cut = threading.Event()
        try:
            status, reason, raw = self._get({"query": promql}, deadline, cut)
        except TimeoutError as exc:
            raise SignalError(late) from exc
        except (OSError, ValueError, http.client.HTTPException) as exc:
            if cut.is_set() or time.monotonic() >= deadline:
                raise SignalError(late) from exc
            raise SignalError(f"cannot query {self.url}: {exc!r}") from exc
        if cut.is_set():  # the answer may be cut short: never parse a part of it
            raise SignalError(late)
        if status >= 300:
            raise SignalError(f"HTTP {status}: {_prom_error(raw, reason)}")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise SignalError(f"cannot query {self.url}: {exc!r}") from exc
        try:
            return _samples(body)
        except (KeyError, TypeError, IndexError, ValueError, AttributeError) as exc:
            raise SignalError(f"not a Prometheus query response ({exc!r})") from exc

    def _get(self, params: dict[str, str], deadline: float,
             cut: threading.Event) -> tuple[int, str, bytes]:
        """GET /api/v1/query: (status, reason, body). At the deadline a timer shuts the socket
        down, which ends any read still waiting (and sets `cut`)."""
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {self.url!r}")
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(parts.hostname, parts.port,
                                               timeout=self.timeout_s)
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout_s)
        path = f"{parts.path}/api/v1/query?{urllib.parse.urlencode(params)}"
        timer: threading.Timer | None = None
        try:
            conn.connect()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock = conn.sock
            assert sock is not None

            def shut() -> None:
                cut.set()
                with contextlib.suppress(OSError):  # the plain socket's shutdown, also under
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)  # TLS: wakes a blocked read

            timer = threading.Timer(remaining, shut)
            timer.daemon = True
            timer.start()
            conn.request("GET", path, headers={"Accept": "application/json"})
            res = conn.getresponse()
            return res.status, res.reason, res.read()
        finally:
            if timer is not None:
                timer.cancel()
            conn.close()


def _samples(body: Any) -> list[Sample]:
    if body.get("status") != "success":
        raise SignalError(f"query failed: {body.get('error', body)}")
    data = body["data"]
    if data["resultType"] == "scalar":
        found = [Sample({}, float(data["result"][1]))]
    elif data["resultType"] == "vector":
        found = [Sample(dict(r.get("metric", {})), float(r["value"][1])) for r in data["result"]]
    else:
        raise SignalError(f"expected an instant vector, got a {data['resultType']}")
    return [s for s in found if math.isfinite(s.value)]


def _prom_error(raw: bytes, reason: str) -> str:
    try:
        return str(json.loads(raw).get("error", reason))
    except (ValueError, AttributeError):
        return reason


@dataclass
class Entry:
    """The last good result of one query, and the latest failure."""

    promql: str = ""
    samples: list[Sample] | None = None
    read_at: float | None = None  # wall-clock time of the last result with samples
    error: str | None = None


@dataclass(frozen=True)
class Reading:
    """One value a decision may use: a site's signal, for one GPU type or model."""

    site: str
    signal: str
    key: str | None
    status: str  # fresh | stale | unavailable
    value: float | None
    age_s: float | None
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"site": self.site, "signal": self.signal, "key": self.key,
                "status": self.status, "value": self.value,
                "age_s": None if self.age_s is None else round(self.age_s, 1),
                "error": self.error}


@dataclass
class Observed:
    """What the signals say now, in the engine's terms, plus every reading for explanations."""

    free_gpus: Floats  # per (site, GPU type) group; NaN where no fresh reading
    service_ms: dict[str, Floats]  # model -> per site; NaN where no fresh reading
    readings: list[Reading] = field(default_factory=list)

    def service_for(self, wl: Workload) -> Floats | None:
        serving = wl.spec.serving
        return self.service_ms.get(serving.model) if serving is not None else None

    def relevant(self, wl: Workload, sites: set[str]) -> list[dict[str, Any]]:
        """The readings that bear on this workload at its candidate sites: its GPU types, its
        model, utilization."""
        types = set(wl.spec.gpu.types)
        model = wl.spec.serving.model if wl.spec.serving is not None else None
        out = []
        for r in self.readings:
            if r.site not in sites:
                continue
            if r.signal == "free_gpus" and r.key is not None and r.key not in types:
                continue
            if (r.signal in ("service_p99_ms", "triton_service_p99_ms")
                    and (model is None or r.key not in (model, None))):
                continue
            out.append(r.as_dict())
        return out


class SignalCache:
    """Polls every site's queries in the background; `observed` never blocks on Prometheus."""

    def __init__(self, client: PrometheusClient, inventory: Callable[[], Inventory | None],
                 interval_s: float = 15.0, max_age_s: float = 60.0,
                 on_error: Callable[[str, str], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.inventory = inventory
        self.interval_s = interval_s
        self.max_age_s = max_age_s
        self.on_error = on_error
        self.clock = clock
        self.entries: dict[tuple[str, str], Entry] = {}
        self._loop = Periodic("placement-signals", interval_s, self.refresh, log)

    def start(self) -> SignalCache:
        self._loop.start()
        return self

    def stop(self) -> None:
        self._loop.stop()

    def refresh(self) -> None:
        """Run every configured query once, concurrently, each within the client's timeout.
        Entries of queries no longer configured (or edited) are dropped."""
        inv = self.inventory()
        if inv is None:
            return
        wanted: dict[tuple[str, str], str] = {}
        for site in inv.sites:
            queries = site.spec.signals
            for signal in SIGNALS if queries is not None else ():
                promql = getattr(queries, signal)
                if promql is not None:
                    wanted[(site.name, signal)] = promql
        for key in list(self.entries):
            if self.entries[key].promql != wanted.get(key):
                del self.entries[key]
        if not wanted:
            return
        with ThreadPoolExecutor(max_workers=min(8, len(wanted)),
                                thread_name_prefix="placement-signal") as pool:
            results = {key: pool.submit(self._query, promql) for key, promql in wanted.items()}
        for (name, signal), future in results.items():
            entry = self.entries.setdefault((name, signal), Entry(wanted[(name, signal)]))
            samples, error = future.result()
            if error is not None:
                entry.error = error
                if self.on_error is not None:
                    self.on_error(name, signal)
            elif samples:
                entry.samples, entry.read_at, entry.error = samples, self.clock(), None
            else:
                entry.error = "the query returned no samples"

    def _query(self, promql: str) -> tuple[list[Sample], str | None]:
        try:
            return self.client.query(promql), None
        except SignalError as exc:
            return [], str(exc)
        except Exception as exc:  # never let one query end the pass
            return [], f"query failed: {exc!r}"

    def observed(self, inv: Inventory, site_index: dict[str, int],
                 group_of: Callable[[str, str], int | None], groups: int) -> Observed:
        """The cache as engine inputs for this inventory, with each reading's status now."""
        now = self.clock()
        free = np.full(groups, np.nan)
        service: dict[str, Floats] = {}
        readings: list[Reading] = []
        for site in inv.sites:
            q = site.spec.signals
            if q is None:
                continue
            types = [g.type for g in site.spec.gpus]
            util = (self._readings(site.name, "gpu_utilization_pct", q.gpu_utilization_pct,
                                   None, now, readings)
                    if q.gpu_utilization_pct is not None else None)
            saturated = (q.saturated_at_pct is not None and util is not None
                         and util >= q.saturated_at_pct)
            for gpu in types:
                group = group_of(site.name, gpu)
                value = (self._readings(site.name, "free_gpus", q.free_gpus, gpu, now, readings,
                                        label=q.gpu_type_label, only=len(types) == 1)
                         if q.free_gpus is not None else None)
                if group is None:
                    continue
                if saturated:
                    free[group] = 0.0
                elif value is not None:
                    free[group] = max(0.0, math.floor(value))
            entry = self.entries.get((site.name, "service_p99_ms"))
            if entry is not None and entry.promql != q.service_p99_ms:
                entry = None  # the query was removed or edited since
            models = sorted({s.labels.get(q.model_label, "") for s in entry.samples or []}
                            - {""}) if entry is not None else []
            if q.service_p99_ms is not None and not models:
                self._readings(site.name, "service_p99_ms", q.service_p99_ms, None, now,
                               readings)
            for model in models:
                assert q.service_p99_ms is not None
                value = self._readings(site.name, "service_p99_ms", q.service_p99_ms, model,
                                       now, readings, label=q.model_label)
                if value is not None:
                    arr = service.setdefault(model, np.full(len(site_index), np.nan))
                    arr[site_index[site.name]] = value
        return Observed(free, service, readings)

    def _readings(self, site: str, signal: str, promql: str, key: str | None, now: float,
                  out: list[Reading], label: str | None = None, only: bool = False
                  ) -> float | None:
        """Append the reading for (site, signal, key); return its value when fresh."""
        entry = self.entries.get((site, signal))
        if entry is not None and entry.promql != promql:
            entry = None  # edited since the last poll: its values answer another query
        value = None
        if entry is not None and entry.samples is not None:
            for sample in entry.samples:
                tag = sample.labels.get(label) if label else None
                if key is None or tag == key or (only and tag is None):
                    value = sample.value if value is None else max(value, sample.value)
        if value is None or entry is None or entry.read_at is None:
            error = entry.error if entry is not None else "not read yet"
            if entry is not None and entry.samples and key is not None and error is None:
                error = f"no sample with {label}={key}"
            out.append(Reading(site, signal, key, "unavailable", None, None, error))
            return None
        age = now - entry.read_at
        status = "fresh" if age <= self.max_age_s else "stale"
        out.append(Reading(site, signal, key, status, round(value, 3), age, entry.error))
        return value if status == "fresh" else None
