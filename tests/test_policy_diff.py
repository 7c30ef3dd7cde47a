"""`placement policy diff`: what a policy change moves, why, and what it costs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from placement.cli.main import app
from placement.policy.loader import load_bundle

from .conftest import EXAMPLES, api_on

runner = CliRunner()
WORKLOADS = EXAMPLES / "workloads"
POLICY = "policy.yaml"

KEEP_DC_FOR_TRAINING = """    - name: keep-dc-frankfurt-for-training
      match:
        kinds: [inference]
      forbid:
        sites: [dc-frankfurt]
"""


def _head(tmp_path: Path, edit: str | None) -> Path:
    head = tmp_path / "head"
    shutil.copytree(EXAMPLES, head, ignore=shutil.ignore_patterns("workloads"))
    if edit is not None:
        text = (head / POLICY).read_text()
        if edit == "forbid":  # first rule: applies before the services rule
            text = text.replace("  rules:\n", "  rules:\n" + KEEP_DC_FOR_TRAINING, 1)
        elif edit == "wording":
            text = text.replace("run only on our own sites.", "run only on sites we own.")
        elif edit == "service-data-weight":
            text = text.replace("weights: {latency: 5, data_gravity: 1, cost: 2, wait: 2}",
                                "weights: {latency: 5, data_gravity: 1.5, cost: 2, wait: 2}")
        elif edit == "broken":
            text = text.replace("max_wait_hours: 2", "max_wait_hours: -2")
        else:
            raise AssertionError(edit)
        assert text != (head / POLICY).read_text(), "the edit must change the file"
        (head / POLICY).write_text(text)
    return head


def _diff(head: Path, *extra: str) -> tuple[int, str]:
    res = runner.invoke(app, ["policy", "diff", str(EXAMPLES), str(head), "--workloads",
                              str(WORKLOADS), *extra])
    return res.exit_code, res.output


@pytest.mark.parametrize(("edit", "code", "moved"), [
    (None, 0, []),
    ("wording", 0, []),  # a new version, the same placements
    ("service-data-weight", 0, []),  # weights change, no placement does
    # a rule moves the inference services on dc-frankfurt: one site, and a fleet's member
    ("forbid", 3, ["global-assistant", "support-chat"]),
])
def test_exit_code_and_what_moves(tmp_path: Path, edit: str | None, code: int,
                                  moved: list[str]) -> None:
    status, out = _diff(_head(tmp_path, edit), "--format", "json")
    assert status == code, out
    report = json.loads(out)
    assert [w["name"] for w in report["workloads"] if w["changed"]] == moved
    assert report["summary"]["workloads"] == 9
    assert report["head_version"].startswith("sha256:")


def test_a_moved_service_says_why_and_what_it_costs(tmp_path: Path) -> None:
    status, out = _diff(_head(tmp_path, "forbid"), "--format", "json")
    assert status == 3
    chat = next(w for w in json.loads(out)["workloads"] if w["name"] == "support-chat")
    assert chat["base"]["site"] == "dc-frankfurt" and chat["head"]["site"] != "dc-frankfurt"
    assert any("dc-frankfurt now rejected by constraints" in why for why in chat["why"])
    assert any("keep-dc-frankfurt-for-training" in why for why in chat["why"])
    for key in ("total_usd", "egress_gb", "p99_latency_ms"):
        assert chat["delta"][key] == pytest.approx(chat["head"][key] - chat["base"][key],
                                                   abs=1e-3)
    assert chat["base"]["slo_met"] is True


def test_markdown_is_a_pull_request_comment(tmp_path: Path) -> None:
    status, out = _diff(_head(tmp_path, "forbid"))
    assert status == 3
    assert out.startswith("### Placement diff: `")
    assert "` -> `sha256:" in out  # the head copy is no git checkout: its content hash
    assert "**2 of 9 workload(s) change placement.**" in out
    assert "| support-chat | place dc-frankfurt (onprem A100-80GB) |" in out
    assert "<details><summary>Why each placement changes</summary>" in out
    assert "Unchanged (7):" in out
    status, out = _diff(_head(tmp_path / "same", None))
    assert status == 0 and "No placement changes: 9 workload(s)" in out


def test_an_invalid_bundle_exits_1_naming_file_and_line(tmp_path: Path) -> None:
    status, out = _diff(_head(tmp_path, "broken"))
    assert status == 1
    assert "policy.yaml:" in out and "max_wait_hours" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "yaml"], "--format must be markdown or json"),
    (["--workloads", "/nonexistent/dir"], "/nonexistent/dir"),
    (["--from-store", "sqlite:////nonexistent/p.db"], "no SQLite database at /nonexistent/p.db"),
    (["--from-store", "postgresql://nobody@127.0.0.1:1/none"], "cannot read the store"),
])
def test_bad_arguments_exit_1(args: list[str], message: str) -> None:
    res = runner.invoke(app, ["policy", "diff", str(EXAMPLES), str(EXAMPLES), *args])
    assert res.exit_code == 1 and message in res.output


def test_a_workload_neither_bundle_can_decide_is_listed(tmp_path: Path) -> None:
    odd = tmp_path / "odd.yaml"
    odd.write_text((WORKLOADS / "vision-finetune.yaml").read_text().replace(
        "name: product-images", "name: no-such-dataset"))
    res = runner.invoke(app, ["policy", "diff", str(EXAMPLES), str(EXAMPLES), "-w", str(odd)])
    assert res.exit_code == 0, res.output
    assert "Could not be decided under either bundle (1):" in res.output
    assert "no-such-dataset" in res.output


def test_live_workloads_from_the_store(tmp_path: Path, db_url: str) -> None:
    url = db_url
    chat = next(w for w in load_bundle(EXAMPLES).workloads if w.name == "support-chat")
    with api_on(url) as a:
        res = a.client.post("/v1/workloads", json=chat.model_dump(mode="json"),
                            headers=a.h("admin"))
        assert res.json()["site"] == "dc-frankfurt"
    head = _head(tmp_path, "forbid")
    res = runner.invoke(app, ["policy", "diff", str(EXAMPLES), str(head), "--from-store", url,
                              "--format", "json"])
    assert res.exit_code == 3, res.output
    report = json.loads(res.output)
    assert [w["name"] for w in report["workloads"]] == ["support-chat"]
    assert report["workloads"][0]["head"]["site"] != "dc-frankfurt"
