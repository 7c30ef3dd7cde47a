"""Extension points of the engine: every filter and score plugin implements one of these."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from placement.engine.context import DecisionContext

Bools = NDArray[np.bool_]
Floats = NDArray[np.float64]


@dataclass(frozen=True)
class FilterResult:
    """Which candidates pass, and a function that explains a rejection of candidate i."""

    passed: Bools
    reason: Callable[[int], str]


@dataclass(frozen=True)
class ScoreResult:
    """Raw values in natural units (lower is better); `applicable` False = not used here."""

    raw: Floats
    applicable: bool = True


class FilterPlugin(Protocol):
    """Says yes or no for every candidate at once, with a reason for each no."""

    NAME: ClassVar[str]

    def filter(self, ctx: DecisionContext) -> FilterResult: ...


class ScorePlugin(Protocol):
    """Returns one raw value per candidate for one criterion; lower is better."""

    NAME: ClassVar[str]
    CRITERION: ClassVar[str]
    UNIT: ClassVar[str]

    def score(self, ctx: DecisionContext) -> ScoreResult: ...
