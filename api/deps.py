"""Dependencies: the runtime, the authenticated caller."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from placement.control.auth import Principal, authenticate, hash_token
from placement.control.runtime import Runtime

TOKEN_CACHE_SECONDS = 10.0  # a revoked token stops working within this time
# Documents the scheme (so /docs has Authorize); the token itself is checked below.
BEARER = HTTPBearer(scheme_name="bearer", auto_error=False,
                    description="An API token (`placement token create`), sent as "
                    "`Authorization: Bearer <token>`.")


async def get_runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_principal(rt: RuntimeDep, request: Request,
                        _: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
                        ) -> Principal:
    """The caller of a route; the header is read as it was sent (`authenticate` judges it)."""
    return await principal_of(rt, request, request.headers.get("authorization"))


async def principal_of(rt: Runtime, request: Request, authorization: str | None) -> Principal:
    """Async so that the common (cached) case costs no thread hop; a miss reads the store in
    the thread pool."""
    cache: dict[str, tuple[Principal, float]] = request.app.state.token_cache
    key = hash_token(authorization or "")
    hit = cache.get(key)
    now = time.monotonic()
    if hit is not None and hit[1] > now:
        return hit[0]

    def lookup() -> Principal:
        with rt.db.read() as session:
            return authenticate(session, authorization)

    who = await run_in_threadpool(lookup)
    cache[key] = (who, now + TOKEN_CACHE_SECONDS)
    return who


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def cached_principal(rt: Runtime, cache: dict[str, tuple[Principal, float]],
                     authorization: str) -> Principal:
    """The same lookup for synchronous callers (the dashboard): cache entries expire after
    TOKEN_CACHE_SECONDS, so a revoked token stops working there too."""
    key = hash_token(authorization)
    hit = cache.get(key)
    now = time.monotonic()
    if hit is not None and hit[1] > now:
        return hit[0]
    cache.pop(key, None)
    with rt.db.read() as session:
        who = authenticate(session, authorization)
    cache[key] = (who, now + TOKEN_CACHE_SECONDS)
    return who
