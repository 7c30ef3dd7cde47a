"""Service settings, read once at the edge from the environment (PLACEMENT_*) or flags.

`markdown_table()` renders every variable (name, type, default, meaning) from this model: the
README's table is that output, and a test keeps the two equal.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from placement.policy import examples
from placement.store.db import DEFAULT_URL

PREFIX = "PLACEMENT_"


class LogSettings(BaseSettings):
    """How every entry point logs (serve, its workers, the operator, the command line)."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore")

    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        default="info", description="Least severe log record written (stderr).")
    log_format: Literal["text", "json"] = Field(
        default="text", description="`text` (timestamp, level, logger, request id, message) or "
        "`json` (one object a line; the operator writes kopf's JSON).")
    access_log: bool = Field(default=False, description="Log every HTTP request (uvicorn's "
                             "access log, with the request id).")

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class Settings(LogSettings):
    """Everything `placement serve` needs; library code receives it as an argument."""

    database_url: SecretStr = Field(default=SecretStr(DEFAULT_URL), description="SQLAlchemy "
                                    "URL; it may carry a password, so it is never printed.")
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
    autoscale_seconds: float = Field(default=60.0, gt=0, description="Autoscale fleets "
                                     "this often: replicas per site follow the requests/s "
                                     "Triton measures (with a kubeconfig).")
    bursts: bool = Field(default=False, description="Provision burst decisions with Pulumi "
                         "(needs the pulumi CLI, the provider plugins and cloud credentials).")
    pulumi_backend: str | None = Field(default=None, description="Pulumi state backend "
                                       "(default file://~/.placement/pulumi).")
    bursts_interval_s: float = Field(default=30.0, gt=0, description="Burst pass period.")
    requeue_seconds: float = Field(default=30.0, gt=0, description="Re-decide queued "
                                   "workloads at least this often (the operator; the service "
                                   "also does it whenever GPUs are freed).")
    admin_token: SecretStr | None = Field(default=None, description="An admin token to store "
                                          "at start (from a Secret), so a fresh install can be "
                                          "used at once; never printed.")
    host: str = Field(default="127.0.0.1", description="Address the API binds.")
    port: int = Field(default=8080, ge=1, le=65535, description="Port the API binds.")
    workers: int = Field(default=1, ge=1, description="API worker processes (more than one: "
                         "each binds the port with SO_REUSEPORT).")
    threads: int = Field(default=4, ge=1, le=64, description="Threads per worker for blocking "
                         "work (database, engine); with the GIL, more stretch every "
                         "transaction without adding throughput.")
    demo_token: bool = Field(default=False, description="Create and print an admin token.")

    @field_validator("config_dir")
    @classmethod
    def _shipped_examples(cls, value: Path) -> Path:
        return examples.resolve(value)  # the default works from an installed package too

    def environment(self) -> dict[str, str]:
        """These settings as PLACEMENT_* variables (secrets in clear: for child processes)."""
        out: dict[str, str] = {}
        for key, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            out[f"{PREFIX}{key.upper()}"] = str(value).lower() if isinstance(value, bool) \
                else str(value)
        return out


def _type_name(info: FieldInfo) -> str:
    kind: Any = info.annotation
    optional = False
    if get_origin(kind) in (Union, types.UnionType):
        args = [a for a in get_args(kind) if a is not type(None)]
        optional = len(args) < len(get_args(kind))
        kind = args[0]
    if get_origin(kind) is Literal:
        name = " \\| ".join(f"`{v}`" for v in get_args(kind))
    else:
        name = {str: "string", int: "integer", float: "number", bool: "boolean",
                Path: "path", SecretStr: "secret string"}.get(kind, getattr(kind, "__name__",
                                                                           str(kind)))
    bounds = []
    for meta in info.metadata:  # annotated_types' Ge, Gt, Le, Lt
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            if type(meta).__name__ == attr.capitalize():
                bounds.append(f"{sign} {getattr(meta, attr)}")
    return name + (f" ({', '.join(bounds)})" if bounds else "") + (", optional" if optional
                                                                    else "")


def _default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def markdown_table() -> str:
    """Every PLACEMENT_* variable as a Markdown table, in the model's order."""
    lines = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    for key, info in Settings.model_fields.items():
        meaning = (info.description or "").replace("|", "\\|")
        lines.append(f"| `{PREFIX}{key.upper()}` | {_type_name(info)} | "
                     f"{_default(info.default)} | {meaning} |")
    return "\n".join(lines) + "\n"
