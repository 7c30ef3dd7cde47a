"""Logging, configured once at start by every entry point (serve, its workers, the operator and
the command line): a level, a format (`text` or `json`, one record a line on stderr), UTC
timestamps, logger names, the request id of the HTTP request a record was logged under, and a
switch for uvicorn's access log.

The request id lives in a context variable: the API's middleware sets it for each request, and
every record logged while that request is handled (in the event loop or a worker thread, which
copies the context) carries it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar
from typing import Any, Literal, TextIO

LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["text", "json"]
LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warning", "error", "critical")
FORMATS: tuple[LogFormat, ...] = ("text", "json")

REQUEST_ID: ContextVar[str | None] = ContextVar("placement_request_id", default=None)
UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
ACCESS = "uvicorn.access"
QUIET = ("asyncio", "alembic.runtime.plugins")
# LogRecord's own attributes; anything else on a record came from `extra=` and is kept in JSON.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message", "asctime", "request_id", "taskName", "color_message"}


def timestamp(record: logging.LogRecord) -> str:
    """RFC 3339 UTC with milliseconds: 2026-12-03T12:00:00.123Z."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{whole}.{int(record.msecs):03d}Z"


class RequestIdFilter(logging.Filter):
    """Puts the current request id, when there is one, on each record as `request_id`."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = REQUEST_ID.get()
        if rid is not None and getattr(record, "request_id", None) is None:
            record.request_id = rid
        return True


class TextFormatter(logging.Formatter):
    """`2026-12-03T12:00:00.123Z INFO placement.api [req 1f3a...] message`; a Kubernetes
    object's records (the operator's) name it: `... kopf.objects [ml/train-1] message`."""

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        ref = getattr(record, "k8s_ref", None)  # kopf's object loggers: [namespace/name]
        obj = ("/".join(str(p) for p in (ref.get("namespace"), ref.get("name")) if p)
               if isinstance(ref, dict) else "")
        line = (f"{timestamp(record)} {record.levelname} {record.name}"
                f"{f' [req {rid}]' if rid else ''}{f' [{obj}]' if obj else ''} "
                f"{record.getMessage()}")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request_id (when under a request),
    the fields given with `extra=`, the access log's method, path and status, and the
    exception's traceback as one string."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": timestamp(record), "level": record.levelname.lower(),
                               "logger": record.name, "message": record.getMessage()}
        rid = getattr(record, "request_id", None)
        if rid:
            out["request_id"] = rid
        if record.name == ACCESS and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, http, status = record.args
            out.update(client=client, method=method, path=path, http_version=http,
                       status=status)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out.setdefault(key, value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time of each record (a test runner swaps it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass


def configure(level: str = "info", fmt: str = "text", *, access_log: bool = False,
              json_formatter: logging.Formatter | None = None) -> None:
    """Send every record at `level` and above to stderr in `fmt`; uvicorn's loggers go the same
    way (their own handlers are removed), its access log only when `access_log`. Calling it
    again replaces what an earlier call installed and nothing else (a test's capture handler
    stays). `json_formatter` replaces the JSON one (the operator passes kopf's)."""
    name = level.lower()
    if name not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    if fmt not in FORMATS:
        raise ValueError(f"log format must be text or json, not {fmt!r}")
    handler = _Stderr()
    handler.setFormatter((json_formatter or JsonFormatter()) if fmt == "json"
                         else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _Stderr)]
    root.addHandler(handler)
    root.setLevel(name.upper())
    for logger_name in UVICORN:
        logger = logging.getLogger(logger_name)
        logger.handlers[:] = []
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
        logger.disabled = False
    access = logging.getLogger(ACCESS)
    access.disabled = not access_log
    # Chatter only at debug: asyncio's (as kopf does it) and alembic's plugin set-up lines.
    for chatty in QUIET:
        logging.getLogger(chatty).setLevel(logging.NOTSET if name == "debug"
                                           else logging.WARNING)
