"""Extension points of the engine: every filter and score plugin implements one of these."""

from __future__ import annotations

import functools
import itertools
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from placement.engine.context import DecisionContext

Bools = NDArray[np.bool_]
Floats = NDArray[np.float64]
Ints = NDArray[np.int64]


def literal(text: str) -> str:
    """`text` as a part of a `Reasons` template that formats to itself (braces doubled)."""
    return text.replace("{", "{{").replace("}", "}}")


@dataclass(frozen=True)
class Named:
    """A `Reasons` argument that names each candidate's item (its GPU type, say) by an index
    into `names`: stored as the index, worded as the name."""

    names: Sequence[str]
    index: Ints

    def __getitem__(self, i: int) -> str:
        return self.names[int(self.index[i])]


@dataclass(frozen=True)
class Reasons:
    """Why a filter rejects each candidate, as data, worded only when read.

    Candidate i's reason is `templates[code[i]]` (or `templates[code]` when `code` is one
    number) formatted by `str.format` with `args`: each a value shared by every candidate, an
    array with one value per candidate, or `Named` (one name per candidate). A template's
    fixed words come from the plugin; names from policies or the inventory go in through
    `literal` or as args. The decision stores the templates, the codes and the args; the
    explanation renders the words when someone reads it (placement.engine.explain)."""

    templates: Sequence[str]
    code: int | Ints = 0
    args: Mapping[str, Any] = field(default_factory=dict)

    def text(self, i: int) -> str:
        """Candidate i's reason in words."""
        return self.texts([i])[0]

    def texts(self, idx: Sequence[int] | Ints) -> list[str]:
        """The reasons of candidates `idx`, in words: each template formatted once per
        candidate that uses it, from the arguments it names only."""
        at = np.asarray(idx, dtype=np.int64)
        codes = ([self.code] * len(at) if isinstance(self.code, int)
                 else self.code[at].tolist())
        out = [""] * len(at)
        values: dict[str, list[Any] | None] = {}
        for code in sorted(set(codes)):
            pattern, fields = _positional(self.templates[code])
            js = [j for j, c in enumerate(codes) if c == code]
            columns = []
            for name in fields:
                if name not in values:
                    values[name] = _values(self.args[name], at)
                got = values[name]
                columns.append([got[j] for j in js] if got is not None
                               else itertools.repeat(self.args[name], len(js)))
            rows = zip(*columns, strict=True) if columns else itertools.repeat((), len(js))
            for j, text in zip(js, itertools.starmap(pattern.format, rows), strict=True):
                out[j] = text
        return out


def _values(value: Any, at: Ints) -> list[Any] | None:
    """An argument's values at candidates `at`, as Python objects (None: one shared value)."""
    if isinstance(value, np.ndarray):
        got: list[Any] = value[at].tolist()
        return got
    if isinstance(value, Named):
        return [value.names[k] for k in value.index[at].tolist()]
    return None


@functools.lru_cache(maxsize=4096)
def _positional(template: str) -> tuple[str, tuple[str, ...]]:
    """A named `str.format` template as a positional one, and the names in its order."""
    fields: list[str] = []
    parts = []
    for text, name, spec, conversion in string.Formatter().parse(template):
        parts.append(literal(text))
        if name is None:
            continue
        if not name.isidentifier():
            raise ValueError(f"reason template field {name!r}: use a plain argument name")
        if name not in fields:
            fields.append(name)
        parts.append("{" + str(fields.index(name)) + (f"!{conversion}" if conversion else "")
                     + (f":{spec}" if spec else "") + "}")
    return "".join(parts), tuple(fields)


NO_REASONS = Reasons(("",))


@dataclass
class FilterResult:
    """Which candidates pass, and why each rejected one is rejected: `Reasons`, or a
    function that builds them, called only if the decision is explained."""

    passed: Bools
    why: Reasons | Callable[[], Reasons] = NO_REASONS

    def reasons(self) -> Reasons:
        why = self.why
        if not isinstance(why, Reasons):
            why = self.why = why()
        return why


@dataclass(frozen=True)
class ScoreResult:
    """Raw values in natural units (lower is better); `applicable` False = not used here."""

    raw: Floats
    applicable: bool = True


class FilterPlugin(Protocol):
    """Says yes or no for every candidate at once, with the reasons for each no.

    Optional class attributes: `SHAPE_ONLY = True` when the filter reads only the workload's
    shape (its result is memoized per shape, and the batch path runs `filter` once per shape);
    otherwise a static `rule`, an elementwise function of named quantities
    (placement.engine.elementwise) that `filter` evaluates through `ctx.call(rule)` and the
    batch path compiles into its kernel. A filter with neither runs in Engine.decide only.
    """

    NAME: ClassVar[str]

    def filter(self, ctx: DecisionContext) -> FilterResult: ...


class ScorePlugin(Protocol):
    """Returns one raw value per candidate for one criterion; lower is better.

    The criterion's weight is the policy's `weights.<CRITERION>` (a criterion beyond the
    built-in four is registered with placement.model.policy.register_criterion); `SCALE`
    optionally names the policy's Scales field that normalizes it. As for filters,
    `SHAPE_ONLY = True` or a static elementwise `value` lets the batch path run it.
    """

    NAME: ClassVar[str]
    CRITERION: ClassVar[str]
    UNIT: ClassVar[str]

    def score(self, ctx: DecisionContext) -> ScoreResult: ...
