"""Workloads from a trace: what the trace has is kept, what it lacks is drawn by seeded rules.

The rules (the same for every policy compared, because the workloads are built once):
- Jobs (Philly, Alibaba GPU 2023, Alibaba DLRM 2025; Helios counts expanded to jobs): arrival,
  duration and GPU count come from the trace. A job asks for one GPU type, drawn from the
  inventory's on-prem types weighted by installed GPUs (all offered types when there is no
  on-prem site); a count above the largest pool of that type anywhere is clipped to it (and
  counted). Kind: `training` when it uses 2+ GPUs or runs 1 h or more, else `batch`. With
  probability DEADLINE_SHARE a deadline of duration x U(1.5, 3) + 1 h; with probability
  DATASET_SHARE it reads one dataset, drawn from the inventory's datasets no bigger than
  DATASET_GB_PER_GPU_HOUR x its GPU-hours (data read grows with compute; a 20-minute 1-GPU job
  does not read 40 TB). Team: one of TEAMS.
- Load: with `load` set, arrival times are scaled by one factor so that the GPU-hours offered
  per hour equal `load` x the inventory's on-prem GPUs (a trace from a 2,000-GPU cluster then
  exercises a 100-GPU inventory as hard as its own cluster was, not 20 times harder). Request
  traces keep their timing: their load sets the services' replicas.
- Feasibility: a drawn GPU type, dataset or client that no site of the inventory can serve at
  all (a boundary, a missing GPU type, an SLO no site meets) is drawn again, up to ATTEMPTS
  times, so the comparison is about where work runs, not about impossible work.
- Helios gives job counts and GPUs per 10 minutes, no durations: jobs arrive uniformly within
  their interval, share the interval's GPUs evenly, and run for a log-normal duration fitted to
  the Philly trace (median 0.33 h, log sigma 2.08; read from trace_philly_jobs.csv).
- Requests (Azure LLM, Mooncake, Alibaba GenAI LoRA) and QPS samples (Alibaba GenAI) drive
  SERVICES services. Each request goes to one service (seeded); each service has a kind
  (inference or rag, half each), one client location, a GPU type (as for jobs), a p99 SLO and a
  service time. Per window of `window_h` a service is one workload sized for that window's load:
  replicas = ceil(rate x mean request seconds / CONCURRENCY_PER_REPLICA), at least 1: a
  service runs from its first window with requests to its last, keeping one replica through
  windows without any (it does not scale to zero and start cold for the next request). A
  request's seconds are the trace's measured execution time where it has one, else
  tokens_in x PREFILL_S_PER_TOKEN + tokens_out x DECODE_S_PER_TOKEN. For QPS samples, a
  window's rate is sum(values) x the median sample gap / window seconds (samples of concurrent
  containers add up) and requests last RATE_REQUEST_S.
The constants below are assumptions (no trace has them); change them here, not per policy.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate
from statistics import median
from typing import Any

from placement.model import Inventory, Workload
from placement.model.inventory import CloudSiteSpec, OnPremSiteSpec
from placement.simulate.traces import Job, JobCount, Rate, Request, Trace

TEAMS = ("vision", "language", "forecasting", "platform")
DEADLINE_SHARE = 0.3
DATASET_SHARE = 0.6
DATASET_GB_PER_GPU_HOUR = 200
SERVICES = 4
CONCURRENCY_PER_REPLICA = 16  # requests one GPU replica serves at once (continuous batching)
PREFILL_S_PER_TOKEN = 0.0002
DECODE_S_PER_TOKEN = 0.02
RATE_REQUEST_S = 2.0
SERVICE_TIME_P99_MS = 120.0  # time to first token, p99, on the GPU
SLO_P99_MS = 200.0  # end-to-end p99 the clients are promised (RTT + service time + lookups)
LOOKUPS_PER_REQUEST = 3
KB_PER_LOOKUP = 16
PHILLY_MEDIAN_H, PHILLY_LOG_SIGMA = 0.33, 2.08
MIN_JOB_H = 1 / 60
ATTEMPTS = 20  # redraws of a shape no site can run


@dataclass(frozen=True)
class SimWorkload:
    """One workload of the replay: when it arrives, what it is, what it serves."""

    index: int
    arrival_h: float
    workload: Workload
    requests: int = 0  # requests a service window serves (0 for jobs)


@dataclass
class Synthesis:
    """The workloads and what the rules changed (said in the summary)."""

    workloads: list[SimWorkload]
    notes: dict[str, int] = field(default_factory=dict)
    time_scale: float = 1.0  # arrival times were multiplied by this (see `load`)


class _Rules:
    """Seeded draws over one inventory."""

    def __init__(self, inventory: Inventory, seed: int,
                 feasible: Callable[[Workload], bool] | None) -> None:
        self.rng = random.Random(seed)
        self.feasible = feasible
        self.cache: dict[tuple[Any, ...], bool] = {}
        weights: dict[str, int] = defaultdict(int)
        biggest: dict[str, int] = defaultdict(int)
        for site in inventory.sites:
            if isinstance(site.spec, OnPremSiteSpec):
                for pool in site.spec.gpus:
                    weights[pool.type] += pool.count
                    biggest[pool.type] = max(biggest[pool.type], pool.count)
            elif isinstance(site.spec, CloudSiteSpec):
                for offer in site.spec.gpus:
                    biggest[offer.type] = max(biggest[offer.type], offer.quota_gpus)
        if not weights:
            weights = {t: 1 for t in biggest}
        self.types = sorted(weights)
        self.type_cum = list(accumulate(weights[t] for t in self.types))  # as weights= draws
        self.biggest = dict(biggest)
        self.datasets = [d.name for d in inventory.datasets]
        self.sizes = {d.name: d.spec.size_gb for d in inventory.datasets}
        self.onprem_gpus = sum(weights.values()) if any(
            isinstance(s.spec, OnPremSiteSpec) for s in inventory.sites) else 0
        self.clients = [c.name for c in inventory.client_locations]
        self.notes: dict[str, int] = defaultdict(int)

    def gpu_type(self) -> str:
        return self.rng.choices(self.types, cum_weights=self.type_cum)[0]

    def ok(self, spec: dict[str, Any], key: tuple[Any, ...]) -> bool:
        """Whether some site could run this shape at all (cached per shape)."""
        if self.feasible is None:
            return True
        got = self.cache.get(key)
        if got is None:
            wl = Workload.model_validate({"metadata": {"name": "probe"}, "spec": spec})
            got = self.cache[key] = self.feasible(wl)
        return got

    def job(self, index: int, at_s: float, duration_s: float, gpus_asked: int) -> SimWorkload:
        rng = self.rng
        hours = max(duration_s / 3600, MIN_JOB_H)
        for _ in range(ATTEMPTS):
            gpu = self.gpu_type()
            gpus = min(gpus_asked, self.biggest[gpu])
            spec: dict[str, Any] = {
                "kind": "training" if gpus >= 2 or hours >= 1 else "batch",
                "team": rng.choice(TEAMS), "gpu": {"types": [gpu], "count": gpus},
                "duration_hours": hours}
            if rng.random() < DATASET_SHARE:
                fit = [d for d in self.datasets
                       if self.sizes[d] <= DATASET_GB_PER_GPU_HOUR * gpus * hours]
                if fit:
                    spec["datasets"] = [{"name": rng.choice(fit)}]
            # the key holds what the policy's hard rules read (rules match on kind and team)
            if self.ok(spec, (spec["kind"], spec["team"], gpu, gpus,
                              str(spec.get("datasets")))):
                break
        else:
            self.notes["jobs no site can run (kept; every policy rejects them)"] += 1
        if gpus < gpus_asked:
            self.notes["GPU count clipped to the largest pool of its type"] += 1
        if rng.random() < DEADLINE_SHARE:
            spec["deadline_hours"] = hours * rng.uniform(1.5, 3.0) + 1.0
        wl = Workload.model_validate({"metadata": {"name": f"job-{index}"}, "spec": spec})
        return SimWorkload(index, at_s / 3600, wl)


def _jobs(trace: Trace, rules: _Rules) -> list[SimWorkload]:
    out: list[SimWorkload] = []
    for rec in trace.records:
        if isinstance(rec, Job):
            out.append(rules.job(len(out), rec.at_s, rec.duration_s, rec.gpus))
        elif isinstance(rec, JobCount) and rec.jobs > 0:
            base, extra = divmod(rec.gpus, rec.jobs)
            for k in range(rec.jobs):
                gpus = base + (1 if k < extra else 0)
                if gpus <= 0:
                    rules.notes["Helios job without a GPU share (more jobs than GPUs)"] += 1
                    continue
                at = rec.at_s + rules.rng.uniform(0, 600)
                hours = rules.rng.lognormvariate(math.log(PHILLY_MEDIAN_H), PHILLY_LOG_SIGMA)
                out.append(rules.job(len(out), at, hours * 3600, gpus))
    out.sort(key=lambda w: w.arrival_h)
    return [SimWorkload(i, w.arrival_h, w.workload) for i, w in enumerate(out)]


def _service_specs(rules: _Rules) -> list[dict[str, Any]]:
    rng = rules.rng
    specs = []
    for k in range(SERVICES):
        for _ in range(ATTEMPTS):
            rag = bool(rules.datasets) and rng.random() < 0.5
            spec: dict[str, Any] = {
                "kind": "rag" if rag else "inference", "team": TEAMS[k % len(TEAMS)],
                "gpu": {"types": [rules.gpu_type()], "count": 1}, "duration_hours": 1.0,
                "latency": {"p99_slo_ms": SLO_P99_MS, "service_time_p99_ms": SERVICE_TIME_P99_MS,
                            "clients": [{"location": rng.choice(rules.clients)}]}}
            if rag:
                spec["datasets"] = [{"name": rng.choice(rules.datasets), "access": "lookup",
                                     "lookups_per_request": LOOKUPS_PER_REQUEST,
                                     "kb_per_lookup": KB_PER_LOOKUP}]
            if rules.ok(spec, ("service", str(spec))):
                break
        else:
            rules.notes["services no site can serve within the SLO (kept)"] += 1
        specs.append(spec)
    return specs


def _services(trace: Trace, rules: _Rules, window_h: float) -> list[SimWorkload]:
    if not rules.clients:
        raise ValueError("the inventory has no ClientLocation: a request trace drives services, "
                         "which need clients; add ClientLocation documents to --config")
    specs = _service_specs(rules)
    window_s = window_h * 3600
    load: dict[tuple[int, int], list[float]] = defaultdict(lambda: [0.0, 0.0])  # n, seconds
    if trace.shape == "rates":
        gaps = [b.at_s - a.at_s for a, b in zip(trace.records, trace.records[1:], strict=False)
                if b.at_s > a.at_s]
        gap = median(gaps) if gaps else window_s
        for rec in trace.records:
            assert isinstance(rec, Rate)
            cell = load[(int(rec.at_s // window_s), rules.rng.randrange(SERVICES))]
            cell[0] += rec.qps * gap
            cell[1] += rec.qps * gap * RATE_REQUEST_S
    else:
        for rec in trace.records:
            assert isinstance(rec, Request)
            secs = rec.service_s if rec.service_s is not None else (
                rec.tokens_in * PREFILL_S_PER_TOKEN + rec.tokens_out * DECODE_S_PER_TOKEN)
            cell = load[(int(rec.at_s // window_s), rules.rng.randrange(SERVICES))]
            cell[0] += 1
            cell[1] += secs
    span: dict[int, tuple[int, int]] = {}  # service -> first and last window with load
    for (w, k), (n, _) in load.items():
        if n > 0:
            lo, hi = span.get(k, (w, w))
            span[k] = (min(lo, w), max(hi, w))
    cells = sorted((w, k) for k, (lo, hi) in span.items() for w in range(lo, hi + 1))
    out: list[SimWorkload] = []
    for w, k in cells:
        n, secs = load.get((w, k), (0.0, 0.0))
        spec = dict(specs[k])
        busy = secs / window_s  # requests in flight on average
        spec.update(replicas=max(1, math.ceil(busy / CONCURRENCY_PER_REPLICA)),
                    duration_hours=window_h, requests_per_s=n / window_s)
        wl = Workload.model_validate({"metadata": {"name": f"svc{k}-w{w}"}, "spec": spec})
        out.append(SimWorkload(len(out), w * window_h, wl, requests=round(n)))
    return out


def synthesize(trace: Trace, inventory: Inventory, *, seed: int = 0, window_h: float = 0.25,
               limit: int | None = None, load: float | None = None,
               feasible: Callable[[Workload], bool] | None = None,
               skip: int = 0) -> Synthesis:
    """The replay's workloads for `trace` over `inventory`: by arrival, the first `limit` after
    the first `skip` (a later window of the trace; its arrivals start from 0).

    `feasible` says whether some site could take a workload at all (run.py asks the engine
    on an empty inventory); draws are repeated, up to ATTEMPTS, until it says yes.
    """
    rules = _Rules(inventory, seed, feasible)
    if not rules.types:
        raise ValueError("the inventory offers no GPUs; add on-prem pools or cloud offers")
    if trace.shape in ("jobs", "job_counts"):
        got = _jobs(trace, rules)
    else:
        got = _services(trace, rules, window_h)
    if skip > 0:
        rules.notes[f"first {skip} workloads left out (--skip)"] = min(skip, len(got))
        got = got[skip:]
        t0 = got[0].arrival_h if got else 0.0
        got = [SimWorkload(i, w.arrival_h - t0, w.workload, w.requests)
               for i, w in enumerate(got)]
    if limit is not None and len(got) > limit:
        rules.notes[f"workloads after the first {limit} left out (--limit)"] = len(got) - limit
        got = got[:limit]
    factor = _load_factor(got, rules.onprem_gpus, load) if trace.shape in (
        "jobs", "job_counts") else 1.0
    if factor != 1.0:
        got = [SimWorkload(w.index, w.arrival_h * factor, w.workload, w.requests) for w in got]
    return Synthesis(got, dict(rules.notes), factor)


def _load_factor(got: list[SimWorkload], onprem_gpus: int, load: float | None) -> float:
    """Arrival scale that makes offered GPU-hours per hour `load` x the on-prem GPUs."""
    if load is None or onprem_gpus <= 0 or len(got) < 2:
        return 1.0
    span = got[-1].arrival_h - got[0].arrival_h
    work = sum(w.workload.spec.gpu.count * w.workload.spec.replicas
               * (w.workload.spec.duration_hours or 0.0) for w in got)
    if span <= 0 or work <= 0:
        return 1.0
    return work / (load * onprem_gpus) / span
