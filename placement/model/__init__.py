"""Domain model: inventory, workloads, policy and decisions as pydantic v2 models."""

from placement.model.common import Location, Metadata
from placement.model.decision import (
    Candidate,
    CriterionScore,
    Decision,
    Estimates,
    SignalUse,
)
from placement.model.inventory import (
    ClientLocation,
    CloudGpu,
    CloudInstance,
    CloudSiteSpec,
    Dataset,
    Inventory,
    Link,
    OnPremGpu,
    OnPremSiteSpec,
    Reservation,
    SignalQueries,
    Site,
    SiteJobs,
    SiteServing,
)
from placement.model.policy import Burst, Match, Policy, Rule, Scales, SiteSelector, Weights
from placement.model.workload import JobSpec, ServingSpec, TensorSpec, Workload, WorkloadKind

__all__ = [
    "Burst",
    "Candidate",
    "ClientLocation",
    "CloudGpu",
    "CloudInstance",
    "CloudSiteSpec",
    "CriterionScore",
    "Dataset",
    "Decision",
    "Estimates",
    "Inventory",
    "JobSpec",
    "Link",
    "Location",
    "Match",
    "Metadata",
    "OnPremGpu",
    "OnPremSiteSpec",
    "Policy",
    "Reservation",
    "Rule",
    "Scales",
    "ServingSpec",
    "SignalQueries",
    "SignalUse",
    "Site",
    "SiteJobs",
    "SiteSelector",
    "SiteServing",
    "TensorSpec",
    "Weights",
    "Workload",
    "WorkloadKind",
]
