"""Policies from a GitOps directory: the bundle's version, and reloading it when it changes.

The directory is a git checkout (git-sync, a CI workspace) or a mounted ConfigMap. Its version
is the git commit when the directory is a clean checkout, else the policy's content hash. A
watcher polls a cheap fingerprint (git HEAD, and every YAML file's path, size and mtime) and,
when it changes, loads and validates the whole bundle before swapping it in: a bundle that
fails validation never replaces the active one, and the failure shows in the API
(`GET /v1/policies/active`), a metric and the log.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from placement.control.lifecycle import request_requeue
from placement.control.runtime import ReloadStatus, Runtime, activate_policy
from placement.errors import ConfigError
from placement.periodic import Periodic
from placement.policy.loader import Bundle, load_bundle
from placement.store.db import utcnow

log = logging.getLogger("placement.control.gitops")
YAML_SUFFIXES = (".yaml", ".yml")


def _git(directory: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(directory), *args], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit(directory: Path) -> str | None:
    """`git:<commit>`: the last commit that changed the directory, when it is tracked and has
    no local changes under it (untracked or ignored files included: they are loaded too)."""
    last = _git(directory, "log", "-1", "--format=%H", "--", ".")
    if not last:
        return None  # not a checkout, or nothing under it is tracked
    dirty = _git(directory, "status", "--porcelain", "--untracked-files=all",
                 "--ignored=matching", "--", ".")
    return f"git:{last}" if dirty == "" else None


def bundle_version(directory: Path, bundle: Bundle) -> str:
    """The git commit of a clean checkout, else the policy's content hash."""
    return git_commit(directory) or bundle.policy_version


def fingerprint(directory: Path) -> tuple[object, ...]:
    """Changes whenever a YAML file (or the checked-out commit) does."""
    files = []
    for root, _, names in os.walk(directory, followlinks=True):
        if "/." in root.replace(str(directory), "", 1):
            continue  # .git and ConfigMap's ..data timestamps: the resolved files count
        for name in names:
            if name.endswith(YAML_SUFFIXES) and not name.startswith("."):
                path = Path(root, name)
                try:
                    st = path.stat()
                except OSError:
                    continue
                files.append((str(path), st.st_size, st.st_mtime_ns))
    return (_git(directory, "rev-parse", "HEAD"), tuple(sorted(files)))


def activate(rt: Runtime, bundle: Bundle, version: str, source: str) -> bool:
    """Store the bundle as the active policy and switch this process to it; True when the
    active version changed (queued workloads are then re-evaluated)."""
    for attempt in (1, 2):
        try:
            with rt.db.write() as s:
                changed = activate_policy(s, bundle, source, version)
            break
        except IntegrityError:  # another replica stored the same version first
            if attempt == 2:
                raise
    rt.set_policy(bundle.policy, version)
    if changed:
        request_requeue(rt)
    return changed


class PolicyWatcher:
    """Polls the directory every `period` seconds and reloads the bundle when it changes."""

    def __init__(self, rt: Runtime, directory: Path, period: float = 5.0) -> None:
        self.rt = rt
        self.directory = directory
        self.period = period
        self.last: tuple[object, ...] | None = fingerprint(directory)
        self._loop = Periodic("placement-policy-watch", period, self.poll, log,
                              delay_first=True)

    def start(self) -> PolicyWatcher:
        self._loop.start()
        return self

    def stop(self) -> None:
        self._loop.stop()

    def poll(self) -> None:
        """`check`, with any failure (the database down, files vanishing mid-read) reported
        like an invalid bundle and retried next pass; the watcher never dies."""
        try:
            self.check()
        except Exception as exc:
            log.exception("policy reload failed; retrying in %g s", self.period)
            self.last = None
            now = utcnow()
            self.rt.note_reload(ReloadStatus(False, now, self.rt.policy_version,
                                             f"reload failed: {exc!r}", now))
            self.rt.metrics.policy_reloads.labels("failed").inc()

    def check(self) -> bool:
        """One pass: True when a new bundle became active."""
        now = utcnow()
        seen = fingerprint(self.directory)
        if seen == self.last:
            return False
        try:
            bundle = load_bundle(self.directory)
        except ConfigError as exc:
            if fingerprint(self.directory) != seen:
                return False  # half-written (a pull in progress): read it again next pass
            self.last = seen  # the same broken content is reported once, not every pass
            self.rt.note_reload(ReloadStatus(False, now, self.rt.policy_version, str(exc), now))
            self.rt.metrics.policy_reloads.labels("failed").inc()
            log.error("policy bundle in %s is invalid; still serving %s:\n%s", self.directory,
                      self.rt.policy_version, exc)
            return False
        if fingerprint(self.directory) != seen:
            return False  # changed while being read: read it again next pass
        version = bundle_version(self.directory, bundle)
        changed = activate(self.rt, bundle, version, str(self.directory))
        self.last = seen
        self.rt.note_reload(ReloadStatus(True, now, version))
        self.rt.metrics.policy_reloads.labels("ok").inc()
        if changed:
            log.warning("policy %s is active (from %s)", version, self.directory)
        return changed
