"""Dashboard routes, server side: auth, scoping, empty states, full sites, rejections."""

from __future__ import annotations

import html
import json
import math
import os
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from placement.policy.loader import load_bundle

from .conftest import EXAMPLES, Api, api_on

QUEUE_BUNDLE = EXAMPLES.parents[1] / "tests" / "data" / "queue"
ORIGIN = {"origin": "http://testserver"}  # what a browser sends with the dashboard's forms
FORM = {"content-type": "application/x-www-form-urlencoded", **ORIGIN}
PAGES = ["/ui/", "/ui/workloads", "/ui/policy", "/ui/reports"]


def _login(api: Api, who: str) -> None:
    res = api.client.post("/ui/login", content=f"token={api.tokens[who]}", headers=FORM,
                          follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"] == "/ui/"


def _submit(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    res = api.client.post("/v1/workloads", json=body, headers=api.h("admin"))
    assert res.status_code == 201, res.text
    out: dict[str, Any] = res.json()
    return out


@pytest.fixture()
def examples(tmp_path: Path) -> Any:
    with api_on(f"sqlite:///{tmp_path / 'p.db'}") as a:
        ids = {w.name: _submit(a, w.model_dump(mode="json"))["id"]
               for w in load_bundle(EXAMPLES).workloads}
        yield a, ids


@pytest.mark.parametrize("path", [*PAGES, "/ui/workloads/00000000-0000-0000-0000-000000000000"])
def test_pages_need_a_login(api: Api, path: str) -> None:
    res = api.client.get(path, follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"].startswith("/ui/login?next=")
    api.client.cookies.set("placement_session", "forged", path="/ui")
    assert api.client.get(path, follow_redirects=False).status_code == 303
    api.client.cookies.clear()
    api.client.cookies.set("placement_token", api.tokens["admin"], path="/ui")  # the old cookie
    assert api.client.get(path, follow_redirects=False).status_code == 303


def test_login_logout_and_the_row_fragment(api: Api) -> None:
    bad = api.client.post("/ui/login", content="token=nope", headers=FORM)
    assert bad.status_code == 401 and "unknown or revoked" in bad.text
    assert api.client.get("/ui/workloads/rows").status_code == 401
    _login(api, "admin")
    assert api.client.get("/ui/workloads/rows").status_code == 200
    out = api.client.post("/ui/logout", headers=ORIGIN, follow_redirects=False)
    assert out.status_code == 303 and "placement_session=\"\"" in out.headers["set-cookie"]
    assert api.client.get("/ui/workloads/rows").status_code == 401


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/ui/", "/v1/sites"])
def test_login_never_redirects_off_the_dashboard(api: Api, target: str) -> None:
    res = api.client.post("/ui/login", content=f"token={api.tokens['admin']}&next={target}",
                          headers=FORM, follow_redirects=False)
    assert res.headers["location"] == "/ui/"


def a_total(api: Api, who: str) -> float:
    """Estimated USD of the placements the caller can see, per the REST API."""
    total = 0.0
    for item in api.client.get("/v1/workloads", headers=api.h(who)).json()["items"]:
        d = api.client.get(f"/v1/workloads/{item['id']}", headers=api.h(who)).json()
        if d["action"] in ("place", "burst"):
            total += d["decision"]["decision"]["estimates"]["total_usd"]
    return round(total, 2)


def test_empty_states(api: Api) -> None:
    _login(api, "admin")
    assert "No workloads match" in api.client.get("/ui/workloads").text
    overview = api.client.get("/ui/").text
    assert "Active bursts" not in overview and "$0.00" in overview  # bursts are off here
    api.client.app.state.bursts = True  # type: ignore[attr-defined]
    assert "No workload runs on burst capacity now." in api.client.get("/ui/").text
    assert "No reports directory is configured" in api.client.get("/ui/reports").text
    home = api.client.get("/", follow_redirects=False)
    assert home.status_code == 307 and home.headers["location"] == "/ui/"


def test_a_revoked_token_stops_working_on_the_dashboard(api: Api) -> None:
    from sqlalchemy import update

    from placement.control.auth import hash_token
    from placement.store.tables import ApiTokenRow, utcnow

    _login(api, "vision")
    assert api.client.get("/ui/workloads", follow_redirects=False).status_code == 200
    with api.runtime.db.write() as s:  # revoked behind the API's back (another process)
        s.execute(update(ApiTokenRow).where(
            ApiTokenRow.token_hash == hash_token(api.tokens["vision"])).values(
            revoked_at=utcnow()))
    # The session is bound to the token and read on each page: refused at once, not after
    # the API's token cache runs out.
    assert api.client.get("/ui/workloads", follow_redirects=False).status_code == 303
    assert api.client.get("/ui/workloads/rows").status_code == 401


@pytest.mark.parametrize("query", [
    "cursor=WyIyMDI0LTAxLTAxVDAwOjAwOjAwIiwgNV0=",  # ["2024-01-01T00:00:00", 5]
    "cursor=%%%", "site=%00", "team=%00x", "kind=%ff", "phase=" + "x" * 500,
])
def test_odd_query_parameters_never_fail(api: Api, query: str) -> None:
    _login(api, "admin")
    for path in ("/ui/workloads", "/ui/workloads/rows"):
        assert api.client.get(f"{path}?{query}").status_code == 200
    assert api.client.get(f"/v1/workloads?{query}", headers=api.h("admin")).status_code in (
        200, 422)


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders(examples: Any, path: str) -> None:
    api, _ = examples
    _login(api, "admin")
    res = api.client.get(path)
    assert res.status_code == 200 and "<main id=\"main\">" in res.text


def test_detail_explains_and_lists_rejections(examples: Any) -> None:
    api, ids = examples
    _login(api, "admin")
    page = api.client.get(f"/ui/workloads/{ids['support-chat']}").text
    assert ('data-chosen="yes" aria-label="dc-frankfurt · onprem A100-80GB: score 100.0, '
            'chosen"') in page
    assert "bursts only when on-prem cannot" in page  # the burst gate's reason
    assert "Event log" in page and "submitted by team customer-care" in page
    # where the chosen site's network numbers come from
    assert re.search(r'data-testid="sources">client rtt: (measured|estimated: [^;<]+)', page)


def test_a_fleet_shows_its_members_and_why_each_location_is_served_where(examples: Any
                                                                        ) -> None:
    api, ids = examples
    _login(api, "admin")
    page = html.unescape(api.client.get(f"/ui/workloads/{ids['global-docs-rag']}").text)
    members = page[page.index('data-testid="fleet-members"'):]
    assert "dc-frankfurt" in members and "aws-us-west-2" in members
    route = page[page.index('data-location="tokyo-users"'):]
    route = route[:route.index("</tr>")]
    assert "aws-us-west-2 (100%" in route  # Tokyo's users go to the US west coast
    assert "a spot site carries at most 50%" in route  # and why not on its spot capacity
    frankfurt = page[page.index('data-location="frankfurt-office"'):]
    assert "dc-frankfurt on-prem A100-80GB is the cheapest candidate" in frankfurt


@pytest.mark.parametrize(("query", "expected"), [
    ("action=burst", {"llm-pretrain", "global-assistant", "global-docs-rag"}),
    ("kind=finetune", {"vision-finetune"}),
    ("site=plant-austin", {"austin-line-inspection"}),
    ("phase=rejected", set()),
])
def test_filters(examples: Any, query: str, expected: set[str]) -> None:
    api, _ = examples
    _login(api, "admin")
    rows = api.client.get(f"/ui/workloads/rows?{query}").text
    names = {n for n in ("llm-pretrain", "vision-finetune", "austin-line-inspection",
                         "support-chat", "defect-detector", "global-assistant",
                         "global-docs-rag") if f">{n}</a>" in rows}
    assert names == expected


def test_members_see_only_their_team(examples: Any) -> None:
    api, ids = examples
    _login(api, "vision")
    rows = api.client.get("/ui/workloads/rows?team=customer-care").text
    assert ">vision-finetune</a>" in rows and ">support-chat</a>" not in rows
    assert api.client.get(f"/ui/workloads/{ids['support-chat']}").status_code == 404
    assert api.client.get("/ui/workloads/not-a-uuid").status_code == 404
    overview = api.client.get("/ui/").text
    assert "llm-pretrain" not in overview and "of team vision" in overview
    own = a_total(api, "vision")
    assert f'data-testid="day-usd">${own:,.2f}<' in overview
    assert own < a_total(api, "admin")


def test_a_full_site_and_a_rejected_workload(tmp_path: Path) -> None:
    with api_on(f"sqlite:///{tmp_path / 'p.db'}", QUEUE_BUNDLE) as a:
        job = {"metadata": {"name": "all-of-it"}, "spec": {
            "kind": "training", "team": "vision", "duration_hours": 1,
            "gpu": {"types": ["A100"], "count": 8}}}
        _submit(a, job)
        too_big = {"metadata": {"name": "too-big"}, "spec": {
            "kind": "training", "team": "vision", "duration_hours": 1,
            "gpu": {"types": ["A100"], "count": 16}}}
        rejected = _submit(a, too_big)
        assert rejected["phase"] == "rejected"
        _login(a, "admin")
        overview = a.client.get("/ui/").text
        assert 'data-site="dc" data-gpu="A100"' in overview and ">full</span>" in overview
        page = a.client.get(f"/ui/workloads/{rejected['id']}").text
        assert "No candidate passed the filters." in page
        assert "has 8 A100 installed; the workload needs 16 on one site" in page


def png(width: int = 3, height: int = 2) -> bytes:
    """A small valid PNG (red pixels), as the simulator's plots are."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                                  0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


REPORT_HTML = ('<!doctype html><h1 id="t">What-if replay</h1><img src="utilization.png" '
               'alt="Utilization"><script>document.getElementById("t").textContent = "ran"'
               "</script>")


def report_tree(root: Path) -> Path:
    """A reports folder as `placement simulate --out` leaves it, in subfolders, plus the odd
    cases: a malformed summary, one that is not an object, a link out, a file beside it."""
    reports = root / "reports"
    for sub, trace, headline in [("q3/baseline", "traces/q3.csv", ["Saves $1,204 a month"]),
                                 ("q4", "traces/q4.csv", ["Within 2% of the bound", "2 seeds"])]:
        (reports / sub).mkdir(parents=True)
        (reports / sub / "report.html").write_text(REPORT_HTML)
        (reports / sub / "utilization.png").write_bytes(png())
        (reports / sub / "summary.json").write_text(json.dumps(
            {"trace": trace, "workloads": 1200, "headline": headline, "policies": {}}))
    (reports / "broken").mkdir()
    (reports / "broken" / "report.html").write_text("<p>broken</p>")
    (reports / "broken" / "summary.json").write_text('{"trace": "x.csv", "headline": [')
    (reports / "odd").mkdir()
    (reports / "odd" / "report.html").write_text("<p>odd</p>")
    (reports / "odd" / "summary.json").write_text("[1, 2]")
    (reports / "q3 what-if.html").write_text("<h1>what if</h1>")
    (reports / "latin1.html").write_bytes(b"<p>caf\xe9</p>")
    (root / "secret.html").write_text("SECRET")
    (root / "secret.png").write_bytes(png())
    (reports / "link.html").symlink_to(root / "secret.html")
    (reports / "q4" / "out.png").symlink_to(root / "secret.png")
    (reports / "escape").symlink_to(root, target_is_directory=True)
    (reports / "q4" / "notes.py").write_text("print('no')")
    return reports


def test_reports_are_listed_from_subfolders_with_their_summary(tmp_path: Path) -> None:
    reports = report_tree(tmp_path)
    os.utime(reports / "q4" / "summary.json", (2_000_000_000, 2_000_000_000))  # 2033-05-18
    with api_on(f"sqlite:///{tmp_path / 'p.db'}") as a:
        a.client.app.state.reports_dir = reports  # type: ignore[attr-defined]
        _login(a, "vision")
        page = a.client.get("/ui/reports")
        assert page.status_code == 200
        rows = {m[0]: m[1] for m in re.findall(
            r'<tr data-report="([^"]+)">(.*?)</tr>', page.text, re.S)}
        assert set(rows) == {"q3/baseline/report.html", "q4/report.html", "broken/report.html",
                             "odd/report.html", "q3 what-if.html", "latin1.html"}
        assert next(iter(rows)) == "q4/report.html"  # newest first
        q4 = rows["q4/report.html"]
        assert '<code>traces/q4.csv</code> (1,200 workloads)' in q4
        assert "2033-05-18 03:33 UTC" in q4
        assert "<p>Within 2% of the bound</p><p>2 seeds</p>" in q4
        assert "Saves $1,204 a month" in rows["q3/baseline/report.html"]
        assert 'href="/ui/reports/q3/baseline/report.html"' in page.text
        assert 'href="/ui/reports/q3%20what-if.html"' in page.text
        for bad in ("broken/report.html", "odd/report.html"):
            assert "summary unreadable" in rows[bad]
        assert "no summary.json" in rows["latin1.html"]
        assert "SECRET" not in page.text and "link.html" not in page.text
        assert "escape" not in page.text  # a link to a folder outside is not followed


SANDBOX = ("sandbox allow-same-origin; default-src 'none'; img-src 'self' data:; "
           "style-src 'unsafe-inline'; frame-ancestors 'none'")


@pytest.mark.parametrize(("path", "status", "content_type"), [
    ("q3/baseline/report.html", 200, "text/html; charset=utf-8"),
    ("q3/baseline/utilization.png", 200, "image/png"),
    ("q4/summary.json", 200, "application/json"),
    ("q3%20what-if.html", 200, "text/html; charset=utf-8"),
    ("latin1.html", 200, "text/html; charset=utf-8"),
    ("q4/missing.png", 404, None),
    ("q4/notes.py", 404, None),  # not a report file type
    ("q4", 404, None),  # a folder
    ("link.html", 404, None),  # a link that points outside
    ("q4/out.png", 404, None),
    ("escape/secret.html", 404, None),  # through a linked folder
    ("%2e%2e/secret.html", 404, None),
    ("q4/%2e%2e/%2e%2e/secret.png", 404, None),
    ("q4%2f..%2f..%2fsecret.png", 404, None),
    ("%2fetc%2fpasswd.txt", 404, None),
    ("q4/summary.json%00.png", 404, None),
])
def test_report_files_are_served_only_from_under_the_folder(
        tmp_path: Path, path: str, status: int, content_type: str | None) -> None:
    reports = report_tree(tmp_path)
    with api_on(f"sqlite:///{tmp_path / 'p.db'}") as a:
        assert a.client.get(f"/ui/reports/{path}", follow_redirects=False).status_code == 303
        a.client.app.state.reports_dir = reports  # type: ignore[attr-defined]
        _login(a, "vision")
        res = a.client.get(f"/ui/reports/{path}")
        assert res.status_code == status, res.text
        assert "SECRET" not in res.text
        _hardened(res)
        if content_type is None:
            return
        assert res.headers["content-type"] == content_type
        if path.endswith(".html"):
            assert res.headers["content-security-policy"] == SANDBOX
        else:
            assert res.headers["content-security-policy"] == "frame-ancestors 'none'"
        if path.endswith(".png"):
            assert res.content == png()


def test_reports_without_a_folder(tmp_path: Path) -> None:
    with api_on(f"sqlite:///{tmp_path / 'p.db'}") as a:
        _login(a, "admin")
        assert "No reports directory is configured" in a.client.get("/ui/reports").text
        assert a.client.get("/ui/reports/x/report.html").status_code == 404
        a.client.app.state.reports_dir = tmp_path / "empty"  # type: ignore[attr-defined]
        (tmp_path / "empty").mkdir()
        assert "No HTML reports in" in a.client.get("/ui/reports").text


def test_the_first_page_refreshes_and_older_pages_keep_their_place(tmp_path: Path) -> None:
    with api_on(f"sqlite:///{tmp_path / 'p.db'}", QUEUE_BUNDLE) as a:
        def job(i: int) -> dict[str, Any]:
            return {"metadata": {"name": f"j{i:03d}"}, "spec": {
                "kind": "batch", "team": "vision", "duration_hours": 0.1,
                "gpu": {"types": ["A100"], "count": 1}}}

        for i in range(30):
            _submit(a, job(i))
        _login(a, "admin")
        first = a.client.get("/ui/workloads?kind=batch").text
        assert 'data-refresh="/ui/workloads/rows?kind=batch"' in first
        older = first.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0]
        assert "kind=batch" in older and "cursor=" in older
        page2 = a.client.get(older.replace("&amp;", "&")).text
        assert "data-refresh" not in page2 and ">j004</a>" in page2 and ">j005</a>" not in page2
        for i in range(30, 33):  # new arrivals go to the first page, the fragment has a pager
            _submit(a, job(i))
        fragment = a.client.get("/ui/workloads/rows?kind=batch").text
        assert ">j032</a>" in fragment and 'rel="next"' in fragment


def test_spend_totals_and_the_action_filter_on_both_databases(db_url: str) -> None:
    """The totals are summed in SQL from the stored explanations (JSON paths differ by
    dialect); the REST list takes the same action filter as the dashboard."""
    with api_on(db_url) as a:
        decided = [_submit(a, w.model_dump(mode="json")) for w in load_bundle(EXAMPLES).workloads]
        expected = sum(w["decision"]["decision"]["estimates"]["total_usd"] for w in decided
                       if w["action"] in ("place", "burst"))
        _login(a, "admin")
        assert f"${expected:,.2f}" in a.client.get("/ui/").text
        bursts = a.client.get("/v1/workloads?action=burst", headers=a.h("admin")).json()
        assert sorted(w["name"] for w in bursts["items"]) == [
            "global-assistant", "global-docs-rag", "llm-pretrain"]  # fleets with cloud members


def test_overview_shows_live_utilization_when_signals_exist(tmp_path: Path) -> None:
    from placement.signals import PrometheusClient, Sample, SignalCache

    class Fake(PrometheusClient):
        def query(self, promql: str) -> list[Sample]:
            return [Sample({}, 73.4)] if promql.startswith("avg(") else []

    with api_on(f"sqlite:///{tmp_path / 'p.db'}") as a:
        cache = SignalCache(Fake("http://unused"), a.runtime.current_inventory)
        cache.refresh()
        a.runtime.signals = cache
        _login(a, "admin")
        overview = a.client.get("/ui/").text
        assert "Live utilization" in overview
        frankfurt = overview.split('data-site="dc-frankfurt"')[1].split("</tr>")[0]
        assert '73% <span class="tag fresh">fresh</span>' in frankfurt
        austin = overview.split('data-site="plant-austin"')[1].split("</tr>")[0]
        assert "not configured" in austin


# --- sessions, form origins, response headers (issue "No request can hurt another", item 6) ---

def _session_rows(api: Api) -> list[Any]:
    from sqlalchemy import select

    from placement.store.tables import UiSessionRow

    with api.runtime.db.read() as s:
        return list(s.scalars(select(UiSessionRow)))


def test_the_cookie_holds_a_server_side_session_not_the_token(api: Api) -> None:
    from placement.control.auth import hash_token
    from placement.store.db import as_utc
    from placement.store.tables import utcnow

    res = api.client.post("/ui/login", content=f"token={api.tokens['vision']}", headers=FORM,
                          follow_redirects=False)
    assert res.status_code == 303
    cookie = res.headers["set-cookie"]
    sid = api.client.cookies.get("placement_session")
    assert sid and api.tokens["vision"] not in cookie and sid != api.tokens["vision"]
    assert api.client.cookies.get("placement_token") is None
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert "Max-Age=28800" in cookie and "Secure" not in cookie  # plain http here
    [row] = _session_rows(api)
    assert row.id_hash == hash_token(sid) and sid not in row.id_hash  # stored only hashed
    left = as_utc(row.expires_at) - utcnow()  # type: ignore[operator]
    assert 8 * 3600 - 60 < left.total_seconds() <= 8 * 3600
    assert api.client.get("/ui/workloads", follow_redirects=False).status_code == 200

    api.client.post("/ui/logout", headers=ORIGIN, follow_redirects=False)
    assert _session_rows(api) == []  # logout ends it on the server: a copied cookie is dead
    api.client.cookies.set("placement_session", sid, path="/ui")
    assert api.client.get("/ui/workloads", follow_redirects=False).status_code == 303


def test_a_session_expires_on_the_server(api: Api) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from placement.store.tables import UiSessionRow, utcnow

    _login(api, "admin")
    assert api.client.get("/ui/", follow_redirects=False).status_code == 200
    with api.runtime.db.write() as s:  # the browser would keep the cookie; the server does not
        s.execute(update(UiSessionRow).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert api.client.get("/ui/", follow_redirects=False).status_code == 303
    assert api.client.get("/ui/workloads/rows").status_code == 401
    api.client.cookies.clear()
    _login(api, "vision")  # a later login sweeps expired sessions
    assert len(_session_rows(api)) == 1


def test_secure_cookie_setting_marks_the_session_cookie(api: Api) -> None:
    api.client.app.state.secure_cookie = True  # type: ignore[attr-defined]
    res = api.client.post("/ui/login", content=f"token={api.tokens['admin']}",
                          headers={**FORM, "origin": "https://testserver"},
                          follow_redirects=False)
    assert res.status_code == 303 and "Secure" in res.headers["set-cookie"]


CROSS = [
    pytest.param({"origin": "https://evil.example"}, id="other-origin"),
    pytest.param({"origin": "null"}, id="null-origin"),
    pytest.param({"origin": "https://testserver"}, id="other-scheme"),
    pytest.param({"origin": "http://testserver.evil.example"}, id="suffix-host"),
    pytest.param({}, id="no-origin-no-referer"),
    pytest.param({"referer": "https://evil.example/ui/login"}, id="other-referer"),
    pytest.param({"origin": "https://evil.example", "referer": "http://testserver/ui/"},
                 id="origin-wins-over-referer"),
]


@pytest.mark.parametrize("headers", CROSS)
def test_login_from_another_origin_is_refused(api: Api, headers: dict[str, str]) -> None:
    res = api.client.post("/ui/login", content=f"token={api.tokens['admin']}",
                          headers={"content-type": "application/x-www-form-urlencoded",
                                   **headers}, follow_redirects=False)
    assert res.status_code == 403 and "set-cookie" not in res.headers
    assert _session_rows(api) == []


@pytest.mark.parametrize("headers", CROSS)
def test_logout_from_another_origin_is_refused(api: Api, headers: dict[str, str]) -> None:
    _login(api, "admin")
    res = api.client.post("/ui/logout", headers=headers, follow_redirects=False)
    assert res.status_code == 403 and "set-cookie" not in res.headers
    assert len(_session_rows(api)) == 1
    assert api.client.get("/ui/", follow_redirects=False).status_code == 200


def test_a_matching_referer_stands_in_for_a_missing_origin(api: Api) -> None:
    res = api.client.post("/ui/login", content=f"token={api.tokens['admin']}",
                          headers={"content-type": "application/x-www-form-urlencoded",
                                   "referer": "http://testserver/ui/login?next=/ui/"},
                          follow_redirects=False)
    assert res.status_code == 303
    out = api.client.post("/ui/logout", headers={"referer": "http://testserver/ui/"},
                          follow_redirects=False)
    assert out.status_code == 303 and _session_rows(api) == []


def _hardened(res: Any, *, cache: bool = True) -> None:
    assert "frame-ancestors 'none'" in res.headers["content-security-policy"], res.url
    assert res.headers["x-content-type-options"] == "nosniff", res.url
    if cache:
        assert res.headers["cache-control"] == "no-store", res.url


def test_every_dashboard_response_forbids_framing_sniffing_and_caching(api: Api) -> None:
    for path in ("/ui/login", "/ui/", "/ui/workloads/rows"):  # anonymous: page, redirect, 401
        _hardened(api.client.get(path, follow_redirects=False))
    _hardened(api.client.post("/ui/login", content="token=nope", headers=FORM))
    _hardened(api.client.post("/ui/login", content="token=nope"))  # refused: no origin
    _login(api, "admin")
    for path in [*PAGES, "/ui/workloads/rows", "/ui/workloads/not-a-uuid"]:
        _hardened(api.client.get(path))
    _hardened(api.client.post("/ui/logout", headers=ORIGIN, follow_redirects=False))
    static = api.client.get("/ui/static/app.css")
    assert static.status_code == 200
    _hardened(static, cache=False)  # static files hold no data: they may be cached


def test_the_old_raw_token_cookie_is_cleared(api: Api) -> None:
    api.client.cookies.set("placement_token", api.tokens["admin"], path="/ui")
    res = api.client.get("/ui/login")
    assert 'placement_token=""' in res.headers["set-cookie"]


# --- what the dashboard prints: grouped rejections, rounded numbers, the overview's order ---

def test_rejections_are_grouped_by_filter_and_reason(examples: Any) -> None:
    api, ids = examples
    _login(api, "admin")
    wid = ids["support-chat"]
    page = api.client.get(f"/ui/workloads/{wid}").text
    decision = api.client.get(f"/v1/workloads/{wid}", headers=api.h("admin")).json()[
        "decision"]["decision"]
    rejected = [c for c in decision["candidates"] if c["rejected_by"]]
    groups = re.findall(r'<tr data-testid="rejection-group" data-filter="([^"]+)">(.*?)</tr>',
                        page, re.S)
    assert [g[0] for g in groups] == ["burst", "capacity", "boundary"]  # largest first
    counts = [int(re.findall(r'class="num">(\d+)<', g[1])[0]) for g in groups]
    assert sum(counts) == len(rejected) and counts[0] == 23
    burst = groups[0][1]
    assert "rule &#39;services-near-clients&#39; bursts only when on-prem cannot" in burst
    assert "aws-us-west-2 (on_demand A100-80GB, spot A100-80GB, on_demand H100, spot H100)" in burst
    assert "offers no A100-80GB/H100 (has: …)" in groups[1][1]  # the part that varies
    # every candidate is still there, one row each, behind a <details>
    every = page.split('data-testid="rejected"')[1].split("</table>")[0]
    assert every.count("<tr><td>") == len(rejected)
    assert page.index("<details>\n    <summary>Every rejected candidate (26)") < page.index(
        'data-testid="rejected"')


def test_a_reason_keeps_what_its_group_shares_and_elides_what_varies(examples: Any) -> None:
    api, ids = examples
    _login(api, "admin")
    page = api.client.get(f"/ui/workloads/{ids['vision-finetune']}").text
    [burst] = re.findall(r'data-filter="burst">(.*?)</tr>', page, re.S)
    assert ("can start in 0.00 h, within max wait 2 h; rule "
            "&#39;training-bursts-when-onprem-busy&#39; bursts only when on-prem cannot or "
            "running here costs less than moving the data there (…)") in burst
    assert ">11</td>" in burst


@pytest.mark.parametrize(("value", "digits", "shown"), [
    (18.371234, 2, "18.37"), (100.0, 2, "100"), (0.5, 2, "0.5"), (2, 2, "2"),
    (1234567.891, 2, "1,234,567.89"), (0.000123, 2, "0.0001"), (-3.14159, 2, "-3.14"),
    (0.0, 2, "0"), (None, 2, "–"), (math.nan, 2, "–"), (math.inf, 2, "–"), (12.345, 1, "12.3"),
    (True, 2, "True"), ("n/a", 2, "n/a"),
])
def test_numbers_are_rounded_for_people(value: Any, digits: int, shown: str) -> None:
    from api.ui import num

    assert num(value, digits) == shown


@pytest.mark.parametrize(("value", "shown"), [
    (208.8249, "$208.82"), (1250, "$1,250.00"), (0.0, "$0.00"), (-4.5, "-$4.50"),
    (None, "–"), (math.nan, "–"),
])
def test_dollars_are_rounded_for_people(value: Any, shown: str) -> None:
    from api.ui import usd

    assert usd(value) == shown


def test_no_page_prints_a_long_float(examples: Any) -> None:
    api, ids = examples
    _login(api, "admin")
    long_float = re.compile(r"(?<![\w.])\d+\.\d{3,}(?![\w.])")
    for name, wid in ids.items():
        page = api.client.get(f"/ui/workloads/{wid}").text
        text = re.sub(r"<[^>]+>", " ", page)  # what people read, titles aside
        titles = " ".join(re.findall(r'title="([^"]*)"', page))
        for part in (text, titles):
            assert not long_float.findall(part), (name, long_float.findall(part)[:5])
    assert not long_float.findall(re.sub(r"<[^>]+>", " ", api.client.get("/ui/").text))
    chosen = api.client.get(f"/ui/workloads/{ids['support-chat']}").text
    assert re.search(r"\(raw \d+(\.\d{1,2})? ms\)", chosen)  # raw values shown, rounded


def test_overview_lists_onprem_sites_first_and_bursts_only_when_on(examples: Any) -> None:
    api, _ = examples
    _login(api, "admin")
    overview = api.client.get("/ui/").text
    shown = list(dict.fromkeys(re.findall(r'<tr data-site="([^"]+)"', overview)))
    kinds = {s.name: s.spec.type for s in load_bundle(EXAMPLES).inventory.sites}
    assert sorted(shown) == sorted(kinds)
    onprem = [s for s in shown if kinds[s] == "onprem"]
    assert shown[:len(onprem)] == sorted(onprem) and shown[len(onprem):] == sorted(
        s for s in shown if kinds[s] == "cloud")
    # this service provisions no bursts: no bursts section, a note on the burst decision
    assert 'data-testid="bursts"' not in overview and "Active bursts" not in overview
    assert 'data-testid="bursts-off"' in overview and "3 burst decision(s)" in overview
    api.client.app.state.bursts = True
    on = api.client.get("/ui/").text
    assert 'data-testid="bursts"' in on and "bursts-off" not in on
    section = on.split('data-testid="bursts"')[1]
    assert ">llm-pretrain</a>" in section and "spot A100" in section
    assert re.search(r'data-testid="burst-rate">\$\d+\.\d\d/h<', on)


# --- a decision's summary as the dashboard shows it ---

def test_a_decision_queued_past_max_wait_says_so_consistently(tmp_path: Path) -> None:
    with api_on(f"sqlite:///{tmp_path / 'p.db'}", QUEUE_BUNDLE) as a:
        first = {"metadata": {"name": "first"}, "spec": {
            "kind": "training", "team": "vision", "duration_hours": 2,
            "gpu": {"types": ["A100"], "count": 8}}}
        assert _submit(a, first)["phase"] == "placed"
        waiting = _submit(a, {**first, "metadata": {"name": "second"}})
        assert waiting["phase"] == "queued"
        summary = waiting["decision"]["decision"]["summary"]
        assert re.fullmatch(
            r"queue at dc \(onprem A100\): no candidate can start within max wait 1 h; the "
            r"shortest expected wait is dc's 2\.00 h \(1 candidate\(s\) would qualify once GPUs "
            r"free up\)", summary), summary
        assert "best of 0 feasible" not in summary
        _login(a, "admin")
        page = a.client.get(f"/ui/workloads/{waiting['id']}").text
        assert f"data-testid=\"summary\">{html.escape(summary).replace('&#x27;', '&#39;')}<" in page
        assert "those held back only by the wait filter are ranked above" in page


TIES = [
    pytest.param([("dc-b", 2.0), ("dc-a", 2.0)], None,
                 "place on dc-a (onprem A100); score 100.0, best of 2 feasible candidate(s); "
                 "tied on score with dc-b onprem A100: the site name decided (alphabetical "
                 "order); ties are broken by cost, wait, site name, capacity kind, in that order",
                 id="same-everything-site-name"),
    pytest.param([("dc-b", 2.0), ("dc-a", 2.01)], {"cost": 0, "latency": 1, "data_gravity": 1,
                                                   "wait": 1},
                 "place on dc-b (onprem A100); score 100.0, best of 2 feasible candidate(s); "
                 "tied on score with dc-a onprem A100: the lower estimated cost decided "
                 "($16.00 against $16.08); ties are broken by cost, wait, site name, capacity "
                 "kind, in that order", id="cost-not-weighted-still-breaks-ties"),
    pytest.param([("dc-b", 2.0), ("dc-a", 3.0)], None,
                 "place on dc-b (onprem A100); score 100.0, best of 2 feasible candidate(s)",
                 id="no-tie"),
]


@pytest.mark.parametrize(("sites", "weights", "summary"), TIES)
def test_a_tie_on_score_names_the_tie_break(sites: list[tuple[str, float]],
                                            weights: dict[str, float] | None,
                                            summary: str) -> None:
    from . import factories as f

    extra: dict[str, Any] = {"weights": weights} if weights else {}
    pol = f.policy(max_wait_hours=1, burst={"allowed": False}, **extra)
    eng = f.engine([f.onprem(name, {"A100": (8, price)}) for name, price in sites], pol)
    assert eng.place(f.job(count=8, hours=1)).summary == summary


def test_a_tie_on_wait_while_queueing_names_the_tie_break() -> None:
    from placement.model import Reservation

    from . import factories as f

    pol = f.policy(max_wait_hours=1, burst={"allowed": False})
    held = [Reservation(site=s, gpu_type="A100", count=8, remaining_hours=2)
            for s in ("dc-a", "dc-b")]
    eng = f.engine([f.onprem("dc-b", {"A100": (8, 2.0)}), f.onprem("dc-a", {"A100": (8, 2.0)})],
                   pol, reservations=held)
    d = eng.place(f.job(count=8, hours=1))
    assert d.action == "queue"
    assert d.summary == (
        "queue at dc-a (onprem A100): no candidate can start within max wait 1 h; the shortest "
        "expected wait is dc-a's 2.00 h (2 candidate(s) would qualify once GPUs free up); tied "
        "on expected wait with dc-b onprem A100: the site name decided (alphabetical order); "
        "ties are broken by cost, site name, in that order")
