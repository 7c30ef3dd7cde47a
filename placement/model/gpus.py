"""Known GPU types: the accelerator names used by the public price catalogs."""

from __future__ import annotations

# Names follow the SkyPilot catalogs in ../shared/data (AWS, GCP, Azure), so a site's offers can be
# copied from them without renaming. Extend this tuple when a new accelerator reaches a catalog.
KNOWN_GPU_TYPES: tuple[str, ...] = (
    "A10",
    "A10G",
    "A100",
    "A100-80GB",
    "B200",
    "H100",
    "H100-MEGA",
    "H200",
    "K80",
    "L4",
    "L40S",
    "M60",
    "P100",
    "P4",
    "T4",
    "T4g",
    "V100",
    "V100-32GB",
)

_KNOWN = frozenset(KNOWN_GPU_TYPES)


def is_known_gpu(name: str) -> bool:
    """True when `name` is an accelerator the project knows."""
    return name in _KNOWN
