"""The example GitOps bundle, the default `--config`.

In a checkout it is `policies/examples`; a wheel carries a copy as package data
(`placement/policy/example_bundle`, a link to that folder in the source tree), so the default
also works from an installed package run anywhere.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

DEFAULT = Path("policies/examples")


def shipped() -> Path:
    """The example bundle inside the installed package."""
    return Path(str(files("placement.policy") / "example_bundle"))


def resolve(path: Path) -> Path:
    """`path` as given, except the default when it is not there (an installed package run
    outside a checkout): then the copy the package ships."""
    if path == DEFAULT and not path.is_dir():
        return shipped()
    return path
