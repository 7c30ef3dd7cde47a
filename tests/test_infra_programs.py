"""The burst node pool programs under Pulumi's mocks, with assertions that read like policies.
Instance types and prices come from the real catalog in ../shared/data."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pulumi
import pytest
from pydantic import ValidationError

from infra.config import BurstConfig
from placement.policy.catalog import Offer, load_offers

from .conftest import SHARED_DATA


class Recorder(pulumi.runtime.Mocks):
    """Pulumi's test engine: records every resource the program registers."""

    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        outputs = dict(args.inputs)
        outputs.setdefault("nodeGroupName", args.name)
        outputs.setdefault("name", args.name)
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs
             ) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        return {}, None

    def of(self, typ: str) -> list[pulumi.runtime.MockResourceArgs]:
        return [r for r in self.resources if r.typ == typ]


OFFERS: list[Offer] = load_offers(SHARED_DATA) if SHARED_DATA.exists() else []


def offer(provider: str, region: str, instance: str) -> Offer:
    (found,) = [o for o in OFFERS if (o.provider, o.region, o.instance_type) ==
                (provider, region, instance)]
    return found


def burst(provider: str, region: str, instance: str, needed: int, spot: bool,
          quota: int = 64) -> BurstConfig:
    o = offer(provider, region, instance)
    cluster: dict[str, Any] = (
        {"aws": {"cluster_name": "gpu-burst", "node_role_arn":
                 "arn:aws:iam::123456789012:role/eks-gpu-nodes", "subnet_ids": ["subnet-1"]}}
        if provider == "aws" else
        {"gcp": {"project": "acme-ml", "cluster": "burst", "location": region}})
    return BurstConfig.model_validate({
        "provider": provider, "region": region, "workload": "llm-pretrain",
        "workload_id": "6f1c2d3e-0000-4000-8000-000000000001", "team": "research",
        "gpu_type": o.gpu, "gpus_needed": needed, "instance_type": instance,
        "gpus_per_instance": o.gpus, "quota_gpus": quota, "spot": spot,
        "usd_per_instance_hour": o.spot if spot and o.spot else o.on_demand,
        "budget_usd": 5000.0, "expires_at": datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
        **cluster})


CASES = [
    ("aws", "us-east-1", "p4d.24xlarge", 16, True),
    ("aws", "us-east-1", "p4d.24xlarge", 8, False),
    ("aws", "eu-central-1", "g6.12xlarge", 4, False),
    ("gcp", "us-central1", "a2-highgpu-8g", 8, True),
    ("gcp", "us-central1", "g2-standard-24", 4, False),
]
IDS = ["aws A100 spot x2", "aws A100 on-demand", "aws L4", "gcp A100 spot", "gcp L4 x2"]


def run(cfg: BurstConfig) -> Recorder:
    """Run the program under mocks; return what it registered."""
    mocks = Recorder()
    pulumi.runtime.set_mocks(mocks, project="placement-bursts", stack=cfg.stack, preview=False)
    from infra.nodepools import deploy  # imported after set_mocks, as Pulumi advises

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def program() -> pulumi.Output[Any]:
        pool = deploy(cfg)
        inner = pool.node_group if cfg.provider == "aws" else pool.node_pool
        return pulumi.Output.all(inner.urn).apply(lambda _: None)

    program()
    return mocks


def pool_inputs(mocks: Recorder, provider: str) -> dict[str, Any]:
    typ = "aws:eks/nodeGroup:NodeGroup" if provider == "aws" else "gcp:container/nodePool:NodePool"
    (pool,) = mocks.of(typ)
    return dict(pool.inputs)


@pytest.fixture(autouse=True)
def _catalog() -> None:
    if not OFFERS:
        pytest.skip(f"the price catalog is not at {SHARED_DATA}")


@pytest.mark.parametrize(("provider", "region", "instance", "needed", "spot"), CASES, ids=IDS)
def test_every_node_pool_is_tagged_with_team_workload_and_expiry(
        provider: str, region: str, instance: str, needed: int, spot: bool) -> None:
    inputs = pool_inputs(run(burst(provider, region, instance, needed, spot)), provider)
    tags = inputs["tags"] if provider == "aws" else inputs["nodeConfig"]["resourceLabels"]
    keys = {k.replace("_", "-") for k in tags}
    assert {"team", "workload", "expiry", "budget-usd"} <= keys
    assert "research" in tags.values() and "llm-pretrain" in tags.values()


@pytest.mark.parametrize(("provider", "region", "instance", "needed", "spot"), CASES, ids=IDS)
def test_every_node_pool_carries_the_gpu_taint_and_labels_its_nodes(
        provider: str, region: str, instance: str, needed: int, spot: bool) -> None:
    inputs = pool_inputs(run(burst(provider, region, instance, needed, spot)), provider)
    taints = inputs["taints"] if provider == "aws" else inputs["nodeConfig"]["taints"]
    keys = {t["key"] for t in taints}
    assert "nvidia.com/gpu" in keys and all(t["effect"] == "NO_SCHEDULE" for t in taints)
    assert ("placement.io/spot" in keys) == spot
    labels = inputs["labels"] if provider == "aws" else inputs["nodeConfig"]["labels"]
    assert labels["placement.io/burst-workload"] == "llm-pretrain"


@pytest.mark.parametrize(("provider", "region", "instance", "needed", "spot"), CASES, ids=IDS)
def test_no_node_pool_exceeds_the_quota_and_each_scales_from_zero(
        provider: str, region: str, instance: str, needed: int, spot: bool) -> None:
    cfg = burst(provider, region, instance, needed, spot, quota=16)
    inputs = pool_inputs(run(cfg), provider)
    if provider == "aws":
        low, high = inputs["scalingConfig"]["minSize"], inputs["scalingConfig"]["maxSize"]
    else:
        low, high = (inputs["autoscaling"]["minNodeCount"],
                     inputs["autoscaling"]["maxNodeCount"])
    assert low == 0
    assert high * cfg.gpus_per_instance <= cfg.quota_gpus
    assert high * cfg.gpus_per_instance >= needed


@pytest.mark.parametrize(("provider", "region", "instance", "needed", "spot"), CASES, ids=IDS)
def test_spot_exactly_when_the_decision_said_spot(
        provider: str, region: str, instance: str, needed: int, spot: bool) -> None:
    inputs = pool_inputs(run(burst(provider, region, instance, needed, spot)), provider)
    if provider == "aws":
        assert inputs["capacityType"] == ("SPOT" if spot else "ON_DEMAND")
    else:
        assert inputs["nodeConfig"].get("spot", False) is spot


@pytest.mark.parametrize(("provider", "region", "instance", "needed", "spot"), CASES, ids=IDS)
def test_the_instance_type_really_carries_the_requested_gpu(
        provider: str, region: str, instance: str, needed: int, spot: bool) -> None:
    cfg = burst(provider, region, instance, needed, spot)
    inputs = pool_inputs(run(cfg), provider)
    if provider == "aws":
        (chosen,) = inputs["instanceTypes"]
        accel = None
    else:
        chosen = inputs["nodeConfig"]["machineType"]
        (accel,) = inputs["nodeConfig"]["guestAccelerators"]
    catalog = offer(provider, region, chosen)
    assert (catalog.gpu, catalog.gpus) == (cfg.gpu_type, cfg.gpus_per_instance)
    if accel is not None:
        assert accel["count"] == catalog.gpus


@pytest.mark.parametrize(("provider", "region", "instance"), [
    ("aws", "us-east-1", "p4d.24xlarge"), ("gcp", "us-central1", "a2-highgpu-8g")],
    ids=["aws", "gcp"])
def test_the_node_pool_is_a_child_of_its_component(provider: str, region: str,
                                                   instance: str) -> None:
    cfg = burst(provider, region, instance, 8, False)
    pulumi.runtime.set_mocks(Recorder(), project="placement-bursts", stack=cfg.stack,
                             preview=False)
    from infra.nodepools import deploy

    seen: list[str] = []

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def program() -> Any:
        pool = deploy(cfg)
        inner = pool.node_group if provider == "aws" else pool.node_pool
        return inner.urn.apply(seen.append)

    program()
    component = "AwsGpuNodePool" if provider == "aws" else "GcpGpuNodePool"
    (urn,) = seen
    assert f"placement:infra:{component}$" in urn  # the URN's type chain names the parent


@pytest.mark.parametrize(("change", "message"), [
    ({"gpus_needed": 72}, "exceed the quota of 64"),
    ({"aws": None}, "an aws burst needs 'aws'"),
    ({"spot": "sometimes"}, "spot"),
], ids=["more than the quota", "aws without a cluster", "spot must be a boolean"])
def test_bad_configuration_is_refused_before_any_cloud_call(change: dict[str, Any],
                                                            message: str) -> None:
    doc = burst("aws", "us-east-1", "p4d.24xlarge", 8, False).model_dump()
    doc.update(change)
    with pytest.raises(ValidationError, match=message):
        BurstConfig.model_validate(doc)


def test_cloud_names_are_valid_whatever_the_workload_is_called() -> None:
    import re

    doc = burst("gcp", "us-central1", "a2-highgpu-8g", 8, False).model_dump()
    doc["workload"] = "Team.LLM-pretrain.v2." + "x" * 40
    cfg = BurstConfig.model_validate(doc)
    inputs = pool_inputs(run(cfg), "gcp")
    assert re.fullmatch(r"[a-z][a-z0-9-]{0,39}", inputs["name"])
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", cfg.stack) and len(cfg.stack) < 64
