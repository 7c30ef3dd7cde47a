"""Many seeds into one answer: intervals, paired comparisons, the headline, and the seeds run
in a process pool or on a Dask cluster with the same result."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from placement.cli.main import app
from placement.simulate import stats
from placement.simulate.run import Options, simulate

from .conftest import philly_head


@pytest.mark.parametrize(("values", "mean", "half"), [
    ([5.0], 5.0, None),  # one seed: no interval
    ([1.0, 2.0, 3.0], 2.0, 4.302653 / math.sqrt(3)),  # t(0.975, 2) x sd 1 / sqrt(3)
    ([2.0, 2.0, 2.0, 2.0], 2.0, 0.0),
])
def test_interval_is_students_t_at_95_percent(values: list[float], mean: float,
                                              half: float | None) -> None:
    got = stats.interval(values)
    assert got.mean == pytest.approx(mean)
    assert got.half == (None if half is None else pytest.approx(half, rel=1e-5))


def _pol(avoid: float, misses: int = 0, rejected: int = 0) -> dict[str, Any]:
    return {"avoidable_usd": avoid, "used_usd": avoid + 100, "fleet_usd": avoid + 1000,
            "egress_gb": 1.0, "deadline_misses": misses, "rejected": rejected,
            "unmet_gpu_hours": 0.0}


def test_comparisons_are_paired_by_seed_and_say_whether_they_are_significant() -> None:
    # the engine is 30%, 31%, 29% below overflow seed by seed, though overflow's spend swings
    per_seed = [{"engine": _pol(70, 2), "overflow": _pol(100, 1)},
                {"engine": _pol(690, 3), "overflow": _pol(1000, 1)},
                {"engine": _pol(710, 4), "overflow": _pol(1000, 1)}]
    c = stats.compare(per_seed)["overflow"]
    iv = c["avoidable_usd"]
    assert iv["mean"] == pytest.approx((0.70 * 0.69 * 0.71) ** (1 / 3) - 1, abs=1e-6)
    assert iv["low"] < iv["mean"] < iv["high"] < 0 and iv["significant"]
    assert c["deadline_misses"]["mean"] == pytest.approx(2.0)
    line = stats.headline({"overflow": c}, 3, None)[0]
    assert line.startswith("At equal work over 3 seeds, engine's avoidable spend is 30.0% "
                           "below overflow (95% interval ")
    assert "below), significant;" in line and "deadline misses +2.0 ± " in line
    noisy = stats.compare([{"engine": _pol(90), "b": _pol(100)},
                           {"engine": _pol(110), "b": _pol(100)}])["b"]["avoidable_usd"]
    assert noisy["low"] < 0 < noisy["high"] and not noisy["significant"]
    assert "below to" in stats.headline({"b": {**c, "avoidable_usd": noisy}}, 2, None)[0]


@pytest.mark.parametrize(("ours", "theirs", "relative", "mean"), [
    ([50.0, 100.0], [100.0, 200.0], True, -0.5),  # halved in both seeds
    ([10.0, 30.0], [0.0, 10.0], False, 15.0),  # a seed with $0: the difference in $
])
def test_a_seed_that_spent_nothing_turns_the_comparison_into_dollars(
        ours: list[float], theirs: list[float], relative: bool, mean: float) -> None:
    got = stats.ratio_interval(ours, theirs)
    assert got["relative"] is relative and got["mean"] == pytest.approx(mean)
    zero = stats.interval([0.0, 0.0]).as_dict()
    line = stats.headline({"b": {"avoidable_usd": got, "deadline_misses": zero,
                                 "rejected": zero, "unmet_gpu_hours": zero}}, 2, None)[0]
    assert ("in $: a seed spent $0" in line) is not relative


@pytest.fixture()
def excerpt(tmp_path: Path) -> Path:
    return philly_head(tmp_path, 120)


def _opts(trace: Path, out: Path, **kw: Any) -> Options:
    return Options(trace=trace, config=Path("policies/examples"), out=out,
                   baselines=("overflow",), bound=False, seeds=2, **kw)


def test_seeds_run_in_a_pool_and_report_means_intervals_and_each_seed(excerpt: Path,
                                                                       tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["simulate", "--trace", str(excerpt), "--out",
                                   str(tmp_path / "o"), "--no-bound", "--baselines",
                                   "overflow", "--seeds", "2", "--seed", "3"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["seeds"] == [3, 4]
    per = summary["per_seed"]
    assert [p["seed"] for p in per] == [3, 4]
    values = [p["policies"]["engine"]["avoidable_usd"] for p in per]
    assert summary["policies"]["engine"]["avoidable_usd"] == pytest.approx(
        sum(values) / 2, abs=0.01)
    iv = summary["intervals"]["engine"]["avoidable_usd"]
    assert iv["seeds"] == 2 and iv["half_width"] is not None
    assert summary["comparisons"]["overflow"]["avoidable_usd"]["seeds"] == 2
    assert summary["workloads_per_seed"] == [p["workloads"] for p in per]
    assert summary["headline"][0] in res.output  # the answer comes first
    assert "±" in (tmp_path / "o" / "report.html").read_text()


def test_seeds_on_a_dask_cluster_give_the_pools_answer(excerpt: Path, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, processes=False, threads_per_worker=2,
                                  protocol="tcp", dashboard_address=None) as cluster:
        on_cluster = simulate(_opts(excerpt, tmp_path / "c", cluster=cluster.scheduler_address))
    in_pool = simulate(_opts(excerpt, tmp_path / "p"))
    assert on_cluster["per_seed"] == in_pool["per_seed"]
    assert on_cluster["comparisons"] == in_pool["comparisons"]


def test_an_unreachable_cluster_is_a_clear_error(excerpt: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["simulate", "--trace", str(excerpt), "--out",
                                   str(tmp_path / "o"), "--no-bound", "--seeds", "2",
                                   "--cluster", "tcp://127.0.0.1:9"])
    assert res.exit_code == 1
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in res.output
    assert "Traceback" not in res.output
