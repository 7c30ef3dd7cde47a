"""Bid prices for on-prem GPUs (placement.engine.shadow): the LP's duals, the free GPU-hours
they price, and what they do to a decision."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from placement.engine import Engine
from placement.engine.compiled import capacity_state
from placement.engine.shadow import (
    BidPriceEstimator,
    Demand,
    bid_prices,
    free_gpu_hours,
)
from placement.model import Reservation
from placement.policy.loader import load_bundle

from .conftest import EXAMPLES, api_on
from .factories import cloud, engine, job, onprem, policy


def _d(groups: tuple[int, ...], gpu_hours: float, value: float, movable: bool = True,
       at_h: float = 0.0) -> Demand:
    return Demand(at_h, groups, 1, gpu_hours, value, movable)


@pytest.mark.parametrize(("capacity", "demands", "want"), [
    ([100.0], [], [0.0]),
    ([100.0], [_d((0,), 50, 3.0, False)], [0.0]),  # not short: free
    ([100.0], [_d((0,), 150, 3.0, False)], [3.0]),  # short of on-prem-only work
    # the on-prem-only work fits; the movable work left out sets the price
    ([100.0], [_d((0,), 60, 3.0, False), _d((0,), 80, 0.5)], [0.5]),
    # the on-prem-only work alone is more than the group: its value is the price
    ([100.0], [_d((0,), 120, 3.0, False), _d((0,), 50, 0.5)], [3.0]),
    # work that can use either group spreads the price over both
    ([50.0, 50.0], [_d((0, 1), 80, 2.0), _d((0,), 40, 3.0, False)], [2.0, 2.0]),
    ([50.0, 50.0, 0.0], [_d((1,), 70, 1.0)], [0.0, 1.0, 0.0]),  # only the short group
    ([100.0], [_d((0,), 150, 0.0)], [0.0]),  # work that gains nothing on-prem prices nothing
], ids=["no demand", "room", "short", "marginal movable", "short of on-prem-only",
        "two groups", "one group short", "worthless"])
def test_bid_prices_are_the_duals_of_the_capacity_rows(capacity: list[float],
                                                       demands: list[Demand],
                                                       want: list[float]) -> None:
    got = bid_prices(np.array(capacity), demands, window_h=1000.0)
    assert got == pytest.approx(want, abs=1e-6)


def test_a_demand_counts_at_most_the_window() -> None:
    long = Demand(0.0, (0,), 8, 500.0, 3.0, False)  # 8 GPUs for 500 h, window 24 h
    assert bid_prices(np.array([8 * 24.0 + 1]), [long], 24.0) == pytest.approx([0.0])
    assert bid_prices(np.array([8 * 24.0 - 1]), [long], 24.0) == pytest.approx([3.0])


def _world() -> tuple[Engine, int]:
    sites = [onprem("dc", {"A100": (8, 2.0)}),
             cloud("aws", {"A100": [("p4d", 8, 24.0, None)]}, provisioning_minutes=6)]
    rule = {"name": "jobs", "match": {"kinds": ["training"]},
            "weights": {"cost": 4, "data_gravity": 2, "wait": 1, "latency": 0},
            "burst": {"allowed": True, "when": "onprem_unavailable_or_near_data",
                      "spot": "never"}}
    conf = {"name": "confidential", "match": {"labels": {"data": "confidential"}},
            "require": {"site_types": ["onprem"]}}
    eng = engine(sites, policy([conf, rule]))
    return eng, eng.ci.group_of("dc", "A100")


def test_free_gpu_hours_count_what_comes_back_within_the_window() -> None:
    eng, g = _world()
    ci = eng.ci
    cap = capacity_state(ci, [Reservation(site="dc", gpu_type="A100", count=4,
                                          remaining_hours=2.0)])
    free = free_gpu_hours(ci, cap, 10.0)
    assert free[g] == pytest.approx(4 * 10 + 4 * 8)
    assert free[ci.group_of("aws", "A100")] == 0.0  # the cloud is not priced here


def test_a_bid_price_sends_movable_work_to_the_cloud_and_keeps_on_prem_only_work() -> None:
    eng, g = _world()
    movable = job("movable", gpu="A100", count=8, hours=10)
    confidential = job("confidential", gpu="A100", count=8, hours=10,
                       labels={"data": "confidential"})
    assert eng.decide(movable).action == "place"  # no bid price: on-prem first
    price = np.zeros(len(eng.ci.group_site))
    price[g] = 4.0  # $/GPU-hour: 80 GPU-hours are worth $320 to on-prem-only work
    view = eng.with_capacity(replace(eng.cap, bid_price=price,
                                     bid_note="estimated: test"))
    d = view.place(movable)
    assert (d.action, d.site) == ("burst", "aws")  # $240 in the cloud beats $160 + $320
    dc = next(c for c in d.candidates if c.site == "dc")
    assert dc.estimates is not None and dc.estimates.opportunity_usd == pytest.approx(320)
    assert dc.estimates.total_usd == pytest.approx(160)  # billed stays billed
    assert dc.estimates.sources["opportunity"] == "estimated: test: $4.0000 per GPU-hour"
    assert dc.criteria["cost"].raw == pytest.approx(480)
    kept = view.place(confidential)
    assert (kept.action, kept.site) == ("place", "dc")


def test_the_estimator_recomputes_on_its_cadence_and_forgets_old_demand() -> None:
    eng, g = _world()
    ci, cap = eng.ci, eng.cap
    est = BidPriceEstimator(len(ci.group_site), window_h=10.0, every_h=1.0)
    assert est.prices(0.0, ci, cap).usd_per_gpu_hour[g] == 0.0
    est.observe(Demand(0.5, (g,), 8, 20.0, 3.0, False))  # 8 x 10 h in a 10 h window: 80
    est.observe(Demand(0.6, (g,), 1, 20.0, 3.0, False))  # more than the group's 80
    assert est.prices(0.9, ci, cap).usd_per_gpu_hour[g] == 0.0  # not yet recomputed
    now = est.prices(1.0, ci, cap)
    assert now.usd_per_gpu_hour[g] == pytest.approx(3.0)
    assert "2 arrivals (2 only on-prem can run)" in now.note
    assert est.prices(20.0, ci, cap).usd_per_gpu_hour[g] == 0.0  # both out of the window


def test_the_service_prices_on_prem_gpus_from_the_workloads_submitted(
        db_url: str, tmp_path: Path) -> None:
    """A policy with opportunity_cost: each decision's on-prem candidates carry the bid price
    from the workloads the store holds (every worker reads the same), and say so."""
    config = tmp_path / "bundle"
    shutil.copytree(EXAMPLES, config)
    pol = config / "policy.yaml"
    pol.write_text(pol.read_text().replace(
        "  scales:\n", "  opportunity_cost: {window_hours: 24, every_minutes: 0.001}\n"
        "  scales:\n", 1))
    docs = {w.name: w.model_dump(mode="json", exclude_none=True)
            for w in load_bundle(config).workloads}
    with api_on(db_url, config) as api:
        notes = []
        for _ in range(3):
            res = api.client.post("/v1/workloads", json=docs["vision-finetune"],
                                  headers=api.h("admin"))
            assert res.status_code == 201, res.text
            cands = res.json()["decision"]["decision"]["candidates"]
            onprem = [c for c in cands if c["site_type"] == "onprem" and c["estimates"]]
            assert onprem and all("opportunity" in c["estimates"]["sources"] for c in onprem)
            notes.append(onprem[0]["estimates"]["sources"]["opportunity"])
            time.sleep(0.1)  # past every_minutes: the next decision recomputes
    assert "over the 0 arrivals" in notes[0]
    assert "over the 2 arrivals" in notes[2]  # the two submitted before it
