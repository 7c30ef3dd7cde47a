"""The typed configuration of one burst stack, derived from a `burst` decision."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CONFIG_KEY = "spec"  # pulumi config `burst:spec` holds the whole BurstConfig as JSON
NAMESPACE = "burst"
GPU_TAINT = "nvidia.com/gpu"
SPOT_TAINT = "placement.io/spot"
WORKLOAD_LABEL = "placement.io/burst-workload"  # the Job's nodeSelector matches this
WORKLOAD_ID_LABEL = "placement.io/workload-id"
# GKE accelerator type per catalog GPU name (the machine types of A2/A3/G2 fix the count).
GKE_ACCELERATORS = {"A100": "nvidia-tesla-a100", "A100-80GB": "nvidia-a100-80gb",
                    "H100": "nvidia-h100-80gb", "H200": "nvidia-h200-141gb",
                    "L4": "nvidia-l4", "T4": "nvidia-tesla-t4", "V100": "nvidia-tesla-v100",
                    "P100": "nvidia-tesla-p100", "P4": "nvidia-tesla-p4"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AwsCluster(_Strict):
    """The EKS cluster the node group joins."""

    cluster_name: str = Field(min_length=1)
    node_role_arn: str = Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
    subnet_ids: list[str] = Field(min_length=1)


class GcpCluster(_Strict):
    """The GKE cluster the node pool joins."""

    project: str = Field(min_length=1)
    cluster: str = Field(min_length=1)
    location: str = Field(min_length=1, description="Region or zone of the cluster.")


class BurstConfig(_Strict):
    """Everything a burst's node pool needs; validated before any cloud call."""

    provider: Literal["aws", "gcp"]
    region: str = Field(min_length=1)
    workload: str = Field(min_length=1, max_length=63)
    workload_id: str = Field(min_length=1)
    team: str = Field(min_length=1)
    gpu_type: str = Field(min_length=1)
    gpus_needed: int = Field(ge=1)
    instance_type: str = Field(min_length=1)
    gpus_per_instance: int = Field(ge=1)
    quota_gpus: int = Field(ge=1, description="GPUs of this type the account may run there.")
    spot: bool
    usd_per_instance_hour: float = Field(gt=0)
    budget_usd: float | None = Field(default=None, gt=0)
    expires_at: datetime
    aws: AwsCluster | None = None
    gcp: GcpCluster | None = None

    @model_validator(mode="after")
    def _fits(self) -> BurstConfig:
        if math.ceil(self.gpus_needed / self.gpus_per_instance) * self.gpus_per_instance \
                > self.quota_gpus:
            raise ValueError(f"{self.gpus_needed} {self.gpu_type} GPUs on {self.instance_type} "
                             f"instances exceed the quota of {self.quota_gpus} in "
                             f"{self.region}; ask for a quota increase")
        if self.provider == "aws" and self.aws is None:
            raise ValueError("an aws burst needs 'aws' (cluster_name, node_role_arn, "
                             "subnet_ids); set them in the site's burst settings")
        if self.provider == "gcp" and self.gcp is None:
            raise ValueError("a gcp burst needs 'gcp' (project, cluster, location); set them "
                             "in the site's burst settings")
        if self.provider == "gcp" and self.gpu_type not in GKE_ACCELERATORS:
            raise ValueError(f"no GKE accelerator type known for {self.gpu_type}; use one of "
                             f"{', '.join(GKE_ACCELERATORS)}")
        return self

    @property
    def instances(self) -> int:
        """Instances that carry the GPUs asked for."""
        return math.ceil(self.gpus_needed / self.gpus_per_instance)

    @property
    def max_instances(self) -> int:
        """The autoscaling ceiling: what the decision asked for (it fits the quota, checked
        above), so a burst never grows past its budgeted size."""
        return self.instances

    @property
    def usd_per_hour(self) -> float:
        """What the instances asked for cost per hour."""
        return self.instances * self.usd_per_instance_hour

    @property
    def stack(self) -> str:
        return stack_name(self.workload, self.workload_id)

    @property
    def pool_name(self) -> str:
        """The cloud name of the node group / node pool: short, lower-case, letter first
        (GKE allows 40 characters; EKS 63)."""
        return "gpu-" + re.sub(r"[^a-z0-9]", "", self.workload_id.lower())[:16]

    def tags(self) -> dict[str, str]:
        """Cloud tags (AWS) naming who pays, for what, up to when."""
        return {"team": self.team, "workload": self.workload, "workload-id": self.workload_id,
                "budget-usd": "none" if self.budget_usd is None else f"{self.budget_usd:.2f}",
                "expiry": self.expires_at.strftime("%Y-%m-%dT%H:%MZ"),
                "managed-by": "hybrid-placement"}

    def gcp_labels(self) -> dict[str, str]:
        """The same as GCP resource labels (lower-case letters, digits, '-' and '_')."""
        return {k.replace("-", "_"): _gcp_value(v) for k, v in self.tags().items()}

    def node_labels(self) -> dict[str, str]:
        """Kubernetes labels on the nodes: what a Job's nodeSelector picks."""
        return {WORKLOAD_LABEL: self.workload, WORKLOAD_ID_LABEL: self.workload_id,
                "placement.io/team": self.team,
                "placement.io/capacity": "spot" if self.spot else "on-demand"}

    def to_pulumi(self) -> dict[str, str]:
        return {f"{NAMESPACE}:{CONFIG_KEY}": self.model_dump_json()}

    @classmethod
    def from_pulumi(cls) -> BurstConfig:
        """Read the stack configuration (inside a Pulumi program)."""
        import pulumi

        raw: Any = pulumi.Config(NAMESPACE).require(CONFIG_KEY)
        return cls.model_validate(json.loads(raw))


def stack_name(workload: str, workload_id: str) -> str:
    """One stack per burst: the workload's name (names repeat across teams and time) and the
    start of its id."""
    slug = re.sub(r"[^a-z0-9-]", "-", workload.lower()).strip("-")[:40]
    return f"burst-{slug}-{re.sub(r'[^a-z0-9]', '', workload_id.lower())[:8]}"


def _gcp_value(value: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "-", value.lower())[:63]
