"""GitOps: bundle versions from git, and reloading a changed policy directory safely."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from placement.control.gitops import PolicyWatcher, bundle_version, git_commit
from placement.policy.loader import load_bundle

from .conftest import EXAMPLES, Api, api_on
from .services import server

CHAT = next(w for w in load_bundle(EXAMPLES).workloads if w.name == "support-chat")
FORBID = """    - name: keep-dc-frankfurt-for-training
      match:
        kinds: [inference]
      forbid:
        sites: [dc-frankfurt]
"""
GIT = ["git", "-c", "user.name=placement-tests", "-c", "user.email=tests@placement.invalid"]


def _bundle(tmp_path: Path) -> Path:
    out = tmp_path / "policies"
    shutil.copytree(EXAMPLES, out, ignore=shutil.ignore_patterns("workloads"))
    return out


def _edit(directory: Path, old: str, new: str) -> None:
    policy = directory / "policy.yaml"
    text = policy.read_text()
    assert old in text
    policy.write_text(text.replace(old, new, 1))


def _site_for_chat(a: Api) -> str:
    res = a.client.post("/v1/placements/preview", json=CHAT.model_dump(mode="json"),
                        headers=a.h("admin"))
    assert res.status_code == 200, res.text
    site: str = res.json()["site"]
    return site


def test_version_is_the_commit_of_a_clean_checkout(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    d = _bundle(tmp_path)
    bundle = load_bundle(d)
    assert git_commit(d) is None and bundle_version(d, bundle) == bundle.policy_version
    repo = d.parent  # the bundle is one directory of the repository
    subprocess.run([*GIT, "init", "-q", str(repo)], check=True)
    subprocess.run([*GIT, "-C", str(repo), "add", "policies"], check=True)
    subprocess.run([*GIT, "-C", str(repo), "commit", "-qm", "policy"], check=True)
    head = subprocess.run(["git", "-C", str(d), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    assert bundle_version(d, bundle) == f"git:{head}"
    (repo / "NOTES.md").write_text("unrelated\n")  # a commit elsewhere does not change it
    subprocess.run([*GIT, "-C", str(repo), "add", "NOTES.md"], check=True)
    subprocess.run([*GIT, "-C", str(repo), "commit", "-qm", "notes"], check=True)
    assert bundle_version(d, bundle) == f"git:{head}"
    _edit(d, "max_wait_hours: 2", "max_wait_hours: 3")  # uncommitted: the commit is not it
    assert bundle_version(d, load_bundle(d)).startswith("sha256:")
    subprocess.run([*GIT, "-C", str(d), "checkout", "-q", "policy.yaml"], check=True)
    (d / ".gitignore").write_text("local.yaml\n")
    (d / "local.yaml").write_text("# ignored by git, loaded all the same\n")
    assert bundle_version(d, bundle).startswith("sha256:")


def test_a_valid_change_takes_effect_and_a_broken_one_never_replaces_it(tmp_path: Path) -> None:
    d = _bundle(tmp_path)
    with api_on(f"sqlite:///{tmp_path / 'p.db'}", d) as a:
        watcher = PolicyWatcher(a.runtime, d)
        first = a.runtime.policy_version
        assert watcher.check() is False  # nothing changed
        assert _site_for_chat(a) == "dc-frankfurt"

        _edit(d, "  rules:\n", "  rules:\n" + FORBID)
        assert watcher.check() is True
        second = a.runtime.policy_version
        assert second != first and _site_for_chat(a) != "dc-frankfurt"
        active = a.client.get("/v1/policies/active", headers=a.h("admin")).json()
        assert active["version"] == second and active["reload"]["ok"] is True
        assert active["rules"][0]["name"] == "keep-dc-frankfurt-for-training"

        _edit(d, "max_wait_hours: 2", "max_wait_hours: -2")
        assert watcher.check() is False
        assert a.runtime.policy_version == second and _site_for_chat(a) != "dc-frankfurt"
        active = a.client.get("/v1/policies/active", headers=a.h("admin")).json()
        assert active["version"] == second and active["reload"]["ok"] is False
        assert "policy.yaml:" in active["reload"]["last_error"]
        assert "max_wait_hours" in active["reload"]["last_error"]
        metrics = a.client.get("/metrics").text
        assert "placement_policy_reload_failing 1.0" in metrics
        assert 'placement_policy_reloads_total{result="failed"} 1.0' in metrics
        assert watcher.check() is False  # the same broken content is not re-reported

        _edit(d, "max_wait_hours: -2", "max_wait_hours: 2")
        assert watcher.check() is False  # valid again, and the same policy as before
        active = a.client.get("/v1/policies/active", headers=a.h("admin")).json()
        assert active["reload"]["ok"] is True and active["reload"]["last_error"] is not None
        assert "placement_policy_reload_failing 0.0" in a.client.get("/metrics").text


def test_the_service_reloads_on_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    d = _bundle(tmp_path)
    monkeypatch.setenv("PLACEMENT_RELOAD_SECONDS", "0.2")
    with server(f"sqlite:///{tmp_path / 'p.db'}", d) as base:
        token = subprocess.run(
            [sys.executable, "-m", "placement.cli", "token", "create", "--role", "admin",
             "--database-url",
             f"sqlite:///{tmp_path / 'p.db'}"], check=True, capture_output=True,
            text=True).stdout.strip()
        h = {"Authorization": f"Bearer {token}"}
        before = httpx.get(f"{base}/v1/policies/active", headers=h).json()["version"]
        _edit(d, "  rules:\n", "  rules:\n" + FORBID)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            now = httpx.get(f"{base}/v1/policies/active", headers=h).json()["version"]
            if now != before:
                break
            time.sleep(0.2)
        assert now != before, "the service did not pick up the change"
        res = httpx.post(f"{base}/v1/placements/preview", headers=h,
                         json=CHAT.model_dump(mode="json"))
        assert res.json()["site"] != "dc-frankfurt"
        assert res.json()["policy_version"] == now


def test_a_configmap_mount_loads_each_document_once(tmp_path: Path) -> None:
    """kubelet's layout: visible symlinks -> ..data -> ..<timestamp>/; during an update the old
    timestamped directory may still be there."""
    mount = tmp_path / "mount"
    mount.mkdir()
    for stamp in ("..2026_11_27_10_00_00.1", "..2026_11_27_11_00_00.2"):
        shutil.copytree(EXAMPLES, mount / stamp, ignore=shutil.ignore_patterns("workloads"))
    (mount / "..data").symlink_to("..2026_11_27_11_00_00.2")
    for f in (mount / "..data").iterdir():
        (mount / f.name).symlink_to(Path("..data") / f.name)
    bundle = load_bundle(mount)
    assert [s.name for s in bundle.inventory.sites] == [
        s.name for s in load_bundle(EXAMPLES).inventory.sites]


def test_a_reload_that_breaks_is_reported_and_retried(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    d = _bundle(tmp_path)
    with api_on(f"sqlite:///{tmp_path / 'p.db'}", d) as a:
        watcher = PolicyWatcher(a.runtime, d)
        _edit(d, "  rules:\n", "  rules:\n" + FORBID)

        def down(*args: object, **kwargs: object) -> bool:
            raise OSError("database unreachable")

        monkeypatch.setattr("placement.control.gitops.activate", down)
        watcher.poll()
        status = a.client.get("/v1/policies/active", headers=a.h("admin")).json()["reload"]
        assert status["ok"] is False and "database unreachable" in status["last_error"]
        monkeypatch.undo()
        watcher.poll()  # retried on the next pass
        assert a.client.get("/v1/policies/active", headers=a.h("admin")).json()["reload"][
            "ok"] is True
        assert _site_for_chat(a) != "dc-frankfurt"


def test_a_policy_change_re_evaluates_queued_workloads(tmp_path: Path) -> None:
    """A queued job is decided again when the policy changes: here the new policy forbids
    its only site, so it is rejected instead of waiting forever."""
    d = tmp_path / "queue"
    shutil.copytree(EXAMPLES.parents[1] / "tests" / "data" / "queue", d)

    def job(name: str) -> dict[str, object]:
        return {"metadata": {"name": name}, "spec": {
            "kind": "training", "team": "vision", "duration_hours": 0.5,
            "gpu": {"types": ["A100"], "count": 8}}}

    with api_on(f"sqlite:///{tmp_path / 'p.db'}", d) as a:
        watcher = PolicyWatcher(a.runtime, d)
        post = a.client.post
        assert post("/v1/workloads", json=job("first"), headers=a.h("admin")).json()[
            "phase"] == "placed"
        queued = post("/v1/workloads", json=job("second"), headers=a.h("admin")).json()
        assert queued["phase"] == "queued"
        policy = d / "bundle.yaml"
        policy.write_text(policy.read_text() + "  rules:\n    - name: dc-closed\n"
                          "      forbid: {sites: [dc]}\n")
        assert watcher.check() is True
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got = a.client.get(f"/v1/workloads/{queued['id']}", headers=a.h("admin")).json()
            if got["phase"] != "queued":
                break
            time.sleep(0.1)
        assert got["phase"] == "rejected", got
        decision = got["decision"]["decision"]
        assert decision["policy_version"] == a.runtime.policy_version
        assert [c["reason"] for c in decision["candidates"]] == [
            "rule 'dc-closed' forbids site in ['dc']"]
