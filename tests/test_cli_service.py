"""CLI commands of the service: token creation, db upgrade/downgrade/current, serve (real
process), and one-line errors (never a traceback) when the database cannot be used."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from placement.cli.main import app

from .conftest import EXAMPLES
from .services import free_port, server
from .test_cli import _git_checkout

runner = CliRunner()


def test_token_create_prints_a_token_once_and_stores_its_hash(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    res = runner.invoke(app, ["token", "create", "--role", "member", "--team", "vision",
                              "--database-url", url])
    assert res.exit_code == 0, res.output
    token = res.output.strip()
    assert token.startswith("plc_") and len(token) > 40
    import sqlite3

    hashes = [r[0] for r in sqlite3.connect(tmp_path / "p.db").execute(
        "select token_hash from api_tokens")]
    assert len(hashes) == 1 and token not in hashes[0]


def test_member_token_needs_a_team(tmp_path: Path) -> None:
    res = runner.invoke(app, ["token", "create", "--role", "member", "--database-url",
                              f"sqlite:///{tmp_path / 'p.db'}"])
    assert res.exit_code == 1 and "needs a team" in res.output


def test_db_commands(tmp_path: Path) -> None:
    from placement.store.db import open_database
    from placement.store.migrate import head_revision

    url = f"sqlite:///{tmp_path / 'p.db'}"
    head = head_revision(open_database(url))
    assert f"schema at {head}" in runner.invoke(app, ["db", "upgrade", "--database-url",
                                                      url]).output
    assert "schema at base" in runner.invoke(app, ["db", "downgrade", "base", "--database-url",
                                                   url]).output


@pytest.mark.parametrize(("args", "code", "shown"), [
    (["db", "upgrade", "head"], 0, "schema at {head}"),  # as the README and alembic say it
    (["db", "upgrade"], 0, "schema at {head}"),
    (["db", "upgrade", "--revision", "head"], 0, "schema at {head}"),  # the old spelling
    (["db", "upgrade", "0001"], 0, "schema at 0001"),
    (["db", "upgrade", "0001", "--revision", "0002"], 1, "two revisions given"),
    (["db", "upgrade", "nope"], 1, "migration failed: Can't locate revision"),
    (["db", "downgrade", "base"], 0, "schema at base"),
    (["db", "current"], 0, "schema at base (head is {head})"),
])
def test_db_upgrade_takes_the_revision_positionally(tmp_path: Path, args: list[str], code: int,
                                                     shown: str) -> None:
    from placement.store.db import open_database
    from placement.store.migrate import head_revision

    url = f"sqlite:///{tmp_path / 'p.db'}"
    head = head_revision(open_database(url))
    res = runner.invoke(app, [*args, "--database-url", url])
    assert res.exit_code == code, res.output
    assert shown.format(head=head) in res.output and "Traceback" not in res.output


def test_db_current_json(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    runner.invoke(app, ["db", "upgrade", "head", "--database-url", url])
    out = json.loads(runner.invoke(app, ["db", "current", "--json", "--database-url",
                                         url]).stdout)
    assert out["at_head"] is True and out["revision"] == out["head"]


def _down() -> str:
    """A PostgreSQL URL on a port nothing listens on (a database that is down)."""
    return f"postgresql+psycopg://postgres:s3cret@127.0.0.1:{free_port()}/placement"


@pytest.mark.parametrize("args", [
    ["token", "create", "--role", "admin"],
    ["token", "list"],
    ["token", "revoke", str(uuid.uuid4())],
    ["db", "upgrade", "head"],
    ["db", "downgrade", "base"],
    ["db", "current"],
], ids=lambda a: " ".join(a[:2]))
def test_a_database_that_is_down_is_one_line(args: list[str]) -> None:
    res = runner.invoke(app, [*args, "--database-url", _down()])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot use the database:")
    assert "Connection refused" in lines[0] and "PLACEMENT_DATABASE_URL" in lines[0]
    assert "s3cret" not in res.output


@pytest.mark.parametrize(("url", "shown"), [
    ("nosuchdriver://x/y", "invalid database URL"),
    ("not a url", "invalid database URL"),
])
def test_a_bad_database_url_is_one_line(url: str, shown: str) -> None:
    res = runner.invoke(app, ["token", "list", "--database-url", url])
    assert res.exit_code == 1 and shown in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_token_create_with_the_database_down_prints_no_traceback() -> None:
    """The installed command, as a user runs it: one line on stderr, exit 1, nothing on
    stdout."""
    out = subprocess.run([sys.executable, "-m", "placement.cli", "token", "create", "--role",
                          "admin", "--database-url", _down()], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 1 and out.stdout == ""
    assert "Traceback" not in out.stderr
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("error: cannot use the database:")


def test_token_create_json(tmp_path: Path) -> None:
    res = runner.invoke(app, ["token", "create", "--role", "member", "--team", "vision",
                              "--json", "--database-url", f"sqlite:///{tmp_path / 'p.db'}"])
    out = json.loads(res.stdout)
    assert out["token"].startswith("plc_") and out["prefix"] == out["token"][:10]
    assert (out["role"], out["team"]) == ("member", "vision")


def test_serve_starts_a_real_server(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    token = runner.invoke(app, ["token", "create", "--role", "admin", "--database-url",
                                url]).output.strip()
    with server(url, EXAMPLES) as base:
        sites = httpx.get(f"{base}/v1/sites", headers={"Authorization": f"Bearer {token}"})
        assert sites.status_code == 200 and len(sites.json()) == 10
        assert "placement_http_request_duration_seconds" in httpx.get(f"{base}/metrics").text


def test_serve_states_the_version_the_cli_does(tmp_path: Path) -> None:
    bundle = _git_checkout(tmp_path, EXAMPLES)
    validated = json.loads(runner.invoke(app, ["policy", "validate", str(bundle),
                                               "--json"]).stdout)["policy_version"]
    assert validated.startswith("git:")
    with server(f"sqlite:///{tmp_path / 'p.db'}", bundle) as base:
        assert httpx.get(f"{base}/readyz").json()["policy_version"] == validated
