"""Workload documents: what to run, with which GPUs, data, clients and limits."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from placement.model.common import (
    MAX_GPUS,
    MAX_HOURS,
    MAX_INT32,
    MAX_ITEMS,
    MAX_MS,
    MAX_PRIORITY,
    MAX_RATE,
    MAX_REPLICAS,
    MAX_SIZE,
    MAX_USD,
    Document,
    GpuType,
    Name,
    Strict,
    Text,
)

WorkloadKind = Literal["inference", "rag", "training", "finetune", "batch"]
SERVICE_KINDS: frozenset[str] = frozenset({"inference", "rag"})
JOB_KINDS: frozenset[str] = frozenset({"training", "finetune", "batch"})


class GpuRequest(Strict):
    """GPU types acceptable (any one of them) and how many per replica."""

    types: list[GpuType] = Field(min_length=1, max_length=MAX_ITEMS)
    count: int = Field(ge=1, le=MAX_GPUS, description="GPUs per replica (all on one site).")


class ClientRef(Strict):
    """A client location a service serves, with its share of the traffic."""

    location: Name
    share: float = Field(default=1.0, gt=0, le=1,
        description="Share of the service's requests_per_s from this location (used when "
        "requests_per_s is not given here); shares are normalized over the clients.")
    requests_per_s: float | None = Field(
        default=None, ge=0, le=MAX_RATE, description="Mean requests/s from this location; "
        "overrides share x the service's requests_per_s (fleets size replicas by it).")
    requests_per_s_query: Text | None = Field(
        default=None, min_length=1, description="PromQL whose value is this location's "
        "requests/s now (one sample, e.g. sum(rate(gateway_requests_total{location=\"tokyo\"}"
        "[1m])) from the load balancer). A fleet's autoscaler reads it where every location has "
        "one (placement.control.fleets); else it spreads what Triton measures over the "
        "declared mix.")


class LatencySpec(Strict):
    """The service's latency target and its own service time."""

    p99_slo_ms: float = Field(gt=0, le=MAX_MS,
        description="p99 end-to-end latency SLO seen by clients, ms.")
    service_time_p99_ms: float = Field(ge=0, le=MAX_MS,
        description="p99 model service time on a GPU, ms.")
    clients: list[ClientRef] = Field(min_length=1, max_length=MAX_ITEMS)
    replica_rps: float | None = Field(
        default=None, gt=0, le=MAX_RATE, description="Requests/s one replica serves within "
        "its service time (measured, e.g. with Triton's perf_analyzer); absent: derived from "
        "the service time and the batching configuration (placement.engine.fleet).")

    @model_validator(mode="after")
    def _unique_clients(self) -> LatencySpec:
        seen: set[str] = set()
        for c in self.clients:
            if c.location in seen:
                raise ValueError(f"client location {c.location!r} appears twice; list each "
                                 "location once")
            seen.add(c.location)
        queried = [c.requests_per_s_query is not None for c in self.clients]
        if any(queried) and not all(queried):
            missing = ", ".join(c.location for c, q in zip(self.clients, queried, strict=True)
                                if not q)
            raise ValueError(f"clients[].requests_per_s_query is set for some client locations "
                             f"but not for {missing}; set it on every location or on none")
        return self


class DatasetRef(Strict):
    """A dataset the workload reads, and how."""

    name: Name
    access: Literal["bulk", "lookup"] = Field(
        default="bulk",
        description="bulk: read in full before starting; lookup: queried per request (RAG).",
    )
    lookups_per_request: float = Field(default=0, ge=0, le=MAX_RATE)
    kb_per_lookup: float = Field(default=0, ge=0, le=MAX_SIZE,
        description="KB returned per lookup.")


TensorType = Literal["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
                     "INT64", "FP16", "FP32", "FP64", "BF16", "BYTES"]


class TensorSpec(Strict):
    """One model input or output as Triton declares it (without the batch dimension)."""

    name: Text = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    data_type: TensorType = Field(description="Triton data type without the TYPE_ prefix.")
    dims: list[Annotated[int, Field(ge=-1, le=MAX_INT32)]] = Field(
        min_length=1, max_length=MAX_ITEMS, description="Shape per request; -1 = variable.")

    @model_validator(mode="after")
    def _dims(self) -> TensorSpec:
        if any(d == 0 or d < -1 for d in self.dims):
            raise ValueError("dims must be positive sizes or -1 (variable); fix the shape")
        return self


class ServingSpec(Strict):
    """What Triton serves for an inference or RAG workload."""

    model: Name
    backend: Literal["python", "onnxruntime", "pytorch", "tensorrt", "vllm", "tensorrtllm"]
    max_batch_size: int = Field(default=0, ge=0, le=MAX_INT32)
    dynamic_batching: bool = True
    instances_per_gpu: int = Field(default=1, ge=1, le=MAX_ITEMS)
    instance_kind: Literal["gpu", "cpu"] = Field(
        default="gpu", description="Where Triton runs the model instances: gpu (KIND_GPU, "
        "instances_per_gpu on each GPU) or cpu (KIND_CPU: pre- and post-processing models).")
    version: int = Field(default=1, ge=1, le=MAX_INT32,
        description="Model version to serve; changing it "
                         "rolls the model: load the new version, check it, unload the old one.")
    repository: Text | None = Field(
        default=None, min_length=1, description="Model repository Triton reads the model's "
        "version directories from (s3://, gs://, as:// or a path in the image); default: the "
        "site's serving.repository.")
    inputs: list[TensorSpec] = Field(default_factory=list, max_length=MAX_ITEMS,
        description="Inputs; empty: the "
                                     "backend's auto-complete fills them (no smoke inference).")
    outputs: list[TensorSpec] = Field(default_factory=list, max_length=MAX_ITEMS)
    max_queue_delay_us: int = Field(default=100, ge=0, le=MAX_INT32,
        description="Dynamic batching delay.")


class JobSpec(Strict):
    """What a training, fine-tuning or batch job runs on its cluster."""

    image: Text = Field(min_length=1, description="Container image.")
    command: list[Text] = Field(default_factory=list, max_length=MAX_ITEMS)
    args: list[Text] = Field(default_factory=list, max_length=MAX_ITEMS)
    env: dict[Text, Text] = Field(default_factory=dict, max_length=MAX_ITEMS)
    nodes: int = Field(default=1, ge=1, le=MAX_GPUS,
        description="Nodes (pods) the GPUs are spread over; "
                       "above 1: an indexed Job with a headless Service. gpu.count must divide.")
    checkpoint_uri: Text | None = Field(
        default=None, min_length=1, description="Where the job writes checkpoints and resumes "
        "from (passed as CHECKPOINT_URI); a resubmission after an interruption resumes there.")
    checkpoint_volume: Text | None = Field(
        default=None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", description="A "
        "PersistentVolumeClaim mounted at /checkpoints (CHECKPOINT_DIR) instead.")
    backoff_limit: int = Field(default=3, ge=0, le=MAX_INT32,
        description="Pod retries before the Job fails.")
    ttl_seconds_after_finished: int = Field(default=86400, ge=0, le=MAX_INT32)


class WorkloadSpec(Strict):
    """The workload itself."""

    kind: WorkloadKind
    team: Name
    priority: int = Field(default=0, ge=-MAX_PRIORITY, le=MAX_PRIORITY,
                          description="Higher goes first when GPUs are short.")
    gpu: GpuRequest
    replicas: int = Field(default=1, ge=1, le=MAX_REPLICAS,
        description="Service replicas (jobs: 1).")
    duration_hours: float | None = Field(default=None, gt=0, le=MAX_HOURS,
        description="Expected run time.")
    deadline_hours: float | None = Field(
        default=None, gt=0, le=MAX_HOURS,
            description="Must finish within this many hours of submission."
    )
    budget_usd: float | None = Field(default=None, gt=0, le=MAX_USD,
        description="Most it may cost in total.")
    checkpoint_minutes: float = Field(
        default=30, gt=0, le=MAX_HOURS * 60,
            description="Checkpoint interval; bounds the work lost to a restart."
    )
    requests_per_s: float = Field(default=0, ge=0, le=MAX_RATE,
        description="Services: mean request rate.")
    latency: LatencySpec | None = None
    datasets: list[DatasetRef] = Field(default_factory=list, max_length=MAX_ITEMS)
    serving: ServingSpec | None = None
    job: JobSpec | None = None
    interruptions: int = Field(default=0, ge=0, le=MAX_INT32,
        description="Spot interruptions so far (set by "
                               "the service when it resubmits an interrupted job).")

    @model_validator(mode="after")
    def _kind_fields(self) -> WorkloadSpec:
        if self.kind in SERVICE_KINDS and self.latency is None:
            raise ValueError(
                f"a {self.kind} workload needs 'latency' (p99_slo_ms, service_time_p99_ms, "
                "clients); add it"
            )
        if self.kind in JOB_KINDS and self.duration_hours is None:
            raise ValueError(f"a {self.kind} job needs 'duration_hours'; add the expected run time")
        if self.gpu.count * self.replicas > MAX_GPUS:
            raise ValueError(f"gpu.count x replicas is {self.gpu.count * self.replicas:,} "
                             f"GPUs, over the {MAX_GPUS:,} one workload may hold; ask for fewer")
        if self.kind in JOB_KINDS and self.replicas != 1:
            raise ValueError("jobs run as one replica; remove 'replicas' or set it to 1")
        if self.job is not None and self.gpu.count % self.job.nodes:
            raise ValueError(f"gpu.count {self.gpu.count} does not split over job.nodes "
                             f"{self.job.nodes}; make the count a multiple of the nodes")
        if self.kind == "rag" and not any(d.access == "lookup" for d in self.datasets):
            raise ValueError(
                "a rag workload needs at least one dataset with access: lookup (its index)"
            )
        return self

    @property
    def is_service(self) -> bool:
        return self.kind in SERVICE_KINDS


class Workload(Document):
    """A workload document."""

    kind: Literal["Workload"] = "Workload"
    spec: WorkloadSpec

