"""The settings: the README's table is the one generated from the model, every PLACEMENT_*
variable the code reads is a setting, secrets stay secret, and bad values name their variable."""

from __future__ import annotations

import re

import pytest
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from placement.cli.main import app
from placement.service.settings import PREFIX, Settings, markdown_table

from .conftest import ROOT

runner = CliRunner()
BEGIN, END = "<!-- settings-table:begin -->\n", "<!-- settings-table:end -->"
# Variables that are no service settings: set on the Jobs the service submits, or read by tests.
NOT_SETTINGS = {"PLACEMENT_INTERRUPTIONS", "PLACEMENT_WORKLOAD", "PLACEMENT_REQUIRE_SERVICES",
                "PLACEMENT_TEST_ARTIFACTS", "PLACEMENT_SCHEMATHESIS_EXAMPLES"}


def _readme_table() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert BEGIN in text and END in text, "the README lost its settings-table markers"
    return text.split(BEGIN, 1)[1].split(END, 1)[0]


def test_the_readme_table_is_the_generated_one() -> None:
    assert _readme_table() == markdown_table(), (
        "README's settings table drifted: replace it with `placement settings --markdown`")


def test_the_cli_prints_the_same_table() -> None:
    res = runner.invoke(app, ["settings", "--markdown"])
    assert res.exit_code == 0 and res.output == markdown_table()


def test_the_table_has_every_field_once() -> None:
    names = re.findall(r"^\| `(PLACEMENT_[A-Z_]+)` \|", markdown_table(), flags=re.M)
    assert names == [f"{PREFIX}{k.upper()}" for k in Settings.model_fields]
    assert "PLACEMENT_THREADS" in names


def test_every_variable_the_code_and_chart_use_is_a_setting() -> None:
    used: set[str] = set()
    for folder in ("placement", "api", "infra", "helm"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in (".py", ".yaml", ".tpl", ""):
                used |= set(re.findall(r"PLACEMENT_[A-Z][A-Z_]*[A-Z]",
                                       path.read_text(errors="ignore")))
    known = {f"{PREFIX}{k.upper()}" for k in Settings.model_fields}
    assert used - known - NOT_SETTINGS == set()


def test_every_variable_the_readme_names_is_a_setting() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"PLACEMENT_[A-Z][A-Z_]*[A-Z]", text))
    known = {f"{PREFIX}{k.upper()}" for k in Settings.model_fields}
    assert named - known - NOT_SETTINGS == set()


@pytest.mark.parametrize("field", ["database_url", "admin_token"])
def test_secrets_are_secret_strings(field: str) -> None:
    assert Settings.model_fields[field].annotation in (SecretStr, SecretStr | None)


def test_secrets_are_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLACEMENT_DATABASE_URL", "postgresql+psycopg://app:hunter2@db/placement")
    monkeypatch.setenv("PLACEMENT_ADMIN_TOKEN", "plc_topsecretvalue")
    settings = Settings()
    assert settings.database_url.get_secret_value().endswith("hunter2@db/placement")
    for shown in (repr(settings), str(settings), settings.model_dump_json(),
                  runner.invoke(app, ["settings"]).output,
                  runner.invoke(app, ["settings", "--json"]).output):
        assert "hunter2" not in shown and "topsecret" not in shown
    assert settings.environment()["PLACEMENT_ADMIN_TOKEN"] == "plc_topsecretvalue"  # children


def test_threads_are_read_by_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLACEMENT_THREADS", "7")
    assert Settings().threads == 7
    monkeypatch.setenv("PLACEMENT_THREADS", "0")
    with pytest.raises(ValidationError, match="threads"):
        Settings()


@pytest.mark.parametrize(("variable", "value", "shown"), [
    ("PLACEMENT_PORT", "eighty", "PLACEMENT_PORT: Input should be a valid integer"),
    ("PLACEMENT_THREADS", "0", "PLACEMENT_THREADS: Input should be greater than or equal to 1"),
    ("PLACEMENT_WORKERS", "-2", "PLACEMENT_WORKERS: Input should be greater than or equal to 1"),
    ("PLACEMENT_MIGRATE", "perhaps", "PLACEMENT_MIGRATE: Input should be a valid boolean"),
    ("PLACEMENT_LOG_FORMAT", "xml", "PLACEMENT_LOG_FORMAT: Input should be 'text' or 'json'"),
])
def test_a_bad_variable_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch, variable: str,
                                              value: str, shown: str) -> None:
    monkeypatch.setenv(variable, value)
    res = runner.invoke(app, ["settings"])
    assert res.exit_code == 1, res.output
    assert shown in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_a_bad_flag_is_named_as_the_flag() -> None:
    res = runner.invoke(app, ["serve", "--port", "0", "--database-url", "sqlite://"])
    assert res.exit_code == 1
    assert "--port: Input should be greater than or equal to 1" in res.output
