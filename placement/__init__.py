"""Hybrid private/public cloud AI workload placement: decide, explain, record."""

__version__ = "0.1.0"
