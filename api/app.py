"""The FastAPI application: wiring only (settings, runtime, routers, handlers, metrics)."""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import orjson
from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from sqlalchemy.exc import IntegrityError

from api import errors, ui
from api.fastpath import fast_submit
from api.routers import decisions, health, inventory, policies, tokens, workloads
from placement.auth import ensure_token
from placement.batching import Batcher
from placement.errors import ConfigError, PlacementError
from placement.gitops import PolicyWatcher, bundle_version
from placement.lifecycle import Requeuer, requeue
from placement.loader import load_bundle
from placement.metrics import Metrics
from placement.runtime import ReloadStatus, Runtime, activate_policy, active_policy
from placement.settings import Settings
from placement.signals import PrometheusClient, SignalCache
from placement.store import inventory as inv
from placement.store.db import open_database
from placement.store.migrate import ensure_schema
from placement.store.tables import utcnow

if TYPE_CHECKING:
    from placement.periodic import Periodic

log = logging.getLogger("placement.api")
GC_YOUNG = 50_000  # allocations between young collections (CPython's default: 700)
THREADS = int(os.environ.get("PLACEMENT_THREADS", "4"))
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message],
                                                                       Awaitable[None]]],
                   Awaitable[None]]


class StartupError(PlacementError):
    """The service cannot start; the message says why and what to do."""


def build_runtime(settings: Settings, metrics: Metrics | None = None) -> Runtime:
    """Open and migrate the database, load the GitOps policy (and seed inventory)."""
    db = open_database(settings.database_url)
    ensure_schema(db, settings.migrate)
    metrics = metrics or Metrics()
    directory = settings.config_dir
    try:
        bundle = load_bundle(directory)
    except ConfigError as exc:
        with db.read() as s:
            stored = active_policy(s)
        if stored is None:
            raise StartupError(f"no valid policy to start with: {exc}") from exc
        log.error("policy bundle in %s is invalid; keeping stored version %s:\n%s",
                  directory, stored[1], exc)
        rt = Runtime(db, stored[0], stored[1], metrics, config_dir=directory)
        now = utcnow()
        rt.note_reload(ReloadStatus(False, now, stored[1], str(exc), now))
        return rt
    version = bundle_version(directory, bundle)
    for attempt in (1, 2):
        try:
            with db.write() as s:
                changed = activate_policy(s, bundle, str(directory), version)
                if settings.seed_inventory:
                    inv.seed(s, bundle.inventory)
                if settings.admin_token:
                    ensure_token(s, token=settings.admin_token, role="admin")
            break
        except IntegrityError:  # another replica starting now stored the same version first
            if attempt == 2:
                raise
    rt = Runtime(db, bundle.policy, version, metrics, config_dir=directory)
    rt.note_reload(ReloadStatus(True, utcnow(), version))
    if changed:
        requeue(rt)
    return rt


def _tune_gc() -> None:
    """Every decision allocates thousands of short-lived objects (its explanation): with the
    default thresholds, full collections that walk every long-lived object (modules, the
    compiled inventory, pools) run often enough to dominate the p99. Objects alive after start
    are frozen out of collection, and young collections run less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG, 20, 50)


def _http_metrics(app: ASGIApp, metrics_of: Callable[[], Metrics]) -> ASGIApp:
    async def middleware(scope: Scope, receive: Callable[[], Awaitable[Message]],
                         send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, capture)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            metrics_of().http_seconds.labels(path, scope["method"], str(status)).observe(
                time.perf_counter() - start)

    return middleware


def _too_large(limit: int) -> bytes:
    return orjson.dumps({"detail": f"the request body is over the limit of {limit} bytes; "
                         "send a smaller one (the limit is PLACEMENT_MAX_BODY_BYTES)",
                         "errors": [{"loc": ["body"], "msg": "too large", "type": "too_large"}]})


def _body_limit(app: ASGIApp, limit: int) -> ASGIApp:
    """413 for a body over `limit` bytes on every route, before anything parses it: at once
    from Content-Length, else as soon as the chunks read pass it."""
    async def middleware(scope: Scope, receive: Callable[[], Awaitable[Message]],
                         send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _reject(send, limit)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLarge
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await app(scope, counted, tracked)
        except _BodyTooLarge:
            if not started:
                await _reject(send, limit)

    return middleware


class _BodyTooLarge(Exception):
    pass


async def _reject(send: Callable[[Message], Awaitable[None]], limit: int) -> None:
    body = _too_large(limit)
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def start_serving(rt: Runtime, settings: Settings) -> Periodic | None:
    """With a kubeconfig: the Triton actuator's passes and the feed of measured service
    times (started here, stopped with the loop)."""
    if settings.kubeconfig is None:
        return None
    from placement.kube import Clusters
    from placement.periodic import Periodic
    from placement.triton.actuator import ServingActuator, ServingOptions, log
    from placement.triton.feed import TritonFeed

    options = ServingOptions(ready_timeout_s=settings.triton_ready_timeout_s,
                             model_timeout_s=settings.triton_model_timeout_s)
    if rt.triton is None:
        rt.triton = TritonFeed(rt.db, settings.triton_metrics_interval_s,
                               max_age_s=4 * settings.triton_metrics_interval_s).start()
    clusters = Clusters(settings.kubeconfig)
    actuator = ServingActuator(rt, clusters, options)
    return Periodic("placement-serving", settings.serving_interval_s, actuator.reconcile,
                    log).start()


def start_bursts(rt: Runtime, settings: Settings) -> Periodic | None:
    """With bursts on: provision, track and destroy burst capacity through Pulumi."""
    if not settings.bursts:
        return None
    from infra.automation import PulumiProvisioner
    from placement.bursts import BurstActuator, log
    from placement.periodic import Periodic

    why = PulumiProvisioner.available()
    if why is not None:
        log.error("bursts are on but cannot be provisioned: %s", why)
    actuator = BurstActuator(rt, PulumiProvisioner(settings.pulumi_backend))
    return Periodic("placement-bursts", settings.bursts_interval_s, actuator.reconcile,
                    log).start()


def start_jobs(rt: Runtime, settings: Settings) -> Periodic | None:
    """With a kubeconfig: run placed jobs on their clusters and track them to the end."""
    if settings.kubeconfig is None:
        return None
    from placement.jobs.actuator import JobActuator, JobOptions, log
    from placement.kube import Clusters
    from placement.periodic import Periodic

    actuator = JobActuator(rt, Clusters(settings.kubeconfig),
                           JobOptions(poll_s=settings.jobs_interval_s))
    return Periodic("placement-jobs", settings.jobs_interval_s, actuator.reconcile,
                    log).start()


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """The application; pass a runtime (tests) or settings (serve)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if getattr(app.state, "runtime", None) is None:
            app.state.runtime = build_runtime(settings)
        rt: Runtime = app.state.runtime
        # Fewer threads than anyio's default 40: with the GIL, many runnable threads stretch
        # every transaction (and the row locks it holds) without adding throughput.
        anyio.to_thread.current_default_thread_limiter().total_tokens = THREADS
        requeuer = Requeuer(rt).start()
        rt.on_release = requeuer.wake.set
        app.state.batcher = Batcher(rt).start()
        watcher = (PolicyWatcher(rt, rt.config_dir, settings.reload_seconds).start()
                   if rt.config_dir is not None and settings.reload_seconds > 0 else None)
        with rt.db.read() as session:  # compile the engine now, not on the first request
            rt.engine(session)
        if settings.prometheus_url and rt.signals is None:
            rt.signals = SignalCache(
                PrometheusClient(settings.prometheus_url, settings.signals_timeout_s),
                rt.current_inventory, settings.signals_interval_s, settings.signals_max_age_s,
                on_error=lambda site, signal: rt.metrics.signal_errors.labels(site, signal).inc(),
            ).start()
        serving = start_serving(rt, settings)
        jobs = start_jobs(rt, settings)
        bursts = start_bursts(rt, settings)
        _tune_gc()
        yield
        for loop in (serving, jobs, bursts):
            if loop is not None:
                loop.stop(timeout=30)
        if rt.triton is not None:
            rt.triton.stop()
        app.state.batcher.stop()
        if rt.signals is not None:
            rt.signals.stop()
        if watcher is not None:
            watcher.stop()
        requeuer.stop()
        rt.on_release = None
        rt.db.dispose()

    app = FastAPI(title="hybrid-placement", version="0.1.0", lifespan=lifespan,
                  description="Decide, explain and record where AI workloads run: on-prem GPU "
                  "clusters or public cloud regions, scored on latency, data gravity and cost.")
    app.state.runtime = runtime
    app.state.token_cache = {}
    errors.install(app)
    for router in (health.router, inventory.sites, inventory.datasets,
                   inventory.client_locations, workloads.router, decisions.router,
                   policies.router, tokens.router, ui.router):
        app.include_router(router)
    app.mount("/ui/static", ui.static, name="ui-static")
    app.state.reports_dir = settings.reports_dir
    app.state.secure_cookie = settings.ui_secure_cookie

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)

    # Outermost, around Starlette's error middleware, so unhandled errors count as 500 too.
    inner = app.build_middleware_stack

    def build() -> Any:
        return _http_metrics(_body_limit(fast_submit(inner(), app), settings.max_body_bytes),
                             lambda: app.state.runtime.metrics)

    app.build_middleware_stack = build  # type: ignore[method-assign]
    return app
