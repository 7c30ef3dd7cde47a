"""Faults against real `placement serve --workers 2` processes on real PostgreSQL: hostile
requests mixed into concurrent load, a worker killed with SIGKILL, a PostgreSQL restart, work
past its expected end, and bad inventory. Every invariant is read from PostgreSQL by SQL
(bench/faults.py's checks; `python -m bench.faults` runs the same at larger scale)."""

from __future__ import annotations

import os
import pwd
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bench import faults
from bench.faults import Service

from .services import postgres_database, unavailable

THREADS = 16
WHOLE = {"workloads_without_decision": 0, "workloads_without_events": 0, "gpus_leaked": 0,
         "overcommitted_rows": 0, "reservations_without_capacity": 0, "holding_mismatches": 0,
         "acknowledged_lost": 0}


def _whole(counts: dict[str, Any]) -> dict[str, Any]:
    return {k: counts[k] for k in WHOLE}


def _failures(load: faults.Load, limit: int = 8) -> list[str]:
    return [f"{o.kind} {o.what} -> {o.status}: {o.detail}" for o in load.failures()[:limit]]


@dataclass
class Running:
    svc: Service
    url: str
    token: str


@pytest.fixture(scope="module")
def example_service() -> Iterator[Running]:
    """One service on the example bundle, shared by the load, inventory and kill tests."""
    with postgres_database() as url:
        token = faults.prepare(url)
        with tempfile.TemporaryDirectory() as tmp, \
                faults.serve(url, faults.EXAMPLES, Path(tmp) / "serve.log") as svc:
            yield Running(svc, url, token)


GOODS = faults.good_workloads()


# --- 1. hostile requests mixed into concurrent load ------------------------------------------

# Two examples: Hypothesis's first is its simplest (40 alike), the second a varied mix. No
# shrinking: each example is a full load run, and the failure message lists what failed.
@settings(max_examples=2, deadline=None, database=None, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.large_base_example])
@given(hostiles=st.lists(faults.hostile_requests(GOODS), min_size=40, max_size=40))
def test_hostile_requests_among_concurrent_submitters_hurt_no_one(
        example_service: Running, hostiles: list[faults.Hostile]) -> None:
    """16 threads, a quarter of their requests hostile: every good request 200/201, every
    hostile one a 4xx, nothing partial in the store."""
    r = example_service
    counts, load = faults.hostile_load(r.svc, r.url, r.token, hostiles, THREADS, per_thread=16)
    assert counts["good_sent"] > 100 and counts["hostile_sent"] > 20, counts
    assert counts["good_failed"] == 0, _failures(load)
    assert counts["hostile_5xx"] == 0 and counts["hostile_other"] == 0, _failures(load)
    assert counts["hostile_4xx"] == counts["hostile_sent"]
    assert _whole(counts) == WHOLE, counts


# --- 5. bad inventory -------------------------------------------------------------------------

def test_a_site_with_infinite_wan_is_refused_and_nothing_breaks(
        example_service: Running) -> None:
    r = example_service
    counts, replies = faults.bad_inventory(r.svc, r.url, r.token, after=8)
    assert counts["bad_sites_422"] == counts["bad_sites_sent"], replies
    assert counts["bad_sites_naming_field"] == counts["bad_sites_sent"], replies
    assert counts["bad_site_rows_stored"] == 0
    assert counts["after_ok"] == counts["after_sent"], replies
    assert counts["sites_list_status"] == 200
    assert _whole(counts) == WHOLE, counts


# --- 2. a worker killed mid-load ----------------------------------------------------------------

def test_a_worker_killed_mid_load_loses_nothing_and_is_replaced(
        example_service: Running) -> None:
    r = example_service
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc to find the workers")
    counts, load = faults.kill_worker(r.svc, r.url, r.token, faults.hostile_pool(100, seed=1),
                                      THREADS, seconds=18)
    assert counts["workers_before"] == 2, counts
    assert counts["worker_restarted"] == 1, counts
    assert counts["failed_not_cut"] == 0, (counts, _failures(load))
    assert counts["good_after_restart"] > 0, counts
    assert counts["good_failed_after_restart"] == 0, (counts, _failures(load))
    assert _whole(counts) == WHOLE, counts


# --- 3. a PostgreSQL restart ----------------------------------------------------------------

@pytest.fixture()
def cluster() -> Iterator[faults.Cluster]:
    bindir = faults.postgres_bin()
    if bindir is None:
        unavailable("initdb and pg_ctl are not installed (apt-get install postgresql)")
        raise AssertionError("unreachable")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root and there is no `postgres` user to run initdb as")
    c = faults.Cluster(bindir)
    try:
        c.start()
        yield c
    finally:
        c.close()


def test_a_postgresql_restart_is_503_then_recovers_without_losing_work(
        cluster: faults.Cluster, tmp_path: Path) -> None:
    token = faults.prepare(cluster.url)
    with faults.serve(cluster.url, faults.EXAMPLES, tmp_path / "serve.log") as svc:
        counts, load = faults.pg_restart(svc, cluster, token, THREADS, up_s=4, down_s=5,
                                         after_s=10)
        assert counts["sent_while_down"] > 0, counts
        assert counts["not_503_while_down"] == 0, (counts, _failures(load))
        assert counts["5xx_not_503"] == 0 and counts["no_answer"] == 0, (
            counts, _failures(load))
        assert counts["good_after_up"] > 0 and counts["recovery_s"] < 8, counts
        assert counts["slowest_while_down_s"] < faults.TIMEOUT_S, counts
        assert _whole(counts) == WHOLE, counts


# --- 4. work past its expected end ------------------------------------------------------------

def test_overdue_work_keeps_its_gpus_and_later_submissions_queue(tmp_path: Path) -> None:
    with postgres_database() as url:
        token = faults.prepare(url)
        with faults.serve(url, faults.QUEUE_BUNDLE, tmp_path / "serve.log") as svc:
            counts, replies = faults.overrun(svc, url, token, later=6)
    assert counts["first_placed"] == 1, replies
    assert counts["later_409"] == 0, replies
    assert counts["later_201_queued"] == counts["later_sent"], replies
    assert _whole(counts) == WHOLE, counts
