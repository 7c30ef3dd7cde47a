"""Concurrent submitters never over-commit GPUs, across worker processes and server replicas."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from placement.control.auth import create_token
from placement.store.db import normalize_url, open_database
from placement.store.migrate import upgrade

from .services import postgres_database, server

BUNDLE = Path(__file__).parent / "data" / "contention"
SUBMITTERS = 32
PER_SUBMITTER = 6


class Monitor(threading.Thread):
    """Polls the store: reserved <= total, and reserved equals the active reservations."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.engine = create_engine(normalize_url(url))
        self.stop = threading.Event()
        self.sampled = threading.Event()  # set after the first sample: start the race then
        self.violations: list[str] = []
        self.samples = 0

    def run(self) -> None:
        q = text("SELECT c.site, c.gpu_type, c.total, c.reserved, COALESCE((SELECT SUM(r.count) "
                 "FROM reservations r WHERE r.site = c.site AND r.gpu_type = c.gpu_type AND "
                 "r.released_at IS NULL), 0) FROM capacity c")
        while not self.stop.is_set():
            with self.engine.connect() as conn:
                for site, gpu, total, reserved, held in conn.execute(q):
                    if reserved > total or reserved != held:
                        self.violations.append(f"{site}/{gpu}: total {total} reserved "
                                               f"{reserved} held {held}")
            self.samples += 1
            self.sampled.set()
            time.sleep(0.002)
        self.engine.dispose()


def _job(i: int) -> dict[str, Any]:
    return {"metadata": {"name": f"job-{i}"}, "spec": {
        "kind": "training", "team": "research", "gpu": {"types": ["A100"], "count": 2},
        "duration_hours": 1 + i % 3}}


def _hammer(bases: list[str], token: str) -> tuple[list[tuple[str, int, str]], Counter[str]]:
    results: list[tuple[str, int, str]] = []
    per_server: Counter[str] = Counter()
    lock = threading.Lock()

    def submitter(k: int) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
            for j in range(PER_SUBMITTER):
                base = bases[(k + j) % len(bases)]
                key = f"s{k}-{j}"
                res = c.post(f"{base}/v1/workloads", json=_job(k * 100 + j),
                             headers={"Idempotency-Key": key})
                again = c.post(f"{base}/v1/workloads", json=_job(k * 100 + j),
                               headers={"Idempotency-Key": key}) if j == 0 else None
                with lock:
                    results.append((key, res.status_code, res.json().get("id", "")))
                    if res.status_code == 201:
                        per_server[base] += 1
                    if again is not None:
                        results.append((key + "-retry", again.status_code,
                                        again.json().get("id", "")))

    with ThreadPoolExecutor(SUBMITTERS) as pool:
        list(pool.map(submitter, range(SUBMITTERS)))
    return results, per_server


def _prepare(url: str) -> str:
    db = open_database(url)
    upgrade(db)
    with db.write() as s:
        token = create_token(s, role="admin", team=None)
    db.dispose()
    return token


def _check(url: str, results: list[tuple[str, int, str]], monitor: Monitor) -> None:
    assert monitor.samples > 5 and not monitor.violations, monitor.violations[:5]
    statuses = Counter(status for _, status, _ in results)
    assert set(statuses) <= {200, 201}, statuses
    ids = {key: wid for key, _, wid in results}
    for key, _, wid in results:
        if key.endswith("-retry"):
            assert wid == ids[key.removesuffix("-retry")], "a retry made a second workload"
    eng = create_engine(normalize_url(url))
    with eng.connect() as conn:
        rows = conn.execute(text("SELECT w.id, COUNT(d.id) FROM workloads w LEFT JOIN "
                                 "decisions d ON d.workload_id = w.id GROUP BY w.id")).all()
        per: dict[Any, int] = {wid: n for wid, n in rows}
        over = conn.execute(text("SELECT COUNT(*) FROM capacity WHERE reserved > total")).scalar()
        placed = conn.execute(text("SELECT COUNT(*) FROM workloads WHERE phase = 'placed'")
                              ).scalar()
    eng.dispose()
    assert len(per) == SUBMITTERS * PER_SUBMITTER
    assert set(per.values()) == {1}, "every accepted submission has exactly one decision"
    assert over == 0 and placed == (16 + 16 + 16) // 2


def _decisions_total(base: str) -> float:
    total = 0.0
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith("placement_decisions_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_concurrent_submitters_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    token = _prepare(url)
    with server(url, BUNDLE, workers=2, metrics_dir=_mdir(tmp_path, "a")) as base:
        monitor = Monitor(url)
        monitor.start()
        results, per_server = _hammer([base], token)
        monitor.stop.set()
        monitor.join()
        _check(url, results, monitor)
        assert _decisions_total(base) == per_server[base]


@pytest.mark.parametrize("replicas", [2])
def test_concurrent_submitters_on_postgresql_across_two_servers(tmp_path: Path,
                                                                replicas: int) -> None:
    with postgres_database() as url:
        token = _prepare(url)
        with server(url, BUNDLE, workers=2, metrics_dir=_mdir(tmp_path, "a")) as one, \
                server(url, BUNDLE, workers=2, metrics_dir=_mdir(tmp_path, "b")) as two:
            monitor = Monitor(url)
            monitor.start()
            results, per_server = _hammer([one, two][:replicas], token)
            monitor.stop.set()
            monitor.join()
            _check(url, results, monitor)
            for base in (one, two):
                assert _decisions_total(base) == per_server[base]


def _mdir(tmp: Path, name: str) -> Path:
    path = tmp / f"metrics-{name}-{uuid.uuid4().hex[:6]}"
    path.mkdir()
    return path
