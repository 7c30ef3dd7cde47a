"""The FastAPI application: wiring only (settings, runtime, routers, handlers, metrics)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from api import errors, request_id, ui
from api import schemas as schemas_doc
from api.routers import decisions, health, inventory, policies, tokens, workloads
from placement.control.runtime import Runtime
from placement.metrics import Metrics
from placement.model import ClientLocation, Dataset, Site, Workload
from placement.service.settings import Settings
from placement.service.wiring import build_runtime
from placement.service.wiring import start as start_loops
from placement.tuning import tune_gc

log = logging.getLogger("placement.api")
# Request bodies documented by name: POST /v1/workloads parses its own, the inventory routes
# hand theirs to the store.
READ_BY_ROUTES = (Workload, Site, Dataset, ClientLocation)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message],
                                                                       Awaitable[None]]],
                   Awaitable[None]]


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


def _too_large(limit: int, path: str) -> bytes:
    fix = "send a smaller one (the limit is PLACEMENT_MAX_BODY_BYTES)"
    return errors.problem_body(413, f"the request body is over the limit of {limit} bytes; "
                               + fix, [errors.field_error(["body"], "too large", "too_large",
                                                          fix)], path)


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
            await _reject(send, limit, scope["path"])
            return
        seen = 0
        started = rejected = False

        async def counted() -> Message:
            nonlocal seen, rejected
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit and not rejected:
                    # Answer now and tell the app the client left: whoever reads the body
                    # (a route, FastAPI) stops there, and what it sends after is dropped.
                    rejected = True
                    if not started:
                        await _reject(send, limit, scope["path"])
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if rejected:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await app(scope, counted, tracked)
        except Exception:
            if not rejected:
                raise
    return middleware


async def _reject(send: Callable[[Message], Awaitable[None]], limit: int, path: str) -> None:
    body = _too_large(limit, path)
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", errors.PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"  # Swagger UI's dist files


def _offline_docs(app: FastAPI) -> None:
    """/docs: Swagger UI from the assets the fastapi-offline wheel ships, so it loads with no
    network (FastAPI's own page fetches them from a CDN). No /redoc: ReDoc fetches its logo
    from its CDN."""
    app.mount("/docs/assets", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json", title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}/docs/assets/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/docs/assets/swagger-ui.css",
            swagger_favicon_url=f"{root}/docs/assets/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True})


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
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        loops = start_loops(rt, settings)
        app.state.batcher = loops.batcher
        tune_gc()
        yield
        loops.stop()
        rt.db.dispose()

    app = FastAPI(title="hybrid-placement", version="0.1.0", lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  description="Decide, explain and record where AI workloads run: on-prem GPU "
                  "clusters or public cloud regions, scored on latency, data gravity and cost. "
                  "Every error is an RFC 9457 problem (`application/problem+json`); every "
                  "timestamp is RFC 3339 in UTC (`2026-12-02T16:07:51.085449Z`).")
    app.state.runtime = runtime
    app.state.token_cache = {}
    errors.install(app)
    workloads.add_submit(app)
    for router in (health.router, inventory.sites, inventory.datasets,
                   inventory.client_locations, workloads.router, decisions.router,
                   policies.router, tokens.router, ui.router):
        app.include_router(router)
    app.mount("/ui/static", ui.static, name="ui-static")
    _offline_docs(app)
    app.state.reports_dir = settings.reports_dir
    app.state.secure_cookie = settings.ui_secure_cookie
    app.state.bursts = settings.bursts  # the dashboard shows bursts only when they are on

    document = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's document plus the schemas of bodies that routes read themselves, with
        every error answered as a problem."""
        if app.openapi_schema is None:
            schema = document()
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in READ_BY_ROUTES:
                doc = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, sub in doc.pop("$defs", {}).items():
                    schemas.setdefault(name, sub)
                schemas[model.__name__] = doc
            errors.document_problems(schema)
            schemas_doc.document_gpu_types(schema)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)

    # Outermost, around Starlette's error middleware, so unhandled errors count as 500 too.
    inner = app.build_middleware_stack

    def build() -> Any:
        return _http_metrics(_body_limit(inner(), settings.max_body_bytes),
                             lambda: app.state.runtime.metrics)

    app.build_middleware_stack = build  # type: ignore[method-assign]
    request_id.install(app)  # outermost: X-Request-ID on every response, in every log record
    return app
