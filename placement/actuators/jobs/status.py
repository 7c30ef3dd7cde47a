"""What a Job and its pods say, in the lifecycle's terms: pending, running, succeeded, failed
(with the reason), or interrupted (its node was reclaimed or the pod evicted)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from placement.actuators.jobs.manifests import STAGE_PREFIX

State = Literal["missing", "pending", "running", "succeeded", "failed", "interrupted"]
# Pod-level signs that the node went away or the pod was pushed off it.
DISRUPTION_REASONS = frozenset({"Evicted", "NodeLost", "Shutdown", "NodeShutdown",
                                "Terminated", "Preempting", "DeletionByTaintManager"})
# Waiting reasons that will not fix themselves (ErrImagePull and config errors may: the
# kubelet retries them, and they turn into ImagePullBackOff when they keep failing).
STUCK_REASONS = frozenset({"ImagePullBackOff", "InvalidImageName"})


@dataclass(frozen=True)
class Observation:
    state: State
    reason: str
    started_at: datetime | None
    finished_at: datetime | None
    staged_bytes: int


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


def observe(job: dict[str, Any] | None, pods: list[dict[str, Any]]) -> Observation:
    """Read the Job's status and conditions and its pods' states."""
    pods = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    staged = sum(_staged(p) for p in pods)
    if job is None:
        return Observation("missing", "the Job is gone from the cluster", None, None, staged)
    status = job.get("status") or {}
    started = _started(pods) or _time(status.get("startTime"))
    conditions = {c.get("type"): c for c in status.get("conditions") or []
                  if c.get("status") == "True"}
    disrupted = next((r for r in map(_disruption, pods) if r), None)
    if "Complete" in conditions or "SuccessCriteriaMet" in conditions:
        done = _time(status.get("completionTime")) or _time(
            (conditions.get("Complete") or {}).get("lastTransitionTime"))
        return Observation("succeeded", "completed", started, done, staged)
    if disrupted is not None:
        return Observation("interrupted", disrupted, started, None, staged)
    if "Failed" in conditions or "FailureTarget" in conditions:
        cond = conditions.get("Failed") or conditions["FailureTarget"]
        why = cond.get("reason") or "Failed"
        detail = next((r for r in map(_pod_failure, pods) if r), None)
        reason = f"{why}: {detail}" if detail else f"{why}: {cond.get('message', '')}".rstrip(": ")
        return Observation("failed", reason, started, _time(cond.get("lastTransitionTime")),
                           staged)
    stuck = next((r for r in map(_stuck, pods) if r), None)
    if stuck is not None:
        return Observation("failed", stuck, started, None, staged)
    if any((p.get("status") or {}).get("phase") == "Running" for p in pods):
        return Observation("running", "running", started, None, staged)
    return Observation("pending", "waiting for the pods to start", started, None, staged)


def _started(pods: list[dict[str, Any]]) -> datetime | None:
    """When the first main container started running (staging and scheduling excluded)."""
    times = [_time(((c.get("state") or {}).get("running") or {}).get("startedAt"))
             or _time(((c.get("state") or {}).get("terminated") or {}).get("startedAt"))
             for p in pods for c in _containers(p)]
    found = [t for t in times if t is not None]
    return min(found) if found else None


def _containers(pod: dict[str, Any], init: bool = False) -> list[dict[str, Any]]:
    key = "initContainerStatuses" if init else "containerStatuses"
    return list((pod.get("status") or {}).get(key) or [])


def _disruption(pod: dict[str, Any]) -> str | None:
    status = pod.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "DisruptionTarget" and cond.get("status") == "True":
            return f"pod {pod['metadata']['name']} disrupted: {cond.get('reason', '')} " \
                   f"{cond.get('message', '')}".strip()
    if status.get("reason") in DISRUPTION_REASONS:
        return f"pod {pod['metadata']['name']} {status['reason']}: {status.get('message', '')}"\
            .rstrip(": ")
    return None


def _pod_failure(pod: dict[str, Any]) -> str | None:
    for c in _containers(pod, init=True) + _containers(pod):
        term = (c.get("state") or {}).get("terminated") or (
            c.get("lastState") or {}).get("terminated")
        if term and term.get("exitCode", 0) != 0:
            return f"container {c.get('name')} {term.get('reason', 'Error')} " \
                   f"(exit {term.get('exitCode')})"
    return None


def _stuck(pod: dict[str, Any]) -> str | None:
    for c in _containers(pod, init=True) + _containers(pod):
        waiting = (c.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in STUCK_REASONS:
            return f"image pull: container {c.get('name')} {waiting['reason']}: " \
                   f"{waiting.get('message', '')}".rstrip(": ")
    return None


def _staged(pod: dict[str, Any]) -> int:
    """Bytes the pod's staging init containers report having copied."""
    total = 0
    for c in _containers(pod, init=True):
        term = (c.get("state") or {}).get("terminated") or {}
        if str(c.get("name", "")).startswith(STAGE_PREFIX) and term.get("exitCode") == 0:
            try:
                total += int(str(term.get("message", "")).strip() or 0)
            except ValueError:
                continue
    return total
