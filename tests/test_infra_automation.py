"""The Automation API wrapper. Where the pulumi CLI is installed the stack steps run for real
on a local file backend; where it is not, the tests that need it are skipped with that reason,
and the wrapper's own refusal is checked instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.automation import PulumiProvisioner, PulumiUnavailable

from .test_infra_programs import OFFERS, burst

MISSING = PulumiProvisioner.available()


@pytest.mark.skipif(MISSING is None, reason="the pulumi CLI is installed here")
def test_without_the_cli_every_step_says_what_real_provisioning_needs(tmp_path: Path) -> None:
    cloud = PulumiProvisioner(f"file://{tmp_path}")
    if not OFFERS:
        pytest.skip("the price catalog is not in ../shared/data")
    cfg = burst("aws", "us-east-1", "p4d.24xlarge", 8, False)
    for step in (lambda: cloud.up(cfg), lambda: cloud.preview(cfg),
                 lambda: cloud.outputs(cfg.stack), lambda: cloud.destroy(cfg.stack)):
        with pytest.raises(PulumiUnavailable, match="pulumi CLI is not on PATH"):
            step()


@pytest.mark.skipif(MISSING is not None, reason=f"{MISSING}")
def test_stack_steps_run_for_real_on_a_local_backend(tmp_path: Path) -> None:
    cloud = PulumiProvisioner(f"file://{tmp_path}", passphrase="test")
    assert cloud.outputs("burst-absent") is None  # no such stack: nothing recorded
    cloud.destroy("burst-absent")  # destroying what is not there is safe
