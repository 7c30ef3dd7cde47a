"""The per-shape memo: keyed only on what the policy's rules read, bounded by bytes, and never
a cause of a different decision."""

from __future__ import annotations

import pytest

from placement.engine import Engine
from placement.engine.engine import ShapeReads, shape_key
from placement.model import Inventory, Policy
from placement.policy.loader import policy_version
from tests import factories as f

SITES = [f.onprem("plant", {"A100": (16, 1.5)}, labels={"zone": "eu"}),
         f.cloud("us-east-1", {"A100": [("p4d", 8, 32.0, 12.0)]})]
TEAM_RULE: dict[str, object] = {"name": "ml", "match": {"teams": ["ml"]}, "weights": {"cost": 1}}
LABEL_RULE: dict[str, object] = {"name": "tier", "match": {"labels": {"tier": "gold"}},
                                 "weights": {"cost": 1}}


def _engine(rules: list[dict[str, object]], budgets: dict[str, float] | None = None,
            memo_bytes: int | None = None) -> Engine:
    doc: dict[str, object] = {"rules": [*rules, f.BURST_ALL]}
    if budgets:
        doc["team_budgets"] = budgets
    pol = Policy.model_validate({"metadata": {"name": "t"}, "spec": doc})
    inv = Inventory(sites=SITES, datasets=[], client_locations=[])
    if memo_bytes is None:
        return Engine(inv, pol, policy_version(pol))
    return Engine(inv, pol, policy_version(pol), memo_bytes=memo_bytes)


@pytest.mark.parametrize(("rules", "budgets", "a", "b", "same"), [
    ([], None, f.job(team="a"), f.job(team="b"), True),
    ([TEAM_RULE], None, f.job(team="a"), f.job(team="b"), False),
    ([], {"a": 100.0}, f.job(team="a"), f.job(team="b"), False),
    ([], None, f.job(labels={"run": "1"}), f.job(labels={"run": "2"}), True),
    ([LABEL_RULE], None, f.job(labels={"tier": "gold", "run": "1"}),
     f.job(labels={"tier": "gold", "run": "2"}), True),
    ([LABEL_RULE], None, f.job(labels={"tier": "gold"}), f.job(labels={"tier": "free"}), False),
    ([LABEL_RULE], None, f.job(labels={"tier": "gold"}), f.job(), False),
], ids=["teams share a shape when no rule reads teams",
        "a rule on teams keeps teams apart",
        "a team budget keeps teams apart",
        "labels no rule reads share a shape",
        "an unread label beside a read one shares a shape",
        "a read label's value keeps shapes apart",
        "a read label that is missing keeps shapes apart"])
def test_the_key_holds_only_what_rules_read(rules: list[dict[str, object]],
                                            budgets: dict[str, float] | None,
                                            a: object, b: object, same: bool) -> None:
    engine = _engine(rules, budgets)
    reads = ShapeReads.of(engine.policy)
    assert (shape_key(a, reads) == shape_key(b, reads)) is same  # type: ignore[arg-type]


def test_unique_labels_do_not_grow_the_memo() -> None:
    engine = _engine([LABEL_RULE])
    for i in range(200):
        engine.decide(f.job(name=f"j{i}", labels={"run": str(i), "tier": "gold"}))
    assert engine.memo_size()[0] == 1


@pytest.mark.parametrize("room", [0.0, 0.001, 3.5, None],
                         ids=["no memo room", "less than a shape", "three shapes", "room for all"])
def test_the_memo_stays_within_its_bytes_and_decides_the_same(room: float | None) -> None:
    free = _engine([])
    jobs = [f.job(name=f"j{i}", count=1 + i % 16, hours=1 + i % 7) for i in range(120)]
    for wl in jobs:
        free.explain(free.decide(wl))
    shapes, held = free.memo_size()
    assert shapes == 16
    budget = 10**12 if room is None else int(room * held / shapes)
    bounded = _engine([], memo_bytes=budget)
    for _ in range(2):
        for wl in jobs:
            got, want = bounded.explain(bounded.decide(wl)), free.explain(free.decide(wl))
            assert got.model_dump() == want.model_dump()
            assert bounded._memo[0] <= budget  # weighed shapes; the newest is weighed next
    kept = bounded.memo_size()[0]
    assert kept == 16 if room is None else kept <= int(room) + 1
