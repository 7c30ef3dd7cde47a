"""The service's /metrics passes Prometheus's own linter, `promtool check metrics`.

promtool exits 0 when clean, 1 on a parse error and 3 on lint problems (names, units, help);
both the exposition scraped from the running app and every declared metric are checked.
"""

from __future__ import annotations

import shutil
import subprocess

from prometheus_client import Counter, Gauge, Histogram, generate_latest

from placement.metrics import Metrics
from placement.policy.loader import load_bundle

from .conftest import EXAMPLES, Api
from .services import unavailable


def promtool_check(exposition: bytes) -> tuple[int, str]:
    binary = shutil.which("promtool")
    if binary is None:
        unavailable("promtool is not installed (Debian's prometheus package ships it)")
        raise AssertionError("unreachable")
    res = subprocess.run([binary, "check", "metrics"], input=exposition, capture_output=True,
                         timeout=30, check=False)
    return res.returncode, (res.stdout + res.stderr).decode()


def test_promtool_finds_what_it_should() -> None:
    """The check itself can fail: a metric named in abbreviated units is reported."""
    m = Metrics()
    Counter("placement_example_egress_gb_total", "Abbreviated unit.", registry=m.registry).inc()
    code, out = promtool_check(generate_latest(m.registry))
    assert code == 3 and "abbreviated units" in out, out


def test_the_scraped_metrics_are_clean_after_real_submissions(api: Api) -> None:
    wl = {w.name: w.model_dump(mode="json") for w in load_bundle(EXAMPLES).workloads}
    for team, name in [("vision", "vision-finetune"), ("admin", "llm-pretrain"),
                       ("quality", "quality-assistant")]:
        res = api.client.post("/v1/workloads", json=wl[name], headers=api.h(team))
        assert res.status_code == 201, res.text
    res = api.client.get("/metrics")
    assert res.status_code == 200
    text = res.content
    assert b"placement_estimated_egress_bytes_total{" in text
    assert b"placement_decisions_total{" in text
    code, out = promtool_check(text)
    assert (code, out) == (0, "")


def test_every_declared_metric_is_clean() -> None:
    """Each metric with one child per label set, so none is left out of the check because
    nothing touched it yet."""
    m = Metrics()
    declared = [c for c in vars(m).values() if isinstance(c, Counter | Gauge | Histogram)]
    assert len(declared) >= 15
    for c in declared:
        labels = c._labelnames
        if labels:
            c.labels(*["x"] * len(labels))
    text = generate_latest(m.registry)
    code, out = promtool_check(text)
    assert (code, out) == (0, "")

