"""A decision's explanation as columns: recorded without wording anything, worded on read,
the same words as the filters' own, a brief that shows the best few, and older rows (their
candidates stored whole) read back as they were."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from placement.engine import Engine
from placement.engine.compiled import CAPACITY_NAMES
from placement.engine.explain import (
    CANDIDATE_COLUMNS,
    Columns,
    _cols,
    brief,
    build_columns,
    render,
    split_record,
)
from placement.engine.framework import FilterResult, Reasons, literal
from placement.engine.offline import engine_for
from placement.engine.plugins.registry import default_filters
from placement.model import Decision, Reservation
from placement.policy.loader import load_bundle
from placement.store.db import utcnow
from placement.store.tables import DecisionRow, WorkloadRow

from . import factories as f
from .conftest import EXAMPLES, Api

A100_8: list[tuple[str, int, float, float | None]] = [("p4d", 8, 32.0, 8.0)]


def _engine(**kw: Any) -> Engine:
    return f.engine([f.onprem("dc", {"A100": (8, 2.0)}), f.onprem("lab", {"L4": (4, 0.7)}),
                     f.cloud("cloud", {"A100": A100_8}), f.cloud("far", {"A100": A100_8},
                                                                  lat=-30.0, lon=150.0)], **kw)


def test_recording_words_no_reason_and_reading_words_each_rejected_candidate_once() -> None:
    eng = _engine(reservations=[Reservation(site="cloud", gpu_type="A100", count=64)])
    out = eng.decide(f.job(count=16))
    worded: list[int] = []

    def texts(self: Reasons, idx: Any) -> list[str]:
        worded.extend(np.asarray(idx).tolist())
        return original(self, idx)

    original = Reasons.texts
    with mock.patch.object(Reasons, "texts", texts):
        record = eng.record(out)
        assert worded == []
        decision = Decision.model_validate(render(record))
    # sites without the GPU type are said per shape, not by a filter's Reasons
    rejected = [c for c in decision.candidates if c.reason and c.gpu_type is not None]
    assert len(worded) == len(set(worded)) == len(rejected) > 0


def test_columns_survive_packing_bit_for_bit() -> None:
    eng = _engine()
    out = eng.decide(f.job(count=8, hours=3))
    built = build_columns(eng, out)
    assert built.packed is not None
    stored = Columns.unpack(bytes(built.packed))
    assert np.array_equal(built.floats, stored.floats, equal_nan=True)
    assert np.array_equal(built.ints, stored.ints) and stored.names == built.names
    assert stored.floats.shape[1] == stored.ints.shape[1] == out.ctx.n
    assert {k: v for k, v in stored.header.items() if k not in built.encoded} == {
        k: v for k, v in built.header.items() if k not in built.encoded}


@pytest.mark.parametrize("name", [w.name for w in load_bundle(EXAMPLES).workloads])
def test_a_rendered_record_is_the_decision_the_engine_explains(name: str) -> None:
    """render(record) is what every reader gets; the validated model holds its shape."""
    bundle = load_bundle(EXAMPLES)
    eng = engine_for(bundle)
    wl = next(w for w in bundle.workloads if w.name == name)
    out = eng.decide(wl)
    record = eng.record(out)
    fields, packed = split_record(record)
    full = render(fields, packed)
    assert full == eng.explain_dict(out) == render(record)
    assert Decision.model_validate(full).model_dump(mode="json") == full
    assert fields["estimates"] == next(
        (c["estimates"] for c in full["candidates"] if c["rank"] == 1), None) or fields["fleet"]


BRIEF = [
    ("placed: the ranked ones first", {"count": 8}, "place"),
    ("rejected: the first rejected", {"count": 512}, "reject"),
    ("no site has the GPU: those sites", {"gpu": "H200"}, "reject"),
]


@pytest.mark.parametrize(("job", "action"), [c[1:] for c in BRIEF], ids=[c[0] for c in BRIEF])
def test_a_brief_shows_the_best_three_and_counts_the_rest(job: dict[str, Any],
                                                          action: str) -> None:
    eng = _engine()
    record = eng.record(eng.decide(f.job(**job)))
    full, short = render(record), brief(record)
    assert full["action"] == short["action"] == action
    assert short["candidates_omitted"] == len(full["candidates"]) - len(short["candidates"])
    assert len(short["candidates"]) == min(3, len(full["candidates"])) > 0
    ranked = [c for c in full["candidates"] if c["rank"]]
    listed = [c for c in full["candidates"] if c["gpu_type"] is not None and not c["rank"]]
    missing = [c for c in full["candidates"] if c["gpu_type"] is None]
    assert short["candidates"] == (ranked + sorted(listed, key=lambda c: c["site"])
                                   + missing)[:3]
    assert {k: v for k, v in short.items() if not k.startswith("candidates")} == {
        k: v for k, v in full.items() if not k.startswith("candidates")}


def test_a_template_holds_names_with_braces_literally() -> None:
    why = Reasons([literal("rule {x} forbids ") + "{site}"], 0, {"site": np.array(["a", "b"],
                                                                                 dtype=object)})
    assert why.text(1) == "rule {x} forbids b"


def test_a_decision_stored_before_columns_reads_back_as_it_was(api: Api) -> None:
    """Rows stored with their candidates in the explanation (candidate_columns null)."""
    reason = "has 8 A100 installed; the workload needs 64 on one site"
    old: dict[str, Any] = {"workload": "legacy", "action": "reject", "site": None, "gpu_type": None,
           "capacity": None, "instance_type": None, "summary": "reject: stored long ago",
           "estimates": None, "rule": None, "constraint_rules": [], "policy_version": "v0",
           "signals": [], "data_moves": [], "fleet": None,
           "candidates": [{"site": "dc", "site_type": "onprem", "gpu_type": "A100",
                           "capacity": "onprem", "feasible": False, "rejected_by": "capacity",
                           "reason": reason}]}
    wid, did = uuid.uuid4(), uuid.uuid4()
    with api.runtime.db.write() as s:
        s.add(WorkloadRow(id=wid, name="legacy", team="vision", kind="training", phase="rejected",
                          action="reject", document={"spec": {"kind": "training"}},
                          decision_id=did))
        s.flush()
        s.add(DecisionRow(id=did, workload_id=wid, action="reject", site=None,
                          policy_version="v0", explanation=old, created_at=utcnow()))
    got = api.client.get(f"/v1/decisions/{did}", headers=api.h("admin"))
    assert got.status_code == 200, got.text
    shown = got.json()["decision"]
    assert shown["candidates"][0]["reason"] == reason
    assert shown["summary"] == old["summary"] and shown["candidates_omitted"] == 0
    assert CANDIDATE_COLUMNS not in shown


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True, width=64), st.sampled_from([2, 3, 4, 6]),
       st.booleans())
def test_one_candidate_rounds_as_the_array_path_does(value: float, digits: int,
                                                     zero: bool) -> None:
    """The chosen candidate is rendered alone; its values must be the ones every reader
    sees when all candidates are rendered together."""
    alone = _cols([np.array([value])], [digits], [zero])[0][0]
    together = _cols([np.array([value, 1.0])], [digits], [zero])[0][0]
    assert repr(alone) == repr(together)  # -0.0 and 0.0 told apart


WORDS = [
    ("a conversion and a spec", "rule {rule!r} allows {n:,.2f} h", {"rule": "r", "n": 1234.5}),
    ("braces kept", literal("{x}") + " {n}", {"n": 3}),
    ("a name twice", "{a} and {a:>3}", {"a": 7}),
    ("no argument", "plain words", {}),
]


@pytest.mark.parametrize(("template", "args"), [c[1:] for c in WORDS],
                         ids=[c[0] for c in WORDS])
def test_words_for_many_are_the_words_for_each(template: str, args: dict[str, Any]) -> None:
    per = {k: np.array([v, v, v]) if isinstance(v, float) else v for k, v in args.items()}
    why = Reasons([template, "other"], np.array([0, 0, 1]), per)
    assert why.texts([0, 2, 1]) == [template.format(**{k: v for k, v in args.items()}),
                                    "other", template.format(**args)]
    assert why.text(1) == template.format(**args)


class Odd:
    """A test-only filter whose reasons take what JSON and int32 rows cannot hold as such."""

    NAME: ClassVar[str] = "odd"

    def filter(self, ctx: Any) -> FilterResult:
        n = ctx.n
        return FilterResult(np.zeros(n, dtype=bool), Reasons(
            ["limit {limit} and {big} with {flag} and {none}"], 0,
            {"limit": float("inf"), "big": np.full(n, 3_000_000_000 + np.arange(n)),
             "flag": np.arange(n) % 2 == 0, "none": None}))


def test_reasons_read_back_as_worded_live_whatever_their_arguments() -> None:
    """Non-finite shared values, integers beyond int32 and booleans read back as the live
    Reasons word them."""
    eng = Engine(_engine().inventory, f.policy([f.BURST_ALL]), "v1",
                 filters=[Odd(), *default_filters()])
    out = eng.decide(f.job(count=8))
    live = out.filter_results[0].reasons()
    words = {(c["site"], c["capacity"]): c["reason"] for c in render(eng.record(out))[
        "candidates"] if c["gpu_type"] is not None}
    expect = {(out.ctx.ci.site_names[int(out.ctx.site[i])], CAPACITY_NAMES[int(
        out.ctx.kind[i])]): live.text(i) for i in range(out.ctx.n)}
    assert words == expect and "limit inf and 3000000000 with True and None" in words.values()
