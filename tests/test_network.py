"""Network estimates for pairs nobody measured: from measured pairs like them (the same source
region to the same provider, else the same two providers), never above the WAN link."""

from __future__ import annotations

import numpy as np
import pytest

from placement.engine.compiled import compile_inventory
from placement.engine.network import from_similar_pairs
from placement.model import Inventory

from .factories import cloud, onprem

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


def test_compiled_bandwidth_uses_measured_pairs_and_the_wan_link_caps_it() -> None:
    link = {"to": "azure-a", "gbps": 4.5, "rtt_ms": 30.0}
    sites = [cloud("aws-east-2", {"L4": [("l4", 1, 1.0, None)]}, links=[link]),
             cloud("azure-a", {"L4": [("l4", 1, 1.0, None)]}, provider="azure"),
             cloud("azure-b", {"L4": [("l4", 1, 1.0, None)]}, provider="azure"),
             onprem("dc", {"L4": (4, 1.0)}, wan_gbps=1.0)]
    ci = compile_inventory(Inventory(sites=sites, datasets=[], client_locations=[]))
    i = ci.site_index
    assert ci.gbps[i["aws-east-2"], i["azure-a"]] == 4.5  # measured
    assert ci.gbps[i["azure-a"], i["aws-east-2"]] == 4.5  # its reverse
    # nobody measured east-2 -> azure-b: east-2's measured pair to Azure, not the 10 Gbit/s WAN
    assert ci.gbps[i["aws-east-2"], i["azure-b"]] == pytest.approx(4.5)
    assert ci.gbps[i["dc"], i["azure-b"]] == 1.0  # on-prem: its own 1 Gbit/s WAN link
    assert ci.gbps[i["azure-a"], i["azure-b"]] == 10.0  # no Azure -> Azure pair measured
