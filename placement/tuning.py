"""The process's garbage-collector setting: one function that every entry point calls."""

from __future__ import annotations

import gc

GC_YOUNG = 50_000  # allocations between young collections (CPython's default: 700)


def tune_gc() -> None:
    """Every decision allocates thousands of short-lived objects: with CPython's default
    thresholds, full collections that walk every long-lived object (modules, the compiled
    inventory, pools) run often enough to put tens of milliseconds into single decisions.
    Objects alive now are frozen out of collection, and young collections run less often.
    Called by the service, the operator, the CLI (so `place`, `simulate` and `policy diff`),
    and the benchmarks; safe to call again (each call freezes what was built since)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG, 20, 50)


def gc_tuned() -> bool:
    """True once `tune_gc` ran in this process."""
    return gc.get_threshold()[0] == GC_YOUNG
