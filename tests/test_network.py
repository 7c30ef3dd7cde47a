"""Network estimates for pairs nobody measured: from measured pairs like them (the same source
region to the same provider, else the same two providers), never above the WAN link."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from placement.engine.compiled import CompiledInventory, compile_inventory
from placement.engine.context import data_move
from placement.engine.network import (
    DISTANCE,
    MEASURED,
    RTT_BASE_MS,
    RTT_MS_PER_KM,
    SOURCE_NAMES,
    STANDIN,
    fill_rtt,
    from_similar_pairs,
    tiered_egress_usd,
)
from placement.model import Inventory

from .factories import cloud, dataset, job, onprem

NAN = float("nan")


@pytest.mark.parametrize(("measured", "want"), [
    # (src, dst, Gbit/s) measured -> the estimate for site 0 -> site 2
    ([(0, 1, 4.5)], 4.5),  # site 0 to b's provider (1 and 2 are one provider)
    ([(0, 1, 4.0), (0, 3, 5.0)], 4.0),  # only pairs to b's provider count
    ([(3, 1, 6.0)], 6.0),  # site 0 has none: a's provider to b's provider (3 is like 0)
    ([(1, 3, 6.0)], 9.0),  # only the other direction between the providers: the fallback
    ([], 9.0),
], ids=["same source, same provider", "other providers ignored", "same two providers",
        "reverse direction only", "nothing measured"])
def test_an_unmeasured_pair_comes_from_pairs_like_it(measured: list[tuple[int, int, float]],
                                                     want: float) -> None:
    group = np.array([0, 1, 1, 0], dtype=np.int64)  # 0 and 3 one provider, 1 and 2 another
    values = np.zeros((4, 4))
    mask = np.zeros((4, 4), dtype=bool)
    for a, b, v in measured:
        values[a, b], mask[a, b] = v, True
    got = from_similar_pairs(values, mask, group, np.full((4, 4), 9.0))
    assert got[0, 2] == pytest.approx(want)
    for a, b, v in measured:
        assert got[a, b] == v  # measured pairs keep their value


def _linked(link: dict[str, float | str]) -> CompiledInventory:
    """AWS east-2 with one measured link to Azure a; Azure b beside it; an on-prem site with
    a 1 Gbit/s WAN link."""
    sites = [cloud("aws-east-2", {"L4": [("l4", 1, 1.0, None)]}, links=[link]),
             cloud("azure-a", {"L4": [("l4", 1, 1.0, None)]}, provider="azure"),
             cloud("azure-b", {"L4": [("l4", 1, 1.0, None)]}, provider="azure"),
             onprem("dc", {"L4": (4, 1.0)}, wan_gbps=1.0)]
    return compile_inventory(Inventory(sites=sites, datasets=[], client_locations=[]))


def test_compiled_bandwidth_uses_measured_pairs_and_the_wan_link_caps_it() -> None:
    ci = _linked({"to": "azure-a", "gbps": 4.5, "rtt_ms": 30.0})
    i = ci.site_index
    assert ci.gbps[i["aws-east-2"], i["azure-a"]] == 4.5  # measured
    assert ci.gbps[i["azure-a"], i["aws-east-2"]] == 4.5  # its reverse
    # nobody measured east-2 -> azure-b: east-2's measured pair to Azure, not the 10 Gbit/s WAN
    assert ci.gbps[i["aws-east-2"], i["azure-b"]] == pytest.approx(4.5)
    assert ci.gbps[i["dc"], i["azure-b"]] == 1.0  # on-prem: its own 1 Gbit/s WAN link
    assert ci.gbps[i["azure-a"], i["azure-b"]] == 10.0  # no Azure -> Azure pair measured


# four places on one meridian: 0 and 1 in one metro (~11 km apart), 2 and 3 far away and
# ~1,100 km from each other
LATS = np.array([50.0, 50.1, 40.0, 30.0])


def _km() -> np.ndarray:
    from placement.engine.network import great_circle_km
    return great_circle_km(LATS[:, None], np.zeros((4, 1)), LATS[None, :], np.zeros((1, 4)))


@pytest.mark.parametrize(("measured", "pair", "want_source", "want"), [
    # (a, b, ms) measured -> the RTT of `pair` and where it comes from
    ([(0, 2, 30.0)], (0, 2), "measured", lambda km: 30.0),
    ([(0, 2, 30.0)], (2, 0), "measured", lambda km: 30.0),  # measured one way: both ways
    ([(0, 2, 30.0)], (1, 2),  # 1's metro-mate 0 measured to 2: 30 ms, moved by the km
     "standin", lambda km: 30.0 + RTT_MS_PER_KM * (km[1, 2] - km[0, 2])),
    ([(0, 2, 30.0)], (2, 1), "standin",
     lambda km: 30.0 + RTT_MS_PER_KM * (km[1, 2] - km[0, 2])),
    ([(0, 2, 30.0)], (1, 3), "distance", lambda km: RTT_BASE_MS + RTT_MS_PER_KM * km[1, 3]),
    ([], (0, 1), "distance", lambda km: RTT_BASE_MS + RTT_MS_PER_KM * km[0, 1]),
], ids=["measured", "reverse of measured", "metro stand-in", "stand-in, other direction",
        "no stand-in: distance", "nothing measured"])
def test_an_unmeasured_rtt_comes_from_the_same_metros_else_from_distance(
        measured: list[tuple[int, int, float]], pair: tuple[int, int], want_source: str,
        want: Callable[[np.ndarray], float]) -> None:
    km = _km()
    values = np.zeros((4, 4))
    mask = np.zeros((4, 4), dtype=bool)
    for a, b, v in measured:
        values[a, b], mask[a, b] = v, True
    rtt, source = fill_rtt(km, values, mask)
    codes = {"measured": MEASURED, "standin": STANDIN, "distance": DISTANCE}
    assert source[pair] == codes[want_source]
    assert rtt[pair] == pytest.approx(want(km))


def test_stand_ins_average_every_measured_pair_between_the_two_metros() -> None:
    km = _km()
    values = np.zeros((4, 4))
    mask = np.zeros((4, 4), dtype=bool)
    values[0, 2], values[1, 2] = 20.0, 40.0  # both metro-mates measured to 2
    mask[0, 2] = mask[1, 2] = True
    values[0, 3], mask[0, 3] = 50.0, True
    rtt, source = fill_rtt(km, values, mask, radius_km=50.0)
    # 1 -> 3 from 0 -> 3 only; 3 -> 1 likewise
    assert rtt[1, 3] == pytest.approx(50.0 + RTT_MS_PER_KM * (km[1, 3] - km[0, 3]))
    assert source[1, 3] == STANDIN
    assert rtt[3, 1] == pytest.approx(rtt[1, 3])
    # with a radius that joins no metro, 1 -> 3 falls back to distance
    rtt, source = fill_rtt(km, values, mask, radius_km=1.0)
    assert source[1, 3] == DISTANCE


def test_compiled_inventory_says_where_each_network_number_comes_from() -> None:
    ci = _linked({"to": "azure-a", "gbps": 4.5, "rtt_ms": 30.0, "egress_usd_per_gb": 0.02})
    i = ci.site_index
    rtt, gbps, egress = ci.network_source
    e2, a, b, dc = i["aws-east-2"], i["azure-a"], i["azure-b"], i["dc"]
    assert SOURCE_NAMES[rtt[e2, a]] == SOURCE_NAMES[rtt[a, e2]] == "measured"
    assert SOURCE_NAMES[gbps[e2, a]] == "measured"
    assert SOURCE_NAMES[egress[e2, a]] == "measured"
    assert SOURCE_NAMES[gbps[e2, b]] == "estimated: measured pairs of the same providers"
    assert SOURCE_NAMES[gbps[dc, b]] == "estimated: WAN link"
    assert SOURCE_NAMES[egress[a, e2]] == "estimated: the source site's first-tier rate"
    assert SOURCE_NAMES[rtt[dc, b]].startswith("estimated: ")


AWS = [(0, 0.0, False), (1, 0.09, False), (10240, 0.085, False), (51200, 0.07, False),
       (153600, 0.05, True)]  # egress_skypilot_internet_tiers.csv
GCP = [(0, 0.12, True), (1024, 0.11, True), (10240, 0.08, True)]


@pytest.mark.parametrize(("tiers", "gb", "usd"), [
    (AWS, 0.0, 0.0),
    (AWS, 1.0, 0.0),  # the first GB is free
    (AWS, 101.0, 100 * 0.09),
    (AWS, 20480.0, 10239 * 0.09 + 10240 * 0.085),
    (AWS, 200000.0, 200000 * 0.05),  # over 150 TB: one flat rate for every GB
    (GCP, 500.0, 500 * 0.12),
    (GCP, 1024.0, 1024 * 0.12),  # up to and including 1 TB
    (GCP, 2000.0, 2000 * 0.11),
    (GCP, 20000.0, 20000 * 0.08),
], ids=lambda v: str(v) if not isinstance(v, list) else ("aws" if v is AWS else "gcp"))
def test_egress_is_billed_by_volume_tier(tiers: list[tuple[float, float, bool]], gb: float,
                                         usd: float) -> None:
    from_gb, rate, whole = (np.array(col) for col in zip(*tiers, strict=True))
    assert tiered_egress_usd(gb, from_gb, rate, whole.astype(bool)) == pytest.approx(usd)


@pytest.mark.parametrize(("tiers", "message"), [
    ([{"from_gb": 5, "usd_per_gb": 0.1}], "must start at from_gb: 0"),
    ([{"from_gb": 0, "usd_per_gb": 0.1}, {"from_gb": 0, "usd_per_gb": 0.2}], "each above"),
])
def test_egress_tiers_must_start_at_zero_and_rise(tiers: list[dict[str, float]],
                                                  message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cloud("gcp-a", {"L4": [("l4", 1, 1.0, None)]}, provider="gcp", egress_tiers=tiers)


def test_a_bulk_move_at_the_site_rate_uses_the_tiers_and_a_priced_link_does_not() -> None:
    tiers = [{"from_gb": a, "usd_per_gb": r, "whole_volume": w} for a, r, w in GCP]
    sites = [cloud("gcp-a", {"L4": [("l4", 1, 1.0, None)]}, provider="gcp", egress=0.12,
                   egress_tiers=tiers, links=[{"to": "gcp-b", "egress_usd_per_gb": 0.02}]),
             cloud("gcp-b", {"L4": [("l4", 1, 1.0, None)]}, provider="gcp"),
             onprem("dc", {"L4": (4, 1.0)})]
    datasets = [dataset("corpus", 2000.0, ["gcp-a"])]
    ci = compile_inventory(Inventory(sites=sites, datasets=datasets, client_locations=[]))
    move = data_move(ci, job("reader", datasets=[{"name": "corpus", "access": "bulk"}]))
    i = ci.site_index
    assert move.egress_usd[i["dc"]] == pytest.approx(2000 * 0.11)  # 1-10 TB: 0.11 for all
    assert move.egress_usd[i["gcp-b"]] == pytest.approx(2000 * 0.02)  # the link's own price
    assert move.egress_usd[i["gcp-a"]] == 0.0
    assert SOURCE_NAMES[move.egress_source[i["dc"]]] == "estimated: the source site's volume tiers"
    assert SOURCE_NAMES[move.egress_source[i["gcp-b"]]] == "measured"
    assert move.egress_source[i["gcp-a"]] == -1  # nothing moved
