"""GPU node pools as Pulumi ComponentResources: an EKS managed node group on AWS and a GKE node
pool with guest accelerators on GCP. Both scale from 0 to what the burst asked for, carry the
GPU taint (and the spot taint on spot), label their nodes for the workload's pods, and tag the
cloud resources with team, workload, budget and expiry. Azure can follow the same shape."""

from __future__ import annotations

from typing import Any

import pulumi

from infra.config import GKE_ACCELERATORS, GPU_TAINT, SPOT_TAINT, BurstConfig


def _taints(cfg: BurstConfig) -> list[tuple[str, str]]:
    """(key, value) pairs, each NoSchedule."""
    return [(GPU_TAINT, "true")] + ([(SPOT_TAINT, "true")] if cfg.spot else [])


class AwsGpuNodePool(pulumi.ComponentResource):
    """An EKS managed node group of GPU instances for one burst."""

    def __init__(self, name: str, cfg: BurstConfig,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("placement:infra:AwsGpuNodePool", name, None, opts)
        import pulumi_aws as aws

        assert cfg.aws is not None
        child = pulumi.ResourceOptions(parent=self)
        provider = aws.Provider(f"{name}-provider", region=cfg.region,
                                default_tags=aws.ProviderDefaultTagsArgs(tags=cfg.tags()),
                                opts=child)
        self.node_group = aws.eks.NodeGroup(
            f"{name}-nodes",
            node_group_name=cfg.pool_name,
            cluster_name=cfg.aws.cluster_name,
            node_role_arn=cfg.aws.node_role_arn,
            subnet_ids=cfg.aws.subnet_ids,
            instance_types=[cfg.instance_type],
            capacity_type="SPOT" if cfg.spot else "ON_DEMAND",
            ami_type="AL2023_x86_64_NVIDIA",
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=0, desired_size=cfg.instances, max_size=cfg.max_instances),
            taints=[aws.eks.NodeGroupTaintArgs(key=k, value=v, effect="NO_SCHEDULE")
                    for k, v in _taints(cfg)],
            labels=cfg.node_labels(),
            tags=cfg.tags(),
            opts=pulumi.ResourceOptions(parent=self, provider=provider))
        self.register_outputs({"node_group": self.node_group.node_group_name,
                               "instances": cfg.instances})


class GcpGpuNodePool(pulumi.ComponentResource):
    """A GKE node pool with guest accelerators for one burst."""

    def __init__(self, name: str, cfg: BurstConfig,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("placement:infra:GcpGpuNodePool", name, None, opts)
        import pulumi_gcp as gcp

        assert cfg.gcp is not None
        nc = gcp.container
        self.node_pool = nc.NodePool(
            f"{name}-nodes",
            name=cfg.pool_name,
            project=cfg.gcp.project,
            cluster=cfg.gcp.cluster,
            location=cfg.gcp.location,
            initial_node_count=cfg.instances,
            autoscaling=nc.NodePoolAutoscalingArgs(min_node_count=0,
                                                   max_node_count=cfg.max_instances),
            node_config=nc.NodePoolNodeConfigArgs(
                machine_type=cfg.instance_type,
                spot=cfg.spot,
                guest_accelerators=[nc.NodePoolNodeConfigGuestAcceleratorArgs(
                    type=GKE_ACCELERATORS[cfg.gpu_type], count=cfg.gpus_per_instance)],
                taints=[nc.NodePoolNodeConfigTaintArgs(key=k, value=v, effect="NO_SCHEDULE")
                        for k, v in _taints(cfg)],
                labels=cfg.node_labels(),
                resource_labels=cfg.gcp_labels(),
            ),
            opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"node_pool": self.node_pool.name,
                               "instances": cfg.instances})


def deploy(cfg: BurstConfig) -> Any:
    """The program of one burst stack: its node pool and the outputs the service records."""
    pool: AwsGpuNodePool | GcpGpuNodePool
    if cfg.provider == "aws":
        pool = AwsGpuNodePool(cfg.stack, cfg)
        pulumi.export("node_pool", pool.node_group.node_group_name)
    else:
        pool = GcpGpuNodePool(cfg.stack, cfg)
        pulumi.export("node_pool", pool.node_pool.name)
    pulumi.export("instances", cfg.instances)
    pulumi.export("instance_type", cfg.instance_type)
    pulumi.export("usd_per_hour", cfg.usd_per_hour)
    pulumi.export("spot", cfg.spot)
    return pool


def main() -> None:
    """Entry point for `pulumi up` run by hand in a project pointing here."""
    deploy(BurstConfig.from_pulumi())
