"""CLI commands of the service: token creation, db upgrade/downgrade, serve (real process)."""

from __future__ import annotations

from pathlib import Path

import httpx
from typer.testing import CliRunner

from placement.cli.main import app

from .conftest import EXAMPLES
from .services import server

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


def test_serve_starts_a_real_server(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    token = runner.invoke(app, ["token", "create", "--role", "admin", "--database-url",
                                url]).output.strip()
    with server(url, EXAMPLES) as base:
        sites = httpx.get(f"{base}/v1/sites", headers={"Authorization": f"Bearer {token}"})
        assert sites.status_code == 200 and len(sites.json()) == 10
        assert "placement_http_request_duration_seconds" in httpx.get(f"{base}/metrics").text
