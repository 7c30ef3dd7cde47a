"""The shared normalizer: raw values to 0-100 against the best considered value (a ratio)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from placement.engine.elementwise import normalized

Floats = NDArray[np.float64]
Bools = NDArray[np.bool_]


def normalize(raw: Floats, considered: Bools, scale: float) -> Floats:
    """Score = 100 x (best + scale) / (raw + scale); lower raw is better (elementwise.normalized,
    which the batch kernel also runs).

    `best` is the lowest raw value among considered candidates, so a candidate that is worse on
    every criterion never changes the others' scores (no rank reversal), and with scale 0 a
    ratio is invariant when all values are multiplied by one constant (e.g. every price). The
    scale is the policy's indifference level: differences well under it barely matter, so 0.01
    vs 0 is not scored 0 vs 100. Candidates not considered get NaN.
    """
    out = np.full(raw.shape, np.nan)
    if not considered.any():
        return out
    vals = raw[considered]
    best = float(np.min(vals))
    out[considered] = normalized(vals, best, scale)
    return out
