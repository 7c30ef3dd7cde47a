"""The CLI: place (table and JSON), policy validate, schema; and the committed JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from placement.cli.main import app
from placement.policy.schema import document_schemas, render
from placement.policy.yamlsrc import read_yaml

from .conftest import EXAMPLES, ROOT

runner = CliRunner()
WORKLOADS = EXAMPLES / "workloads"


def test_place_json_has_the_documented_keys() -> None:
    res = runner.invoke(app, ["place", str(WORKLOADS / "llm-pretrain.yaml"), "--config",
                              str(EXAMPLES), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert {"action", "site", "estimates", "policy_version", "candidates"} <= set(data)
    assert data["action"] == "burst" and data["site"] == "aws-us-east-1"


def test_place_prints_a_table_with_why_others_lost() -> None:
    res = runner.invoke(app, ["place", str(WORKLOADS / "quality-assistant.yaml"), "--config",
                              str(EXAMPLES)])
    assert res.exit_code == 0, res.output
    assert "PLACE" in res.output and "plant-stuttgart" in res.output
    assert "constraints" in res.output and "rejected:" in res.output


def test_place_all_examples_from_a_directory() -> None:
    res = runner.invoke(app, ["place", str(WORKLOADS), "--config", str(EXAMPLES), "--json"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.output)) == len(list(WORKLOADS.glob("*.yaml")))


def test_place_with_reservations_file(tmp_path: Path) -> None:
    held = tmp_path / "held.yaml"
    held.write_text("- {site: dc-frankfurt, gpu_type: A100-80GB, count: 32, remaining_hours: 9}\n"
                    "- {site: plant-stuttgart, gpu_type: A100-80GB, count: 8}\n")
    res = runner.invoke(app, ["place", str(WORKLOADS / "vision-finetune.yaml"), "--config",
                              str(EXAMPLES), "--json", "--reservations", str(held)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["action"] == "burst"


def test_bad_reservations_file_is_a_clear_error(tmp_path: Path) -> None:
    held = tmp_path / "held.yaml"
    held.write_text("- {site: dc-frankfurt, count: -1}\n")
    res = runner.invoke(app, ["place", str(WORKLOADS / "vision-finetune.yaml"), "--config",
                              str(EXAMPLES), "--reservations", str(held)])
    assert res.exit_code == 1
    assert "gpu_type" in res.output and "Traceback" not in res.output


def test_validate_exit_codes(tmp_path: Path) -> None:
    ok = runner.invoke(app, ["policy", "validate", str(EXAMPLES)])
    assert ok.exit_code == 0 and "policy version sha256:" in ok.output
    (tmp_path / "bad.yaml").write_text("kind: Site\nmetadata: {name: Bad_Name}\n")
    bad = runner.invoke(app, ["policy", "validate", str(tmp_path)])
    assert bad.exit_code == 1
    assert "bad.yaml:2" in bad.output and "Fix:" in bad.output


def test_committed_schema_matches_the_models() -> None:
    for name, schema in document_schemas().items():
        committed = ROOT / "policies" / "schema" / name
        assert committed.read_text() == render(schema), f"run `make schema` ({name} drifted)"


@pytest.mark.parametrize("path", sorted(EXAMPLES.rglob("*.yaml")), ids=lambda p: p.name)
def test_examples_validate_against_the_json_schema(path: Path) -> None:
    schema_dir = ROOT / "policies" / "schema"
    store = {s["$id"]: s for s in (json.loads(p.read_text()) for p in schema_dir.glob("*.json"))}
    top = json.loads((schema_dir / "document.schema.json").read_text())
    registry = jsonschema.validators.validator_for(top)
    docs, issues = read_yaml(path, str(path))
    assert not issues
    for doc in docs:
        kind = doc.data["kind"].lower()
        validator = registry(store[f"https://placement.dev/schema/v1alpha1/{kind}.schema.json"])
        validator.validate(doc.data)


def test_place_without_workloads_is_an_error(tmp_path: Path) -> None:
    res = runner.invoke(app, ["place", str(tmp_path), "--config", str(EXAMPLES)])
    assert res.exit_code == 1 and "no Workload documents found" in res.output


def test_token_list_and_revoke(tmp_path: Path) -> None:
    db = ["--database-url", f"sqlite:///{tmp_path / 'p.db'}"]
    assert "no tokens" in runner.invoke(app, ["token", "list", *db]).output
    made = runner.invoke(app, ["token", "create", "--role", "member", "--team", "vision",
                               "--description", "ci pipeline", *db])
    assert made.exit_code == 0, made.output
    secret = made.output.strip()
    listed = runner.invoke(app, ["token", "list", *db])
    assert listed.exit_code == 0, listed.output
    assert secret not in listed.output and secret[:10] in listed.output
    assert "member" in listed.output and "vision" in listed.output
    assert "ci pipeline" in listed.output
    [row] = [json.loads(line) for line in
             runner.invoke(app, ["token", "list", "--json", *db]).output.splitlines()]
    assert row["prefix"] == secret[:10] and row["revoked_at"] is None
    assert set(row) == {"id", "prefix", "role", "team", "description", "created_at",
                        "revoked_at"}

    out = runner.invoke(app, ["token", "revoke", row["id"], *db])
    assert out.exit_code == 0 and f"revoked {row['id']}" in out.output
    [row] = [json.loads(line) for line in
             runner.invoke(app, ["token", "list", "--json", *db]).output.splitlines()]
    assert row["revoked_at"] is not None
    assert runner.invoke(app, ["token", "revoke", row["id"], *db]).exit_code == 0  # again: ok

    unknown = runner.invoke(app, ["token", "revoke", "00000000-0000-0000-0000-000000000000",
                                  *db])
    assert unknown.exit_code == 1 and "no token" in unknown.output
    bad = runner.invoke(app, ["token", "revoke", "plc_notanid", *db])
    assert bad.exit_code == 1 and "not a token id" in bad.output
