"""Network-estimate benchmark: leave-one-out over the measured Skyplane throughput matrix
(../shared/data/net_skyplane_throughput_2022.csv, AWS/GCP/Azure region pairs).

Each measured pair is hidden in turn and estimated as the engine estimates a pair nobody
measured (`placement.engine.network.from_similar_pairs`: the median of the source region's
measured pairs to the destination's provider, else of the two providers' pairs), and the
old rule (the smaller WAN link, 10 Gbit/s on every cloud site of the examples) beside it.
Prints the absolute relative error's median, p90 and max for both, as one JSON line.
To keep it fast, --sample N hides only N pairs drawn at random (seeded).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys

import numpy as np

if not __package__:  # run as a script: bench/ is importable from the repository root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.engine import DATA
from placement.engine.network import from_similar_pairs
from placement.policy.catalog import load_pairs

WAN_GBPS = 10.0  # every cloud site's wan_gbps in policies/examples


def _errors(truth: np.ndarray, guess: np.ndarray) -> dict[str, float]:
    err = np.abs(guess - truth) / truth
    return {"median": round(float(np.median(err)), 4),
            "p90": round(float(np.percentile(err, 90)), 4),
            "max": round(float(err.max()), 4)}


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
            "gbps_wan_min": _errors(t, np.full(len(t), WAN_GBPS)), "cores": os.cpu_count()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sample", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps(run(args.sample, args.seed)))


if __name__ == "__main__":
    main()
