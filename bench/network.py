"""Network-estimate benchmark: leave-one-out over the measured Skyplane throughput matrix
(../shared/data/net_skyplane_throughput_2022.csv, AWS/GCP/Azure region pairs).

Each measured pair is hidden in turn and estimated as the engine estimates a pair nobody
measured (`placement.engine.network.from_similar_pairs`: the median of the source region's
measured pairs to the destination's provider, else of the two providers' pairs), and the
old rule (the smaller WAN link, 10 Gbit/s on every cloud site of the examples) beside it.
Prints the absolute relative error's median, p90 and max for both, as one JSON line.
To keep it fast, --sample N hides only N pairs drawn at random (seeded).

It also measures the RTT the engine gives pairs nobody measured (`fill_rtt`: the mean of
measured pairs between places within STANDIN_KM of each end, else great-circle distance)
held out on every measured Skyplane RTT pair whose two regions have coordinates in
regions_geo_multicloud.csv (read from ../shared/data, never copied): each unordered pair is
hidden in both directions in turn and estimated from the rest. `rtt` prints the error
distribution (quantiles of the absolute relative error, the signed median), how many pairs had
a stand-in, and the same for other radii; `rtt_distance_only` is the great-circle model alone
(its constants were set from this matrix, so that one is in-sample).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys

import numpy as np

if not __package__:  # run as a script: bench/ is importable from the repository root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.engine import DATA
from placement.engine.network import (
    STANDIN,
    STANDIN_KM,
    estimated_rtt_ms,
    fill_rtt,
    from_similar_pairs,
    great_circle_km,
)
from placement.policy.catalog import load_pairs

WAN_GBPS = 10.0  # every cloud site's wan_gbps in policies/examples


def _errors(truth: np.ndarray, guess: np.ndarray) -> dict[str, float]:
    err = np.abs(guess - truth) / truth
    return {"median": round(float(np.median(err)), 4),
            "p90": round(float(np.percentile(err, 90)), 4),
            "max": round(float(err.max()), 4)}


PROVIDERS = {"Amazon Web Services": "aws", "Google Cloud": "gcp", "Microsoft Azure": "azure"}


def _distribution(truth: np.ndarray, guess: np.ndarray) -> dict[str, float]:
    err = np.abs(guess - truth) / truth
    out = {f"p{q}": round(float(np.percentile(err, q)), 4) for q in (10, 25, 50, 75, 90, 99)}
    out["max"] = round(float(err.max()), 4)
    out["signed_median"] = round(float(np.median((guess - truth) / truth)), 4)
    return out


def _regions() -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Measured regions with coordinates: names, P x P km, RTT values and measured mask."""
    where: dict[str, tuple[float, float]] = {}
    with open(DATA / "regions_geo_multicloud.csv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            cloud = PROVIDERS.get(row["provider"])
            if cloud is not None:  # the first metro entry of a region
                where.setdefault(f"{cloud}:{row['region']}",
                                 (float(row["latitude"]), float(row["longitude"])))
    pairs = {(a, b): ms for (a, b), ms in load_pairs(DATA)["rtt_ms"].items()
             if a != b and a in where and b in where and ms > 0}
    names = sorted({r for pair in pairs for r in pair})
    idx = {r: i for i, r in enumerate(names)}
    lat = np.array([where[r][0] for r in names])
    lon = np.array([where[r][1] for r in names])
    km = great_circle_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    values = np.zeros_like(km)
    measured = np.zeros(km.shape, dtype=bool)
    for (a, b), ms in pairs.items():
        values[idx[a], idx[b]], measured[idx[a], idx[b]] = ms, True
    return names, km, values, measured


def rtt_model(radii: tuple[float, ...] = (50.0, 150.0, STANDIN_KM, 600.0)) -> dict[str, object]:
    """The engine's RTT for unmeasured pairs, held out on the measured pairs."""
    _, km, values, measured = _regions()
    src, dst = np.nonzero(measured)
    truth = values[src, dst]
    out: dict[str, object] = {"pairs": len(truth), "standin_km": STANDIN_KM}
    dist = estimated_rtt_ms(km[src, dst])
    out["rtt_distance_only"] = _distribution(truth, dist)
    for radius in radii:
        guess = np.empty(len(truth))
        stood_in = np.zeros(len(truth), dtype=bool)
        for k, (a, b) in enumerate(zip(src.tolist(), dst.tolist(), strict=True)):
            hidden = measured.copy()
            hidden[a, b] = hidden[b, a] = False  # both directions: the reverse would give it away
            rtt, source = fill_rtt(km, values, hidden, radius)
            guess[k], stood_in[k] = rtt[a, b], source[a, b] == STANDIN
        row = {**_distribution(truth, guess), "with_standin": int(stood_in.sum()),
               "standin_only": _distribution(truth[stood_in], guess[stood_in])}
        if radius == STANDIN_KM:
            out["rtt"] = row
        else:
            out[f"rtt_radius_{radius:g}km"] = {"p50": row["p50"], "p90": row["p90"],
                                               "with_standin": row["with_standin"]}
    return out


def run(sample: int | None, seed: int) -> dict[str, object]:
    pairs = load_pairs(DATA)["gbps"]
    regions = sorted({r for pair in pairs for r in pair})
    idx = {r: i for i, r in enumerate(regions)}
    names = sorted({r.split(":", 1)[0] for r in regions})
    group = np.array([names.index(r.split(":", 1)[0]) for r in regions], dtype=np.int64)
    n = len(regions)
    values = np.zeros((n, n))
    measured = np.zeros((n, n), dtype=bool)
    for (a, b), v in pairs.items():
        if a != b and v > 0:
            values[idx[a], idx[b]] = v
            measured[idx[a], idx[b]] = True
    cells = list(zip(*np.nonzero(measured), strict=True))
    if sample is not None and sample < len(cells):
        cells = random.Random(seed).sample(cells, sample)
    fallback = np.full((n, n), WAN_GBPS)
    truth, guess = [], []
    for a, b in cells:
        measured[a, b] = False
        got = from_similar_pairs(values, measured, group, fallback)
        measured[a, b] = True
        truth.append(values[a, b])
        guess.append(min(got[a, b], WAN_GBPS))  # as compile_inventory caps it
    t, g = np.array(truth), np.array(guess)
    return {"bench": "network", "pairs_measured": int(measured.sum()), "regions": n,
            "held_out": len(cells), "gbps_similar_pairs": _errors(t, g),
            "gbps_wan_min": _errors(t, np.full(len(t), WAN_GBPS)), **rtt_model(),
            "cores": os.cpu_count()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sample", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps(run(args.sample, args.seed)))


if __name__ == "__main__":
    main()
