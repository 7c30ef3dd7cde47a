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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
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
    config = Path(tempfile.mkdtemp(prefix="placement-bench-"))
    _scaled_bundle(config, scale)
    name = f"placement_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN.rsplit("/", 1)[0] + f"/{name}"
    env = {**os.environ, "PLACEMENT_DATABASE_URL": url}
    token = subprocess.run([sys.executable, "-m", "placement.cli", "token", "create", "--role",
                            "admin"], env=env, check=True, capture_output=True,
                           text=True).stdout.strip()
    port = 18000 + random.randrange(1000)
    server = subprocess.Popen([sys.executable, "-m", "placement.cli", "serve", "--port",
                               str(port), "--config", str(config), "--workers",
                               str(args.workers)], env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        pool = _workloads()
        for n in (int(x) for x in args.clients.split(",")):
            result = uvloop.run(_level(port, token, n, args.seconds, args.churn, pool,
                                       args.warmup))
            result["overcommitted_gpus"] = _overcommit(url)
            result["capacity_scale"] = scale
            result["churn"] = args.churn
            result["server_workers"] = args.workers
            result["cores"] = os.cpu_count()
            print(json.dumps(result) if args.json else result, flush=True)
    finally:
        server.terminate()
        server.wait(timeout=15)
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
