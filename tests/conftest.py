"""Shared fixtures: the example bundle and the shared data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from placement.engine import Engine
from placement.loader import Bundle, load_bundle
from placement.service import engine_for

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "policies" / "examples"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def bundle() -> Bundle:
    return load_bundle(EXAMPLES)


@pytest.fixture(scope="session")
def example_engine(bundle: Bundle) -> Engine:
    return engine_for(bundle)
