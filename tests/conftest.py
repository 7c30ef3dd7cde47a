"""Shared fixtures: the example bundle and the shared data folder."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest

from placement.engine import Engine
from placement.engine.offline import engine_for
from placement.policy.loader import Bundle, load_bundle

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "policies" / "examples"
SHARED_DATA = ROOT.parent / "shared" / "data"


def philly_head(tmp: Path, rows: int) -> Path:
    """The first `rows` jobs of the shared Philly trace as a CSV in `tmp` (skips without it)."""
    trace = SHARED_DATA / "trace_philly_jobs.csv"
    if not trace.exists():
        pytest.skip(f"{trace} is not here")
    lines = trace.read_text(encoding="utf-8").splitlines()[:rows + 1]
    path = tmp / f"philly-{rows}.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def bundle() -> Bundle:
    return load_bundle(EXAMPLES)


@pytest.fixture(scope="session")
def example_engine(bundle: Bundle) -> Engine:
    return engine_for(bundle)


# --- service fixtures -------------------------------------------------------------------------
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from fastapi.testclient import TestClient  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from api.app import create_app  # noqa: E402
from placement.control.auth import create_token  # noqa: E402
from placement.control.runtime import Runtime  # noqa: E402
from placement.metrics import Metrics  # noqa: E402
from placement.service.settings import Settings  # noqa: E402
from placement.service.wiring import build_runtime  # noqa: E402

from .services import postgres_database  # noqa: E402


@dataclass
class Api:
    """A test client over a real database, with tokens for three callers."""

    client: TestClient
    runtime: Runtime
    tokens: dict[str, str]

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@contextmanager
def api_on(url: str, config: Path = EXAMPLES) -> Iterator[Api]:
    rt = build_runtime(Settings(database_url=url, config_dir=config),
                       Metrics(CollectorRegistry()))
    with rt.db.write() as s:
        tokens = {
            "admin": create_token(s, role="admin", team=None),
            "vision": create_token(s, role="member", team="vision"),
            "quality": create_token(s, role="member", team="quality"),
        }
    with TestClient(create_app(runtime=rt)) as client:
        yield Api(client, rt, tokens)


@contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'placement.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture()
def api(tmp_path: Path) -> Iterator[Api]:
    with api_on(f"sqlite:///{tmp_path / 'placement.db'}") as a:
        yield a


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database(request.param, tmp_path) as url:
        yield url
