"""Turn an array outcome into a Decision: every candidate with its scores or its rejection."""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from placement.compiled import CAPACITY_NAMES
from placement.model import Candidate, CriterionScore, Decision, Estimates

if TYPE_CHECKING:
    from placement.engine.engine import Engine, Outcome

UNITS = {"latency": "ms", "data_gravity": "h", "cost": "USD", "wait": "h"}


def _num(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 6)


def estimates(out: Outcome, i: int) -> Estimates:
    """Estimates for candidate i."""
    c = out.ctx
    p99 = float(c.p99_ms[i])
    return Estimates(
        p99_latency_ms=None if math.isnan(p99) else round(p99, 3),
        total_usd=round(float(c.total_usd[i]), 2),
        gpu_usd=round(float(c.gpu_usd[i]), 2),
        usd_per_hour=round(float(c.usd_per_hour[i]), 4),
        egress_gb=round(float(c.egress_gb[i]), 3),
        egress_usd=round(float(c.egress_usd[i]), 2),
        transfer_hours=round(float(c.transfer_hours[i]), 4),
        wait_hours=_num(float(c.wait_hours[i])),
        finish_hours=None if c.workload.spec.is_service else _num(float(c.finish_hours[i])),
        gpu_hours=round(float(c.gpu_hours[i]), 3),
    )


def _gpu_names(engine: Engine) -> dict[int, str]:
    return {v: k for k, v in engine.ci.gpu_index.items()}


def _candidate(engine: Engine, out: Outcome, i: int, rank: dict[int, int],
               gpus: dict[int, str]) -> Candidate:
    c, ci = out.ctx, engine.ci
    row = int(c.rows[i])
    failed = [k for k in range(len(out.filter_names)) if out.fails[k, i]]
    inst = int(c.billing.instance[row])
    criteria = {
        name: CriterionScore(raw=_num(float(out.raw[name][i])), unit=UNITS.get(name, ""),
                             score=_num(float(out.scores[name][i])), weight=out.weights[name])
        for name in out.raw
    }
    considered = bool(out.considered[i])
    return Candidate(
        site=ci.site_names[int(c.site[i])],
        site_type="cloud" if c.is_cloud[i] else "onprem",
        gpu_type=gpus[int(ci.row_gpu[row])],
        capacity=CAPACITY_NAMES[int(c.kind[i])],  # type: ignore[arg-type]
        instance_type=ci.inst_names[inst] if inst >= 0 else None,
        feasible=not failed,
        rejected_by=out.filter_names[failed[0]] if failed else None,
        reason=out.filter_results[failed[0]].reason(i) if failed else None,
        also_failed=[out.filter_names[k] for k in failed[1:]],
        criteria=criteria,
        total_score=round(float(out.total[i]), 3) if considered else None,
        rank=rank.get(i),
        estimates=estimates(out, i),
    )


def _missing_sites(engine: Engine, out: Outcome) -> list[Candidate]:
    present = set(out.ctx.site.tolist())
    wanted = "/".join(out.ctx.workload.spec.gpu.types)
    extra = []
    for s, site in enumerate(engine.inventory.sites):
        if s in present:
            continue
        has = ", ".join(f"{g.type}" for g in site.spec.gpus) or "no GPUs"
        extra.append(Candidate(site=site.name, site_type=site.spec.type, gpu_type=None,
                               capacity=None, feasible=False, rejected_by="capacity",
                               reason=f"offers no {wanted} (has: {has})"))
    return extra


def _summary(engine: Engine, out: Outcome, chosen: Candidate | None) -> str:
    c = out.ctx
    if chosen is None:
        counts = Counter(out.filter_names[int(np.argmax(out.fails[:, i]))]
                         for i in range(c.n))
        why = ", ".join(f"{k}: {v}" for k, v in counts.most_common()) or "no site offers the GPU"
        return f"reject: no candidate passes the filters (rejections by filter: {why})"
    where = f"{chosen.site} ({chosen.capacity} {chosen.gpu_type}"
    where += f", {chosen.instance_type})" if chosen.instance_type else ")"
    feasible = int((~out.fails.any(axis=0)).sum())
    score = f"score {chosen.total_score:.1f}, best of {feasible} feasible candidate(s)"
    est = chosen.estimates
    assert est is not None
    if out.action == "queue":
        return f"queue at {where}: expected wait {est.wait_hours or 0:.2f} h; {score}"
    if out.action == "burst":
        return (f"burst to {where}: ${est.usd_per_hour:,.2f}/h, ready in "
                f"{est.wait_hours or 0:.2f} h; {score}")
    return f"place on {where}; {score}"


def build_decision(engine: Engine, out: Outcome) -> Decision:
    """Materialize the outcome: chosen candidate, summary and every candidate's explanation."""
    gpus = _gpu_names(engine)
    rank = {int(i): r + 1 for r, i in enumerate(out.ranking)}
    cands = [_candidate(engine, out, i, rank, gpus) for i in range(out.ctx.n)]
    chosen = cands[out.chosen] if out.chosen is not None else None
    ordered = sorted(cands, key=lambda x: (x.rank is None, x.rank or 0, x.site))
    return Decision(
        workload=out.ctx.workload.name,
        action=out.action,  # type: ignore[arg-type]
        site=chosen.site if chosen else None,
        gpu_type=chosen.gpu_type if chosen else None,
        capacity=chosen.capacity if chosen else None,
        instance_type=chosen.instance_type if chosen else None,
        summary=_summary(engine, out, chosen),
        estimates=chosen.estimates if chosen else None,
        rule=out.rule.name,
        constraint_rules=sorted({c.rule for c in out.rule.constraints}),
        policy_version=out.policy_version,
        candidates=ordered + _missing_sites(engine, out),
    )
