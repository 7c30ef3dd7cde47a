"""Network estimates for pairs nobody measured: RTT from measured pairs between the same two
metros (stand-ins), else from great-circle distance; bandwidth from measured pairs like them."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

EARTH_RADIUS_KM = 6371.0
# Both constants come from ../shared/data/net_skyplane_rtt_2022.csv (8,010 measured AWS/GCP/Azure
# region pairs) joined with the region coordinates in regions_geo_multicloud.csv:
# RTT_BASE_MS is the median measured RTT between regions of one metro area (< 100 km apart);
# RTT_MS_PER_KM is the median of measured RTT / great-circle km over all pairs. It is about
# 1.8x the speed of light in fibre, the usual inflation of real routes.
RTT_BASE_MS = 2.9
RTT_MS_PER_KM = 0.0183
LOCAL_RTT_MS = 0.5  # within one site (same cluster network)
# Two places this close are one metro for the RTT stand-ins: a measured pair between places
# near each end stands in for a pair nobody measured. bench/network.py validates it (leave-one-
# out on the Skyplane matrix, both directions of a pair hidden) and prints 50-300 km beside it.
STANDIN_KM = 300.0

# Where a value in a decision comes from, by code (CompiledInventory's *_source arrays).
MEASURED, STANDIN, DISTANCE, SIMILAR_PAIRS, WAN_LINK, SITE_RATE, TIERED_RATE, LOCAL = range(8)
SOURCE_NAMES = (
    "measured",
    "estimated: measured pairs between the same metros",
    "estimated: great-circle distance",
    "estimated: measured pairs of the same providers",
    "estimated: WAN link",
    "estimated: the source site's first-tier rate",
    "estimated: the source site's volume tiers",
    "estimated: within one site",
)
Int8s = NDArray[np.int8]

Floats = NDArray[np.float64]


def great_circle_km(lat1: Floats, lon1: Floats, lat2: Floats, lon2: Floats) -> Floats:
    """Haversine distance in km; broadcasts like NumPy."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlam = np.radians(lon2) - np.radians(lon1)
    h = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlam / 2) ** 2
    km: Floats = 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
    return km


def estimated_rtt_ms(km: Floats) -> Floats:
    """RTT estimate for a path of `km` great-circle kilometres, where none was measured."""
    return RTT_BASE_MS + RTT_MS_PER_KM * km


def fill_rtt(km: Floats, values: Floats, measured: NDArray[np.bool_],
             radius_km: float = STANDIN_KM) -> tuple[Floats, Int8s]:
    """RTT for every pair of P places (sites and client locations), and where each came from.

    `km` is P x P great-circle km; `values` holds RTTs where `measured` (a pair measured one
    way counts both ways). A pair nobody measured gets the mean of the measured pairs (a', b')
    with a' within `radius_km` of a and b' within `radius_km` of b (a' = a and b' = b included),
    each corrected by RTT_MS_PER_KM x the difference in distance; with no such pair, the
    great-circle model. Returns (P x P ms, P x P source codes: MEASURED, STANDIN, DISTANCE)."""
    from scipy import sparse  # imported here: only compiling an inventory needs it

    known = measured | measured.T
    vals = np.where(measured, values, values.T)  # a pair measured one way counts both ways
    rtt = estimated_rtt_ms(km)
    source = np.full(km.shape, DISTANCE, dtype=np.int8)
    rtt[known] = vals[known]
    source[known] = MEASURED
    if known.any():
        near = sparse.csr_matrix(km < radius_km, dtype=np.float64)
        src, dst = np.nonzero(known)
        shape = km.shape
        adjusted = sparse.csr_matrix((vals[src, dst] - RTT_MS_PER_KM * km[src, dst], (src, dst)),
                                     shape=shape)
        ones = sparse.csr_matrix((np.ones(len(src)), (src, dst)), shape=shape)
        count = (near @ ones @ near.T).tocoo()  # sums of ones: no entry cancels out
        a, b = count.row, count.col
        fill = ~known[a, b] & (a != b)
        a, b, n = a[fill], b[fill], count.data[fill]
        total = np.asarray((near @ adjusted @ near.T).tocsr()[a, b]).ravel()
        rtt[a, b] = np.maximum(total / n + RTT_MS_PER_KM * km[a, b], LOCAL_RTT_MS)
        source[a, b] = STANDIN
    return rtt, source


def from_similar_pairs(values: Floats, measured: NDArray[np.bool_], group: NDArray[np.int64],
                       fallback: Floats) -> Floats:
    """Fill the unmeasured pairs of an S x S matrix from measured pairs like them.

    Pair (a, b) unmeasured gets the median of the measured pairs from a to sites of b's group
    (the same source region, the same destination provider); else the median of the measured
    pairs from a's group to b's group (the same two providers); else `fallback[a, b]`. Groups
    are small integers per site (a provider, or one per on-prem site). Measured pairs keep
    their value."""
    src, dst = np.nonzero(measured)
    out = np.array(fallback, dtype=float, copy=True)
    if not len(src):
        out[measured] = values[measured]
        return out
    n_groups = int(group.max()) + 1
    by_site: dict[tuple[int, int], list[float]] = {}
    by_group: dict[tuple[int, int], list[float]] = {}
    for a, b, v in zip(src.tolist(), dst.tolist(), values[src, dst].tolist(), strict=True):
        by_site.setdefault((a, int(group[b])), []).append(v)
        by_group.setdefault((int(group[a]), int(group[b])), []).append(v)
    site_med = np.full((len(group), n_groups), np.nan)
    for (a, g), vs in by_site.items():
        site_med[a, g] = float(np.median(vs))
    group_med = np.full((n_groups, n_groups), np.nan)
    for (g, h), vs in by_group.items():
        group_med[g, h] = float(np.median(vs))
    est = site_med[:, group]  # S x S: a's measured pairs to b's group
    gap = np.isnan(est)
    est[gap] = group_med[group[:, None], group[None, :]][gap]  # else the two providers'
    found = ~np.isnan(est)
    out[found] = est[found]
    out[measured] = values[measured]
    filled: Floats = out
    return filled


def tiered_egress_usd(gb: float, from_gb: Floats, rate: Floats, whole: NDArray[np.bool_]
                      ) -> float:
    """USD for moving `gb` GB at volume tiers (starts `from_gb`, ascending from 0; `rate` USD
    per GB). A marginal tier bills the GB between its start and the next tier's; once the
    volume is over a whole-volume tier's start, every GB is billed at that tier's rate (the
    highest such tier wins)."""
    if gb <= 0:
        return 0.0
    over = from_gb < gb
    whole_over = np.flatnonzero(whole & over)
    if len(whole_over):
        return float(rate[whole_over[-1]] * gb)
    ends = np.append(from_gb[1:], np.inf)
    span = np.clip(np.minimum(gb, ends) - from_gb, 0.0, None)
    return float((np.where(whole, 0.0, rate) * span).sum())
