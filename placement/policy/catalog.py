"""Readers for the public price and network catalogs (SkyPilot, Skyplane) in ../shared/data."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# GCP's catalog prices the host VM and the accelerator on separate rows; these machine types
# carry a fixed accelerator. The GPU rows list (accelerator, count) per region.
_GCP_HOSTS = {
    r"a2-highgpu-(\d+)g": "A100",
    r"a2-megagpu-(16)g": "A100",
    r"a2-ultragpu-(\d+)g": "A100-80GB",
    r"a3-highgpu-(\d+)g": "H100",
    r"a3-ultragpu-(8)g": "H200",
}
_G2_L4 = {"g2-standard-4": 1, "g2-standard-8": 1, "g2-standard-12": 1, "g2-standard-16": 1,
          "g2-standard-32": 1, "g2-standard-24": 2, "g2-standard-48": 4, "g2-standard-96": 8}


@dataclass(frozen=True)
class Offer:
    """One instance type in one region with its GPU and prices (USD per instance-hour)."""

    provider: str
    region: str
    instance_type: str
    gpu: str
    gpus: int
    on_demand: float
    spot: float | None


def _f(text: str) -> float | None:
    text = (text or "").strip()
    return float(text) if text else None


def _rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        yield from csv.DictReader(fh)


def _aws(data: Path) -> Iterator[Offer]:
    seen: set[tuple[str, str]] = set()
    for name in ("prices_aws_gpu_skypilot_v7.csv", "prices_aws_biggpu_skypilot_v7.csv"):
        for r in _rows(data / name):
            key = (r["InstanceType"], r["Region"])
            od = _f(r["Price"])
            if key in seen or od is None or not r["AcceleratorName"]:
                continue
            seen.add(key)
            yield Offer("aws", r["Region"], r["InstanceType"], r["AcceleratorName"],
                        int(float(r["AcceleratorCount"])), od, _f(r["SpotPrice"]))


def _azure(data: Path) -> Iterator[Offer]:
    for r in _rows(data / "prices_azure_gpu_skypilot_v6.csv"):
        od = _f(r["Price"])
        if od is None or not r["AcceleratorName"] or r["InstanceType"].endswith("_Promo"):
            continue
        yield Offer("azure", r["Region"], r["InstanceType"], r["AcceleratorName"],
                    int(float(r["AcceleratorCount"])), od, _f(r["SpotPrice"]))


def _gcp(data: Path) -> Iterator[Offer]:
    rows = list(_rows(data / "prices_gcp_gpu_skypilot_v7.csv"))
    accel = {(r["Region"], r["AcceleratorName"], int(float(r["AcceleratorCount"]))): r
             for r in rows if not r["InstanceType"] and r["AcceleratorName"]}
    for r in rows:
        host = r["InstanceType"]
        gpu, count = None, 0
        for pattern, name in _GCP_HOSTS.items():
            m = re.fullmatch(pattern, host)
            if m:
                gpu, count = name, int(m.group(1))
        if host in _G2_L4:
            gpu, count = "L4", _G2_L4[host]
        a = accel.get((r["Region"], gpu or "", count))
        host_od, acc_od = _f(r["Price"]), _f(a["Price"]) if a else None
        if gpu is None or a is None or host_od is None or acc_od is None:
            continue
        host_spot, acc_spot = _f(r["SpotPrice"]), _f(a["SpotPrice"])
        spot = host_spot + acc_spot if host_spot is not None and acc_spot is not None else None
        yield Offer("gcp", r["Region"], host, gpu, count, round(host_od + acc_od, 5),
                    round(spot, 5) if spot is not None else None)


def load_offers(data: Path) -> list[Offer]:
    """Every GPU instance offer in the AWS, GCP and Azure catalogs under `data`."""
    return [*_aws(data), *_gcp(data), *_azure(data)]


def load_pairs(data: Path) -> dict[str, dict[tuple[str, str], float]]:
    """Measured pair-wise values keyed by ('cloud:region', 'cloud:region').

    Returns {'rtt_ms': ..., 'gbps': ..., 'egress_usd_per_gb': ...}; GCP zones are reduced to
    their region.
    """
    def norm(x: str) -> str:
        cloud, region = x.split(":", 1)
        return f"{cloud}:{re.sub(r'-[a-z]$', '', region)}" if cloud == "gcp" else x

    rtt = {(norm(r["src_region"]), norm(r["dst_region"])): float(r["avg_rtt"])
           for r in _rows(data / "net_skyplane_rtt_2022.csv")}
    gbps = {(norm(r["src_region"]), norm(r["dst_region"])):
            float(r["throughput_received_bps"]) / 1e9
            for r in _rows(data / "net_skyplane_throughput_2022.csv")
            if r["success"] == "True" and r["throughput_received_bps"]}
    egress = {(norm(r["src"]), norm(r["dest"])): float(r["cost_usd_per_gb"])
              for r in _rows(data / "egress_skyplane_cost_matrix.csv")}
    return {"rtt_ms": rtt, "gbps": gbps, "egress_usd_per_gb": egress}
