"""Command line administration: API tokens and database schema migrations."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from placement.cli.common import DbOpt, JsonOpt, echo_json
from placement.cli.common import fail as _fail
from placement.cli.common import settings as _settings
from placement.errors import PlacementError

if TYPE_CHECKING:
    from placement.store.db import Database

token_app = typer.Typer(no_args_is_help=True, help="Manage API tokens.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema migrations.")


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="admin or member.")] = "member",
    team: Annotated[str | None, typer.Option(help="Team of a member token.")] = None,
    description: Annotated[str, typer.Option(help="What the token is for.")] = "",
    database_url: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API token and print it once (only its hash is stored)."""
    from placement.control.auth import create_token
    from placement.store.db import open_database
    from placement.store.migrate import ensure_schema

    if role not in ("admin", "member"):
        _fail(PlacementError(f"role must be admin or member, not {role!r}"))
    settings = _settings(database_url=database_url)
    db = open_database(settings.database_url.get_secret_value())
    try:
        ensure_schema(db, settings.migrate)
        with db.write() as s:
            token = create_token(s, role=role, team=team,  # type: ignore[arg-type]
                                 description=description)
    except PlacementError as exc:
        _fail(exc)
        return
    finally:
        db.dispose()
    if as_json:
        echo_json({"token": token, "prefix": token[:10], "role": role, "team": team,
                   "description": description})
        return
    typer.echo(token)


@token_app.command("list")
def token_list(
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
    database_url: DbOpt = None,
) -> None:
    """List the stored tokens: id, prefix, role, team, description, created, revoked (never a
    secret: only hashes are stored)."""
    from placement.control.auth import list_tokens
    from placement.store.db import as_utc, open_database
    from placement.store.migrate import ensure_schema

    settings = _settings(database_url=database_url)
    db = open_database(settings.database_url.get_secret_value())
    try:
        ensure_schema(db, settings.migrate)
        with db.read() as s:
            rows = [{"id": str(r.id), "prefix": r.prefix, "role": r.role, "team": r.team,
                     "description": r.description,
                     "created_at": _iso(as_utc(r.created_at)),
                     "revoked_at": _iso(as_utc(r.revoked_at))} for r in list_tokens(s)]
    except PlacementError as exc:
        _fail(exc)
        return
    finally:
        db.dispose()
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    if not rows:
        typer.echo("no tokens; create one with `placement token create`")
        return
    head = ("ID", "PREFIX", "ROLE", "TEAM", "CREATED", "REVOKED", "DESCRIPTION")
    table = [head, *[(r["id"], r["prefix"] or "-", r["role"], r["team"] or "-",
                      (r["created_at"] or "")[:19], (r["revoked_at"] or "-")[:19],
                      r["description"] or "") for r in rows]]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(head) - 1)]
    for line in table:
        typer.echo("  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=False))
                   + "  " + str(line[-1]))


def _iso(value: Any) -> str | None:
    return None if value is None else str(value.isoformat())


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(metavar="ID", help="The token's id (from `placement "
                                            "token list`).")],
    database_url: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a token and end its dashboard sessions. Running API processes stop accepting it
    within 10 s (their token cache)."""
    import uuid

    from placement.control.auth import revoke_token
    from placement.store.db import open_database
    from placement.store.migrate import ensure_schema

    try:
        tid = uuid.UUID(token_id)
    except ValueError:
        _fail(PlacementError(f"{token_id!r} is not a token id; take one from "
                             "`placement token list`"))
        return
    settings = _settings(database_url=database_url)
    db = open_database(settings.database_url.get_secret_value())
    try:
        ensure_schema(db, settings.migrate)
        with db.write() as s:
            revoke_token(s, tid)
    except PlacementError as exc:
        _fail(exc)
        return
    finally:
        db.dispose()
    if as_json:
        echo_json({"revoked": str(tid)})
        return
    typer.echo(f"revoked {tid}")


RevisionArg = Annotated[str, typer.Argument(help="Target revision: head, base, a revision id "
                                            "or a relative step such as +1 or -1.")]


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision (default head).")] = "head",
    database_url: DbOpt = None,
    revision_opt: Annotated[str | None, typer.Option("--revision", hidden=True,
                                                     help="Same as REVISION.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Migrate the schema up to REVISION (default head): `placement db upgrade head`."""
    from placement.store.migrate import upgrade

    if revision_opt is not None and revision not in ("head", revision_opt):
        _fail(PlacementError(f"two revisions given ({revision} and --revision "
                             f"{revision_opt}); give one"))
    target = revision_opt or revision
    _migrate(database_url, lambda db: upgrade(db, target), as_json)


@db_app.command("downgrade")
def db_downgrade(revision: RevisionArg, database_url: DbOpt = None,
                 as_json: JsonOpt = False) -> None:
    """Migrate the schema down to REVISION (e.g. base, or -1 for one step)."""
    from placement.store.migrate import downgrade

    _migrate(database_url, lambda db: downgrade(db, revision), as_json)


def _migrate(database_url: str | None, step: Callable[[Database], None],
             as_json: bool) -> None:
    """Run one migration step on the database, then report its revision."""
    from placement.store.db import open_database
    from placement.store.migrate import current_revision

    db = open_database(_settings(database_url=database_url).database_url.get_secret_value())
    try:
        step(db)
        _report(current_revision(db), as_json)
    finally:
        db.dispose()


@db_app.command("current")
def db_current(database_url: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Print the schema's revision (base: no tables yet) and whether it is at head."""
    from placement.store.db import open_database
    from placement.store.migrate import current_revision, head_revision

    db = open_database(_settings(database_url=database_url).database_url.get_secret_value())
    try:
        now, head = current_revision(db), head_revision(db)
    finally:
        db.dispose()
    if as_json:
        echo_json({"revision": now, "head": head, "at_head": now == head})
        return
    typer.echo(f"schema at {now or 'base'}" + ("" if now == head else f" (head is {head})"))


def _report(revision: str | None, as_json: bool) -> None:
    if as_json:
        echo_json({"revision": revision})
    else:
        typer.echo(f"schema at {revision or 'base'}")
