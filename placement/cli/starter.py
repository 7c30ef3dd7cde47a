"""`placement init DIR`: a starter GitOps directory to edit for one's own sites.

The files are kept here as text (not package data) so that an installed wheel writes the same
ones. Every number in them is a placeholder the header of each file asks to replace.
"""

from __future__ import annotations

README = """\
# Placement policies

This directory is what `placement serve --config DIR` (or PLACEMENT_CONFIG_DIR) and the
operator read: the inventory (sites, datasets, client locations), the policy, and example
workloads. Edit the files for your own organisation, then check them:

    placement policy validate .

Every problem is reported as `file:line: field: message. Fix: ...`. Try a decision without a
server:

    placement place workloads/ --config .

Commit the directory to git: the service reloads it when it changes, and its version is the
commit that last changed it.
"""

SITES = """\
# Your GPU sites. Replace the names, locations, contexts and GPU pools with your own.
#
# usd_per_gpu_hour of an on-prem pool is what a GPU-hour costs you, amortized: capex /
# (lifetime hours x utilization) + opex. It is never 0 (the engine compares it with cloud
# prices). Cloud prices are USD per instance-hour; take them from your provider's price list.
---
apiVersion: placement.dev/v1alpha1
kind: Site
metadata:
  name: dc-main
  labels:
    residency: eu
spec:
  type: onprem
  location: {lat: 50.1109, lon: 8.6821, description: "Main data centre (edit me)"}
  kube_context: dc-main          # the kubeconfig context of this cluster
  wan_gbps: 10
  egress_usd_per_gb: 0
  gpus:
    - {type: A100-80GB, count: 16, usd_per_gpu_hour: 2.2}
    - {type: L4, count: 8, usd_per_gpu_hour: 0.75}
---
apiVersion: placement.dev/v1alpha1
kind: Site
metadata:
  name: aws-eu-central-1
  labels:
    provider: aws
    residency: eu
spec:
  type: cloud
  provider: aws
  region: eu-central-1
  location: {lat: 50.1109, lon: 8.6821, description: "Frankfurt"}
  kube_context: aws-eu-central-1
  wan_gbps: 10
  egress_usd_per_gb: 0.09
  provisioning_minutes: 15
  spot_interruptions_per_hour: 0.05
  gpus:
    - type: L4
      quota_gpus: 16              # your account's quota
      instances:
        - {type: g6.xlarge, gpus: 1, on_demand_usd_per_hour: 0.96, spot_usd_per_hour: 0.45}
    - type: A100
      quota_gpus: 16
      instances:
        - {type: p4d.24xlarge, gpus: 8, on_demand_usd_per_hour: 40.97, spot_usd_per_hour: 12.0}
"""

DATASETS = """\
# The data your workloads read: its size, the sites holding full replicas (names from
# sites.yaml) and its classification (public, internal, confidential, restricted).
---
apiVersion: placement.dev/v1alpha1
kind: Dataset
metadata:
  name: training-data
spec:
  size_gb: 500
  replicas: [dc-main]
  classification: internal
"""

CLIENTS = """\
# Where the users of your services sit. Add measured RTTs (rtt_ms: {site: ms}) where you have
# them; the engine estimates the others from great-circle distance.
---
apiVersion: placement.dev/v1alpha1
kind: ClientLocation
metadata:
  name: office
spec:
  location: {lat: 50.1109, lon: 8.6821, description: "Main office (edit me)"}
"""

POLICY = """\
# The placement policy. Rules are ordered: require/forbid constraints accumulate from every
# matching rule; weights, max_wait_hours and burst come from the first matching rule that sets
# each, else from defaults.
apiVersion: placement.dev/v1alpha1
kind: Policy
metadata:
  name: my-org
spec:
  defaults:
    weights: {latency: 1, data_gravity: 1, cost: 1, wait: 1}
    max_wait_hours: 1
    burst: {allowed: false}
  rules:
    - name: confidential-data-stays-onprem
      description: Workloads reading confidential or restricted data run only on our own sites.
      match:
        data_classifications: [confidential, restricted]
      require:
        site_types: [onprem]
    - name: services-near-clients
      description: Inference and RAG run near their clients; the cloud only when on-prem is full.
      match:
        kinds: [inference, rag]
      weights: {latency: 5, data_gravity: 1, cost: 2, wait: 2}
      max_wait_hours: 0.5
      burst: {allowed: true, when: onprem_unavailable, spot: never}
    - name: jobs-burst-when-onprem-busy
      description: Jobs run on-prem when it can start them within 2 hours, else burst.
      match:
        kinds: [training, finetune, batch]
      weights: {latency: 0, data_gravity: 2, cost: 4, wait: 1}
      max_wait_hours: 2
      burst: {allowed: true, when: onprem_unavailable, spot: when_deadline_allows}
"""

WORKLOAD = """\
# An example workload: `placement place workloads/ --config .` decides it. Submit real ones
# through the API (POST /v1/workloads) or as Workload resources.
apiVersion: placement.dev/v1alpha1
kind: Workload
metadata:
  name: example-finetune
spec:
  kind: finetune
  team: ml
  gpu: {types: [A100-80GB, A100], count: 8}
  duration_hours: 6
  deadline_hours: 24
  datasets:
    - {name: training-data, access: bulk}
"""

FILES: dict[str, str] = {
    "README.md": README,
    "sites.yaml": SITES,
    "datasets.yaml": DATASETS,
    "clients.yaml": CLIENTS,
    "policy.yaml": POLICY,
    "workloads/example-finetune.yaml": WORKLOAD,
}
