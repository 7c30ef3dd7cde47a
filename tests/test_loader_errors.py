"""Every kind of bad input is reported with file:line, the field path and how to fix it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from placement.errors import ConfigError, Issue
from placement.policy.loader import load_bundle

from .conftest import EXAMPLES

GOOD_SITE = """\
kind: Site
metadata: {name: dc, labels: {residency: eu}}
spec:
  type: onprem
  location: {lat: 50.1, lon: 8.7}
  kube_context: dc
  wan_gbps: 10
  egress_usd_per_gb: 0
  gpus:
    - {type: A100, count: 8, usd_per_gpu_hour: 2.0}
"""

WORKLOAD = """\
kind: Workload
metadata: {name: train}
spec:
  kind: training
  team: research
  gpu: {types: [A100], count: 4}
  duration_hours: 3
  datasets:
    - {name: DATASET}
"""

CASES: list[tuple[str, dict[str, str], str, int, str, str]] = [
    # id, extra files, file, line, field path fragment, message fragment
    ("malformed YAML", {"bad.yaml": "kind: Site\nmetadata: {name: x\nspec: 1\n"},
     "bad.yaml", 3, "", "malformed YAML"),
    ("unknown kind", {"k.yaml": "kind: Cluster\nmetadata: {name: x}\n"},
     "k.yaml", 1, "kind", "unknown kind ('Cluster')"),
    ("missing field",
     {"m.yaml": GOOD_SITE.replace("dc", "dc2").replace("  wan_gbps: 10\n", "")},
     "m.yaml", 3, "Site 'dc2' spec.wan_gbps", "Field required"),
    ("mistyped field",
     {"t.yaml": GOOD_SITE.replace("dc", "dc3").replace("count: 8", "count: lots")},
     "t.yaml", 10, "Site 'dc3' spec.gpus[0].count", "valid integer"),
    ("negative size", {"n.yaml": "kind: Dataset\nmetadata: {name: d}\nspec:\n  size_gb: -5\n"
                       "  replicas: [dc]\n"},
     "n.yaml", 4, "Dataset 'd' spec.size_gb", "greater than or equal to 0"),
    ("unknown GPU type", {"g.yaml": GOOD_SITE.replace("dc", "dc4").replace("A100", "H1000")},
     "g.yaml", 10, "Site 'dc4' spec.gpus[0].type", "unknown GPU type 'H1000'"),
    ("unknown dataset", {"w.yaml": WORKLOAD.replace("DATASET", "nope")},
     "w.yaml", 9, "Workload 'train' spec.datasets[0].name", "unknown dataset 'nope'"),
    ("unknown client location", {"c.yaml": "kind: Workload\nmetadata: {name: svc}\nspec:\n"
                                 "  kind: inference\n  team: apps\n"
                                 "  gpu: {types: [A100], count: 1}\n  latency:\n"
                                 "    p99_slo_ms: 100\n    service_time_p99_ms: 10\n"
                                 "    clients:\n      - {location: mars}\n"},
     "c.yaml", 11, "spec.latency.clients[0].location", "unknown client location 'mars'"),
    ("rule label no site has", {"p.yaml": "kind: Policy\nmetadata: {name: p}\nspec:\n  rules:\n"
                                "    - name: r\n      require:\n        labels:\n"
                                "          residency: mars\n"},
     "p.yaml", 8, "Policy 'p' spec.rules[0].require.labels.residency",
     "no site has the label residency=mars"),
    ("unknown criterion", {"u.yaml": "kind: Policy\nmetadata: {name: p}\nspec:\n  rules:\n"
                           "    - name: r\n      weights:\n        cost: 1\n        carbn: 2\n"},
     "u.yaml", 8, "Policy 'p' spec.rules[0].weights.carbn", "unknown criterion 'carbn'"),
    ("plugin weight not a number", {"v.yaml": "kind: Policy\nmetadata: {name: p}\nspec:\n"
                                    "  defaults:\n    weights: {cost: 1, carbon: high}\n"},
     "v.yaml", 5, "Policy 'p' spec.defaults.weights", "weight 'carbon' must be a finite number"),
    ("duplicate names", {"z-dup.yaml": GOOD_SITE},
     "z-dup.yaml", 2, "Site 'dc' metadata.name", "duplicate name; also defined at"),
    ("replica on unknown site", {"r.yaml": "kind: Dataset\nmetadata: {name: d2}\nspec:\n"
                                 "  size_gb: 5\n  replicas: [dc, atlantis]\n"},
     "r.yaml", 5, "Dataset 'd2' spec.replicas[1]", "replica on unknown site 'atlantis'"),
    ("service without latency", {"s.yaml": "kind: Workload\nmetadata: {name: s}\nspec:\n"
                                 "  kind: inference\n  team: apps\n"
                                 "  gpu: {types: [L4], count: 1}\n"},
     "s.yaml", 3, "Workload 's' spec", "needs 'latency'"),
]


@pytest.fixture()
def base(tmp_path: Path) -> Path:
    (tmp_path / "site.yaml").write_text(GOOD_SITE)
    return tmp_path


def _issues(directory: Path) -> list[Issue]:
    with pytest.raises(ConfigError) as err:
        load_bundle(directory)
    return err.value.issues


@pytest.mark.parametrize(("files", "file", "line", "path", "message"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_located(base: Path, files: dict[str, str], file: str, line: int,
                              path: str, message: str) -> None:
    for name, text in files.items():
        (base / name).write_text(text)
    issues = _issues(base)
    hits = [i for i in issues if i.file.endswith(file) and message in i.message]
    assert hits, f"no issue with {message!r} in {[str(i) for i in issues]}"
    issue = hits[0]
    assert issue.line == line
    assert path in issue.path
    text = str(issue)
    assert f"{file}:{line}:" in text and "Fix:" in text and issue.fix


def test_every_error_is_reported_at_once(base: Path) -> None:
    for _, files, *_ in CASES:
        for name, text in files.items():
            (base / name).write_text(text)
    issues = _issues(base)
    names = {Path(i.file).name for i in issues}
    assert {c[2] for c in CASES} <= names
    assert "placement policy validate" in str(ConfigError(issues))


def test_a_valid_bundle_loads_with_a_content_hash(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "b")
    first = load_bundle(tmp_path / "b").policy_version
    policy = tmp_path / "b" / "policy.yaml"
    assert first.startswith("sha256:")
    assert load_bundle(tmp_path / "b").policy_version == first
    policy.write_text(policy.read_text().replace("max_wait_hours: 2", "max_wait_hours: 3"))
    assert load_bundle(tmp_path / "b").policy_version != first


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    issues = _issues(tmp_path / "absent")
    assert "no such file" in issues[0].message


def test_references_are_checked_even_in_documents_with_type_errors(base: Path) -> None:
    (base / "w.yaml").write_text(WORKLOAD.replace("DATASET", "nope").replace("count: 4",
                                                                            "count: -4"))
    messages = {(i.line, i.message.split(" (")[0]) for i in _issues(base)}
    assert (6, "Input should be greater than or equal to 1") in messages
    assert (9, "unknown dataset 'nope'") in messages
