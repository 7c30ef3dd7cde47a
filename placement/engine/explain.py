"""Turn an array outcome into a Decision: every candidate with its scores or its rejection."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from placement.engine.compiled import CAPACITY_NAMES, SPOT
from placement.engine.context import moves_to, overdue_note
from placement.engine.fleet import FleetMiss, FleetPlan, fleet_dict
from placement.engine.network import SOURCE_NAMES
from placement.model import Decision

if TYPE_CHECKING:
    from placement.engine.outcome import Outcome, Snapshot

UNITS = {"latency": "ms", "data_gravity": "h", "cost": "USD", "wait": "h"}


def _cols(values: list[np.ndarray], digits: list[int], zero: list[bool] | None = None
          ) -> list[list[float | None]]:
    """Arrays -> lists, rounded, with NaN/inf as None (or 0.0 where `zero` says so): one
    conversion for all of them."""
    arr = np.array(values, dtype=float).reshape(len(values), -1)
    finite = np.isfinite(arr)
    scale = 10.0 ** np.array(digits, dtype=float)[:, None]
    out: list[list[float | None]] = (np.rint(np.where(finite, arr, 0.0) * scale) / scale
                                     ).tolist()
    for r, i in np.argwhere(~finite).tolist():
        if zero is None or not zero[r]:
            out[r][i] = None
    return out


_ESTIMATES = (  # field, Decision digits, zero when missing
    ("p99_latency_ms", 3, False), ("total_usd", 2, True), ("gpu_usd", 2, True),
    ("usd_per_hour", 4, True), ("egress_gb", 3, True), ("egress_usd", 2, True),
    ("transfer_hours", 4, True), ("wait_hours", 6, False), ("finish_hours", 6, False),
    ("gpu_hours", 3, True), ("opportunity_usd", 2, True))


_ESTIMATE_NAMES = [name for name, _, _ in _ESTIMATES]


def _estimate_rows(out: Outcome) -> list[dict[str, Any]]:
    """Estimates for every candidate, as the fields of `Estimates`."""
    c = out.ctx
    arrays = [c.p99_ms, c.total_usd, c.gpu_usd, c.usd_per_hour, c.egress_gb, c.egress_usd,
              c.transfer_hours, c.wait_hours, c.finish_hours, c.gpu_hours, c.opportunity_usd]
    cols = _cols(arrays, [d for _, d, _ in _ESTIMATES], [z for _, _, z in _ESTIMATES])
    if c.workload.spec.is_service:
        cols[8] = [None] * c.n
    rows = [dict(zip(_ESTIMATE_NAMES, vals, strict=True)) for vals in zip(*cols, strict=True)]
    for row, sources in zip(rows, _sources(out), strict=True):
        row["sources"] = sources
    return rows


_SOURCE_KEYS = ("client_rtt", "lookup_rtt", "bandwidth", "egress")


def _sources(out: Outcome) -> list[dict[str, str]]:
    """Per candidate: where each network number in its estimates comes from (`measured` or
    `estimated: <method>`), for the numbers it uses."""
    c = out.ctx
    d = c.data
    codes = np.stack([c.client_rtt_source] + [
        arr[c.site] if len(arr) else np.full(c.n, -1, dtype=np.int8)
        for arr in (d.lookup_rtt_source, d.gbps_source, d.egress_source)]).T.tolist()
    seen: dict[tuple[int, ...], dict[str, str]] = {}
    rows = []
    for row in codes:
        key = tuple(row)
        got = seen.get(key)
        if got is None:
            got = seen[key] = {name: SOURCE_NAMES[code]
                               for name, code in zip(_SOURCE_KEYS, row, strict=True) if code >= 0}
        rows.append(dict(got))
    for i in np.flatnonzero(c.kind == SPOT).tolist():  # the restarts priced into gpu_hours
        site = int(c.site[i])
        rows[i]["spot_risk"] = (
            f"estimated: {float(c.ci.spot_rate[site]):g} interruptions per instance-hour (the "
            f"site's spot_interruptions_per_hour) x {int(c.billing.instances[c.rows[i]])} "
            "instance(s)")
    price = c.cap.bid_price
    if price is not None:  # on-prem candidates: the bid price and where it came from
        for i in np.flatnonzero(~c.is_cloud).tolist():
            rows[i]["opportunity"] = (f"{c.cap.bid_note}: "
                                      f"${float(price[int(c.group[i])]):,.4f} per GPU-hour")
    return rows


def _criteria_rows(out: Outcome) -> tuple[list[dict[str, Any]], list[float | None]]:
    """Per candidate: each criterion's raw value, score and weight; and the weighted total."""
    names = list(out.raw)
    cols = _cols([out.raw[k] for k in names] + [out.scores[k] for k in names] + [out.total],
                 [6] * (2 * len(names)) + [3])
    k = len(names)
    units = [UNITS.get(name, "") for name in names]
    weights = [out.weights[name] for name in names]
    rows = [{name: {"raw": raw, "unit": unit, "score": score, "weight": weight}
             for name, unit, weight, raw, score in zip(names, units, weights, vals[:k],
                                                       vals[k:2 * k], strict=True)}
            for vals in zip(*cols[:2 * k], strict=True)] if k else [{} for _ in range(out.ctx.n)]
    return rows, cols[2 * k]


def _gpu_names(engine: Snapshot) -> dict[int, str]:
    return {v: k for k, v in engine.ci.gpu_index.items()}


def _candidates(engine: Snapshot, out: Outcome) -> list[dict[str, Any]]:
    """Every candidate with its criteria, estimates and, when rejected, the filter and why."""
    c, ci = out.ctx, engine.ci
    gpus = _gpu_names(engine)
    rank = {int(i): r + 1 for r, i in enumerate(out.ranking)}
    rows = c.rows
    inst = c.billing.instance[rows].tolist()
    gpu_of = ci.row_gpu[rows].tolist()
    criteria, weighted = _criteria_rows(out)
    estimates = _estimate_rows(out)
    fails = out.fails.T.tolist()
    rejected: list[bool] = np.asarray(out.fails.any(axis=0)).tolist()
    sites, cloud, kinds = c.site.tolist(), c.is_cloud.tolist(), c.kind.tolist()
    considered = out.considered.tolist()
    cands = []
    for i in range(c.n):
        failed = [k for k, f in enumerate(fails[i]) if f] if rejected[i] else []
        cands.append({
            "site": ci.site_names[sites[i]],
            "site_type": "cloud" if cloud[i] else "onprem",
            "gpu_type": gpus[gpu_of[i]],
            "capacity": CAPACITY_NAMES[kinds[i]],
            "instance_type": ci.inst_names[inst[i]] if inst[i] >= 0 else None,
            "feasible": not failed,
            "rejected_by": out.filter_names[failed[0]] if failed else None,
            "reason": out.filter_results[failed[0]].reason(i) if failed else None,
            "also_failed": [out.filter_names[k] for k in failed[1:]],
            "criteria": criteria[i],
            "total_score": weighted[i] if considered[i] else None,
            "rank": rank.get(i),
            "estimates": estimates[i],
        })
    return cands


def _missing_sites(engine: Snapshot, out: Outcome) -> list[dict[str, Any]]:
    """Sites without any requested GPU type (the same for every workload of one shape)."""
    shape = engine.shape(out.ctx.workload)
    if shape.missing_sites is None:
        shape.missing_sites = _sites_without(engine, out)
    return [dict(row) for row in shape.missing_sites]


def _sites_without(engine: Snapshot, out: Outcome) -> list[dict[str, Any]]:
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


def _label(out: Outcome, i: int) -> str:
    """A candidate in a few words: site, capacity and GPU type."""
    c = out.ctx
    gpus = {v: k for k, v in c.ci.gpu_index.items()}
    return (f"{c.ci.site_names[int(c.site[i])]} {CAPACITY_NAMES[int(c.kind[i])]} "
            f"{gpus[int(c.ci.row_gpu[c.rows[i]])]}")


def _tie_break(out: Outcome, queue_only: bool) -> str:
    """When the chosen candidate ties with the runner-up on what ranks first (the score; the
    expected wait when nothing can start in time): which of the engine's next ranking keys
    decided, named in the engine's own order."""
    c, chosen = out.ctx, out.chosen
    if chosen is None or len(out.ranking) < 2:
        return ""
    names = c.ci.site_names
    keys: list[tuple[str, Callable[[int], Any]]]
    if queue_only:  # Engine._score's lexsort keys, primary first
        keys = [("expected wait", lambda i: float(c.wait_hours[i])),
                ("cost", lambda i: float(c.total_usd[i])),
                ("site name", lambda i: names[int(c.site[i])])]
    else:
        keys = [("score", lambda i: -round(float(out.total[i]), 9)),
                ("cost", lambda i: float(c.total_usd[i])),
                ("wait", lambda i: float(c.wait_hours[i])),
                ("site name", lambda i: names[int(c.site[i])]),
                ("capacity kind", lambda i: int(c.kind[i]))]
    first = keys[0][1]
    tied = [int(i) for i in out.ranking[1:] if first(int(i)) == first(chosen)]
    if not tied:
        return ""
    runner = tied[0]
    decided = next((name for name, key in keys[1:] if key(chosen) != key(runner)), "")
    why = {
        "cost": f"the lower estimated cost decided (${float(c.total_usd[chosen]):,.2f} "
                f"against ${float(c.total_usd[runner]):,.2f})",
        "wait": f"the shorter expected wait decided ({float(c.wait_hours[chosen]):.2f} h "
                f"against {float(c.wait_hours[runner]):.2f} h)",
        "site name": "the site name decided (alphabetical order)",
        "capacity kind": "the capacity kind decided (on-prem, then on-demand, then spot)",
    }.get(decided, "they tie on every key; the first in inventory order was taken")
    more = f" and {len(tied) - 1} more" if len(tied) > 1 else ""
    order = ", ".join(name for name, _ in keys[1:])
    return (f"; tied on {keys[0][0]} with {_label(out, runner)}{more}: {why}; ties are "
            f"broken by {order}, in that order")


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
    queue_only = feasible == 0  # only candidates held back by the wait filter were ranked
    tie = _tie_break(out, queue_only)
    score = f"score {chosen['total_score']:.1f}, best of {feasible} feasible candidate(s)"
    est = chosen["estimates"]
    wait = est["wait_hours"] or 0.0
    assumed = overdue_note(c, out.chosen) if out.chosen is not None else ""
    if out.action == "queue" and queue_only:
        waiting = int(out.considered.sum())
        limit = c.rule.max_wait_hours
        return (f"queue at {where}: no candidate can start within max wait {limit:g} h; the "
                f"shortest expected wait is {chosen['site']}'s {wait:.2f} h{assumed} "
                f"({waiting} candidate(s) would qualify once GPUs free up){tie}")
    if out.action == "queue":
        return f"queue at {where}: expected wait {wait:.2f} h{assumed}; {score}{tie}"
    if out.action == "burst":
        return (f"burst to {where}: ${est['usd_per_hour']:,.2f}/h, ready in {wait:.2f} h; "
                f"{score}{tie}")
    return f"place on {where}; {score}{tie}"


def build_decision(engine: Snapshot, out: Outcome) -> Decision:
    """The outcome as a validated `Decision` model."""
    return Decision.model_validate(decision_dict(engine, out))


def decision_dict(engine: Snapshot, out: Outcome) -> dict[str, Any]:
    """The outcome as JSON-ready data shaped exactly like `Decision.model_dump(mode="json")`.

    The service stores and returns this without a validation pass (a test holds the shape to
    the model); everything is assembled as plain data, far faster than building models.
    """
    cands = _candidates(engine, out)
    chosen = cands[out.chosen] if out.chosen is not None else None
    ordered = sorted(cands, key=lambda x: (x["rank"] is None, x["rank"] or 0, x["site"]))
    observed = out.ctx.observed
    signals = (observed.relevant(out.ctx.workload, {c["site"] for c in cands})
               if observed is not None else [])
    plan = out.fleet if isinstance(out.fleet, FleetPlan) and chosen is not None else None
    summary = _fleet_summary(plan, out) if plan is not None else _summary(out, chosen)
    unused = [s for s in signals if s["status"] != "fresh"]
    if unused:
        summary += "; store state used for signals not fresh: " + ", ".join(
            f"{s['site']} {s['signal']}{' ' + s['key'] if s['key'] else ''} ({s['status']})"
            for s in unused)
    fleet = None
    moves = (moves_to(engine.ci, out.ctx.data, int(out.ctx.site[out.chosen]))
             if out.chosen is not None else [])
    if plan is not None and chosen is not None:
        fleet = fleet_dict(plan, out, CAPACITY_NAMES, list(_gpu_names(engine).values()),
                           engine.ci.inst_names)
        chosen = {**chosen, "estimates": _fleet_estimates(out, plan, chosen["estimates"])}
        moves = [m for site in sorted({m.site for m in plan.members})
                 for m in moves_to(engine.ci, out.ctx.data, site)]
    elif isinstance(out.fleet, FleetMiss):
        summary += f"; no fleet: {out.fleet.reason}"
    return {
        "workload": out.ctx.workload.name,
        "action": out.action,
        "site": chosen["site"] if chosen else None,
        "gpu_type": chosen["gpu_type"] if chosen else None,
        "capacity": chosen["capacity"] if chosen else None,
        "instance_type": chosen["instance_type"] if chosen else None,
        "summary": summary,
        "estimates": chosen["estimates"] if chosen else None,
        "rule": out.rule.name,
        "constraint_rules": sorted({c.rule for c in out.rule.constraints}),
        "policy_version": out.policy_version,
        "signals": signals,
        "candidates": ordered + _missing_sites(engine, out),
        "data_moves": moves,
        "fleet": fleet,
    }


def _fleet_estimates(out: Outcome, plan: FleetPlan, one: dict[str, Any] | None
                     ) -> dict[str, Any]:
    """The fleet's estimates: totals over its members, the worst routed p99 (the sources are
    the largest member's)."""
    c = out.ctx
    hours = c.hours
    sites = np.unique(np.array([m.site for m in plan.members]))
    routed = plan.routes > 0
    p99 = float(np.nanmax(np.where(routed, plan.p99_ms, -np.inf))) if routed.any() else None
    gpu_usd_h = sum(m.usd_per_hour for m in plan.members)
    lookups_usd_h = plan.usd_per_hour - gpu_usd_h - plan.egress_usd / hours
    egress_usd = plan.egress_usd + lookups_usd_h * hours
    lookup_gb_h = float(sum(
        plan.routes[:, k].sum() * c.data.lookup_egress_gb_per_hour[m.site]
        for k, m in enumerate(plan.members)))
    waits = [float(c.wait_hours[m.pos]) for m in plan.members]
    factor = [float(1.0 + c.spot_overhead[m.pos]) for m in plan.members]
    return {"sources": (one or {}).get("sources", {}),
            "p99_latency_ms": None if p99 is None else round(p99, 3),
            "total_usd": round(gpu_usd_h * hours + egress_usd, 2),
            "gpu_usd": round(gpu_usd_h * hours, 2),
            "usd_per_hour": round(gpu_usd_h, 4),
            "egress_gb": round(float(c.data.egress_gb[sites].sum()) + lookup_gb_h * hours, 3),
            "egress_usd": round(egress_usd, 2),
            "transfer_hours": round(float(c.data.transfer_hours[sites].max()), 4),
            "wait_hours": round(max(waits), 4),
            "finish_hours": None,
            "gpu_hours": round(sum(m.gpus * hours * f for m, f in zip(plan.members, factor,
                                                                        strict=True)), 3),
            "opportunity_usd": round(sum(m.opportunity_usd_per_hour for m in plan.members)
                                     * hours, 2)}


def _fleet_summary(plan: FleetPlan, out: Outcome) -> str:
    ci = out.ctx.ci
    members = ", ".join(f"{ci.site_names[m.site]} {CAPACITY_NAMES[m.kind]} "
                        f"{ci.gpu_names[int(ci.row_gpu[m.row])]} x{m.replicas}"
                        for m in plan.members)  # a site may offer two GPU types or kinds
    verb = "burst" if plan.action == "burst" else "place"
    sites = len({m.site for m in plan.members})
    return (f"{verb} a fleet of {sites} site(s) ({members}) for "
            f"{len(plan.locations)} client location(s), {sum(plan.demand_rps):g} requests/s: "
            f"${plan.usd_per_hour:,.2f}/h ({plan.method})")
