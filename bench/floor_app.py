"""The floor for bench/api.py: POST /v1/workloads that stores what the service stores but
decides nothing.

At start each worker builds the runtime as the service does (`build_runtime`: schema, policy,
seeded inventory and capacity rows) and decides each workload listed in the JSON file named by
BENCH_FLOOR_WORKLOADS once, with the real engine (`engine_for(bundle)`, `Engine.record`).
Per request it checks the token (`principal_of`, cached as in the service), parses the body
into `Workload` (`read_workload`) and hands it to a batcher that, in place of deciding, takes
the cached decision of the workload with that name and stores the batch through the service's
own code: `submit._prepare` (`_rows_for`, `lifecycle.decision_rows`: workload, decision with its
fields and packed candidates, events, reservation) and `submit._store` (one transaction, the guarded
capacity update). The reply is written as the service writes it (`workload_json` with the best 3
candidates, `reply`).

Run `python -m bench.floor_app --port P --workers N`: N processes, each listening on the port
with SO_REUSEPORT, as `placement serve --workers N` does (placement.service.workers).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response

from api import errors
from api.deps import principal_of
from api.routers.workloads import RequestOnlyRoute, read_workload, reply, workload_json
from placement.control.lifecycle import DecisionData
from placement.control.runtime import Runtime
from placement.control.submit import Batcher, Pending, _prepare, _store
from placement.engine import Engine, Outcome
from placement.engine.offline import engine_for
from placement.model import Workload
from placement.policy.loader import load_bundle
from placement.service.settings import Settings
from placement.service.wiring import build_runtime
from placement.service.workers import _die_with_parent, _socket
from placement.tuning import tune_gc

log = logging.getLogger("bench.floor")
APP = "bench.floor_app:app"
Cached = tuple[DecisionData, Outcome]


class FloorBatcher(Batcher):
    """The service's batcher with the decision replaced by a cached one per workload name."""

    def __init__(self, rt: Runtime, engine: Engine, cached: dict[str, Cached]) -> None:
        super().__init__(rt, place=lambda _, batch: self._place(batch))
        self.engine = engine
        self.cached = cached
        self.lock = threading.Lock()

    def _decision(self, wl: Workload) -> Cached:
        hit = self.cached.get(wl.name)
        if hit is None:  # not in the start list: decided once, here, then cached
            with self.lock:
                out = self.engine.decide(wl)
                hit = self.cached[wl.name] = (self.engine.record(out), out)
        return hit

    def _place(self, batch: list[Pending]) -> None:
        prep = _prepare([(p, *self._decision(p.workload)) for p in batch])
        _store(self.rt, prep)
        for p, row, drow, _ in prep.stored:
            p.future.set_result((row, drow, True))

def decide_once(engine: Engine, workloads: list[dict[str, Any]]) -> dict[str, Cached]:
    """Each distinct workload (by name) decided once by the real engine."""
    cached: dict[str, Cached] = {}
    for doc in workloads:
        wl = Workload.model_validate(doc)
        if wl.name not in cached:
            out = engine.decide(wl)
            cached[wl.name] = (engine.record(out), out)
    return cached


async def submit(request: Request) -> Response:
    """POST /v1/workloads without a decision: token, body, cached decision, stored rows."""
    rt: Runtime = request.app.state.runtime
    headers = request.headers
    who = await principal_of(rt, request, headers.get("authorization"))
    body = read_workload(await request.body(), headers.get("content-type"))
    who.require_team(body.spec.team)
    batcher: FloorBatcher = request.app.state.batcher
    row, drow, created = await asyncio.wrap_future(batcher.enqueue(body, None))
    return reply(workload_json(row, drow, full=False), 201 if created else 200)


def create_app() -> FastAPI:
    settings = Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = build_runtime(settings)
        engine = engine_for(load_bundle(settings.config_dir))
        listed = os.environ.get("BENCH_FLOOR_WORKLOADS")
        docs = orjson.loads(Path(listed).read_bytes()) if listed else []
        batcher = FloorBatcher(rt, engine, decide_once(engine, docs)).start()
        app.state.runtime, app.state.batcher = rt, batcher
        tune_gc()
        yield
        batcher.stop()
        rt.db.dispose()

    app = FastAPI(title="placement-bench-floor", lifespan=lifespan)
    app.state.token_cache = {}
    errors.install(app)
    app.router.routes.insert(0, RequestOnlyRoute("/v1/workloads", submit, methods=["POST"],
                                                 status_code=201, name="submit"))

    @app.get("/readyz")
    def ready() -> dict[str, Any]:
        return {"status": "ok", "pid": os.getpid()}

    return app


app = create_app()


def _worker(host: str, port: int, parent: int) -> None:
    import uvicorn

    _die_with_parent(parent)
    sock = _socket(host, port, listen=True)
    uvicorn.Server(uvicorn.Config(APP, log_level="warning")).run(sockets=[sock])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(args.host, args.port, os.getpid()),
                         name="floor-worker") for _ in range(args.workers)]
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, stop)
    for p in procs:
        p.start()
    while not stopping.is_set() and all(p.is_alive() for p in procs):
        time.sleep(0.2)
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()


if __name__ == "__main__":
    main()
