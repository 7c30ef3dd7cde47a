"""Service settings, read once at the edge from the environment (PLACEMENT_*) or flags."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from placement.store.db import DEFAULT_URL


class Settings(BaseSettings):
    """Everything `placement serve` needs; library code receives it as an argument."""

    model_config = SettingsConfigDict(env_prefix="PLACEMENT_", extra="ignore")

    database_url: str = Field(default=DEFAULT_URL, description="SQLAlchemy URL.")
    config_dir: Path = Field(default=Path("policies/examples"),
                             description="GitOps directory: policies (and inventory to seed).")
    seed_inventory: bool = Field(default=True,
                                 description="Import the directory's inventory into an empty DB.")
    migrate: bool = Field(default=True, description="Run migrations at start, else refuse.")
    max_body_bytes: int = Field(default=1 << 20, ge=1024, description="Largest request body "
                                "accepted; a larger one gets 413 before it is read.")
    reload_seconds: float = Field(default=5.0, ge=0, description="Poll the GitOps directory "
                                  "this often and reload a changed bundle (0: never).")
    prometheus_url: str | None = Field(
        default=None, description="Prometheus for live signals (the sites' `signals` queries); "
        "unset: decisions use the store only.")
    signals_interval_s: float = Field(default=15.0, gt=0, description="Poll signals this often.")
    signals_timeout_s: float = Field(default=1.0, gt=0, description="Per-query timeout.")
    signals_max_age_s: float = Field(default=60.0, gt=0,
                                     description="Older values are stale and not used.")
    reports_dir: Path | None = Field(default=None, description="Folder of simulation HTML "
                                     "reports the dashboard lists.")
    ui_secure_cookie: bool | None = Field(
        default=None, description="Mark the dashboard's session cookie Secure; unset: when the "
        "request came over https (set true behind a TLS-terminating proxy).")
    kubeconfig: Path | None = Field(
        default=None, description="Kubeconfig with a context per site (the inventory's "
        "kube_context): set it to serve placed inference and RAG workloads with Triton.")
    serving_interval_s: float = Field(default=10.0, gt=0, description="Actuator pass period.")
    jobs_interval_s: float = Field(default=15.0, gt=0, description="Job actuator pass period "
                                   "(submits new Jobs, reads running ones).")
    triton_ready_timeout_s: float = Field(default=120.0, gt=0,
                                          description="Wait this long for Triton to be ready.")
    triton_model_timeout_s: float = Field(default=300.0, gt=0,
                                          description="Wait this long for a model to load.")
    triton_metrics_interval_s: float = Field(default=15.0, gt=0,
                                             description="Scrape Triton's metrics this often.")
    bursts: bool = Field(default=False, description="Provision burst decisions with Pulumi "
                         "(needs the pulumi CLI, the provider plugins and cloud credentials).")
    pulumi_backend: str | None = Field(default=None, description="Pulumi state backend "
                                       "(default file://~/.placement/pulumi).")
    bursts_interval_s: float = Field(default=30.0, gt=0, description="Burst pass period.")
    requeue_seconds: float = Field(default=30.0, gt=0, description="Re-decide queued "
                                   "workloads at least this often (the operator; the service "
                                   "also does it whenever GPUs are freed).")
    admin_token: str | None = Field(default=None, repr=False, description="An admin token to "
                                    "store at start (from a Secret), so a fresh install can be "
                                    "used at once.")
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = Field(default=1, ge=1)
    threads: int = Field(default=4, ge=1, le=64, description="Threads per worker for blocking "
                         "work (database, engine); with the GIL, more stretch every "
                         "transaction without adding throughput.")
    demo_token: bool = Field(default=False, description="Create and print an admin token.")
