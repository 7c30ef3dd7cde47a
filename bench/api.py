"""API benchmark: placements per second and submit latency through HTTP, persisted on PostgreSQL.

Starts `placement serve` on a fresh PostgreSQL database loaded with the example bundle, its GPU
counts and quotas multiplied by --capacity-scale (default 100,000) so that a run never fills it:
every placement still takes its GPUs through the guarded capacity update. For each concurrency
level, N client tasks submit the example workloads for --warmup seconds (not measured: new
connections, first statements) and then for --seconds, measured. With --churn each client also
releases what was placed and cancels what was queued (untimed follow-up calls), at the example
capacity (scale 1). Prints one JSON line per level; `overcommitted_gpus` is read from the store
after the level (GPUs reserved beyond capacity, plus any disagreement between the capacity rows
and the active reservations).

--sites 10,100,1000: 10 is the example bundle; larger sizes are generated inventories written as
a bundle directory (Site, Dataset, ClientLocation and the example Policy documents), with sites
made as bench/engine.py makes them (GPU offers and prices from the catalogs in ../shared/data)
and the same capacity scaling. The example workloads are submitted there with their dataset and
client-location names rewritten to generated ones (same shapes). Before timing, the bundle is
loaded with `load_bundle`, every workload is decided offline and one submission must come back
placed from the server.

Every figure comes with a floor measured in the same run, because absolute figures differ 3x
between machines: bench/floor_app.py, a bare server with the same worker count on the same
PostgreSQL (its own fresh database, same bundle) that takes the same POST bodies from the same
client and stores the same rows through the service's own store code, with a decision made once
per workload at start instead of per request. Levels alternate: the service, then the floor.
`ratio_to_floor` is placements/s over the floor's submissions/s (target: at least 0.5 at 32
clients with 0 GPUs over-committed; printed, not asserted). With --churn the floor still only
submits (at --capacity-scale, so it never fills).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import uvloop
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "policies" / "examples"
ADMIN = os.environ.get("PLACEMENT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _scaled_bundle(out: Path, scale: int) -> None:
    """The example bundle with every GPU count and quota multiplied by `scale`."""
    sys.path.insert(0, str(ROOT))
    from placement.policy.loader import load_bundle

    bundle = load_bundle(CONFIG)
    docs: list[dict[str, Any]] = []
    for site in bundle.inventory.sites:
        data = site.model_dump(mode="json", exclude_none=True)
        for gpu in data["spec"]["gpus"]:
            for key in ("count", "quota_gpus"):
                if key in gpu:
                    gpu[key] *= scale
        docs.append(data)
    docs += [d.model_dump(mode="json", exclude_none=True) for d in bundle.inventory.datasets]
    docs += [c.model_dump(mode="json", exclude_none=True)
             for c in bundle.inventory.client_locations]
    docs.append(bundle.policy.model_dump(mode="json", exclude_none=True))
    (out / "bundle.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))


def _workloads() -> list[dict[str, Any]]:
    sys.path.insert(0, str(ROOT))
    from placement.policy.loader import load_bundle

    return [w.model_dump(mode="json") for w in load_bundle(CONFIG).workloads]


def _generated_bundle(out: Path, n_sites: int, scale: int, seed: int = 7
                      ) -> list[dict[str, Any]]:
    """A bundle directory of `n_sites` generated sites (bench/engine.py's `_site` and
    `data_and_clients`, offers from ../shared/data) with the example policy, GPU counts and
    quotas multiplied by `scale`; returns the example workloads with their dataset and client
    names rewritten to generated ones."""
    sys.path.insert(0, str(ROOT))
    from bench.engine import data_and_clients, synthetic_sites
    from placement.engine.offline import engine_for
    from placement.model import Workload
    from placement.model.common import MAX_GPUS
    from placement.policy.loader import load_bundle

    example = load_bundle(CONFIG)
    rng = random.Random(seed)
    sites = synthetic_sites(n_sites, rng)
    n_clients = 2 * len(example.inventory.client_locations)  # choices for the mapping
    datasets, clients = data_and_clients(rng, [s.name for s in sites], n_clients)
    docs: list[dict[str, Any]] = []
    for site in sites:
        data = site.model_dump(mode="json", exclude_none=True)
        for gpu in data["spec"]["gpus"]:
            for key in ("count", "quota_gpus"):
                if key in gpu:  # at most the model's limit (a 256 quota x 100,000 is over)
                    gpu[key] = min(gpu[key] * scale, MAX_GPUS)
        docs.append(data)
    docs += [d.model_dump(mode="json", exclude_none=True) for d in datasets]
    docs += [c.model_dump(mode="json", exclude_none=True) for c in clients]
    docs.append(example.policy.model_dump(mode="json", exclude_none=True))
    (out / "bundle.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    ds_names = [d.name for d in datasets]
    cl_names = [c.name for c in clients]
    ds_of = {d.name: i for i, d in enumerate(example.inventory.datasets)}
    cl_of = {c.name: i for i, c in enumerate(example.inventory.client_locations)}
    engine = engine_for(load_bundle(out))
    pool = []
    for w in example.workloads:
        # The example's names map in order (dataset i -> ds{i mod 4}, client i -> c{i mod n});
        # where that is not placeable (a shop-floor SLO far from the data), the next names
        # that are, in a fixed order: the same shape, on names the bundle has.
        first: dict[str, Any] | None = None
        chosen: dict[str, Any] | None = None
        for shift in range(len(ds_names) * len(cl_names)):
            doc = w.model_dump(mode="json")
            for d in doc["spec"].get("datasets") or []:
                d["name"] = ds_names[(ds_of[d["name"]] + shift) % len(ds_names)]
            for c in (doc["spec"].get("latency") or {}).get("clients") or []:
                c["location"] = cl_names[(cl_of[c["location"]] + shift // len(ds_names))
                                         % len(cl_names)]
            first = first or doc
            if engine.decide(Workload.model_validate(doc)).action in ("place", "burst"):
                chosen = doc
                break
        # none places: submitted as first mapped (it counts as not placed)
        pool.append(chosen or first or w.model_dump(mode="json"))
    return pool


def _bundle(out: Path, n_sites: int, scale: int) -> list[dict[str, Any]]:
    """Write the bundle for `n_sites` (10: the examples) to `out`, check it loads and decide
    every workload offline; returns the workloads to submit and their offline actions."""
    out.mkdir(parents=True, exist_ok=True)
    if n_sites == 10:
        _scaled_bundle(out, scale)
        pool = _workloads()
    else:
        pool = _generated_bundle(out, n_sites, scale)
    from placement.engine.offline import engine_for
    from placement.model import Workload
    from placement.policy.loader import load_bundle

    bundle = load_bundle(out)  # raises ConfigError naming every problem
    if len(bundle.inventory.sites) != n_sites:
        raise RuntimeError(f"{out}: {len(bundle.inventory.sites)} sites, wanted {n_sites}")
    engine = engine_for(bundle)
    actions = [engine.decide(Workload.model_validate(w)).action
               for w in pool]
    if not any(a in ("place", "burst") for a in actions):
        raise RuntimeError(f"{n_sites} sites: no workload is placed offline ({actions})")
    return pool


class Conn:
    """A minimal keep-alive HTTP/1.1 client: far less CPU per request than a general client,
    so the numbers measure the server rather than the load generator on the same 2 cores."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.auth = f"Authorization: Bearer {token}\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, Any]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.auth}"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        data = await self.reader.readexactly(length)
        return int(status_line.split()[1]), orjson.loads(data) if data else None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _client(port: int, token: str, bodies: list[bytes], since: float, until: float,
                  churn: bool, lat: list[float], placed: list[int], rng: random.Random) -> None:
    conn = Conn("127.0.0.1", port, token)
    try:
        while (t0 := time.perf_counter()) < until:
            status, data = await conn.request("POST", "/v1/workloads", rng.choice(bodies))
            if status != 201:
                raise RuntimeError(f"submit answered {status}: {data}")
            if t0 < since:  # warm-up: not measured
                continue
            lat.append((time.perf_counter() - t0) * 1000)
            if data["phase"] == "placed":
                placed.append(1)
            if churn and data["phase"] in ("placed", "queued"):
                verb = "release" if data["phase"] == "placed" else "cancel"
                await conn.request("POST", f"/v1/workloads/{data['id']}/{verb}")
    finally:
        conn.close()


def _overcommit(url: str) -> int:
    with psycopg.connect(url) as conn:
        over = conn.execute("SELECT COALESCE(SUM(GREATEST(reserved - total, 0)), 0) FROM capacity"
                            ).fetchone()
        drift = conn.execute(
            "SELECT COALESCE(SUM(ABS(c.reserved - COALESCE(r.held, 0))), 0) FROM capacity c "
            "LEFT JOIN (SELECT site, gpu_type, SUM(count) AS held FROM reservations WHERE "
            "released_at IS NULL GROUP BY site, gpu_type) r ON r.site = c.site AND "
            "r.gpu_type = c.gpu_type").fetchone()
    return int((over or [0])[0]) + int((drift or [0])[0])


async def _level(port: int, token: str, clients: int, seconds: float, churn: bool,
                 pool: list[dict[str, Any]], warmup: float) -> dict[str, Any]:
    lat: list[float] = []
    placed: list[int] = []
    start = time.perf_counter() + warmup
    until = start + seconds
    bodies = [json.dumps(w).encode() for w in pool]
    await asyncio.gather(*(_client(port, token, bodies, start, until, churn, lat, placed,
                                   random.Random(i)) for i in range(clients)))
    elapsed = until - start
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return {"bench": "api", "clients": clients, "placements_per_s": round(len(placed) / elapsed, 1),
            "submissions_per_s": round(len(lat) / elapsed, 1), "p50_ms": round(q[49], 2),
            "p99_ms": round(q[98], 2), "submissions": len(lat)}


def _database() -> tuple[str, str]:
    name = f"placement_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return name, ADMIN.rsplit("/", 1)[0] + f"/{name}"


def _token(env: dict[str, str]) -> str:
    return subprocess.run([sys.executable, "-m", "placement.cli", "token", "create", "--role",
                           "admin"], env=env, check=True, capture_output=True, cwd=ROOT,
                          text=True).stdout.strip()


def _free_port() -> int:
    from placement.service.workers import listeners

    while True:
        port = 18000 + random.randrange(2000)
        if not listeners(port):
            return port


def _wait_ready(port: int, workers: int, proc: subprocess.Popen[bytes], timeout: float = 180
                ) -> None:
    """Every worker listening (so connections spread over all of them) and /readyz 200."""
    from placement.service.workers import listeners

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        if len(listeners(port)) >= workers:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    raise RuntimeError(f"server on port {port} not ready in {timeout:g} s")


class Server:
    """A server (the service or the floor) on its own fresh database; stopped and dropped on
    close."""

    def __init__(self, floor: bool, config: Path, workers: int, pool_file: Path) -> None:
        self.name, self.url = _database()
        self.port = _free_port()
        env = {**os.environ, "PLACEMENT_DATABASE_URL": self.url,
               "PLACEMENT_CONFIG_DIR": str(config), "BENCH_FLOOR_WORKLOADS": str(pool_file),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                           os.environ.get("PYTHONPATH")]))}
        self.proc: subprocess.Popen[bytes] | None = None
        try:
            self.token = _token(env)
            cmd = ([sys.executable, "-m", "bench.floor_app", "--port", str(self.port),
                    "--workers", str(workers)] if floor else
                   [sys.executable, "-m", "placement.cli", "serve", "--port", str(self.port),
                    "--config", str(config), "--workers", str(workers)])
            self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
            _wait_ready(self.port, workers, self.proc)
        except BaseException:
            self.close()
            raise

    def check_placed(self, pool: list[dict[str, Any]]) -> None:
        """One submission of each workload shape answers 201; at least one is placed."""
        async def go() -> list[str]:
            conn = Conn("127.0.0.1", self.port, self.token)
            try:
                phases = []
                for w in pool:
                    status, data = await conn.request("POST", "/v1/workloads",
                                                      json.dumps(w).encode())
                    if status != 201:
                        raise RuntimeError(f"submit answered {status}: {data}")
                    phases.append(data["phase"])
                return phases
            finally:
                conn.close()

        phases = uvloop.run(go())
        if "placed" not in phases:
            raise RuntimeError(f"no submission placed: {phases}")

    def close(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def _sites(n: int, args: argparse.Namespace, scale: int, clients: list[int]
           ) -> list[dict[str, Any]]:
    """Every level at `n` sites: the service, then the floor, alternating."""
    tmp = Path(tempfile.mkdtemp(prefix=f"placement-bench-{n}-"))
    pool = _bundle(tmp / "service", n, scale)
    floor_scale = args.capacity_scale
    floor_config = tmp / "service"
    if floor_scale != scale:
        floor_config = tmp / "floor"
        _bundle(floor_config, n, floor_scale)
    pool_file = tmp / "workloads.json"
    pool_file.write_text(json.dumps(pool))
    results = []
    service = Server(False, tmp / "service", args.workers, pool_file)
    try:
        floor = Server(True, floor_config, args.workers, pool_file)
        try:
            service.check_placed(pool)
            floor.check_placed(pool)
            for c in clients:
                result = uvloop.run(_level(service.port, service.token, c, args.seconds,
                                           args.churn, pool, args.warmup))
                result["overcommitted_gpus"] = _overcommit(service.url)
                base = uvloop.run(_level(floor.port, floor.token, c, args.seconds, False,
                                         pool, args.warmup))
                result = {"bench": "api", "sites": n, **{k: v for k, v in result.items()
                                                         if k != "bench"}}
                result.update({
                    "floor_submissions_per_s": base["submissions_per_s"],
                    "floor_p50_ms": base["p50_ms"], "floor_p99_ms": base["p99_ms"],
                    "floor_overcommitted_gpus": _overcommit(floor.url),
                    "ratio_to_floor": round(result["placements_per_s"] /
                                            base["submissions_per_s"], 3)
                    if base["submissions_per_s"] else None,
                    "p50_vs_floor": round(result["p50_ms"] / base["p50_ms"], 2)
                    if base["p50_ms"] else None,
                })
                if c == 32:
                    result["target"] = "ratio_to_floor >= 0.5 with 0 over-committed"
                    result["target_met"] = bool(
                        result["ratio_to_floor"] is not None
                        and result["ratio_to_floor"] >= 0.5
                        and result["overcommitted_gpus"] == 0)
                result.update({"capacity_scale": scale, "churn": args.churn,
                               "server_workers": args.workers, "cores": _cores()})
                print(json.dumps(result) if args.json else result, flush=True)
                results.append(result)
        finally:
            floor.close()
    finally:
        service.close()
    return results


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sites", default="10",
                        help="inventory sizes (10: the examples; others generated), e.g. "
                        "10,100,1000")
    parser.add_argument("--clients", default="8,32,64")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per level")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds per level before measuring (new connections, caches)")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--capacity-scale", type=int, default=100_000,
                        help="multiply every GPU count and quota (1 = the example as is)")
    parser.add_argument("--churn", action="store_true",
                        help="release placed and cancel queued workloads after each submit")
    args = parser.parse_args()
    scale = 1 if args.churn else args.capacity_scale
    clients = [int(x) for x in args.clients.split(",")]
    for n in (int(x) for x in args.sites.split(",")):
        _sites(n, args, scale, clients)


if __name__ == "__main__":
    main()
