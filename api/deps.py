"""Dependencies: the runtime, the authenticated caller."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Header, Request

from placement.auth import Principal, authenticate, hash_token
from placement.runtime import Runtime

TOKEN_CACHE_SECONDS = 10.0  # a revoked token stops working within this time


def get_runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_principal(rt: RuntimeDep, request: Request,
                  authorization: Annotated[str | None, Header()] = None) -> Principal:
    cache: dict[str, tuple[Principal, float]] = request.app.state.token_cache
    key = hash_token(authorization or "")
    hit = cache.get(key)
    now = time.monotonic()
    if hit is not None and hit[1] > now:
        return hit[0]
    with rt.db.read() as session:
        who = authenticate(session, authorization)
    cache[key] = (who, now + TOKEN_CACHE_SECONDS)
    return who


PrincipalDep = Annotated[Principal, Depends(get_principal)]
