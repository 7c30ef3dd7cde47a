"""Optional dependencies: which extra of `hybrid-placement` brings each, and a clear error when
one is missing.

A core install (`pip install hybrid-placement`: the API, the engine, the store and the CLI's
offline commands) leaves out the Kubernetes clients, Triton's client, Pulumi and its cloud
providers, and the simulator's compiled kernels and plots. The code that needs them imports them
where it needs them, never at import time of a core module. When such an import finds nothing,
the finder installed here (last on `sys.meta_path`, so it is asked only after every real finder
came up empty) turns the bare `No module named 'pulumi_aws'` into one that names the extra.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

DIST = "hybrid-placement"

# extra -> (what it is for, the top-level modules it brings)
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "kube": ("acting on the sites' Kubernetes clusters (serving, jobs, the operator)",
             ("kubernetes", "kubernetes_validate", "kopf")),
    "triton": ("Triton Inference Server's model configuration and control API",
               ("tritonclient", "google")),  # google.protobuf: the model configuration
    "bursts": ("cloud bursts (Pulumi and its AWS and GCP providers)",
               ("pulumi", "pulumi_aws", "pulumi_gcp")),
    "sim": ("the simulator and opportunity-cost pricing (compiled batch kernels, report "
            "plots, Dask clusters)",
            ("numba", "matplotlib", "distributed")),
}
EXTRA_OF: dict[str, str] = {m: extra for extra, (_, mods) in EXTRAS.items() for m in mods}


def install_hint(extra: str) -> str:
    return f"pip install '{DIST}[{extra}]'"


class MissingExtra(ModuleNotFoundError):
    """An optional dependency is not installed; the message says which extra brings it."""

    def __init__(self, module: str) -> None:
        extra = EXTRA_OF[module.partition(".")[0]]
        purpose = EXTRAS[extra][0]
        super().__init__(f"No module named {module!r}: {purpose} needs the optional "
                         f"dependencies of the '{extra}' extra: {install_hint(extra)}",
                         name=module)
        self.extra = extra


class _MissingExtraFinder(importlib.abc.MetaPathFinder):
    """Asked last: a known optional module that no real finder found raises MissingExtra."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] in EXTRA_OF:
            raise MissingExtra(fullname)
        return None


def install() -> None:
    """Put the finder last on sys.meta_path (once)."""
    if not any(isinstance(f, _MissingExtraFinder) for f in sys.meta_path):
        sys.meta_path.append(_MissingExtraFinder())
