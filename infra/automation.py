"""Pulumi's Automation API, one stack per burst (`burst-<workload>`): preview with the estimated
$/hour, up, outputs, refresh and destroy. Every step is safe to repeat: `up` on a stack that
exists converges it, `destroy` of a stack that is gone does nothing.

Real provisioning needs the `pulumi` CLI on PATH, the aws or gcp provider plugins (`pulumi
plugin install resource aws`), and the cloud's credentials in the environment. The state goes
to a local file backend by default (`file://~/.placement/pulumi`); set PLACEMENT_PULUMI_BACKEND
to an s3://, gs:// or https:// (Pulumi Cloud) backend for several replicas.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.config import BurstConfig

log = logging.getLogger("infra.automation")
PROJECT = "placement-bursts"


class PulumiUnavailable(RuntimeError):
    """The pulumi CLI is not installed; the message says what real provisioning needs."""


class StackError(RuntimeError):
    """A Pulumi operation failed; the message carries Pulumi's own."""


@dataclass(frozen=True)
class Plan:
    """What `up` would do, and what the capacity would cost."""

    stack: str
    changes: dict[str, int] = field(default_factory=dict)
    usd_per_hour: float = 0.0
    instances: int = 0


def default_backend() -> str:
    return os.environ.get("PLACEMENT_PULUMI_BACKEND") or \
        f"file://{Path.home() / '.placement' / 'pulumi'}"


class PulumiProvisioner:
    """Runs burst stacks through the Automation API (the service's Provisioner)."""

    def __init__(self, backend_url: str | None = None, project: str = PROJECT,
                 passphrase: str | None = None) -> None:
        self.backend_url = backend_url or default_backend()
        self.project = project
        self.passphrase = passphrase if passphrase is not None else os.environ.get(
            "PULUMI_CONFIG_PASSPHRASE", "")
        if self.backend_url.startswith("file://"):
            Path(self.backend_url.removeprefix("file://")).mkdir(parents=True, exist_ok=True)

    @staticmethod
    def available() -> str | None:
        """None when the CLI is there, else why real provisioning cannot run."""
        if shutil.which("pulumi") is None:
            return ("the pulumi CLI is not on PATH: install it (https://www.pulumi.com/docs/"
                    "install/), then the provider plugins and the cloud's credentials")
        return None

    def _opts(self) -> Any:
        from pulumi import automation as auto

        return auto.LocalWorkspaceOptions(
            project_settings=auto.ProjectSettings(
                name=self.project, runtime="python",
                backend=auto.ProjectBackend(url=self.backend_url)),
            env_vars={"PULUMI_CONFIG_PASSPHRASE": self.passphrase})

    def _stack(self, cfg: BurstConfig) -> Any:
        why = self.available()
        if why is not None:
            raise PulumiUnavailable(why)
        from pulumi import automation as auto

        from infra.nodepools import deploy

        stack = auto.create_or_select_stack(stack_name=cfg.stack, project_name=self.project,
                                            program=lambda: deploy(cfg), opts=self._opts())
        stack.set_all_config({key: auto.ConfigValue(value)
                              for key, value in cfg.to_pulumi().items()})
        return stack

    def preview(self, cfg: BurstConfig) -> Plan:
        result = self._run("preview", lambda: self._stack(cfg).preview(on_output=log.info))
        changes = {str(op): int(n) for op, n in (result.change_summary or {}).items()}
        return Plan(cfg.stack, changes, cfg.usd_per_hour, cfg.instances)

    def up(self, cfg: BurstConfig) -> dict[str, Any]:
        result = self._run("up", lambda: self._stack(cfg).up(on_output=log.info))
        return {k: v.value for k, v in result.outputs.items()}

    def refresh(self, cfg: BurstConfig) -> None:
        self._run("refresh", lambda: self._stack(cfg).refresh(on_output=log.info))

    def outputs(self, stack: str) -> dict[str, Any] | None:
        """The stack's recorded outputs; None when no such stack exists."""
        found = self._select(stack)
        if found is None:
            return None
        return {k: v.value for k, v in found.outputs().items()}

    def destroy(self, stack: str) -> None:
        found = self._select(stack)
        if found is None:
            return
        self._run("destroy", lambda: found.destroy(on_output=log.info))
        self._run("stack rm", lambda: found.workspace.remove_stack(stack))

    def _select(self, stack: str) -> Any:
        why = self.available()
        if why is not None:
            raise PulumiUnavailable(why)
        from pulumi import automation as auto

        try:
            return auto.select_stack(stack_name=stack, project_name=self.project,
                                     program=lambda: None, opts=self._opts())
        except auto.StackNotFoundError:
            return None

    @staticmethod
    def _run(what: str, fn: Any) -> Any:
        from pulumi import automation as auto

        try:
            return fn()
        except auto.CommandError as exc:
            raise StackError(f"pulumi {what} failed: {exc}") from exc
