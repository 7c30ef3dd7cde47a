"""A filter added in a test reaches the single decision, the batch path and the replay through
its own code; one the batch kernel cannot run is refused with its name, never ignored."""

from __future__ import annotations

import logging
import random
from typing import Any, ClassVar

import numpy as np
import pytest

from placement.engine import Engine
from placement.engine import engine as engine_mod
from placement.engine.batch import BatchEngine, BatchUnsupportedError, unsupported
from placement.engine.context import DecisionContext
from placement.engine.framework import FilterPlugin, FilterResult, Reasons, ScoreResult
from placement.engine.plugins.registry import (
    UnscoredCriterionError,
    default_filters,
    default_scores,
)
from placement.model import Inventory, Policy
from placement.model import policy as policy_mod
from placement.model.policy import register_criterion
from placement.policy.loader import Bundle
from placement.simulate.baselines import EngineDecider
from placement.simulate.replay import Replay
from placement.simulate.synth import synthesize
from placement.simulate.traces import read

from .conftest import SHARED_DATA
from .test_batch import _compare


class NoOddSites:
    """Test-only rule: sites whose name has an odd length are off limits (a stand-in for a
    criterion such as carbon that reads one inventory field)."""

    NAME: ClassVar[str] = "no-odd-sites"
    SHAPE_ONLY: ClassVar[bool] = True

    def filter(self, ctx: DecisionContext) -> FilterResult:
        odd = np.array([len(n) % 2 == 1 for n in ctx.ci.site_names])[ctx.site]
        return FilterResult(~odd, Reasons(("the site's name has an odd length",)))


class Moody(NoOddSites):
    """The same rule, but declared as reading capacity: the kernel has no form of it."""

    NAME: ClassVar[str] = "moody"
    SHAPE_ONLY: ClassVar[bool] = False


def _with(plugin: FilterPlugin) -> list[FilterPlugin]:
    filters = default_filters()
    return [*filters[:-1], plugin, filters[-1]]  # the burst gate stays last


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the test filter the way a new plugin is: in the default list."""
    monkeypatch.setattr(engine_mod, "default_filters", lambda: _with(NoOddSites()))


def test_a_registered_shape_filter_runs_in_decide_batch_and_replay(
        registered: None, bundle: Bundle) -> None:
    inv, pol = bundle.inventory, bundle.policy
    engine = Engine(inv, pol, "v")
    assert "no-odd-sites" in [p.NAME for p in engine.filters]
    assert unsupported(engine) is None
    odd = {s.name for s in inv.sites if len(s.name) % 2}
    assert odd and odd != {s.name for s in inv.sites}
    t = read(SHARED_DATA / "trace_philly_jobs.csv")
    t.records = t.records[:300]
    workloads = synthesize(t, inv, seed=5, load=1.2).workloads
    batch = BatchEngine(engine)
    for sw in workloads[:150]:
        out = engine.decide(sw.workload)
        pick = batch.decide(engine, sw.workload)
        if out.chosen is None:
            assert pick is None
            continue
        assert pick is not None and pick.pos == out.chosen
        assert engine.ci.site_names[int(out.ctx.site[out.chosen])] not in odd
    fast = Replay(engine, EngineDecider(), seed=5).run(workloads)
    slow_decider = EngineDecider()
    slow_decider._batch[id(engine.ci)] = None
    slow = Replay(engine, slow_decider, seed=5).run(workloads)
    assert [r.site for r in fast] == [r.site for r in slow]
    placed = {engine.ci.site_names[r.site] for r in fast if r.site >= 0}
    assert placed and not placed & odd
    plain = Engine(inv, pol, "v", filters=default_filters())
    before = Replay(plain, EngineDecider(), seed=5).run(workloads)
    assert {plain.ci.site_names[r.site] for r in before if r.site >= 0} & odd  # it mattered


def test_a_filter_the_kernel_cannot_run_is_refused_by_name(
        bundle: Bundle, caplog: pytest.LogCaptureFixture) -> None:
    engine = Engine(bundle.inventory, bundle.policy, "v",
                    filters=_with(Moody()))
    assert "moody" in (unsupported(engine) or "")
    with pytest.raises(BatchUnsupportedError, match="moody"):
        BatchEngine(engine)
    t = read(SHARED_DATA / "trace_philly_jobs.csv")
    t.records = t.records[:40]
    workloads = synthesize(t, bundle.inventory, seed=5).workloads
    with caplog.at_level(logging.WARNING, logger="placement.simulate"):
        Replay(engine, EngineDecider(), seed=5).run(workloads)
    assert "moody" in caplog.text  # the replay says it falls back to Engine.decide


# --- A criterion and a capacity-reading filter added in a test ---------------------------------
# Adding a criterion touches the plugin (here, in this file), its registry entry (here, the
# patched default list and register_criterion) and the inventory field it reads (here, a site
# label, which needs no model change). The kernel is generated from the plugins' own forms.

CARBON = {"low": 40.0, "mid": 350.0, "high": 720.0}  # gCO2/kWh by the sites' `grid` label


class Carbon:
    """Test-only criterion: the grid's carbon intensity at the site, from its `grid` label
    (unlabelled sites count as the highest). It reads only the shape: SHAPE_ONLY."""

    SHAPE_ONLY: ClassVar[bool] = True
    NAME: ClassVar[str] = "carbon"
    CRITERION: ClassVar[str] = "carbon"
    UNIT: ClassVar[str] = "g/kWh"
    SCALE: ClassVar[str | None] = None

    def score(self, ctx: DecisionContext) -> ScoreResult:
        per_site = np.full(len(ctx.ci.site_names), max(CARBON.values()))
        for grade, grams in CARBON.items():
            per_site[ctx.ci.label_masks.get(("grid", grade), np.zeros(len(per_site), bool))] = grams
        return ScoreResult(per_site[ctx.site])


class Leftover:
    """Test-only criterion that reads capacity: GPUs the group has free after this workload
    (fewer is a tighter fit). Its `value` runs in Engine.decide and in the kernel."""

    NAME: ClassVar[str] = "leftover"
    CRITERION: ClassVar[str] = "leftover"
    UNIT: ClassVar[str] = "GPUs"
    SCALE: ClassVar[str | None] = None

    @staticmethod
    def value(free_gpus: Any, gpus_needed: Any) -> Any:
        return np.maximum(free_gpus - gpus_needed, 0.0) + 1.0

    def score(self, ctx: DecisionContext) -> ScoreResult:
        return ScoreResult(ctx.call(self.value))


class Spare:
    """Test-only filter that reads capacity: on-prem must keep 2 GPUs of the group free."""

    NAME: ClassVar[str] = "spare"

    @staticmethod
    def rule(is_cloud: Any, free_gpus: Any, gpus_needed: Any) -> Any:
        return np.logical_or(is_cloud, free_gpus - gpus_needed >= 2)

    def filter(self, ctx: DecisionContext) -> FilterResult:
        return FilterResult(ctx.call(self.rule), Reasons(("keeps fewer than 2 GPUs spare",)))


def _graded(inv: Inventory) -> Inventory:
    """The inventory with a `grid` label on every site, in turn low, high, mid."""
    grades = ["low", "high", "mid"]
    sites = [s.model_copy(update={"metadata": s.metadata.model_copy(update={
        "labels": {**s.metadata.labels, "grid": grades[i % 3]}})})
             for i, s in enumerate(inv.sites)]
    return inv.model_copy(update={"sites": sites})


def _weighing(pol: Policy, **extra: float) -> Policy:
    """The policy with `extra` criteria weighed in its defaults and every rule's weights."""
    doc = pol.model_dump(mode="json")
    doc["spec"]["defaults"]["weights"].update(extra)
    for rule in doc["spec"]["rules"]:
        if rule.get("weights"):
            rule["weights"].update(extra)
    return Policy.model_validate(doc)


@pytest.fixture
def criteria(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the test criteria and filter the way new plugins are: in the default lists,
    their criteria named for policies."""
    monkeypatch.setattr(policy_mod, "_PLUGIN_CRITERIA", set(policy_mod._PLUGIN_CRITERIA))
    for plugin in (Carbon(), Leftover()):
        register_criterion(plugin.CRITERION)
    monkeypatch.setattr(engine_mod, "default_scores",
                        lambda: [*default_scores(), Carbon(), Leftover()])
    monkeypatch.setattr(engine_mod, "default_filters", lambda: _with(Spare()))


def test_added_criteria_run_in_decide_batch_and_replay(criteria: None, bundle: Bundle) -> None:
    inv = _graded(bundle.inventory)
    pol = _weighing(bundle.policy, carbon=4.0, leftover=0.5)
    engine = Engine(inv, pol, "v")
    assert [p.CRITERION for p in engine.scores][-2:] == ["carbon", "leftover"]
    assert unsupported(engine) is None
    seen = _compare(engine, random.Random(17), states=12, per_state=12,
                    datasets=[d.name for d in inv.datasets],
                    clients=[c.name for c in inv.client_locations])
    assert {"place", "burst"} <= set(seen)  # bit for bit against Engine.decide (test_batch)
    t = read(SHARED_DATA / "trace_philly_jobs.csv")
    t.records = t.records[:300]
    workloads = synthesize(t, inv, seed=5, load=1.2).workloads
    fast = Replay(engine, EngineDecider(), seed=5).run(workloads)
    slow_decider = EngineDecider()
    slow_decider._batch[id(engine.ci)] = None  # Engine.decide for every workload
    slow = Replay(engine, slow_decider, seed=5).run(workloads)
    assert [(r.site, r.start_h) for r in fast] == [(r.site, r.start_h) for r in slow]
    plain = Engine(inv, bundle.policy, "v", filters=default_filters(), scores=default_scores())
    assert [r.site for r in Replay(plain, EngineDecider(), seed=5).run(workloads)] != [
        r.site for r in fast]  # the added plugins mattered
    # the carbon weight alone: the same plugins, carbon weighed 0
    carbonless = Engine(inv, _weighing(bundle.policy, carbon=0.0, leftover=0.5), "v")
    before = Replay(carbonless, EngineDecider(), seed=5).run(workloads)
    low = {s.name for s in inv.sites if s.metadata.labels["grid"] == "low"}

    def low_share(runs: list[Any]) -> float:
        placed = [engine.ci.site_names[r.site] for r in runs if r.site >= 0]
        return sum(name in low for name in placed) / len(placed)

    assert low_share(fast) > low_share(before) + 0.1
    out = engine.decide(workloads[0].workload)
    decision = engine.explain(out)
    chosen = next(c for c in decision.candidates if c.rank == 1)
    leftover = chosen.criteria["leftover"].raw
    assert chosen.criteria["carbon"].unit == "g/kWh" and leftover is not None and leftover >= 1


def test_a_weight_no_plugin_scores_is_refused(bundle: Bundle) -> None:
    pol = _weighing(bundle.policy, carbon=1.0)  # an unregistered criterion passes the model
    with pytest.raises(UnscoredCriterionError, match=r"spec\.defaults\.weights\.carbon"):
        Engine(bundle.inventory, pol, "v")


class ReadsTheWeather:
    """A filter whose rule reads a quantity the kernel does not provide."""

    NAME: ClassVar[str] = "weather"

    @staticmethod
    def rule(is_cloud: Any, rain_mm: Any) -> Any:
        return np.logical_or(is_cloud, rain_mm < 5)

    def filter(self, ctx: DecisionContext) -> FilterResult:
        return FilterResult(np.ones(ctx.n, dtype=bool))


class Uncompilable(Spare):
    """A rule numba cannot compile (a Python set per candidate)."""

    NAME: ClassVar[str] = "uncompilable"

    @staticmethod
    def rule(is_cloud: Any, free_gpus: Any, gpus_needed: Any) -> Any:
        return {free_gpus} == {gpus_needed, is_cloud}


@pytest.mark.parametrize(("plugin", "message"), [
    (ReadsTheWeather(), "'weather'.*reads rain_mm"),
    (Uncompilable(), "could not compile"),
])
def test_a_form_the_kernel_cannot_run_is_refused_by_name(
        bundle: Bundle, plugin: FilterPlugin, message: str) -> None:
    engine = Engine(bundle.inventory, bundle.policy, "v", filters=_with(plugin))
    with pytest.raises(BatchUnsupportedError, match=message):
        BatchEngine(engine)
