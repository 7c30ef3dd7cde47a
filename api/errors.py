"""Domain errors mapped to HTTP; HTTPException never leaves api/."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

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
STATUS: list[tuple[type[Exception], int]] = [
    (NotFoundError, 404), (ConflictError, 409), (ForbiddenError, 403),
    (UnauthorizedError, 401), (InvalidRequestError, 422), (UnknownReferenceError, 422),
    (UnprocessableError, 422), (StoreUnavailableError, 503),
    (PlacementError, 400),
]


def _problem(status: int, detail: str, errors: list[dict[str, object]] | None = None,
             headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "errors": errors or []}, status_code=status,
                        headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers."""

    @app.exception_handler(PlacementError)
    async def _domain(_: Request, exc: PlacementError) -> JSONResponse:
        status = next(code for cls, code in STATUS if isinstance(exc, cls))
        errors: list[dict[str, object]] = []
        if isinstance(exc, InvalidRequestError):
            errors = [{"loc": ["body", *p.loc], "msg": p.message, "fix": p.fix}
                      for p in exc.problems]
        headers = ({"WWW-Authenticate": "Bearer"} if status == 401
                   else {"Retry-After": "5"} if status == 503 else None)
        return _problem(status, str(exc), errors, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""),
                   "type": e.get("type", "")} for e in exc.errors()]
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in errors)
        return _problem(422, f"invalid request: check {fields}", errors)

    @app.exception_handler(OperationalError)
    async def _db_down(_: Request, exc: OperationalError) -> JSONResponse:
        log.error("database error: %s", exc)
        return _problem(503, "the database is unavailable; retry shortly",
                        headers={"Retry-After": "5"})
