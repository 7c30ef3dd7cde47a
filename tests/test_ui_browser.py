"""The dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright with
`executable_path`): log in, open every page, check what it shows against the REST API, follow a
workload to its explanation, and check a member of another team sees nothing of it. Each page's
screenshot is saved under $PLACEMENT_TEST_ARTIFACTS (default .artifacts/ui)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from placement.policy.loader import load_bundle

from .conftest import EXAMPLES, ROOT
from .services import chromium, server
from .test_ui import report_tree

ARTIFACTS = Path(os.environ.get("PLACEMENT_TEST_ARTIFACTS", ROOT / ".artifacts" / "ui"))


@dataclass
class Site:
    base: str
    tokens: dict[str, str]

    def api(self, path: str, who: str = "admin") -> Any:
        res = httpx.get(f"{self.base}{path}", timeout=30,
                        headers={"Authorization": f"Bearer {self.tokens[who]}"})
        assert res.status_code == 200, res.text
        return res.json()


def _token(db: str, *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "placement.cli", "token", "create",
                           "--database-url", db, *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("ui")
    db = f"sqlite:///{tmp / 'p.db'}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PLACEMENT_REPORTS_DIR", str(report_tree(tmp)))
        env.delenv("PLACEMENT_BURSTS", raising=False)  # this service provisions no bursts
        with server(db, EXAMPLES) as base:
            tokens = {"admin": _token(db, "--role", "admin"),
                      "vision": _token(db, "--role", "member", "--team", "vision"),
                      "quality": _token(db, "--role", "member", "--team", "quality")}
            for wl in load_bundle(EXAMPLES).workloads:
                res = httpx.post(f"{base}/v1/workloads", json=wl.model_dump(mode="json"),
                                 headers={"Authorization": f"Bearer {tokens['admin']}"},
                                 timeout=30)
                assert res.status_code == 201, res.text
            yield Site(base, tokens)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with chromium(["--no-sandbox", "--disable-dev-shm-usage"]) as b:
        yield b


def _login(browser: Any, site: Site, who: str, **context: Any) -> Any:
    page = browser.new_context(**context).new_page()
    page.goto(f"{site.base}/ui/")
    assert "/ui/login" in page.url
    page.get_by_label("API token").fill(site.tokens[who])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{site.base}/ui/")
    return page


def _shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_a_bad_token_is_refused(browser: Any, site: Site) -> None:
    page = browser.new_page()
    page.goto(f"{site.base}/ui/login")
    page.get_by_label("API token").fill("plc_not-a-token")
    page.get_by_role("button", name="Log in").click()
    assert page.get_by_role("alert").inner_text() == "That token is unknown or revoked."
    _shot(page, "login-refused")


def test_overview_matches_the_api(browser: Any, site: Site) -> None:
    page = _login(browser, site, "admin")
    sites = {s["name"] for s in site.api("/v1/sites")}
    shown = set(page.locator("tbody tr[data-site]").evaluate_all(
        "rows => rows.map(r => r.dataset.site)"))
    assert shown == sites
    metrics = httpx.get(f"{site.base}/metrics").text
    line = next(x for x in metrics.splitlines() if x.startswith(
        'placement_gpus_reserved{gpu_type="A100-80GB",site="dc-frankfurt"}'))
    reserved = int(float(line.split()[-1]))
    row = page.locator('tr[data-site="dc-frankfurt"][data-gpu="A100-80GB"] td.num').first
    assert int(row.inner_text()) == reserved > 0
    total = 0.0
    for item in site.api("/v1/workloads")["items"]:
        d = site.api(f"/v1/workloads/{item['id']}")["decision"]["decision"]
        if d["action"] in ("place", "burst"):
            total += d["estimates"]["total_usd"]
    assert page.get_by_test_id("day-usd").inner_text() == f"${total:,.2f}"
    _shot(page, "overview")


def test_overview_puts_onprem_first_and_hides_bursts_when_off(browser: Any, site: Site) -> None:
    page = _login(browser, site, "admin")
    kinds = {s.name: s.spec.type for s in load_bundle(EXAMPLES).inventory.sites}
    order = list(dict.fromkeys(page.locator("tbody tr[data-site]").evaluate_all(
        "rows => rows.map(r => r.dataset.site)")))
    onprem = sorted(n for n, k in kinds.items() if k == "onprem")
    assert order == onprem + sorted(n for n, k in kinds.items() if k == "cloud")
    first = page.locator("tbody th[scope=rowgroup]").first
    assert first.inner_text() == onprem[0] and first.is_visible()
    assert page.get_by_role("heading", name="Active bursts").count() == 0
    assert page.get_by_test_id("burst-rate").count() == 0
    note = page.get_by_test_id("bursts-off")
    assert note.is_visible() and "3 burst decision(s)" in note.inner_text()


def test_follow_a_workload_to_its_explanation(browser: Any, site: Site) -> None:
    page = _login(browser, site, "admin")
    page.get_by_role("link", name="Workloads").click()
    items = site.api("/v1/workloads")["items"]
    assert page.locator("#rows tr").count() == len(items)
    _shot(page, "workloads")
    page.get_by_role("link", name="support-chat").click()
    page.wait_for_url("**/ui/workloads/*")
    wid = page.url.rsplit("/", 1)[1]
    api = site.api(f"/v1/workloads/{wid}")["decision"]["decision"]
    assert page.get_by_test_id("summary").inner_text() == api["summary"]
    chosen = page.locator('[data-testid="bar"][data-chosen="yes"]')
    assert chosen.count() == 1
    assert api["site"] in chosen.get_attribute("aria-label")
    rejected = [c for c in api["candidates"] if c["rejected_by"]]
    groups = page.get_by_test_id("rejection-group")
    assert groups.count() == 3 and groups.first.is_visible()
    counts = [int(x) for x in page.locator('[data-testid="rejection-group"] td.num')
              .all_inner_texts()]
    assert sum(counts) == len(rejected)
    every = page.get_by_test_id("rejected")
    assert every.locator("tbody tr").count() == len(rejected) and not every.is_visible()
    page.get_by_text(f"Every rejected candidate ({len(rejected)})").click()
    assert every.is_visible()  # all of them, one click away
    bars = page.get_by_test_id("scores").locator("td").all_inner_texts()
    assert bars and not any(re.search(r"\d\.\d{3,}", t) for t in bars), bars
    _shot(page, "workload")
    phone = _login(browser, site, "admin", viewport={"width": 390, "height": 844})
    phone.goto(page.url)
    assert phone.get_by_test_id("summary").is_visible()
    _shot(phone, "workload-phone")


def test_policy_page_shows_the_active_version(browser: Any, site: Site) -> None:
    page = _login(browser, site, "admin")
    page.get_by_role("link", name="Policy").click()
    assert page.get_by_test_id("version").inner_text() == site.api("/v1/policies/active")[
        "version"]
    _shot(page, "policy")
    page.get_by_role("link", name="Simulation reports").click()
    assert page.get_by_role("heading", name="Simulation reports").is_visible()
    _shot(page, "reports")


def test_a_report_opens_with_its_plots_and_no_scripts(browser: Any, site: Site) -> None:
    page = _login(browser, site, "vision")
    page.get_by_role("link", name="Simulation reports").click()
    rows = page.locator("tr[data-report]")
    assert rows.count() == 6
    q4 = page.locator('tr[data-report="q4/report.html"]')
    assert "traces/q4.csv" in q4.inner_text() and "Within 2% of the bound" in q4.inner_text()
    broken = page.locator('tr[data-report="broken/report.html"]')
    assert "summary unreadable" in broken.inner_text()
    page.get_by_role("link", name="q3/baseline/report.html").click()
    page.wait_for_url("**/ui/reports/q3/baseline/report.html")
    img = page.get_by_role("img", name="Utilization")
    img.wait_for()
    page.wait_for_load_state("load")
    assert img.evaluate("i => i.complete && i.naturalWidth") == 3  # the plot was served
    assert page.locator("#t").inner_text() == "What-if replay"  # its script did not run
    _shot(page, "report")


def test_a_member_of_another_team_sees_nothing_of_it(browser: Any, site: Site) -> None:
    vision = next(i for i in site.api("/v1/workloads")["items"]
                  if i["name"] == "vision-finetune")
    page = _login(browser, site, "quality")
    page.goto(f"{site.base}/ui/workloads")
    names = page.locator("#rows tr td:first-child").all_inner_texts()
    assert names and "vision-finetune" not in names
    assert set(names) == {i["name"] for i in site.api("/v1/workloads", "quality")["items"]}
    page.goto(f"{site.base}/ui/workloads/{vision['id']}")
    assert page.get_by_role("heading", name="Not found").is_visible()
    assert "vision-finetune" not in page.content()
    _shot(page, "other-team")
