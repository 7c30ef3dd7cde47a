"""Properties of scoring: no rank reversal from dominated sites, invariance to price scale."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from placement.engine.normalize import normalize
from placement.model import Site

from . import factories as f

prices = st.floats(min_value=0.5, max_value=50.0, allow_nan=False)
coords = st.tuples(st.floats(min_value=-60, max_value=60), st.floats(min_value=-170,
                                                                     max_value=170))


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[Site], dict[str, float]]:
    n = draw(st.integers(min_value=2, max_value=6))
    sites: list[Site] = []
    for i in range(n):
        lat, lon = draw(coords)
        if draw(st.booleans()):
            sites.append(f.onprem(f"op{i}", {"A100": (draw(st.integers(8, 32)), draw(prices))},
                                  lat=lat, lon=lon, wan_gbps=draw(st.sampled_from([1, 10, 100]))))
        else:
            od = draw(prices) * 8
            spot = draw(st.one_of(st.none(), st.floats(min_value=0.1, max_value=0.9)))
            sites.append(f.cloud(f"cl{i}", {"A100": [("p", 8, od, spot * od if spot else None)]},
                                 lat=lat, lon=lon, egress=draw(st.sampled_from([0.02, 0.09,
                                                                                0.12]))))
    job = {"count": draw(st.sampled_from([4, 8])), "hours": draw(st.floats(1, 100)),
           "size": draw(st.sampled_from([0, 100, 5000]))}
    return sites, job


def _decide(sites: list[Site], job: dict[str, float]) -> tuple[str | None, str | None]:
    ds = [f.dataset("data", job["size"], [sites[0].name])]
    wl = f.job(count=int(job["count"]), hours=job["hours"], datasets=[{"name": "data"}])
    d = f.engine(sites, datasets=ds).place(wl)
    return d.site, d.capacity


def _scaled(site: Site, k: float) -> Site:
    data = site.model_dump()
    spec = data["spec"]
    spec["egress_usd_per_gb"] *= k
    for g in spec["gpus"]:
        if "usd_per_gpu_hour" in g:
            g["usd_per_gpu_hour"] *= k
        for inst in g.get("instances", []):
            inst["on_demand_usd_per_hour"] *= k
            if inst["spot_usd_per_hour"] is not None:
                inst["spot_usd_per_hour"] *= k
    return Site.model_validate(data)


@settings(max_examples=60, deadline=None)
@given(worlds(), st.sampled_from([0.1, 3.0, 1000.0]))
def test_scaling_every_price_by_a_constant_never_changes_the_choice(
        world: tuple[list[Site], dict[str, float]], k: float) -> None:
    sites, job = world
    assert _decide([_scaled(s, k) for s in sites], job) == _decide(sites, job)


@settings(max_examples=60, deadline=None)
@given(worlds())
def test_adding_a_site_worse_on_every_criterion_never_changes_the_choice(
        world: tuple[list[Site], dict[str, float]]) -> None:
    sites, job = world
    before = _decide(sites, job)
    if before[0] is None:
        return
    chosen = next(s for s in sites if s.name == before[0])
    data = _scaled(chosen, 1.5).model_dump()
    data["metadata"]["name"] = "zz-worse"
    spec = data["spec"]
    spec["wan_gbps"] = spec["wan_gbps"] / 2  # slower data transfer
    if spec["type"] == "cloud":
        spec["provisioning_minutes"] += 30
    worse = Site.model_validate(data)
    assert _decide([*sites, worse], job) == before


NORMALIZE = [
    ("ratio to the best", [10.0, 20.0, 40.0], 0.0, [100.0, 50.0, 25.0]),
    ("scale softens small gaps", [0.0, 0.01, 1.0], 0.25, [100.0, 96.15, 20.0]),
    ("zero best without scale", [0.0, 0.01], 0.0, [100.0, 0.0]),
    ("infinite values score zero", [1.0, float("inf")], 0.0, [100.0, 0.0]),
]


@pytest.mark.parametrize(("raw", "scale", "expected"), [c[1:] for c in NORMALIZE],
                         ids=[c[0] for c in NORMALIZE])
def test_normalize(raw: list[float], scale: float, expected: list[float]) -> None:
    got = normalize(np.array(raw), np.ones(len(raw), dtype=bool), scale)
    assert got == pytest.approx(expected, abs=0.01)


def test_normalize_ignores_candidates_not_considered() -> None:
    got = normalize(np.array([1.0, 2.0, 0.5]), np.array([True, True, False]), 0.0)
    assert got[:2] == pytest.approx([100.0, 50.0]) and np.isnan(got[2])
