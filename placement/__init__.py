"""Hybrid private/public cloud AI workload placement: decide, explain, record."""

from placement import extras as _extras

__version__ = "0.1.0"

_extras.install()  # a missing optional dependency names the extra that brings it
