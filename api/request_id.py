"""Request ids: every HTTP response carries `X-Request-ID`, and every log record written while
the request is handled carries the same id (placement.service.logs puts it there).

A client's own id (a proxy's or a caller's, up to 128 characters of letters, digits and
`-_.:/+=`) is kept, so one id follows a request across services; otherwise a fresh one is made.
The middleware wraps the whole application, so an error response (413, a 500) has it too.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from placement.service.logs import REQUEST_ID

HEADER = b"x-request-id"
VALID = re.compile(rb"[A-Za-z0-9\-_.:/+=]{1,128}")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def request_id(scope: Scope) -> str:
    """The client's X-Request-ID when it is a plausible id, else a new one."""
    given = next((v for k, v in scope.get("headers", ()) if k == HEADER), None)
    if given is not None and VALID.fullmatch(given):
        return str(given.decode("ascii"))
    return uuid.uuid4().hex


def middleware(app: ASGIApp) -> ASGIApp:
    """`app` with a request id per HTTP request: in the log context and the response."""
    async def with_id(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        rid = request_id(scope)
        REQUEST_ID.set(rid)  # this request's task (and the threads it runs work in) only
        scope.setdefault("state", {})["request_id"] = rid

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != HEADER]
                message["headers"] = [*headers, (HEADER, rid.encode("ascii"))]
            await send(message)

        await app(scope, receive, tagged)

    return with_id


def install(app: Any) -> None:
    """Wrap the application's middleware stack (outermost), as it is built at start."""
    inner = app.build_middleware_stack

    def build() -> Any:
        return middleware(inner())

    app.build_middleware_stack = build
