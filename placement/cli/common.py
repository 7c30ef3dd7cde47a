"""What the command line's modules share: failing with a message, settings, common options."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from placement.service.settings import Settings

DbOpt = Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL (default: "
                                           "PLACEMENT_DATABASE_URL or sqlite:///placement.db).")]


def fail(exc: Exception) -> None:
    """Print the error and exit 1 (no traceback)."""
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(1)


def settings(**overrides: object) -> Settings:
    """Settings from the environment with the given flags over them."""
    from placement.service.settings import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
