"""The placement engine: filter, score, normalize, pick; pure functions over a snapshot."""

from placement.engine.engine import Engine
from placement.engine.outcome import Outcome

__all__ = ["Engine", "Outcome"]
