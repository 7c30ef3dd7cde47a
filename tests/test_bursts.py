"""The burst lifecycle and its reconciler through the Provisioner interface, with a double that
records calls: a normal burst, a failure during `up`, a crash between `up` and recording it,
a double submission, expiry, a spent budget, and team budgets in the engine."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from infra.automation import Plan
from placement.actuators.bursts.actuator import BurstActuator, BurstOptions
from placement.policy.loader import load_bundle
from placement.store.spend import team_spend
from placement.store.tables import BurstRow, EventRow, utcnow

from .conftest import EXAMPLES, Api, api_on
from .factories import Clock

API = "placement.dev/v1alpha1"
# AWS us-east-1 p4d.24xlarge (8 x A100) from ../shared/data/prices_aws_gpu_skypilot_v7.csv.
P4D = {"type": "p4d.24xlarge", "gpus": 8, "on_demand_usd_per_hour": 32.7726,
       "spot_usd_per_hour": 6.7915}


class Crash(BaseException):
    """The worker process dies (not an error the actuator could catch and record)."""


@dataclass
class Recorder:
    """A Provisioner double: stacks live in a dict; every call is recorded."""

    fail_up: str | None = None
    crash_after_up: bool = False
    calls: list[tuple[str, str]] = field(default_factory=list)
    stacks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def preview(self, cfg: Any) -> Plan:
        self.calls.append(("preview", cfg.stack))
        return Plan(cfg.stack, {"create": 3}, cfg.usd_per_hour, cfg.instances)

    def up(self, cfg: Any) -> dict[str, Any]:
        self.calls.append(("up", cfg.stack))
        self.stacks[cfg.stack] = {}  # whatever `up` created before failing stays
        if self.fail_up:
            raise RuntimeError(self.fail_up)
        out = {"node_pool": f"{cfg.stack}-nodes", "instances": cfg.instances,
               "instance_type": cfg.instance_type, "usd_per_hour": cfg.usd_per_hour,
               "spot": cfg.spot}
        self.stacks[cfg.stack] = out
        if self.crash_after_up:
            raise Crash()
        return out

    def outputs(self, stack: str) -> dict[str, Any] | None:
        self.calls.append(("outputs", stack))
        return self.stacks.get(stack) or None

    def destroy(self, stack: str) -> None:
        self.calls.append(("destroy", stack))
        self.stacks.pop(stack, None)

    def count(self, op: str) -> int:
        return sum(1 for o, _ in self.calls if o == op)


def config_dir(tmp: Path, team_budgets: dict[str, float] | None = None) -> Path:
    onprem = {"apiVersion": API, "kind": "Site", "metadata": {"name": "dc-a"},
              "spec": {"type": "onprem", "location": {"lat": 39.0, "lon": -77.5},
                       "kube_context": "dc-a", "wan_gbps": 10, "egress_usd_per_gb": 0,
                       "gpus": [{"type": "L4", "count": 8, "usd_per_gpu_hour": 0.75}]}}
    cloud = {"apiVersion": API, "kind": "Site", "metadata": {"name": "aws-us-east-1"},
             "spec": {"type": "cloud", "provider": "aws", "region": "us-east-1",
                      "location": {"lat": 38.9, "lon": -77.4}, "kube_context": "aws-us-east-1",
                      "wan_gbps": 10, "egress_usd_per_gb": 0.09,
                      "gpus": [{"type": "A100", "quota_gpus": 32, "instances": [P4D]}],
                      "burst": {"cluster": "gpu-burst", "subnet_ids": ["subnet-1"],
                                "node_role_arn": "arn:aws:iam::123456789012:role/eks-gpu"}}}
    policy = {"apiVersion": API, "kind": "Policy", "metadata": {"name": "bursts"},
              "spec": {"defaults": {"burst": {"allowed": True, "when": "always",
                                              "spot": "never"}},
                       "team_budgets": team_budgets or {}}}
    (tmp / "inventory.yaml").write_text(yaml.safe_dump_all([onprem, cloud]))
    (tmp / "policy.yaml").write_text(yaml.safe_dump(policy))
    return tmp


def training(name: str, budget: float | None = None) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "Workload", "metadata": {"name": name},
            "spec": {"kind": "training", "team": "research", "duration_hours": 10,
                     "gpu": {"types": ["A100"], "count": 8}, "budget_usd": budget}}


@dataclass
class Env:
    api: Api
    clock: Clock
    cloud: Recorder

    def actuator(self, provisioner: Any = None) -> BurstActuator:
        return BurstActuator(self.api.runtime, provisioner or self.cloud,
                             BurstOptions(check_s=60), clock=self.clock)

    def submit(self, name: str, budget: float | None = None) -> uuid.UUID:
        res = self.api.client.post("/v1/workloads", json=training(name, budget),
                                   headers=self.api.h("admin"))
        assert res.status_code == 201, res.text
        assert (res.json()["action"], res.json()["site"]) == ("burst", "aws-us-east-1")
        return uuid.UUID(res.json()["id"])

    def burst(self, wid: uuid.UUID) -> BurstRow:
        with self.api.runtime.db.read() as s:
            row = s.get(BurstRow, wid)
            assert row is not None
            s.expunge(row)
            return row

    def phase(self, wid: uuid.UUID) -> str:
        res = self.api.client.get(f"/v1/workloads/{wid}", headers=self.api.h("admin"))
        return str(res.json()["phase"])

    def events(self, wid: uuid.UUID) -> list[str]:
        with self.api.runtime.db.read() as s:
            return list(s.scalars(select(EventRow.type).where(EventRow.workload_id == wid)
                                  .order_by(EventRow.id)))


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[Env]:
    with api_on(f"sqlite:///{tmp_path / 'placement.db'}", config_dir(tmp_path)) as api:
        yield Env(api, Clock(), Recorder())


def test_a_burst_is_provisioned_then_destroyed_when_its_workload_ends(env: Env) -> None:
    wid = env.submit("pretrain")
    act = env.actuator()
    act.reconcile()
    row = env.burst(wid)
    stack = f"burst-pretrain-{wid.hex[:8]}"
    assert (row.status, row.stack) == ("ready", stack)
    assert row.outputs["instances"] == 1 and row.usd_per_hour == pytest.approx(32.7726)
    assert row.spec["spot"] is False and row.spec["instance_type"] == "p4d.24xlarge"
    assert env.cloud.calls == [("preview", stack), ("up", stack)]
    assert "burst_plan" in env.events(wid)
    env.clock.advance(2 * 3600)
    assert env.api.client.post(f"/v1/workloads/{wid}/cancel",
                               headers=env.api.h("admin")).status_code == 200
    act.reconcile()  # sees the end: draining
    act.reconcile()  # destroys
    row = env.burst(wid)
    assert row.status == "destroyed" and env.cloud.count("destroy") == 1
    assert row.spent_usd == pytest.approx(2 * 32.7726)
    assert env.events(wid)[-2:] == ["burst_draining", "burst_destroyed"]
    act.reconcile()
    assert env.cloud.count("destroy") == 1  # destroyed stays destroyed


def test_a_failure_during_up_cleans_up_and_requeues_the_workload(env: Env) -> None:
    wid = env.submit("unlucky")
    env.cloud.fail_up = "InsufficientInstanceCapacity: no p4d.24xlarge in us-east-1a"
    env.actuator().reconcile()
    row = env.burst(wid)
    assert row.status == "failed" and "InsufficientInstanceCapacity" in row.message
    stack = row.stack
    assert env.cloud.calls == [("preview", stack), ("up", stack), ("destroy", stack)]
    assert env.cloud.stacks == {}
    events = env.events(wid)  # back in the queue (the requeuer may decide it again at once)
    assert events.index("burst_failed") < events.index("queued")
    from placement.control.lifecycle import requeue

    requeue(env.api.runtime)  # decided again: the same burst, tried anew on the same stack
    assert env.phase(wid) == "placed"
    env.cloud.fail_up = None
    env.actuator().reconcile()
    assert env.burst(wid).status == "ready" and env.cloud.count("up") == 2
    assert len(env.cloud.stacks) == 1


def test_a_crash_between_up_and_recording_is_recovered_from_the_stack(env: Env) -> None:
    wid = env.submit("crashy")
    env.cloud.crash_after_up = True
    with pytest.raises(Crash):
        env.actuator().reconcile()
    assert env.burst(wid).status == "provisioning"
    env.cloud.crash_after_up = False
    env.actuator().reconcile()
    assert env.burst(wid).status == "provisioning"  # the dead worker's claim still holds
    env.clock.advance(BurstOptions().claim_s + 1)
    env.actuator().reconcile()
    row = env.burst(wid)
    assert row.status == "ready" and "recovered" in row.message
    assert env.cloud.count("up") == 1  # never a second stack or a second up


def test_a_double_submission_makes_one_stack(env: Env) -> None:
    body = training("twice")
    headers = {**env.api.h("admin"), "Idempotency-Key": "retry-1"}
    first = env.api.client.post("/v1/workloads", json=body, headers=headers)
    again = env.api.client.post("/v1/workloads", json=body, headers=headers)
    assert first.json()["id"] == again.json()["id"]
    one, two = env.actuator(), env.actuator()
    one._adopt()
    two._adopt()  # a second replica adopting the same decision
    one.reconcile()
    two.reconcile()
    with env.api.runtime.db.read() as s:
        assert len(list(s.scalars(select(BurstRow)))) == 1
    assert env.cloud.count("up") == 1


def test_an_expired_burst_is_destroyed(env: Env) -> None:
    wid = env.submit("long")
    act = env.actuator()
    act.reconcile()
    expires = env.burst(wid).expires_at
    env.clock.now = expires.replace(tzinfo=env.clock.now.tzinfo) + timedelta(seconds=1)
    act.reconcile()
    assert env.burst(wid).status == "draining" and "expired" in env.burst(wid).message
    act.reconcile()
    assert env.burst(wid).status == "destroyed"


def test_a_burst_over_its_budget_is_destroyed(env: Env) -> None:
    wid = env.submit("capped", budget=400)  # estimated 10 h x $32.77 = $328: chosen
    act = env.actuator()
    act.reconcile()
    env.clock.advance(11 * 3600)  # $360 spent
    act.reconcile()
    assert env.burst(wid).status == "ready"
    env.clock.advance(2 * 3600)  # $426: over, before its expiry at 15.25 h
    act.reconcile()
    assert env.burst(wid).status == "draining"
    assert "of its $400.00 budget" in env.burst(wid).message
    act.reconcile()
    assert env.burst(wid).status == "destroyed"


def test_the_team_budget_keeps_the_engine_from_choosing_a_burst(tmp_path: Path) -> None:
    with api_on(f"sqlite:///{tmp_path / 'p.db'}", config_dir(tmp_path, {"research": 500})) as api:
        def preview() -> dict[str, Any]:
            res = api.client.post("/v1/placements/preview", json=training("next"),
                                  headers=api.h("admin"))
            assert res.status_code == 200, res.text
            return dict(res.json())

        assert preview()["action"] == "burst"  # $328 of $500
        wid = uuid.UUID(api.client.post("/v1/workloads", json=training("first"),
                                        headers=api.h("admin")).json()["id"])
        now = utcnow()  # one burst running: 2 h so far, 8 h more until it expires
        with api.runtime.db.write() as s:
            s.add(BurstRow(workload_id=wid, stack="burst-first", team="research", site="x",
                           status="ready", message="", spec={}, outputs={}, usd_per_hour=32.77,
                           ready_at=now - timedelta(hours=2), created_at=now,
                           expires_at=now + timedelta(hours=8), spent_usd=65.5, attempts=0))
        api.runtime._spend = None
        decided = preview()
        assert decided["action"] != "burst"
        (cloud,) = [c for c in decided["candidates"]
                    if c["site"] == "aws-us-east-1" and c["capacity"] == "on_demand"]
        assert ("team research has $328 spent or committed of its $500 burst budget"
                in cloud["reason"])  # 10 h x $32.77, though only $65.50 is spent yet


def test_a_burst_decided_but_not_yet_requested_counts_against_its_team(tmp_path: Path) -> None:
    """Two bursts decided one after the other before the burst actuator's next pass: the
    first, with no burst row yet, already commits its estimated $328 of the team's $500, so
    the second ($328 more) is not chosen (both would have been, the first uncounted)."""
    with api_on(f"sqlite:///{tmp_path / 'p.db'}", config_dir(tmp_path, {"research": 500})) as api:
        first = api.client.post("/v1/workloads", json=training("first"), headers=api.h("admin"))
        assert first.status_code == 201 and first.json()["action"] == "burst", first.text
        with api.runtime.db.read() as s:
            assert s.scalar(select(func.count()).select_from(BurstRow)) == 0  # not adopted
        second = api.client.post("/v1/workloads", json=training("second"),
                                 headers=api.h("admin"))
        assert second.status_code == 201, second.text
        assert second.json()["action"] != "burst"
        with api.runtime.db.read() as s:
            spent = team_spend(s, now=utcnow())["research"]
        assert spent == pytest.approx(
            first.json()["decision"]["decision"]["estimates"]["total_usd"], abs=0.01)


def test_bursts_decided_in_one_batch_each_see_the_ones_before(tmp_path: Path) -> None:
    """Concurrent submissions are decided in one batch on one snapshot: the second burst
    sees the first's $328 committed and is not chosen over the team's $500."""
    from placement.control.submit import Pending, place_batch
    from placement.model import Workload

    with api_on(f"sqlite:///{tmp_path / 'p.db'}", config_dir(tmp_path, {"research": 500})) as api:
        batch = [Pending(Workload.model_validate(training(n)), None) for n in ("one", "two")]
        place_batch(api.runtime, batch)
        actions = [(p.future.result()[1] or {}).get("action") for p in batch]
        assert actions[0] == "burst" and actions[1] != "burst", actions


def test_a_burst_whose_workload_was_decided_elsewhere_is_destroyed(env: Env) -> None:
    from placement.store.tables import WorkloadRow

    wid = env.submit("moved")
    act = env.actuator()
    act.reconcile()
    with env.api.runtime.db.write() as s:  # as after an interruption re-decided on-prem
        row = s.get(WorkloadRow, wid)
        assert row is not None
        row.action, row.site = "place", "dc-a"
    act.reconcile()
    assert env.burst(wid).status == "draining" and "re-decided" in env.burst(wid).message
    act.reconcile()
    assert env.burst(wid).status == "destroyed"


def test_a_fleet_is_not_provisioned_and_stays_placed(tmp_path: Path) -> None:
    """A fleet's cloud members run on node pools their sites already have: the burst actuator
    makes no stack for it and leaves it placed (it would otherwise refuse the on-prem member
    site as having no burst settings and send the workload back to the queue)."""
    doc = next(w for w in load_bundle(EXAMPLES).workloads if w.name == "global-docs-rag")
    with api_on(f"sqlite:///{tmp_path / 'placement.db'}") as api:
        res = api.client.post("/v1/workloads", json=doc.model_dump(mode="json"),
                              headers=api.h("admin"))
        assert res.status_code == 201, res.text
        body = res.json()
        assert body["action"] == "burst" and body["decision"]["decision"]["fleet"]
        cloud = Recorder()
        BurstActuator(api.runtime, cloud, BurstOptions(check_s=60), clock=Clock()).reconcile()
        assert cloud.calls == []
        got = api.client.get(f"/v1/workloads/{body['id']}", headers=api.h("admin")).json()
        assert got["phase"] == "placed"
