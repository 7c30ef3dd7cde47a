"""The submit fast path: POST /v1/workloads answered without FastAPI's per-request machinery.

Submitting is the call that pipelines make most. FastAPI's routing, dependency solving and
body handling cost about a fifth of a placement's CPU on a 2-core machine, more than the
engine's decision. This ASGI layer answers the common case itself, with exactly the route's
result:
- the bearer token is in the token cache (the route's own dependency filled it) and its
  principal may act for the workload's team;
- the body is JSON that validates as a Workload;
- an Idempotency-Key, when present, is 1 to 200 characters.

The submission then goes to the same batcher, and the reply is the route's reply. Everything
else goes to the FastAPI route, with the body replayed: no or unknown token, another content
type, an invalid body, the wrong team, or a submission that fails. So every error response is
the route's own. A submission that fails with a domain error stored nothing, so deciding it
again there is safe; one whose COMMIT failed (StoreUnavailableError: it may have been stored)
is answered here with its 503, never decided again; any other failure is a 500.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from api.routers import workloads
from api.routers.workloads import workload_json
from placement import jsoncodec
from placement.control.auth import Principal, hash_token
from placement.errors import PlacementError, StoreUnavailableError
from placement.model import Workload

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PATH = "/v1/workloads"
MAX_BODY = 1 << 20  # larger bodies take the route


def fast_submit(app: ASGIApp, api: FastAPI) -> ASGIApp:
    """`app` with POST /v1/workloads answered here when it can be (see the module doc)."""
    route = next((r for r in workloads.router.routes if getattr(r, "path", None) == PATH
                  and "POST" in getattr(r, "methods", ())), None)

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH
                or route is None):
            await app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: no one to answer
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        scope["route"] = route  # what the metrics middleware labels the request with
        answer = await _answer(api, scope, body)
        if answer is None:
            await app(scope, _replay(body, receive), send)
            return
        status, content = answer
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-length", str(len(content)).encode()),
            (b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": content})

    return handle


async def _answer(api: FastAPI, scope: Scope, body: bytes) -> tuple[int, bytes] | None:
    """(status, JSON) as the route would answer, or None: let the route answer."""
    headers: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:  # the first of repeated headers, as the route reads
        headers.setdefault(name, value)
    content_type = headers.get(b"content-type", b"")
    auth = headers.get(b"authorization")
    key_raw = headers.get(b"idempotency-key")
    batcher = getattr(api.state, "batcher", None)
    if (batcher is None or auth is None or len(body) > MAX_BODY
            or content_type.split(b";")[0].strip() != b"application/json"):
        return None
    key = None if key_raw is None else key_raw.decode("latin-1")
    if key is not None and not 1 <= len(key) <= 200:
        return None
    who = _cached(api, auth.decode("latin-1"))
    if who is None:
        return None
    try:
        workload = Workload.model_validate(orjson.loads(body))
        who.require_team(workload.spec.team)
    except (orjson.JSONDecodeError, ValidationError, PlacementError):
        return None
    try:
        row, drow, created = await asyncio.wrap_future(batcher.enqueue(workload, key))
    except StoreUnavailableError as exc:  # it may be stored: deciding it again could store
        return 503, orjson.dumps({"detail": str(exc), "errors": []})  # it twice
    except (PlacementError, OperationalError):  # nothing stored: the route decides again and
        return None  # answers with its own error (a conflict, an unknown reference, 503)
    return (201 if created else 200), jsoncodec.dumps(workload_json(row, drow))


def _cached(api: FastAPI, authorization: str) -> Principal | None:
    cache: dict[str, tuple[Principal, float]] = api.state.token_cache
    hit = cache.get(hash_token(authorization))
    return hit[0] if hit is not None and hit[1] > time.monotonic() else None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the body already read, then what the client sends next."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
