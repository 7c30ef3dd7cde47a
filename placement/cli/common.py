"""What the command line's modules share: failing with a message, settings, common options,
JSON output, and the group that turns any error into one line and exit code 1."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer import Abort, Exit, TyperException
from typer.core import TyperGroup

if TYPE_CHECKING:
    from placement.service.settings import Settings

log = logging.getLogger("placement.cli")

DbOpt = Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL (default: "
                                           "PLACEMENT_DATABASE_URL or sqlite:///placement.db).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
LogLevelOpt = Annotated[str | None, typer.Option(
    "--log-level", help="debug, info, warning, error or critical (default: PLACEMENT_LOG_LEVEL, "
    "else info for serve and operator and warning for other commands).", show_default=False)]
LogFormatOpt = Annotated[str | None, typer.Option(
    "--log-format", help="text or json (default: PLACEMENT_LOG_FORMAT or text).",
    show_default=False)]


def fail(exc: Exception) -> None:
    """Print the error and exit 1 (no traceback)."""
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(1)


def echo_json(value: Any) -> None:
    """One JSON document on stdout."""
    typer.echo(json.dumps(value, indent=2, default=str))


def settings(**overrides: object) -> Settings:
    """Settings from the environment with the given flags over them; an invalid value fails
    with the variable (and flag) it came from."""
    from pydantic import ValidationError

    from placement.errors import PlacementError
    from placement.service.settings import Settings

    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        fail(PlacementError(settings_problems(exc, set(given))))
        raise  # not reached: fail exits


def settings_problems(exc: Any, flags: set[str]) -> str:
    """`PLACEMENT_PORT (--port): Input should be a valid integer, got 'x'`, one per problem."""
    parts = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        where = (f"--{field.replace('_', '-')}" if field in flags
                 else f"PLACEMENT_{field.upper()}")
        got = "" if "input" not in err or field in ("database_url", "admin_token") \
            else f", got {err['input']!r}"
        parts.append(f"{where}: {err['msg']}{got}")
    return "; ".join(parts)


def configure_logging(level: str | None = None, fmt: str | None = None,
                      access_log: bool | None = None,
                      json_formatter: logging.Formatter | None = None,
                      default_level: str | None = None) -> None:
    """Logging from PLACEMENT_LOG_LEVEL, PLACEMENT_LOG_FORMAT and PLACEMENT_ACCESS_LOG with
    the given flags over them; `default_level` where neither sets the level (a one-off command
    logs warnings only)."""
    from pydantic import ValidationError

    from placement.errors import PlacementError
    from placement.service.logs import configure
    from placement.service.settings import LogSettings

    given = {k: v for k, v in (("log_level", level), ("log_format", fmt),
                               ("access_log", access_log)) if v is not None}
    try:
        conf = LogSettings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        fail(PlacementError(settings_problems(exc, set(given))))
        return
    chosen = "log_level" in conf.model_fields_set
    configure(conf.log_level if chosen or default_level is None else default_level,
              conf.log_format, access_log=conf.access_log,
              json_formatter=json_formatter)


def describe(exc: BaseException) -> str:
    """One line for an error no command expected: what failed and, where known, what to do."""
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    if type(exc).__name__ in ("OperationalError", "InterfaceError"):  # SQLAlchemy's, a driver's
        orig = getattr(exc, "orig", None) or exc
        first = " ".join(str(orig).split())
        return (f"cannot use the database: {first}; check --database-url "
                "(PLACEMENT_DATABASE_URL) and that the server is up")
    if isinstance(exc, ArgumentError | NoSuchModuleError):
        return f"invalid database URL: {exc}"
    text = " ".join(str(exc).split()) or type(exc).__name__
    if type(exc).__module__.startswith("alembic"):
        return f"migration failed: {text}"
    if isinstance(exc, OSError):
        return text
    return f"{type(exc).__name__}: {text}"


class Group(TyperGroup):
    """Runs a command; an error it did not handle is one line on stderr and exit 1 (the
    traceback goes to the log at debug level), never a traceback on the terminal."""

    def invoke(self, ctx: Any) -> Any:  # typer's own click Context
        try:
            return super().invoke(ctx)
        except (TyperException, Exit, Abort, BrokenPipeError):
            raise
        except Exception as exc:
            log.debug("command failed", exc_info=True)
            typer.echo(f"error: {describe(exc)}", err=True)
            raise typer.Exit(1) from None
