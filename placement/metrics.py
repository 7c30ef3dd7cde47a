"""Every Prometheus metric of the project, declared here and nowhere else."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

BYTES_PER_GB = 1e9  # the engine's estimates are in decimal gigabytes; metrics are in bytes
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The metric objects, bound to one registry (a fresh one per test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.decisions = Counter("placement_decisions_total", "Stored decisions by action and "
                                 "chosen site kind.", ["action", "site_kind"], registry=r)
        self.decision_seconds = Histogram(
            "placement_decision_duration_seconds", "Engine time per decision (filter, score, "
            "explain).", buckets=LATENCY_BUCKETS, registry=r)
        self.capacity_conflicts = Counter(
            "placement_capacity_conflicts_total", "Decisions retried because another replica "
            "reserved the same GPUs first.", registry=r)
        self.estimated_usd = Counter("placement_estimated_usd_total", "Estimated USD of placed "
                                     "workloads (GPU + egress).", ["site_kind"], registry=r)
        self.egress_bytes = Counter(
            "placement_estimated_egress_bytes_total", "Estimated egress bytes of placed "
            "workloads (decimal: 1 GB = 1e9 bytes).", ["site_kind"], registry=r)
        self.gpus_reserved = Gauge("placement_gpus_reserved", "Reserved GPUs per site and type "
                                   "(read from the store at scrape time).", ["site", "gpu_type"],
                                   registry=r, multiprocess_mode="mostrecent")
        self.gpus_free = Gauge("placement_gpus_free", "Free GPUs per site and type (installed "
                               "or quota minus reserved).", ["site", "gpu_type"], registry=r,
                               multiprocess_mode="mostrecent")
        self.batch_size = Histogram(
            "placement_batch_submissions", "Submissions decided and stored together in one "
            "transaction.", buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.policy_reloads = Counter(
            "placement_policy_reloads_total", "Policy bundle reloads from the GitOps directory "
            "by result (ok, failed).", ["result"], registry=r)
        self.policy_reload_failing = Gauge(
            "placement_policy_reload_failing", "1 while the last reload of the GitOps directory "
            "failed validation (the previous bundle keeps serving).", registry=r,
            multiprocess_mode="mostrecent")
        self.inventory_skipped = Gauge(
            "placement_inventory_rows_skipped", "Stored inventory documents that do not "
            "validate and are left out of decisions (see /readyz).", registry=r,
            multiprocess_mode="mostrecent")
        self.signal_errors = Counter(
            "placement_signal_errors_total", "Failed or empty Prometheus signal queries by site "
            "and signal (decisions fall back to the store).", ["site", "signal"], registry=r)
        self.serving_actions = Counter(
            "placement_serving_actions_total", "Triton serving actions on the sites' clusters "
            "by site, action (serve, remove) and result (ok, error).",
            ["site", "action", "result"], registry=r)
        self.job_actions = Counter(
            "placement_job_actions_total", "Job actions on the sites' clusters by site, action "
            "(submit, track, remove) and result (ok, error).", ["site", "action", "result"],
            registry=r)
        self.actuator_rows = Counter(
            "placement_actuator_rows_total", "Claimed work rows the actuators worked, by kind "
            "(serving, jobs, bursts) and outcome (ok; temporary, permanent, unexpected: failed "
            "and retried; lapsed: failed after the claim lapsed, nothing written).",
            ["kind", "outcome"], registry=r)
        self.actuator_seconds = Histogram(
            "placement_actuator_pass_seconds", "Time of one actuator pass (adopting new work "
            "and working the due rows) by kind.", ["kind"],
            buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0), registry=r)
        self.job_estimate_ratio = Histogram(
            "placement_job_estimate_ratio", "Finished jobs: actual / estimated, by quantity "
            "(hours, usd, egress_gb); 1 is a perfect estimate.", ["quantity"],
            buckets=(0.25, 0.5, 0.67, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 4.0), registry=r)
        self.http_seconds = Histogram(
            "placement_http_request_duration_seconds", "HTTP request latency by route template, "
            "method and status.", ["route", "method", "status"], buckets=LATENCY_BUCKETS,
            registry=r)

    def exposition(self) -> bytes:
        """Text exposition; aggregates all worker processes in multiprocess mode."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            merged = CollectorRegistry()
            MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)
