"""The CLI: place (table and JSON), policy validate, schema, init, --version, --json on every
command that prints a result, one version string per bundle; and the committed JSON Schema."""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import jsonschema
import pytest
import typer
from typer.testing import CliRunner

from placement.cli.main import app
from placement.cli.starter import FILES
from placement.control.gitops import bundle_version
from placement.policy.loader import load_bundle
from placement.policy.schema import document_schemas, render
from placement.policy.yamlsrc import read_yaml

from .conftest import EXAMPLES, ROOT, philly_head

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
    version = bundle_version(EXAMPLES, load_bundle(EXAMPLES))
    assert ok.exit_code == 0 and f"policy version {version}" in ok.output
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


# --- --version, --json, one version per bundle, init ------------------------------------------

def test_version() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output == f"placement {version('hybrid-placement')}\n"


LONG_RUNNING = {"serve", "operator"}  # they print no result


def _leaves(group: typer.core.TyperGroup, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for name, cmd in group.commands.items():
        if isinstance(cmd, typer.core.TyperGroup):
            out |= _leaves(cmd, f"{prefix}{name} ")
        else:
            out[f"{prefix}{name}"] = cmd
    return out


def test_every_command_that_prints_a_result_takes_json() -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    leaves = _leaves(root)
    assert {"policy validate", "policy diff", "simulate", "token list", "init"} <= set(leaves)
    missing = [name for name, cmd in leaves.items() if name not in LONG_RUNNING and
               not any("--json" in p.opts for p in cmd.params)]  # type: ignore[attr-defined]
    assert missing == []


def _git_checkout(tmp: Path, source: Path) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp / "repo"
    shutil.copytree(source, repo / "policies")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "policies"], check=True)
    return repo / "policies"


@pytest.mark.parametrize("checkout", [True, False], ids=["clean git checkout", "plain folder"])
def test_one_version_string_for_one_bundle(tmp_path: Path, checkout: bool) -> None:
    """validate, place, simulate and policy diff state the same version for one directory:
    the commit of a clean checkout, else the content hash (as the service does)."""
    bundle_dir = _git_checkout(tmp_path, EXAMPLES) if checkout else tmp_path / "plain"
    if not checkout:
        shutil.copytree(EXAMPLES, bundle_dir)
    expected = bundle_version(bundle_dir, load_bundle(bundle_dir))
    assert expected.startswith("git:" if checkout else "sha256:")
    wl = str(bundle_dir / "workloads" / "vision-finetune.yaml")
    seen = {
        "validate": json.loads(runner.invoke(app, ["policy", "validate", str(bundle_dir),
                                                   "--json"]).output)["policy_version"],
        "place": json.loads(runner.invoke(app, ["place", wl, "--config", str(bundle_dir),
                                                "--json"]).output)["policy_version"],
    }
    diff = runner.invoke(app, ["policy", "diff", str(bundle_dir), str(bundle_dir), "-w", wl,
                               "--json"])
    assert diff.exit_code == 0, diff.output
    report = json.loads(diff.output)
    seen["diff base"], seen["diff head"] = report["base_version"], report["head_version"]
    trace = philly_head(tmp_path, 20)
    sim = runner.invoke(app, ["simulate", "--trace", str(trace), "--out", str(tmp_path / "o"),
                              "--config", str(bundle_dir), "--baselines", "price-only",
                              "--no-bound", "--json"])
    assert sim.exit_code == 0, sim.output
    seen["simulate"] = json.loads(sim.stdout)["inputs"]["policy_version"]
    assert seen == dict.fromkeys(seen, expected)


@pytest.mark.parametrize(("args", "keys"), [
    (["policy", "validate", str(EXAMPLES)], {"valid", "sites", "policy_version"}),
    (["crds", "--out", "{tmp}/crds"], {"wrote"}),
    (["schema", "--out", "{tmp}/schema"], {"wrote"}),
    (["init", "{tmp}/starter"], {"directory", "wrote"}),
    (["token", "create", "--role", "admin", "--database-url", "sqlite:///{tmp}/p.db"],
     {"token", "prefix", "role"}),
    (["db", "upgrade", "head", "--database-url", "sqlite:///{tmp}/p.db"], {"revision"}),
    (["db", "current", "--database-url", "sqlite:///{tmp}/p.db"], {"revision", "at_head"}),
    (["settings"], {"PLACEMENT_DATABASE_URL", "PLACEMENT_THREADS"}),
    (["triton", "render", str(WORKLOADS / "support-chat.yaml"), "--out", "{tmp}/t",
      "--config", str(EXAMPLES)], {"site", "manifests", "config", "model_dir"}),
], ids=lambda v: " ".join(v[:2]) if isinstance(v, list) else "")
def test_json_output_is_one_document(tmp_path: Path, args: list[str], keys: set[str]) -> None:
    res = runner.invoke(app, [*(a.replace("{tmp}", str(tmp_path)) for a in args), "--json"])
    assert res.exit_code == 0, res.output
    assert keys <= set(json.loads(res.stdout))


def test_validate_json_lists_every_problem(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("kind: Site\nmetadata: {name: Bad_Name}\n")
    res = runner.invoke(app, ["policy", "validate", str(tmp_path), "--json"])
    assert res.exit_code == 1
    out = json.loads(res.stdout)
    assert out["valid"] is False and out["problems"]
    assert {"file", "line", "path", "message", "fix"} == set(out["problems"][0])


def test_init_writes_a_bundle_that_validates_and_places(tmp_path: Path) -> None:
    target = tmp_path / "gitops"
    res = runner.invoke(app, ["init", str(target)])
    assert res.exit_code == 0, res.output
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == \
        sorted(FILES)
    ok = runner.invoke(app, ["policy", "validate", str(target)])
    assert ok.exit_code == 0, ok.output
    assert "2 sites, 1 datasets, 1 client locations, 3 rules, 1 workloads" in ok.output
    placed = runner.invoke(app, ["place", str(target / "workloads"), "--config", str(target),
                                 "--json"])
    assert placed.exit_code == 0 and json.loads(placed.output)["action"] == "place"


@pytest.mark.parametrize(("existing", "force", "code", "needle"), [
    ({"notes.txt": "mine"}, False, 1, "is not empty"),
    ({"notes.txt": "mine", "policy.yaml": "old"}, True, 0, "wrote"),
    ({}, False, 0, "wrote"),  # an empty directory is fine
])
def test_init_refuses_a_non_empty_directory_unless_forced(
        tmp_path: Path, existing: dict[str, str], force: bool, code: int, needle: str) -> None:
    target = tmp_path / "d"
    target.mkdir()
    for name, text in existing.items():
        (target / name).write_text(text)
    res = runner.invoke(app, ["init", str(target), *(["--force"] if force else [])])
    assert res.exit_code == code and needle in res.output
    if existing and not force:
        assert sorted(p.name for p in target.iterdir()) == sorted(existing)  # untouched
    if force:
        assert (target / "notes.txt").read_text() == "mine"
        assert (target / "policy.yaml").read_text() == FILES["policy.yaml"]


def test_init_on_a_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    res = runner.invoke(app, ["init", str(tmp_path / "f")])
    assert res.exit_code == 1 and "is a file" in res.output
