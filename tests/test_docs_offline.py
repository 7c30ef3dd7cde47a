"""/docs in a real headless Chromium with every request off the server refused: the Swagger UI
assets come from the package, and the page renders every operation and the Authorize button."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import EXAMPLES
from .services import chromium, server


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("docs")
    with server(f"sqlite:///{tmp / 'p.db'}", EXAMPLES) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium(["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   "--disable-quic", "--no-first-run", "--disable-background-networking",
                   "--disable-component-update", "--disable-sync"]) as b:
        yield b


def _offline_page(browser: Any, base: str) -> tuple[Any, list[str]]:
    """A page that may reach the server alone; every other request is aborted and kept."""
    context = browser.new_context()
    refused: list[str] = []

    def only_the_server(route: Any) -> None:
        url = route.request.url
        if url.startswith(base) or url.startswith("data:"):
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    context.route("**/*", only_the_server)
    return context.new_page(), refused


def _operations(base: str) -> int:
    doc = httpx.get(f"{base}/openapi.json", timeout=30).json()
    return sum(1 for item in doc["paths"].values() for m in item
               if m in {"get", "post", "put", "delete", "patch"})


def test_swagger_ui_renders_every_operation_offline(browser: Any, base: str,
                                                    tmp_path: Path) -> None:
    page, refused = _offline_page(browser, base)
    page.goto(f"{base}/docs")
    page.wait_for_selector(".opblock-summary", timeout=30_000)
    shown = page.locator(".opblock").count()
    assert shown == _operations(base) >= 30
    assert page.locator(".opblock-summary-path", has_text="/v1/workloads/{workload_id}").count()
    assert page.get_by_role("button", name="Authorize").count() == 1
    assert refused == []
    page.screenshot(path=str(tmp_path / "docs.png"))


@pytest.mark.parametrize("asset", ["swagger-ui-bundle.js", "swagger-ui.css"])
def test_the_assets_come_from_the_server(base: str, asset: str) -> None:
    res = httpx.get(f"{base}/docs/assets/{asset}", timeout=30)
    assert res.status_code == 200 and len(res.content) > 100_000
    page = httpx.get(f"{base}/docs", timeout=30).text
    assert "cdn." not in page and "https://" not in page
