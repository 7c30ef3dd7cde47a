"""Inventory documents: sites (on-prem and cloud), datasets, client locations, reservations."""

from __future__ import annotations

from itertools import pairwise
from typing import Annotated, Literal

from pydantic import Field, field_validator

from placement.model.common import (
    MAX_GBPS,
    MAX_GPUS,
    MAX_HOURS,
    MAX_ITEMS,
    MAX_MS,
    MAX_RATE,
    MAX_SIZE,
    MAX_USD_PER_UNIT,
    Document,
    GpuType,
    Location,
    Name,
    Strict,
    Text,
)

Classification = Literal["public", "internal", "confidential", "restricted"]
Provider = Literal["aws", "gcp", "azure"]


class Link(Strict):
    """A measured network path from this site to another one (directional for egress)."""

    to: Name = Field(description="Name of the other site.")
    rtt_ms: float | None = Field(default=None, ge=0, le=MAX_MS,
        description="Round-trip time in ms.")
    gbps: float | None = Field(default=None, gt=0, le=MAX_GBPS,
        description="Usable bandwidth, Gbit/s.")
    egress_usd_per_gb: float | None = Field(
        default=None, ge=0, le=MAX_USD_PER_UNIT,
            description="USD per GB sent from this site to the other."
    )
    source: Text | None = Field(default=None, description="Where the numbers come from.")


class EgressTier(Strict):
    """One volume tier of a site's egress price: the rate from `from_gb` up to the next tier."""

    from_gb: float = Field(ge=0, le=MAX_SIZE, description="GB moved before this tier starts.")
    usd_per_gb: float = Field(ge=0, le=MAX_USD_PER_UNIT, description="USD per GB in this tier.")
    whole_volume: bool = Field(
        default=False, description="true: once a move is over `from_gb`, every GB of it is "
        "billed at this rate (as GCP bills); false: only the GB above `from_gb` (as AWS bills).")


class OnPremGpu(Strict):
    """GPUs installed in an on-prem cluster, priced at their amortized cost."""

    type: GpuType
    count: int = Field(ge=0, le=MAX_GPUS, description="GPUs installed.")
    usd_per_gpu_hour: float = Field(
        gt=0, le=MAX_USD_PER_UNIT,
            description="Amortized cost (hardware, power, space, staff) per GPU-hour; never 0."
    )


class CloudInstance(Strict):
    """One instance type that carries a GPU type, with its catalog prices."""

    type: Text = Field(min_length=1, description="Instance or machine type, e.g. p5.48xlarge.")
    gpus: int = Field(ge=1, le=MAX_ITEMS, description="GPUs per instance.")
    on_demand_usd_per_hour: float = Field(gt=0, le=MAX_USD_PER_UNIT,
        description="On-demand price per instance-hour.")
    spot_usd_per_hour: float | None = Field(
        default=None, gt=0, le=MAX_USD_PER_UNIT,
            description="Spot price per instance-hour; absent when none."
    )


class CloudGpu(Strict):
    """A GPU type a cloud region sells, the quota for it and the instances that carry it."""

    type: GpuType
    quota_gpus: int = Field(ge=0, le=MAX_GPUS,
        description="GPUs of this type the account may run here.")
    instances: list[CloudInstance] = Field(min_length=1)


class SignalQueries(Strict):
    """PromQL for live signals from the site's cluster; each one is optional.

    Decisions use a signal while it is fresh and fall back to the store's state (and say so in
    the explanation) when it is stale or unavailable.
    """

    free_gpus: Text | None = Field(
        default=None, description="Instant vector of free GPUs, one sample per GPU type (label "
        "`gpu_type_label`), e.g. from DCGM exporter metrics. Decisions use the smaller of this "
        "and the store's free count.")
    gpu_utilization_pct: Text | None = Field(
        default=None, description="Average GPU utilization in percent, e.g. "
        "avg(DCGM_FI_DEV_GPU_UTIL{cluster=\"...\"}).")
    saturated_at_pct: float | None = Field(
        default=None, gt=0, le=100, description="At or above this utilization the site is "
        "taken to have no free GPUs (work the scheduler did not place is using them).")
    service_p99_ms: Text | None = Field(
        default=None, description="Observed p99 service time in ms, one sample per model "
        "(label `model_label`), e.g. from Triton's nv_inference_request_summary_us. Replaces "
        "a workload's declared service_time_p99_ms at this site.")
    gpu_type_label: Text = Field(default="gpu_type", min_length=1)
    model_label: Text = Field(default="model", min_length=1)


class SiteServing(Strict):
    """How Triton Inference Server runs on the site's cluster and how the service reaches it.

    `endpoint` and `metrics_url` are templates over {name} (the workload's serving name) and
    {namespace}: in-cluster DNS by default, an ingress or a gateway where the service runs
    outside the cluster.
    """

    namespace: Name = "placement-serving"
    image: Text = Field(default="nvcr.io/nvidia/tritonserver:24.10-py3", min_length=1)
    repository: Text | None = Field(default=None, min_length=1, description="Default model "
                                   "repository for workloads that name none.")
    endpoint: Text = Field(default="http://{name}.{namespace}.svc.cluster.local:8000",
                          min_length=1, description="Triton's HTTP endpoint template.")
    metrics_url: Text = Field(default="http://{name}.{namespace}.svc.cluster.local:8002/metrics",
                             min_length=1, description="Triton's metrics template.")
    service_monitor: bool = Field(default=False, description="Render a Prometheus Operator "
                                  "ServiceMonitor (else scrape annotations only).")
    node_selector: dict[Text, Text] = Field(default_factory=dict)
    cpu: Text = "4"
    memory: Text = "16Gi"
    scratch: Text = Field(default="50Gi", description="Size of /tmp, where Triton keeps models "
                         "it downloads from a cloud repository.")

    @field_validator("endpoint", "metrics_url")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            value.format(name="n", namespace="ns")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"a template may use only {{name}} and {{namespace}} ({exc!r}); "
                             "fix the braces") from exc
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


class SiteJobs(Strict):
    """How training and batch jobs run on the site's cluster."""

    namespace: Name = "placement-jobs"
    stager_image: Text = Field(default="rclone/rclone:1.68", min_length=1, description="Image "
                              "of the init container that copies a dataset to the site "
                              "(`rclone copy SOURCE /data/NAME`).")
    node_selector: dict[Text, Text] = Field(default_factory=dict)
    service_account: Text | None = Field(default=None, description="Service account of the "
                                        "job's pods (e.g. with object-store credentials).")
    scratch: Text = Field(default="500Gi", description="Size of /data, where datasets staged "
                         "from other sites land.")


class _SiteCommon(Strict):
    location: Location
    kube_context: Text = Field(min_length=1, description="Kubernetes context to act on the site.")
    network_boundary: Text | None = Field(
        default=None, description="Closed network the site sits in (e.g. a plant's OT network)."
    )
    accepts_boundaries: list[Text] = Field(
        default_factory=list, description="Other boundaries whose clients may reach this site."
    )
    wan_gbps: float = Field(gt=0, le=MAX_GBPS, description="WAN bandwidth to the outside, Gbit/s.")
    egress_usd_per_gb: float = Field(
        ge=0, le=MAX_USD_PER_UNIT,
            description="Default USD per GB leaving the site, where no link says otherwise."
    )
    egress_tiers: list[EgressTier] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="Volume tiers of the default "
        "egress price, lowest first from 0 GB: a bulk move where no link sets the price is "
        "billed by them (by the move's own volume); empty: egress_usd_per_gb for every GB.")
    links: list[Link] = Field(default_factory=list)
    @field_validator("egress_tiers")
    @classmethod
    def _tiers_in_order(cls, tiers: list[EgressTier]) -> list[EgressTier]:
        starts = [t.from_gb for t in tiers]
        if tiers and starts[0] != 0:
            raise ValueError("the first egress tier must start at from_gb: 0")
        if any(b <= a for a, b in pairwise(starts)):
            raise ValueError("egress tiers must be listed by from_gb, each above the last")
        return tiers

    signals: SignalQueries | None = Field(
        default=None, description="Live signals from Prometheus (used when the service is "
        "started with a Prometheus URL).")
    serving: SiteServing = Field(default_factory=SiteServing, description="Triton serving "
                                 "on this site (used when the service runs with a kubeconfig).")
    jobs: SiteJobs = Field(default_factory=SiteJobs, description="Training and batch jobs "
                           "on this site (used when the service runs with a kubeconfig).")


class OnPremSiteSpec(_SiteCommon):
    """A cluster the organisation owns."""

    type: Literal["onprem"]
    gpus: list[OnPremGpu] = Field(min_length=1)


class BurstCluster(Strict):
    """The Kubernetes cluster in the region that burst node pools join (EKS or GKE)."""

    cluster: Text = Field(min_length=1, description="EKS cluster name or GKE cluster.")
    node_role_arn: Text | None = Field(default=None, description="AWS: IAM role of the nodes.")
    subnet_ids: list[Text] = Field(default_factory=list, description="AWS: subnets for nodes.")
    project: Text | None = Field(default=None, description="GCP: project of the cluster.")
    location: Text | None = Field(default=None, description="GCP: region or zone of the "
                                 "cluster (default: the site's region).")
    lifetime_factor: float = Field(default=1.5, ge=1, le=MAX_ITEMS,
        description="A burst expires after its "
                                   "workload's expected hours times this (plus provisioning).")


class CloudSiteSpec(_SiteCommon):
    """A public cloud region where GPU capacity can be provisioned (a burst)."""

    type: Literal["cloud"]
    provider: Provider
    region: Text = Field(min_length=1)
    provisioning_minutes: float = Field(
        default=15, ge=0, le=MAX_HOURS * 60,
            description="Time to add a GPU node pool and have it ready."
    )
    spot_interruptions_per_hour: float = Field(
        default=0.05, ge=0, le=MAX_RATE,
            description="Expected spot interruptions per instance-hour."
    )
    gpus: list[CloudGpu] = Field(min_length=1)
    burst: BurstCluster | None = Field(default=None, description="Where burst node pools go "
                                       "(needed to carry out burst decisions).")


SiteSpec = Annotated[OnPremSiteSpec | CloudSiteSpec, Field(discriminator="type")]


class Site(Document):
    """A place that can run GPUs."""

    kind: Literal["Site"] = "Site"
    spec: SiteSpec



class DatasetSpec(Strict):
    """Size, replicas and classification of a dataset."""

    size_gb: float = Field(ge=0, le=MAX_SIZE, description="Size in GB (10^9 bytes).")
    replicas: list[Name] = Field(min_length=1, description="Sites holding a full replica.")
    classification: Classification = "internal"
    network_boundary: Text | None = Field(
        default=None, description="The data may not leave sites inside this boundary."
    )
    uris: dict[Text, Text] = Field(default_factory=dict, description="Where each replica lives, "
                                 "by site name (an rclone remote:path, s3://, gs:// ...): the "
                                 "source a job's staging step copies from.")


class Dataset(Document):
    """Data a workload reads."""

    kind: Literal["Dataset"] = "Dataset"
    spec: DatasetSpec



class ClientLocationSpec(Strict):
    """Where users of a service sit, and measured RTTs from there."""

    location: Location
    network_boundary: Text | None = Field(
        default=None, description="Clients inside a closed network reach only sites that allow it."
    )
    rtt_ms: dict[Text, Annotated[float, Field(ge=0, le=MAX_MS)]] = Field(
        default_factory=dict, description="Measured RTT in ms to named sites; others estimated."
    )
    rtt_source: Text | None = Field(default=None, description="Where the measured RTTs come from.")


class ClientLocation(Document):
    """A population of users."""

    kind: Literal["ClientLocation"] = "ClientLocation"
    spec: ClientLocationSpec



class Reservation(Strict):
    """GPUs held at a site by a placed workload (the source of truth for free capacity)."""

    site: Text
    gpu_type: Text
    count: int = Field(ge=1)
    remaining_hours: float | None = Field(
        default=None, ge=0, description="Expected hours until release; None = not known."
    )
    workload: Text | None = None


class Inventory(Strict):
    """Everything the engine knows about where work can run."""

    sites: list[Site]
    datasets: list[Dataset] = Field(default_factory=list)
    client_locations: list[ClientLocation] = Field(default_factory=list)

    def site(self, name: str) -> Site:
        for s in self.sites:
            if s.name == name:
                return s
        raise KeyError(name)
