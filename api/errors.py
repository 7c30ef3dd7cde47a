"""Every error as RFC 9457 problem details (application/problem+json); domain errors mapped to
HTTP here, and HTTPException never leaves api/."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from api.schemas import Problem
from placement.errors import (
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    PlacementError,
    StoreUnavailableError,
    UnauthorizedError,
    UnknownReferenceError,
    UnprocessableError,
)

log = logging.getLogger("placement.api")
PROBLEM_JSON = "application/problem+json"
STATUS: list[tuple[type[Exception], int]] = [
    (NotFoundError, 404), (ConflictError, 409), (ForbiddenError, 403),
    (UnauthorizedError, 401), (InvalidRequestError, 422), (UnknownReferenceError, 422),
    (UnprocessableError, 422), (StoreUnavailableError, 503),
    (PlacementError, 400),
]
PARAMETERS = ("query", "path", "header", "cookie")
SEND_JSON = "send the body as JSON with the header Content-Type: application/json"
# How to fix a field, by pydantic's error type; {field} and the error's ctx fill them in.
FIXES: dict[str, str] = {
    "missing": "add {field}",
    "extra_forbidden": "remove {field}: it is not a field here (check its spelling)",
    "string_pattern_mismatch": "match the pattern {pattern}",
    "string_too_short": "use at least {min_length} character(s)",
    "string_too_long": "use at most {max_length} characters",
    "too_short": "give at least {min_length} item(s)",
    "too_long": "give at most {max_length} items",
    "greater_than": "send a number greater than {gt}",
    "greater_than_equal": "send a number of at least {ge}",
    "less_than": "send a number less than {lt}",
    "less_than_equal": "send a number of at most {le}",
    "literal_error": "use one of {expected}",
    "enum": "use one of {expected}",
    "int_type": "send an integer (not a string, boolean or fraction)",
    "int_parsing": "send an integer",
    "int_from_float": "send a whole number without a fraction",
    "float_type": "send a number (not a string or boolean)",
    "float_parsing": "send a number",
    "finite_number": "send a finite number (not NaN or Infinity)",
    "bool_type": "send true or false",
    "bool_parsing": "send true or false",
    "string_type": "send a string",
    "dict_type": "send a JSON object",
    "model_type": "send a JSON object",
    "model_attributes_type": "send a JSON object",
    "list_type": "send a JSON array",
    "uuid_parsing": "send a UUID such as 123e4567-e89b-12d3-a456-426614174000",
    "uuid_type": "send a UUID such as 123e4567-e89b-12d3-a456-426614174000",
    "json_invalid": "send valid JSON",
    "content_type": SEND_JSON,
}


def problem(status: int, detail: str, errors: Sequence[Mapping[str, Any]] = (),
            headers: Mapping[str, str] | None = None, instance: str | None = None) -> Response:
    """An RFC 9457 problem: type, title, status, detail, instance, and the field errors."""
    return Response(problem_body(status, detail, errors, instance), status_code=status,
                    headers=dict(headers or {}), media_type=PROBLEM_JSON)


def problem_body(status: int, detail: str, errors: Sequence[Mapping[str, Any]] = (),
                 instance: str | None = None) -> bytes:
    """The JSON of a problem (also for middleware that answers before any route)."""
    return orjson.dumps({"type": "about:blank", "title": HTTPStatus(status).phrase,
                         "status": status, "detail": detail, "instance": instance,
                         "errors": list(errors)})


def field_error(loc: Sequence[str | int], detail: str, kind: str, fix: str) -> dict[str, Any]:
    """One field error: where (`location`, `field`, a JSON `pointer` into a body, `loc`),
    what is wrong (`detail`, `type`) and how to fix it (`fix`)."""
    where = str(loc[0]) if loc else "body"
    path = [str(p) for p in loc[1:]]
    pointer = "#" + "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in path)
    return {"location": where, "field": ".".join(path), "loc": list(loc),
            "pointer": pointer if where == "body" else None,
            "detail": detail, "type": kind, "fix": fix}


def json_loc(doc: Any, loc: Sequence[str | int]) -> list[str | int]:
    """`loc` as a path into the JSON that was sent: pydantic puts the tag of a discriminated
    union (`onprem` in `spec.onprem.gpus`) in its paths, which the document does not have."""
    out: list[str | int] = []
    node = doc
    for i, key in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, dict) and key not in node and not last:
            continue  # a union's tag: the path goes on from the same object
        out.append(key)
        if isinstance(node, dict):
            node = node.get(key)
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            node = node[key]
        else:
            node = None
    return out


def _fix(err: Mapping[str, Any], field: str) -> str:
    template = FIXES.get(str(err.get("type", "")))
    if template is not None:
        try:
            return template.format(field=field, **(err.get("ctx") or {}))
        except (KeyError, IndexError, ValueError):
            pass
    return f"correct {field}: {err.get('msg', '')}"


def validation_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic's (and FastAPI's) errors as field errors, each with how to fix it."""
    out = []
    for e in errors:
        loc = [p if isinstance(p, int) else str(p) for p in e.get("loc", ())]
        field = ".".join(str(p) for p in loc[1:]) or (str(loc[0]) if loc else "the body")
        out.append(field_error(loc, str(e.get("msg", "")), str(e.get("type", "")),
                               _fix(e, f"`{field}`")))
    return out


class BodyError(Exception):
    """A body the API cannot read: not sent as JSON (415) or not valid JSON (422)."""

    def __init__(self, status: int, detail: str, error: dict[str, Any],
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.error, self.headers = status, detail, error, headers


def not_json(sent: str | None) -> BodyError:
    """415: the body came without a JSON Content-Type."""
    said = f"this request sent {sent!r}" if sent else "this request sent none"
    return BodyError(415, f"{SEND_JSON} ({said})",
                     field_error(["header", "content-type"], f"not JSON: {said}",
                                 "content_type", SEND_JSON),
                     {"Accept-Post": "application/json"})


def bad_json(doc: str, pos: int, what: str) -> BodyError:
    """422: the body is not valid JSON; says what is wrong and where."""
    err = json.JSONDecodeError(what, doc, pos)
    detail = f"invalid JSON at line {err.lineno}, column {err.colno}: {what}"
    return BodyError(422, detail, field_error(["body"], detail, "json_invalid",
                                              "send valid JSON"))


def _unread_body(exc: RequestValidationError) -> bool:
    """FastAPI hands a body it did not read as JSON (no or another Content-Type) on as bytes."""
    return any(tuple(e.get("loc", ())) == ("body",) and isinstance(e.get("input"), bytes)
               for e in exc.errors())


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(app: FastAPI, scope: Mapping[str, Any]) -> list[str]:
    """Every method some route serves at this path (several routes may share one)."""
    return [m for m in METHODS
            if any(route.matches({**scope, "method": m})[0] == Match.FULL
                   for route in app.router.routes)]


def install(app: FastAPI) -> None:
    """Register the handlers."""

    @app.exception_handler(PlacementError)
    async def _domain(request: Request, exc: PlacementError) -> Response:
        status = next(code for cls, code in STATUS if isinstance(exc, cls))
        errors: list[dict[str, Any]] = []
        if isinstance(exc, InvalidRequestError):
            errors = [field_error(p.loc if p.loc and p.loc[0] in PARAMETERS
                                  else ["body", *p.loc], p.message, "invalid", p.fix)
                      for p in exc.problems]
        headers = ({"WWW-Authenticate": "Bearer"} if status == 401
                   else {"Retry-After": "5"} if status == 503 else None)
        return problem(status, str(exc), errors, headers, request.url.path)

    @app.exception_handler(BodyError)
    async def _body(request: Request, exc: BodyError) -> Response:
        return problem(exc.status, exc.detail, [exc.error], exc.headers, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        if _unread_body(exc):
            return await _body(request, not_json(request.headers.get("content-type")))
        raw = list(exc.errors())
        syntax = next((e for e in raw if e.get("type") == "json_invalid"), None)
        if syntax is not None and isinstance(exc.body, str):
            loc = syntax.get("loc", ("body", 0))
            pos = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else 0
            what = str((syntax.get("ctx") or {}).get("error", "")) or "unreadable"
            return await _body(request, bad_json(exc.body, pos, what))
        errors = validation_errors(raw)
        fields = ", ".join(dict.fromkeys(f"{e['location']} {e['field']}".strip()
                                         for e in errors))
        return problem(422, f"invalid request: check {fields}", errors, None,
                       request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        detail = str(exc.detail)
        if exc.status_code == 405:
            allow = allowed_methods(app, request.scope)
            headers["Allow"] = ", ".join(allow)
            detail = f"{request.method} is not allowed here; use {', '.join(allow)}"
        elif exc.status_code == 400 and "parsing the body" in detail:
            # FastAPI's answer to a JSON body that is not UTF-8 text
            return problem(422, "invalid JSON: the body is not UTF-8 text",
                           [field_error(["body"], "not UTF-8 text", "json_invalid",
                                        "send valid JSON encoded as UTF-8")], headers,
                           request.url.path)
        elif exc.status_code == 404 and detail == "Not Found":
            detail = (f"no route {request.url.path}; the operations are listed at /docs "
                      "and /openapi.json")
        return problem(exc.status_code, detail, (), headers, request.url.path)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "an internal error; it is logged, and retrying will not help "
                       "until it is fixed", instance=request.url.path)

    @app.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: OperationalError) -> Response:
        log.error("database error: %s", exc)
        return problem(503, "the database is unavailable; retry shortly",
                       headers={"Retry-After": "5"}, instance=request.url.path)


DESCRIPTIONS: dict[int, str] = {
    401: "No valid bearer token: send `Authorization: Bearer <token>` (`WWW-Authenticate: "
         "Bearer`).",
    403: "The token may not do this: an admin token is needed, or the object belongs to "
         "another team.",
    404: "No object with this id or name.",
    409: "The request clashes with the current state (the name exists, the phase does not "
         "allow it, GPUs are reserved); `detail` says what to do instead.",
    413: "The body is over the limit (PLACEMENT_MAX_BODY_BYTES).",
    415: "The body was not sent as JSON: send `Content-Type: application/json`.",
    422: "A field, parameter or the JSON itself is invalid, or a name refers to an object that "
         "does not exist; `errors` names each field and how to fix it.",
    503: "The database is unavailable; retry after `Retry-After` seconds.",
}
AUTH = (401, 503)  # every route that reads a token: the lookup needs the database
WRITE = (*AUTH, 403, 413, 415, 422)  # every route that reads a JSON body


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error statuses a route can answer, each documented as a problem."""
    return {code: {"model": Problem, "description": DESCRIPTIONS[code]}
            for code in sorted(set(codes))}


HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": "`Bearer`.", "schema": {"type": "string"}}},
    415: {"Accept-Post": {"description": "`application/json`.", "schema": {"type": "string"}}},
    503: {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "string"}}},
}
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
OWN_ERROR_BODY = {"health-ready"}  # answers 503 with its own Readiness body


def document_problems(schema: dict[str, Any]) -> None:
    """Every documented error as `application/problem+json` (FastAPI writes its 422 with its
    own model); a body given by name keeps only its `$ref`."""
    for item in schema.get("paths", {}).values():
        for op in item.values():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            for code, res in op["responses"].items():
                if int(code) < 400 or op.get("operationId") in OWN_ERROR_BODY:
                    continue
                res["content"] = {PROBLEM_JSON: {"schema": PROBLEM_REF}}
                res["description"] = DESCRIPTIONS.get(int(code), res.get("description", ""))
                if int(code) in HEADERS:
                    res["headers"] = HEADERS[int(code)]
            for media in op.get("requestBody", {}).get("content", {}).values():
                if "$ref" in media.get("schema", {}):
                    media["schema"] = {"$ref": media["schema"]["$ref"]}
    schemas = schema.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
