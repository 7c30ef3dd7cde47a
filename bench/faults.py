"""Fault benchmark: hostile requests, a killed worker, a PostgreSQL restart, overdue work and bad
inventory, against real `placement serve --workers 2` processes on PostgreSQL.

Every invariant is read back from PostgreSQL by SQL: every acknowledged workload is stored, every
stored workload has its decision and its events, each (site, GPU type)'s `capacity.reserved` is
the sum of its active reservations and never above its total, and a workload holds GPUs exactly
while it is placed or running.

tests/test_faults.py runs the same scenarios at CI scale; this module is what both share (the
hostile-value strategy, the load generator, the store checks, a server, a throwaway PostgreSQL
cluster).

    .venv/bin/python -m bench.faults --seconds 60 --threads 64
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "policies" / "examples"
QUEUE_BUNDLE = ROOT / "tests" / "data" / "queue"  # one site `dc`, 8 A100, no burst
ADMIN_PG = os.environ.get("PLACEMENT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TIMEOUT_S = 15.0  # every request is bounded: a hang is a failure, not a stall
MAX_BODY = 1 << 20


# --- requests -----------------------------------------------------------------------------------

def good_workloads() -> list[dict[str, Any]]:
    """The example bundle's workloads, as JSON documents."""
    sys.path.insert(0, str(ROOT))
    from placement.policy.loader import load_bundle

    return [w.model_dump(mode="json", exclude_none=True) for w in load_bundle(EXAMPLES).workloads]


@dataclass(frozen=True)
class Hostile:
    """One request that must get its own 4xx: the route, the raw body, what is wrong in it."""

    path: str
    body: bytes
    what: str


INT_FIELDS = ["spec.priority", "spec.gpu.count", "spec.replicas", "spec.interruptions"]
FLOAT_FIELDS = ["spec.duration_hours", "spec.deadline_hours", "spec.requests_per_s",
                "spec.checkpoint_minutes", "spec.budget_usd"]
TEXT_FIELDS = ["metadata.labels.tier", "spec.team", "metadata.name"]
MARKER = "__HOSTILE_VALUE__"


def _put(doc: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(doc))
    node = out
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def _with_value(doc: dict[str, Any], dotted: str, value_json: str) -> bytes:
    """`doc` with the JSON text `value_json` at `dotted`, encoded as raw JSON text (so that
    NaN, Infinity, huge integers and lone surrogate escapes reach the server as written)."""
    return json.dumps(_put(doc, dotted, MARKER)).replace(f'"{MARKER}"', value_json).encode()


def hostile_requests(goods: list[dict[str, Any]]) -> st.SearchStrategy[Hostile]:
    """Hostile submissions and previews: integers past 32 bits, booleans for integers,
    non-finite or out-of-range floats, NUL and lone surrogates in text, bodies over the limit
    and bytes that are not a workload."""
    big = st.one_of(st.integers(min_value=2**31, max_value=2**80),
                    st.integers(min_value=-(2**80), max_value=-(2**31) - 1))
    int_value = st.one_of(big.map(str), st.booleans().map(json.dumps))
    float_value = st.one_of(
        st.sampled_from(["NaN", "Infinity", "-Infinity", "1e308", "1e309", "-1e308"]),
        st.floats(min_value=1e13, max_value=1e308).map(repr),
        st.floats(max_value=-1e-3, allow_infinity=False).map(repr))
    bad_char = st.sampled_from(["\x00", "\ud800", "\udfff", "\udbff"])
    text_value = st.builds(lambda a, c, b: json.dumps(a + c + b), st.text(max_size=4), bad_char,
                           st.text(max_size=4))
    route = st.sampled_from(["/v1/workloads", "/v1/workloads", "/v1/placements/preview"])
    doc = st.sampled_from(goods)

    def one(path: str, d: dict[str, Any], where: str, value: str) -> Hostile:
        return Hostile(path, _with_value(d, where, value), f"{where}={value[:40]}")

    fields = st.one_of(
        st.builds(one, route, doc, st.sampled_from(INT_FIELDS), int_value),
        st.builds(one, route, doc, st.sampled_from(FLOAT_FIELDS), float_value),
        st.builds(one, route, doc, st.sampled_from(TEXT_FIELDS), text_value))
    oversized = st.builds(
        lambda path, d: Hostile(path, json.dumps(_put(d, "metadata.labels.tier",
                                                      "y" * (MAX_BODY + 1))).encode(),
                                "body over 1 MiB"), route, doc)
    garbage = st.builds(lambda path, b: Hostile(path, b, f"raw bytes {b[:20]!r}"), route,
                        st.binary(max_size=64))
    return st.one_of(fields, fields, fields, oversized, garbage)


def hostile_pool(n: int, seed: int) -> list[Hostile]:
    """`n` hostile requests drawn from `hostile_requests` (through @given, not .example())."""
    goods = good_workloads()
    drawn: list[Hostile] = []

    @hypothesis_seed(seed)
    @settings(max_examples=max(2, n // 50 + 2), database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(hostile_requests(goods), min_size=50, max_size=50))
    def collect(values: list[Hostile]) -> None:
        drawn.extend(values)

    collect()
    return drawn[-n:] if len(drawn) >= n else drawn


# --- load -----------------------------------------------------------------------------------------

@dataclass
class Outcome:
    kind: str  # good | hostile
    what: str  # submit, release, preview, or the hostile's description
    status: int | None  # None: no answer (connection cut, timeout)
    started: float
    ended: float
    detail: str = ""
    workload_id: str | None = None


@dataclass
class Load:
    """Client threads against one service: good submissions, releases and previews, with a share
    of hostile requests mixed in. Every outcome is kept, with its start and end time."""

    base: str
    token: str
    goods: list[dict[str, Any]]
    hostiles: list[Hostile] = field(default_factory=list)
    threads: int = 16
    hostile_share: float = 0.25
    seed: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next_hostile: int = 0
    _workers: list[threading.Thread] = field(default_factory=list)

    def _hostile(self) -> Hostile | None:
        with self._lock:
            if not self.hostiles:
                return None
            h = self.hostiles[self._next_hostile % len(self.hostiles)]
            self._next_hostile += 1
            return h

    def _client(self, k: int, until: float, per_thread: int | None) -> None:
        rng = random.Random(self.seed * 1000 + k)
        placed: list[str] = []
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.base, headers=headers, timeout=TIMEOUT_S) as c:
            i = 0
            while not self.stop.is_set() and time.monotonic() < until and (
                    per_thread is None or i < per_thread):
                i += 1
                h = self._hostile() if rng.random() < self.hostile_share else None
                r = rng.random()
                start = time.monotonic()
                try:
                    if h is not None:
                        res = c.post(h.path, content=h.body,
                                     headers={"Content-Type": "application/json"})
                        out = Outcome("hostile", h.what, res.status_code, start,
                                      time.monotonic(), res.text[:200])
                    elif r < 0.1:
                        res = c.post("/v1/placements/preview", json=rng.choice(self.goods))
                        out = Outcome("good", "preview", res.status_code, start,
                                      time.monotonic(), "" if res.status_code == 200
                                      else res.text[:300])
                    elif r < 0.3 and placed:
                        wid = placed.pop(rng.randrange(len(placed)))
                        res = c.post(f"/v1/workloads/{wid}/release")
                        out = Outcome("good", "release", res.status_code, start,
                                      time.monotonic(), "" if res.status_code == 200
                                      else res.text[:300], wid)
                    else:
                        doc = _put(rng.choice(self.goods), "metadata.name",
                                   f"f{k}-{i}-{uuid.uuid4().hex[:6]}")
                        extra = {"Idempotency-Key": uuid.uuid4().hex} if r < 0.6 else {}
                        res = c.post("/v1/workloads", json=doc, headers=extra)
                        body = res.json() if res.status_code in (200, 201) else {}
                        new: str | None = body.get("id")
                        if body.get("phase") == "placed" and new:
                            placed.append(new)
                        out = Outcome("good", "submit", res.status_code, start,
                                      time.monotonic(), "" if new else res.text[:300], new)
                except (httpx.HTTPError, ValueError) as exc:
                    out = Outcome("hostile" if h is not None else "good",
                                  h.what if h is not None else "request", None, start,
                                  time.monotonic(), f"{type(exc).__name__}: {exc}"[:300])
                with self._lock:
                    self.outcomes.append(out)

    def start(self, seconds: float | None = None, per_thread: int | None = None) -> Load:
        until = time.monotonic() + (seconds if seconds is not None else 3600.0)
        self._workers = [threading.Thread(target=self._client, args=(k, until, per_thread),
                                          daemon=True) for k in range(self.threads)]
        for t in self._workers:
            t.start()
        return self

    def join(self) -> Load:
        for t in self._workers:
            t.join()
        return self

    def run(self, seconds: float | None = None, per_thread: int | None = None) -> Load:
        return self.start(seconds, per_thread).join()

    def acknowledged(self) -> set[str]:
        """Workload ids the service answered 201 (or 200) for."""
        return {o.workload_id for o in self.outcomes
                if o.what == "submit" and o.status in (200, 201) and o.workload_id}

    def counts(self, since: float = 0.0) -> dict[str, int]:
        picked = [o for o in self.outcomes if o.started >= since]
        good = [o for o in picked if o.kind == "good"]
        bad = [o for o in picked if o.kind == "hostile"]
        return {
            "good_sent": len(good),
            "good_ok": sum(1 for o in good if o.status in (200, 201)),
            "good_failed": sum(1 for o in good if o.status not in (200, 201)),
            "hostile_sent": len(bad),
            "hostile_4xx": sum(1 for o in bad if o.status is not None and 400 <= o.status < 500),
            "hostile_5xx": sum(1 for o in bad if o.status is not None and o.status >= 500),
            "hostile_other": sum(1 for o in bad if o.status is None or o.status < 400),
        }

    def failures(self, keep: Callable[[Outcome], bool] = lambda o: True) -> list[Outcome]:
        """Good requests not answered 200/201 and hostile ones not answered 4xx."""
        return [o for o in self.outcomes if keep(o) and (
            (o.kind == "good" and o.status not in (200, 201))
            or (o.kind == "hostile" and (o.status is None or not 400 <= o.status < 500)))]


def statuses(outcomes: list[Outcome]) -> dict[str, int]:
    return dict(Counter(f"{o.kind} {o.what.split('=')[0]} {o.status}" for o in outcomes))


# --- the store, read by SQL ------------------------------------------------------------------

CHECKS = {
    "workloads_without_decision":
        "SELECT count(*) FROM workloads w WHERE NOT EXISTS (SELECT 1 FROM decisions d "
        "WHERE d.id = w.decision_id AND d.workload_id = w.id)",
    "workloads_without_events":
        "SELECT count(*) FROM workloads w WHERE NOT EXISTS (SELECT 1 FROM events e WHERE "
        "e.workload_id = w.id AND e.type = 'submitted') OR (SELECT count(*) FROM events e "
        "WHERE e.workload_id = w.id) < 2",
    "gpus_leaked":  # |reserved - the active reservations| summed over (site, GPU type)
        "SELECT COALESCE(SUM(ABS(c.reserved - COALESCE(h.held, 0))), 0) FROM capacity c "
        "LEFT JOIN (SELECT site, gpu_type, SUM(count) AS held FROM reservations WHERE "
        "released_at IS NULL GROUP BY site, gpu_type) h ON h.site = c.site AND "
        "h.gpu_type = c.gpu_type",
    "overcommitted_rows":
        "SELECT count(*) FROM capacity WHERE reserved > total OR reserved < 0",
    "reservations_without_capacity":
        "SELECT count(*) FROM reservations r WHERE r.released_at IS NULL AND NOT EXISTS "
        "(SELECT 1 FROM capacity c WHERE c.site = r.site AND c.gpu_type = r.gpu_type)",
    "holding_mismatches":  # GPUs held exactly while placed or running: one reservation, or
        # one per member site of a fleet
        "SELECT count(*) FROM workloads w WHERE ((SELECT count(*) FROM reservations r WHERE "
        "r.workload_id = w.id AND r.released_at IS NULL) > 0) <> (w.phase IN "
        "('placed', 'running'))",
}


def check_store(url: str) -> dict[str, int]:
    """Each invariant's violation count (all 0 when the store is whole), plus row counts."""
    with psycopg.connect(url, connect_timeout=10) as conn:
        out = {name: int(conn.execute(sql).fetchone()[0])  # type: ignore[index]
               for name, sql in CHECKS.items()}
        out["workloads_stored"] = int(conn.execute(  # type: ignore[index]
            "SELECT count(*) FROM workloads").fetchone()[0])
        out["gpus_reserved"] = int(conn.execute(  # type: ignore[index]
            "SELECT COALESCE(SUM(reserved), 0) FROM capacity").fetchone()[0])
    return out


def lost(url: str, acknowledged: set[str]) -> int:
    """Acknowledged workloads missing from `workloads`."""
    if not acknowledged:
        return 0
    with psycopg.connect(url, connect_timeout=10) as conn:
        found = {str(r[0]) for r in conn.execute(
            "SELECT id FROM workloads WHERE id = ANY(%s::uuid[])", (sorted(acknowledged),))}
    return len(acknowledged - found)


def prepare(url: str) -> str:
    """Migrate the database and store an admin token (before the service starts)."""
    sys.path.insert(0, str(ROOT))
    from placement.control.auth import create_token
    from placement.store.db import open_database
    from placement.store.migrate import upgrade

    db = open_database(url)
    try:
        upgrade(db)
        with db.write() as s:
            return create_token(s, role="admin", team=None, description="faults")
    finally:
        db.dispose()


@contextmanager
def fresh_database(admin_url: str = ADMIN_PG) -> Iterator[str]:
    """A new database on the local PostgreSQL, dropped afterwards."""
    name = f"placement_faults_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield admin_url.rsplit("/", 1)[0] + f"/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- processes -------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def workers(self) -> set[int]:
        """The supervisor's worker processes (multiprocessing's spawned children)."""
        found = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat[1]) == self.proc.pid and stat[0] not in "ZX" and b"spawn_main" in cmd:
                found.add(int(entry.name))
        return found


@contextmanager
def serve(database_url: str, config: Path, log: Path, workers: int = 2) -> Iterator[Service]:
    """A `placement serve` process; yields once /readyz answers 200 (RuntimeError after 90 s
    or when it exits)."""
    port = free_port()
    env = {**os.environ, "PLACEMENT_DATABASE_URL": database_url}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "placement.cli", "serve", "--port", str(port), "--config",
             str(config), "--workers", str(workers)], env=env, cwd=ROOT, stdout=sink,
            stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"placement serve exited with {proc.returncode}:\n"
                                       f"{log.read_text()[-3000:]}")
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"placement serve not ready in 90 s:\n"
                                       f"{log.read_text()[-3000:]}")
                time.sleep(0.2)
            yield Service(url, proc, log)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def wait_for(check: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(step)
    return False


def postgres_bin() -> Path | None:
    """The directory holding initdb and pg_ctl, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    which = shutil.which("initdb")
    return Path(which).parent if which else None


class Cluster:
    """A PostgreSQL cluster of its own in a temporary directory on a free port (run as the
    `postgres` OS user when this process is root)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="placement-pg-"))
        self.data = self.dir / "data"
        self.as_root = os.geteuid() == 0
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._pg(["initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8"])

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        full = [str(self.bindir / cmd[0]), *cmd[1:]]
        if self.as_root:
            full = ["runuser", "-u", "postgres", "--", *full]
        res = subprocess.run(full, capture_output=True, text=True, timeout=120, cwd=self.dir)
        if check and res.returncode != 0:
            raise RuntimeError(f"{' '.join(full)} failed ({res.returncode}):\n{res.stdout}\n"
                               f"{res.stderr}")
        return res

    def start(self) -> None:
        self._pg(["pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-t", "60",
                  "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                  "-c max_connections=200 -c fsync=on", "start"])

    def stop(self, mode: str = "immediate") -> None:
        self._pg(["pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"])

    def close(self) -> None:
        self._pg(["pg_ctl", "-D", str(self.data), "-m", "immediate", "stop"], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


# --- scenarios ----------------------------------------------------------------------------------
# Each returns counts; the test asserts on them and the bench prints them. `load` is kept in the
# result (key "load") for the test's messages.

def hostile_load(svc: Service, url: str, token: str, hostiles: list[Hostile], threads: int,
                 seconds: float | None = None, per_thread: int | None = None,
                 seed: int = 0) -> tuple[dict[str, int], Load]:
    load = Load(svc.url, token, good_workloads(), hostiles, threads, seed=seed).run(
        seconds, per_thread)
    counts = {**load.counts(), "acknowledged": len(load.acknowledged()),
              "acknowledged_lost": lost(url, load.acknowledged()), **check_store(url)}
    return counts, load


# requests sent up to this long after a worker's SIGKILL may be cut (no answer): the client's
# kept-alive connections to it are reset, and its accept queue with them
CUT_S = 0.5


def kill_worker(svc: Service, url: str, token: str, hostiles: list[Hostile], threads: int,
                seconds: float, seed: int = 0) -> tuple[dict[str, float], Load]:
    """SIGKILL one worker a third of the way into `seconds` of load. Requests in flight at the
    kill may be cut (no answer: they were never acknowledged); any other failure counts."""
    before = svc.workers()
    load = Load(svc.url, token, good_workloads(), hostiles, threads, seed=seed)
    load.start(seconds)
    time.sleep(seconds / 3)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    replaced = wait_for(lambda: len(svc.workers()) == len(before) and victim not in
                        svc.workers(), timeout=max(60.0, seconds))
    restart_s = time.monotonic() - killed_at
    load.join()
    cut = [o for o in load.outcomes if o.status is None and o.started <= killed_at + CUT_S
           and o.ended >= killed_at]
    # after the replacement is up and the cut window has closed: a replacement can appear
    # within CUT_S, and a request sent then on a client's kept-alive connection to the killed
    # worker is cut, not failed, in both counts
    after_restart = load.counts(since=killed_at + max(restart_s, CUT_S))
    counts: dict[str, float] = {
        **load.counts(), "workers_before": len(before), "worker_restarted": int(replaced),
        "worker_restart_s": round(restart_s, 2), "cut_by_kill": len(cut),
        "failed_not_cut": len([o for o in load.failures() if o not in cut]),
        "good_after_restart": after_restart["good_sent"],
        "good_failed_after_restart": after_restart["good_failed"],
        "acknowledged": len(load.acknowledged()),
        "acknowledged_lost": lost(url, load.acknowledged()), **check_store(url)}
    return counts, load


def pg_restart(svc: Service, cluster: Cluster, token: str, threads: int, up_s: float,
               down_s: float, after_s: float, seed: int = 0) -> tuple[dict[str, float], Load]:
    """Load for up_s, stop the cluster (immediate: a crash) for down_s, start it again and load
    for after_s more. While it is down every good request must get a 503 within the client
    timeout; recovery_s is how long after the cluster is back the last failure ended."""
    load = Load(svc.url, token, good_workloads(), [], threads, seed=seed)
    load.start(up_s + down_s + after_s + 120)
    time.sleep(up_s)
    stop_at = time.monotonic()
    cluster.stop("immediate")
    down_at = time.monotonic()
    time.sleep(down_s)
    up_begin = time.monotonic()
    cluster.start()
    up_at = time.monotonic()
    time.sleep(after_s)
    load.stop.set()
    load.join()
    during = [o for o in load.outcomes if o.started >= down_at and o.ended <= up_begin]
    after = [o for o in load.outcomes if o.started >= up_at]
    failed_after = [o for o in after if o.status not in (200, 201)]
    recovery = max((o.ended for o in failed_after), default=up_at) - up_at
    first_ok = min((o.ended for o in after if o.status in (200, 201)), default=float("nan"))
    bad_while_down = [o for o in during if o.status != 503]
    counts: dict[str, float] = {
        **load.counts(), "stop_s": round(down_at - stop_at, 2),
        "sent_while_down": len(during),
        "503_while_down": sum(1 for o in during if o.status == 503),
        "not_503_while_down": len(bad_while_down),
        "5xx_not_503": sum(1 for o in load.outcomes if o.status is not None and o.status >= 500
                           and o.status != 503),
        "no_answer": sum(1 for o in load.outcomes if o.status is None),
        "slowest_while_down_s": round(max((o.ended - o.started for o in during), default=0), 2),
        "good_after_up": len(after), "good_failed_after_up": len(failed_after),
        "first_ok_after_up_s": round(first_ok - up_at, 2),
        "recovery_s": round(recovery, 2),
        "acknowledged": len(load.acknowledged()),
        "acknowledged_lost": lost(cluster.url, load.acknowledged()),
        **check_store(cluster.url)}
    return counts, load


def job(name: str, gpus: int, hours: float) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {
        "kind": "training", "team": "vision", "duration_hours": hours,
        "gpu": {"types": ["A100"], "count": gpus}}}


def overrun(svc: Service, url: str, token: str, later: int = 5) -> tuple[dict[str, int], list[Any]]:
    """One job takes all 8 GPUs of `dc`; its reservation is set past its expected end by SQL;
    `later` submissions from one client must each be 201 and queued (never a 409)."""
    replies: list[Any] = []
    with httpx.Client(base_url=svc.url, headers={"Authorization": f"Bearer {token}"},
                      timeout=TIMEOUT_S) as c:
        first = c.post("/v1/workloads", json=job("overrun", 8, 1))
        replies.append((first.status_code, first.json().get("phase")))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE reservations SET expected_end_at = now() - interval '3 hours' "
                          "WHERE released_at IS NULL")
        statuses: Counter[str] = Counter()
        acked = {first.json().get("id", "")}
        for i in range(later):
            res = c.post("/v1/workloads", json=job(f"later-{i}", 4 if i % 2 else 8, 1))
            body = res.json()
            replies.append((res.status_code, body.get("phase"), res.text[:300]))
            statuses[f"{res.status_code} {body.get('phase')}"] += 1
            if res.status_code in (200, 201):
                acked.add(body["id"])
    counts = {"first_placed": int(first.status_code == 201
                                  and first.json().get("phase") == "placed"),
              "later_sent": later, "later_201_queued": statuses["201 queued"],
              "later_409": sum(n for k, n in statuses.items() if k.startswith("409")),
              "acknowledged_lost": lost(url, acked), **check_store(url)}
    return counts, replies


BAD_SITE: dict[str, Any] = {
    "metadata": {"name": "dc-faulty"},
    "spec": {"type": "onprem", "location": {"lat": 52.5, "lon": 13.4}, "kube_context": "dc-faulty",
             "wan_gbps": MARKER, "egress_usd_per_gb": 0,
             "gpus": [{"type": "A100", "count": 8, "usd_per_gpu_hour": 2.0}]}}


def bad_inventory(svc: Service, url: str, token: str, after: int = 10
                  ) -> tuple[dict[str, int], list[Any]]:
    """POST /v1/sites with raw `"wan_gbps": Infinity` (and NaN, 1e309): 422 naming the field,
    nothing stored; then submissions (201) and previews (200) still work."""
    replies: list[Any] = []
    goods = good_workloads()
    site = json.dumps(BAD_SITE)
    refused = named = 0
    acked: set[str] = set()
    ok = 0
    with httpx.Client(base_url=svc.url, headers={"Authorization": f"Bearer {token}"},
                      timeout=TIMEOUT_S) as c:
        for value in ("Infinity", "-Infinity", "NaN", "1e309"):
            res = c.post("/v1/sites", content=site.replace(f'"{MARKER}"', value),
                         headers={"Content-Type": "application/json"})
            replies.append(("site", value, res.status_code, res.text[:300]))
            refused += res.status_code == 422
            named += "wan_gbps" in res.text
        with psycopg.connect(url) as conn:
            stored = int(conn.execute(  # type: ignore[index]
                "SELECT (SELECT count(*) FROM sites WHERE name = 'dc-faulty') + (SELECT count(*) "
                "FROM capacity WHERE site = 'dc-faulty')").fetchone()[0])
        for i in range(after):
            doc = _put(goods[i % len(goods)], "metadata.name", f"after-bad-site-{i}")
            sub = c.post("/v1/workloads", json=doc)
            pre = c.post("/v1/placements/preview", json=doc)
            replies.append(("submit", i, sub.status_code, pre.status_code, sub.text[:200]))
            ok += (sub.status_code == 201) + (pre.status_code == 200)
            if sub.status_code == 201:
                acked.add(sub.json()["id"])
        listed = c.get("/v1/sites")
    counts = {"bad_sites_sent": 4, "bad_sites_422": refused, "bad_sites_naming_field": named,
              "bad_site_rows_stored": stored, "after_sent": 2 * after, "after_ok": ok,
              "sites_list_status": listed.status_code,
              "acknowledged_lost": lost(url, acked), **check_store(url)}
    return counts, replies


# --- the bench ----------------------------------------------------------------------------------

def _print(name: str, counts: dict[str, Any]) -> None:
    print(json.dumps({"scenario": name, **counts}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=60, help="Load per scenario.")
    ap.add_argument("--threads", type=int, default=64)
    ap.add_argument("--hostile", type=int, default=2000, help="Hostile requests drawn.")
    ap.add_argument("--down-seconds", type=float, default=10,
                    help="How long the PostgreSQL cluster stays down.")
    ap.add_argument("--database-url", default=None,
                    help="Empty PostgreSQL database (default: a fresh one on the local server).")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(json.dumps({"cpu_count": os.cpu_count(), "threads": args.threads,
                      "seconds": args.seconds}), flush=True)
    hostiles = hostile_pool(args.hostile, args.seed)
    logs = Path(tempfile.mkdtemp(prefix="placement-faults-"))

    @contextmanager
    def database() -> Iterator[str]:
        if args.database_url:
            yield args.database_url
        else:
            with fresh_database() as url:
                yield url

    with database() as url:
        token = prepare(url)
        with serve(url, EXAMPLES, logs / "serve.log") as svc:
            counts, _ = hostile_load(svc, url, token, hostiles, args.threads, args.seconds,
                                     seed=args.seed)
            _print("hostile_load", counts)
            kcounts, _ = kill_worker(svc, url, token, hostiles, args.threads, args.seconds,
                                     seed=args.seed + 1)
            _print("kill_worker", kcounts)
            bcounts, _ = bad_inventory(svc, url, token, after=50)
            _print("bad_inventory", bcounts)
    with fresh_database() as url:
        token = prepare(url)
        with serve(url, QUEUE_BUNDLE, logs / "serve-queue.log") as svc:
            ocounts, _ = overrun(svc, url, token, later=50)
            _print("overrun", ocounts)
    bindir = postgres_bin()
    if bindir is None:
        _print("pg_restart", {"skipped": "initdb not found"})
        return
    cluster = Cluster(bindir)
    try:
        cluster.start()
        token = prepare(cluster.url)
        with serve(cluster.url, EXAMPLES, logs / "serve-pg.log") as svc:
            pcounts, _ = pg_restart(svc, cluster, token, args.threads, args.seconds / 3,
                                    args.down_seconds, args.seconds / 3, seed=args.seed + 2)
            _print("pg_restart", pcounts)
    finally:
        cluster.close()
    print(json.dumps({"logs": str(logs)}), flush=True)


if __name__ == "__main__":
    main()
