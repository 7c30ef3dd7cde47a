"""A filter added in a test reaches the single decision, the batch path and the replay through
its own code; one the batch kernel cannot run is refused with its name, never ignored."""

from __future__ import annotations

import logging
from typing import ClassVar

import numpy as np
import pytest

from placement.engine import Engine
from placement.engine import engine as engine_mod
from placement.engine.batch import BatchEngine, BatchUnsupportedError, unsupported
from placement.engine.context import DecisionContext
from placement.engine.framework import FilterPlugin, FilterResult, Reasons
from placement.engine.plugins.registry import default_filters
from placement.policy.loader import Bundle
from placement.simulate.baselines import EngineDecider
from placement.simulate.replay import Replay
from placement.simulate.synth import synthesize
from placement.simulate.traces import read

from .conftest import SHARED_DATA


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
