"""The catalog readers, and the example bundle's prices checked against the real catalogs."""

from __future__ import annotations

import pytest

from placement.model.inventory import CloudSiteSpec
from placement.policy.catalog import load_offers, load_pairs
from placement.policy.loader import Bundle

from .conftest import SHARED_DATA

pytestmark = pytest.mark.skipif(not SHARED_DATA.exists(),
                                reason=f"public data folder {SHARED_DATA} is not present")


def test_gcp_prices_add_host_and_accelerator() -> None:
    offers = {(o.region, o.instance_type): o for o in load_offers(SHARED_DATA)
              if o.provider == "gcp"}
    g2 = offers[("us-central1", "g2-standard-4")]
    assert (g2.gpu, g2.gpus) == ("L4", 1)
    assert g2.on_demand == pytest.approx(0.14679 + 0.56004)  # host + L4, per the data README


def test_every_example_cloud_price_is_the_catalog_price(bundle: Bundle) -> None:
    offers = {(o.provider, o.region, o.instance_type): o for o in load_offers(SHARED_DATA)}
    checked = 0
    for site in bundle.inventory.sites:
        spec = site.spec
        if not isinstance(spec, CloudSiteSpec):
            continue
        for gpu in spec.gpus:
            for inst in gpu.instances:
                o = offers[(spec.provider, spec.region, inst.type)]
                assert (o.gpu, o.gpus) == (gpu.type, inst.gpus), inst
                assert inst.on_demand_usd_per_hour == pytest.approx(o.on_demand)
                assert inst.spot_usd_per_hour == (None if o.spot is None
                                                  else pytest.approx(o.spot))
                checked += 1
    assert checked > 30


def test_example_links_are_the_measured_values(bundle: Bundle) -> None:
    pairs = load_pairs(SHARED_DATA)
    key = {s.name: f"{s.spec.provider}:{s.spec.region}" for s in bundle.inventory.sites
           if isinstance(s.spec, CloudSiteSpec)}
    for site in bundle.inventory.sites:
        for link in site.spec.links:
            pair = (key[site.name], key[link.to])
            if link.rtt_ms is not None:
                assert link.rtt_ms == pairs["rtt_ms"][pair]
            if link.egress_usd_per_gb is not None:
                assert link.egress_usd_per_gb == pairs["egress_usd_per_gb"][pair]
