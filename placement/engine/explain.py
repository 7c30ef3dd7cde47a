"""Turn an array outcome into a Decision: every candidate with its scores or its rejection."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from placement.compiled import CAPACITY_NAMES
from placement.model import Decision

if TYPE_CHECKING:
    from placement.engine.engine import Engine, Outcome

UNITS = {"latency": "ms", "data_gravity": "h", "cost": "USD", "wait": "h"}


def _col(values: np.ndarray, digits: int) -> list[float | None]:
    """Array -> list with NaN/inf as None, rounded; one conversion per array, not per cell."""
    arr = np.asarray(values, dtype=float)
    finite = np.isfinite(arr)
    out: list[float | None] = np.round(np.where(finite, arr, 0.0), digits).tolist()
    if not finite.all():
        for i in np.flatnonzero(~finite).tolist():
            out[i] = None
    return out


class _Columns:
    """Every per-candidate value the explanation needs, converted to Python lists at once."""

    def __init__(self, out: Outcome) -> None:
        c = out.ctx
        self.p99 = _col(c.p99_ms, 3)
        self.total = _col(c.total_usd, 2)
        self.gpu = _col(c.gpu_usd, 2)
        self.rate = _col(c.usd_per_hour, 4)
        self.egb = _col(c.egress_gb, 3)
        self.eusd = _col(c.egress_usd, 2)
        self.xfer = _col(c.transfer_hours, 4)
        self.wait = _col(c.wait_hours, 6)
        self.finish = _col(c.finish_hours, 6)
        self.gpuh = _col(c.gpu_hours, 3)
        self.service = c.workload.spec.is_service
        self.raw = {k: _col(v, 6) for k, v in out.raw.items()}
        self.score = {k: _col(v, 6) for k, v in out.scores.items()}
        self.weighted = _col(out.total, 3)


def estimates(cols: _Columns, i: int) -> dict[str, Any]:
    """Estimates for candidate i, as the fields of `Estimates`."""
    return {
        "p99_latency_ms": cols.p99[i], "total_usd": cols.total[i] or 0.0,
        "gpu_usd": cols.gpu[i] or 0.0, "usd_per_hour": cols.rate[i] or 0.0,
        "egress_gb": cols.egb[i] or 0.0, "egress_usd": cols.eusd[i] or 0.0,
        "transfer_hours": cols.xfer[i] or 0.0, "wait_hours": cols.wait[i],
        "finish_hours": None if cols.service else cols.finish[i],
        "gpu_hours": cols.gpuh[i] or 0.0,
    }


def _gpu_names(engine: Engine) -> dict[int, str]:
    return {v: k for k, v in engine.ci.gpu_index.items()}


def _candidate(engine: Engine, out: Outcome, cols: _Columns, i: int, rank: dict[int, int],
               gpus: dict[int, str]) -> dict[str, Any]:
    c, ci = out.ctx, engine.ci
    row = int(c.rows[i])
    failed = np.flatnonzero(out.fails[:, i]).tolist()
    inst = int(c.billing.instance[row])
    criteria = {
        name: {"raw": cols.raw[name][i], "unit": UNITS.get(name, ""),
               "score": cols.score[name][i], "weight": out.weights[name]}
        for name in out.raw
    }
    considered = bool(out.considered[i])
    return {
        "site": ci.site_names[int(c.site[i])],
        "site_type": "cloud" if c.is_cloud[i] else "onprem",
        "gpu_type": gpus[int(ci.row_gpu[row])],
        "capacity": CAPACITY_NAMES[int(c.kind[i])],
        "instance_type": ci.inst_names[inst] if inst >= 0 else None,
        "feasible": not failed,
        "rejected_by": out.filter_names[failed[0]] if failed else None,
        "reason": out.filter_results[failed[0]].reason(i) if failed else None,
        "also_failed": [out.filter_names[k] for k in failed[1:]],
        "criteria": criteria,
        "total_score": cols.weighted[i] if considered else None,
        "rank": rank.get(i),
        "estimates": estimates(cols, i),
    }


def _missing_sites(engine: Engine, out: Outcome) -> list[dict[str, Any]]:
    present = set(out.ctx.site.tolist())
    wanted = "/".join(out.ctx.workload.spec.gpu.types)
    extra: list[dict[str, Any]] = []
    for s, site in enumerate(engine.inventory.sites):
        if s in present:
            continue
        has = ", ".join(f"{g.type}" for g in site.spec.gpus) or "no GPUs"
        extra.append({"site": site.name, "site_type": site.spec.type, "gpu_type": None,
                      "capacity": None, "instance_type": None, "feasible": False,
                      "rejected_by": "capacity", "reason": f"offers no {wanted} (has: {has})",
                      "also_failed": [], "criteria": {}, "total_score": None, "rank": None,
                      "estimates": None})
    return extra


def _summary(out: Outcome, chosen: dict[str, Any] | None) -> str:
    c = out.ctx
    if chosen is None:
        counts = Counter(out.filter_names[int(np.argmax(out.fails[:, i]))]
                         for i in range(c.n))
        why = ", ".join(f"{k}: {v}" for k, v in counts.most_common()) or "no site offers the GPU"
        return f"reject: no candidate passes the filters (rejections by filter: {why})"
    where = f"{chosen['site']} ({chosen['capacity']} {chosen['gpu_type']}"
    where += f", {chosen['instance_type']})" if chosen["instance_type"] else ")"
    feasible = int((~out.fails.any(axis=0)).sum())
    score = f"score {chosen['total_score']:.1f}, best of {feasible} feasible candidate(s)"
    est = chosen["estimates"]
    wait = est["wait_hours"] or 0.0
    if out.action == "queue":
        return f"queue at {where}: expected wait {wait:.2f} h; {score}"
    if out.action == "burst":
        return f"burst to {where}: ${est['usd_per_hour']:,.2f}/h, ready in {wait:.2f} h; {score}"
    return f"place on {where}; {score}"


def build_decision(engine: Engine, out: Outcome) -> Decision:
    """The outcome as a validated `Decision` model."""
    return Decision.model_validate(decision_dict(engine, out))


def decision_dict(engine: Engine, out: Outcome) -> dict[str, Any]:
    """The outcome as JSON-ready data shaped exactly like `Decision.model_dump(mode="json")`.

    The service stores and returns this without a validation pass (a test holds the shape to
    the model); everything is assembled as plain data, far faster than building models.
    """
    gpus = _gpu_names(engine)
    rank = {int(i): r + 1 for r, i in enumerate(out.ranking)}
    cols = _Columns(out)
    cands = [_candidate(engine, out, cols, i, rank, gpus) for i in range(out.ctx.n)]
    chosen = cands[out.chosen] if out.chosen is not None else None
    ordered = sorted(cands, key=lambda x: (x["rank"] is None, x["rank"] or 0, x["site"]))
    return {
        "workload": out.ctx.workload.name,
        "action": out.action,
        "site": chosen["site"] if chosen else None,
        "gpu_type": chosen["gpu_type"] if chosen else None,
        "capacity": chosen["capacity"] if chosen else None,
        "instance_type": chosen["instance_type"] if chosen else None,
        "summary": _summary(out, chosen),
        "estimates": chosen["estimates"] if chosen else None,
        "rule": out.rule.name,
        "constraint_rules": sorted({c.rule for c in out.rule.constraints}),
        "policy_version": out.policy_version,
        "candidates": ordered + _missing_sites(engine, out),
    }
