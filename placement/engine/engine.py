"""The engine: filter all candidates, score the survivors, normalize, weigh and pick one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from placement.engine import elementwise as ew
from placement.engine.compiled import (
    CapacityState,
    CompiledInventory,
    capacity_state,
    compile_inventory,
)
from placement.engine.context import Billing, DecisionContext, data_move
from placement.engine.explain import (
    DecisionRecord,
    build_decision,
    decision_dict,
    decision_record,
)
from placement.engine.fleet import FleetPlan, plan_fleet
from placement.engine.framework import FilterPlugin, FilterResult, ScorePlugin
from placement.engine.normalize import normalize
from placement.engine.outcome import Bools, Floats, Ints, Outcome, Shape, shape_bytes
from placement.engine.plugins.registry import (
    check_unique,
    check_weights,
    default_filters,
    default_scores,
)
from placement.engine.rules import EffectiveRule, resolve
from placement.errors import UnknownReferenceError
from placement.model import Decision, Inventory, Policy, Reservation, Scales
from placement.model.workload import Workload

if TYPE_CHECKING:
    from placement.signals import Observed



WAIT_FILTER = "wait"  # when no candidate passes, those failing only this filter may queue
MEMO_BYTES = 64 << 20  # shape memos per engine, by their arrays' bytes; least recent go first


@dataclass(frozen=True)
class ShapeReads:
    """What of a workload's identity the policy's rules read: whether teams matter (a rule
    matches on teams, or a team has a budget) and which label keys a rule matches on. Nothing
    else of team or labels reaches a decision, so the memo key holds only these."""

    team: bool
    label_keys: tuple[str, ...]

    @staticmethod
    def of(policy: Policy) -> ShapeReads:
        rules = policy.spec.rules
        return ShapeReads(
            team=bool(policy.spec.team_budgets) or any(r.match.teams for r in rules),
            label_keys=tuple(sorted({k for r in rules for k in r.match.labels})))


def shape_key(wl: Workload, reads: ShapeReads) -> tuple[Any, ...]:
    """Every field the engine reads except duration, deadline and budget: workloads with one
    key have the same rule, candidates, data move, latency and capacity-blind filters."""
    s, lat = wl.spec, wl.spec.latency
    labels = wl.metadata.labels
    return (s.kind, s.team if reads.team else None,
            tuple(labels.get(k) for k in reads.label_keys), tuple(s.gpu.types),
            s.gpu.count * s.replicas, s.checkpoint_minutes, s.interruptions, s.requests_per_s,
            None if lat is None else (lat.p99_slo_ms, lat.service_time_p99_ms,
                                      tuple((c.location, c.share) for c in lat.clients)),
            tuple((d.name, d.access, d.lookups_per_request, d.kb_per_lookup)
                  for d in s.datasets))


def weight_of(rule: EffectiveRule, criterion: str, applicable: bool) -> float:
    """The rule's weight of a criterion for one workload (0 where it does not apply)."""
    return float(getattr(rule.weights, criterion, 0.0)) if applicable else 0.0


def scale_of(plugin: ScorePlugin, scales: Scales) -> float:
    """The policy's indifference scale for the plugin's criterion (0 without one)."""
    field = getattr(plugin, "SCALE", None)
    return float(getattr(scales, field)) if field else 0.0


class Engine:
    """Holds a compiled snapshot (inventory, reservations, policy) and decides workloads."""

    def __init__(self, inventory: Inventory, policy: Policy, policy_version: str,
                 reservations: list[Reservation] | None = None,
                 filters: list[FilterPlugin] | None = None,
                 scores: list[ScorePlugin] | None = None,
                 memo_bytes: int = MEMO_BYTES) -> None:
        self.filters = filters if filters is not None else default_filters()
        self.scores = scores if scores is not None else default_scores()
        check_unique(self.filters, self.scores)
        check_weights(policy, self.scores)
        self._units = {p.CRITERION: p.UNIT for p in self.scores}
        self.inventory = inventory
        self.policy = policy
        self.policy_version = policy_version
        self.ci: CompiledInventory = compile_inventory(inventory)
        self.cap: CapacityState = capacity_state(self.ci, list(reservations or []))
        self._datasets = {d.name: d for d in inventory.datasets}
        self._billing: dict[int, Billing] = {}
        self._rows_of_types: dict[frozenset[str], Ints] = {}
        self.reads = ShapeReads.of(policy)
        self.memo_bytes = memo_bytes
        self._shapes: dict[tuple[Any, ...], Shape] = {}  # least recently used first
        self._memo: list[int] = [0]  # bytes held, shared with this engine's views
        self.observed: Observed | None = None
        self.team_spend: dict[str, float] = {}  # burst USD per team this month
        self._site_rank = np.argsort(np.argsort(np.array(self.ci.site_names)))

    def with_observed(self, observed: Observed | None) -> Engine:
        """A copy of this engine that also uses live signals (see placement.signals)."""
        twin = object.__new__(Engine)
        twin.__dict__.update(self.__dict__)
        twin.observed = observed
        return twin

    def with_team_spend(self, spend: dict[str, float]) -> Engine:
        """A copy of this engine that knows each team's burst spend this month."""
        twin = object.__new__(Engine)
        twin.__dict__.update(self.__dict__)
        twin.team_spend = spend
        return twin

    def with_capacity(self, cap: CapacityState) -> Engine:
        """A copy of this engine over another capacity state; compiled data and memos shared."""
        twin = object.__new__(Engine)
        twin.__dict__.update(self.__dict__)
        twin.cap = cap
        return twin

    def billing(self, n: int) -> Billing:
        """Cheapest instance mix per candidate row for `n` GPUs (memoized per n)."""
        got = self._billing.get(n)
        if got is not None:
            return got
        ci = self.ci
        per_hour = ci.row_unit_price * n
        billed = np.full(len(ci.row_group), n, dtype=np.int64)
        inst = np.full(len(ci.row_group), -1, dtype=np.int64)
        instances = np.ones(len(ci.row_group), dtype=np.int64)
        if len(ci.inst_row):
            count = np.ceil(n / ci.inst_gpus)
            cost = count * ci.inst_price
            order = np.lexsort((cost, ci.inst_row))
            rows = ci.inst_row[order]
            first = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
            pick = order[first]
            per_hour[ci.inst_row[pick]] = cost[pick]
            billed[ci.inst_row[pick]] = (count * ci.inst_gpus)[pick].astype(np.int64)
            inst[ci.inst_row[pick]] = pick
            instances[ci.inst_row[pick]] = count[pick].astype(np.int64)
        got = Billing(per_hour, billed, inst, instances)
        self._billing[n] = got
        return got

    def _candidates(self, wl: Workload) -> Ints:
        """Candidate rows offering one of the workload's GPU types (memoized per type list)."""
        types = frozenset(wl.spec.gpu.types)
        rows = self._rows_of_types.get(types)
        if rows is None:
            ids = [self.ci.gpu_index[t] for t in types if t in self.ci.gpu_index]
            rows = np.flatnonzero(np.isin(self.ci.row_gpu, np.array(ids, dtype=np.int64)))
            self._rows_of_types[types] = rows
        return rows

    def _check_refs(self, wl: Workload) -> None:
        for ref in wl.spec.datasets:
            if ref.name not in self.ci.dataset_index:
                raise UnknownReferenceError("dataset", ref.name, list(self.ci.dataset_index))
        if wl.spec.latency is not None:
            for c in wl.spec.latency.clients:
                if c.location not in self.ci.client_index:
                    raise UnknownReferenceError("client location", c.location,
                                                list(self.ci.client_index))

    def shape(self, wl: Workload) -> Shape:
        """The memo of `wl`'s shape (its references checked when first seen). The memo keeps
        the most recently used shapes within `memo_bytes`; a shape is weighed when the next
        one is added, once its decisions and explanation have filled it."""
        key = shape_key(wl, self.reads)
        shapes = self._shapes
        got = shapes.pop(key, None)
        if got is None:
            self._check_refs(wl)
            got = Shape(resolve(self.policy, wl, self._datasets), data_move(self.ci, wl))
            if shapes:
                last = next(reversed(shapes.values()))
                if last.held_bytes == 0:
                    last.held_bytes = shape_bytes(last)
                    self._memo[0] += last.held_bytes
            while shapes and self._memo[0] > self.memo_bytes:
                self._memo[0] -= shapes.pop(next(iter(shapes))).held_bytes
        shapes[key] = got
        return got

    def memo_size(self) -> tuple[int, int]:
        """(shapes, bytes) the memo holds now, the newest shape weighed too."""
        newest = next(reversed(self._shapes.values()), None)
        extra = shape_bytes(newest) if newest is not None and newest.held_bytes == 0 else 0
        return len(self._shapes), self._memo[0] + extra

    def context(self, wl: Workload, shape: Shape | None = None) -> DecisionContext:
        """The candidates of `wl` and their shared estimates (what every plugin reads)."""
        shape = shape or self.shape(wl)
        ctx = DecisionContext(self.ci, self.cap, wl, shape.rule, self.policy.spec.scales,
                              self._candidates(wl),
                              self.billing(wl.spec.gpu.count * wl.spec.replicas),
                              observed=self.observed,
                              team_spent_usd=self.team_spend.get(wl.spec.team, 0.0),
                              team_budget_usd=self.policy.spec.team_budgets.get(wl.spec.team))
        ctx.__dict__["data"] = shape.data  # cached_property values, computed once per shape
        if self.observed is None:
            if shape.p99_ms is None:
                shape.p99_ms = ctx.p99_ms
            ctx.__dict__["p99_ms"] = shape.p99_ms
        return ctx

    def decide(self, wl: Workload) -> Outcome:
        """Decide one workload; pure over this engine's snapshot. A service under a fleet rule
        is planned over several sites (placement.engine.fleet); when no fleet serves every
        location, the ordinary decision stands and says why."""
        out = self.decide_single(wl)
        settings = out.rule.fleet
        if settings is not None:
            plan = plan_fleet(self, wl, out, settings, rule=out.rule.fleet_rule)
            out.fleet = plan
            if isinstance(plan, FleetPlan):
                out.chosen, out.action = plan.largest.pos, plan.action
        return out

    def decide_single(self, wl: Workload) -> Outcome:
        """The decision of `wl` on one site (fleet settings not applied)."""
        shape = self.shape(wl)
        ctx = self.context(wl, shape)
        n = ctx.n
        fails = np.zeros((len(self.filters), n), dtype=bool)
        results = []
        mask = np.ones(n, dtype=bool)
        memo = shape.filters if self.observed is None else None
        for k, plugin in enumerate(self.filters):
            ctx.mask = mask
            res = memo.get(plugin.NAME) if memo is not None else None
            if res is None:
                res = plugin.filter(ctx)
                if memo is not None and getattr(plugin, "SHAPE_ONLY", False):
                    # shared by the shape's decisions: its reasons built now, once
                    memo[plugin.NAME] = res = FilterResult(res.passed, res.reasons())
            results.append(res)
            fails[k] = ~res.passed
            mask = mask & res.passed
        considered, queue_only = mask, False
        names = [p.NAME for p in self.filters]
        if not mask.any() and WAIT_FILTER in names:
            wait_k = names.index(WAIT_FILTER)
            others = np.delete(fails, wait_k, axis=0).any(axis=0)
            only_wait = ew.waits_only(fails[wait_k], others, ctx.wait_hours)
            if only_wait.any():
                considered, queue_only = only_wait, True
        out = self._score(ctx, results, fails, considered, queue_only)
        out.shape = shape
        return out

    def _score(self, ctx: DecisionContext, results: list[FilterResult], fails: Bools,
               considered: Bools, queue_only: bool) -> Outcome:
        raw: dict[str, Floats] = {}
        scores: dict[str, Floats] = {}
        weights: dict[str, float] = {}
        total = np.zeros(ctx.n)
        for plugin in self.scores:
            res = plugin.score(ctx)
            crit = plugin.CRITERION
            raw[crit] = res.raw
            w = weight_of(ctx.rule, crit, res.applicable)
            weights[crit] = w
            scores[crit] = normalize(res.raw, considered, scale_of(plugin, ctx.scales))
            if w > 0:
                total = ew.add_weighted(total, w, scores[crit])
        wsum = sum(weights.values())
        total = total / wsum if wsum > 0 else total
        idx = np.flatnonzero(considered)
        keys: tuple[NDArray[Any], ...]
        rank = self._site_rank[ctx.site[idx]]
        if queue_only:  # nothing can start in time: queue where it starts soonest
            keys = ew.queue_key(ctx.total_usd[idx], ctx.wait_hours[idx], rank)
        else:
            keys = ew.ranking_key(total[idx], ctx.total_usd[idx], ctx.wait_hours[idx], rank,
                                  ctx.kind[idx])
        ranking = idx[np.lexsort(keys[::-1])]  # lexsort: the last key decides first
        chosen = int(ranking[0]) if len(ranking) else None
        action = "reject" if chosen is None else ew.ACTIONS[int(ew.action_code(
            bool(ctx.is_cloud[chosen]), queue_only, float(ctx.wait_hours[chosen])))]
        return Outcome(ctx, [p.NAME for p in self.filters], results, fails, considered, raw,
                       scores, weights, total, ranking, chosen, action, self.policy_version,
                       units=self._units)

    def explain(self, outcome: Outcome) -> Decision:
        """The full, serializable decision with every candidate's story."""
        return build_decision(self, outcome)

    def explain_dict(self, outcome: Outcome) -> dict[str, Any]:
        """The decision as JSON-ready data (same shape as `Decision`), without validation."""
        return decision_dict(self, outcome)

    def record(self, outcome: Outcome) -> DecisionRecord:
        """The decision as the service stores it: its fields, and every candidate as packed
        columns (placement.engine.explain.decision_record; `render` words them on read)."""
        return decision_record(self, outcome)

    def place(self, wl: Workload) -> Decision:
        """decide + explain."""
        return self.explain(self.decide(wl))
