"""Re-planning the queue together (placement.engine.replan): where deciding one at a time in
queue order leaves work waiting, the joint plan starts it, under the same guarded updates."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from placement.control.auth import Principal
from placement.control.lifecycle import requeue, transition
from placement.engine.replan import replan, startable
from placement.model import Policy, Site
from placement.model.workload import Workload
from placement.store.capacity import reserved_counts

from .conftest import api_on
from .factories import engine, job, onprem, policy

SITES = [onprem("big", {"A100": (8, 1.0)}), onprem("small", {"A100": (4, 2.0)}, lat=48.0)]


def test_the_plan_starts_what_one_at_a_time_leaves_queued() -> None:
    eng = engine(SITES, policy())
    small_first = job("w1", count=4, hours=5)  # fits either site; big is cheaper
    big_only = job("w2", count=8, hours=5)  # only big has 8
    outs = [eng.decide(small_first), eng.decide(big_only)]
    assert [eng.ci.site_names[int(o.ctx.site[o.chosen])] for o in outs
            ] == ["big", "big"]  # each alone wants big
    plan = replan(outs, [0, 0], time_limit_s=5)
    assert plan is not None and plan.status == "optimal"
    got = {k: eng.ci.site_names[int(outs[k].ctx.site[pos])] for k, pos in plan.chosen.items()}
    assert got == {0: "small", 1: "big"}


def test_priority_comes_before_count() -> None:
    eng = engine(SITES[:1], policy())
    outs = [eng.decide(job("a", count=4)), eng.decide(job("b", count=4)),
            eng.decide(job("c", count=8))]
    plan = replan(outs, [0, 0, 5], time_limit_s=5)  # c is worth more than a and b together
    assert plan is not None and set(plan.chosen) == {2}


def test_queue_only_decisions_offer_nothing_to_start() -> None:
    eng = engine(SITES, policy(max_wait_hours=0))
    full = eng.with_capacity(type(eng.cap)(eng.ci.group_capacity.copy(), eng.cap.schedule))
    out = full.decide(job("w", count=4))
    assert startable(out) == []
    plan = replan([out], [0], time_limit_s=5)
    assert plan is not None and plan.chosen == {}


def _bundle(dir_: Path, replan_on: bool) -> Path:
    dir_.mkdir()
    docs: list[dict[str, Any]] = [s.model_dump(mode="json", exclude_none=True) for s in SITES]
    pol = policy(max_wait_hours=100).model_dump(mode="json", exclude_none=True)
    if replan_on:
        pol["spec"]["replan"] = {"time_budget_seconds": 5}
    Policy.model_validate(pol)
    (dir_ / "sites.yaml").write_text(yaml.safe_dump_all(
        [{"kind": "Site", **d} for d in docs if Site.model_validate(d)]))
    (dir_ / "policy.yaml").write_text(yaml.safe_dump({"kind": "Policy", **pol}))
    return dir_


def _submit(api: Any, wl: Workload) -> dict[str, Any]:
    res = api.client.post("/v1/workloads", json=wl.model_dump(mode="json", exclude_none=True),
                          headers=api.h("admin"))
    assert res.status_code == 201, res.text
    body: dict[str, Any] = res.json()
    return body


@pytest.mark.parametrize("replan_on", [True, False], ids=["re-planned", "one at a time"])
def test_the_service_re_plans_its_queue(db_url: str, tmp_path: Path, replan_on: bool) -> None:
    with api_on(db_url, _bundle(tmp_path / "bundle", replan_on)) as api:
        blockers = [_submit(api, job("hold-big", count=8, hours=1)),
                    _submit(api, job("hold-small", count=4, hours=1))]
        assert [b["site"] for b in blockers] == ["big", "small"]
        w1 = _submit(api, job("w1", count=4, hours=5))
        w2 = _submit(api, job("w2", count=8, hours=5))
        assert (w1["phase"], w2["phase"]) == ("queued", "queued")
        api.runtime.on_release = lambda: None  # free both, then re-evaluate once
        admin = Principal("admin", None)
        for b in blockers:
            transition(api.runtime, workload_id=uuid.UUID(b["id"]), to="cancelled", who=admin)
        requeue(api.runtime)
        got = {w["name"]: w for w in (
            api.client.get(f"/v1/workloads/{x['id']}", headers=api.h("admin")).json()
            for x in (w1, w2))}
        if replan_on:
            assert (got["w1"]["phase"], got["w1"]["site"]) == ("placed", "small")
            assert (got["w2"]["phase"], got["w2"]["site"]) == ("placed", "big")
            summary = got["w1"]["decision"]["decision"]["summary"]
            assert "re-planned with 2 queued workload(s) together (HiGHS, optimal)" in summary
        else:  # w1 takes big first; w2 waits for it
            assert (got["w1"]["phase"], got["w1"]["site"]) == ("placed", "big")
            assert got["w2"]["phase"] == "queued"
        with api.runtime.db.read() as s:  # never over-committed
            held = {site: n for site, _, n in reserved_counts(s)}
        assert held.get("big", 0) <= 8 and held.get("small", 0) <= 4
