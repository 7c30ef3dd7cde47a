"""Dashboard routes, server side: auth, scoping, empty states, full sites, rejections."""

from __future__ import annotations

import re
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
    assert "No workload runs on burst capacity now." in overview and "$0.00" in overview
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


@pytest.mark.parametrize(("query", "expected"), [
    ("action=burst", {"llm-pretrain"}),
    ("kind=finetune", {"vision-finetune"}),
    ("site=plant-austin", {"austin-line-inspection"}),
    ("phase=rejected", set()),
])
def test_filters(examples: Any, query: str, expected: set[str]) -> None:
    api, _ = examples
    _login(api, "admin")
    rows = api.client.get(f"/ui/workloads/rows?{query}").text
    names = {n for n in ("llm-pretrain", "vision-finetune", "austin-line-inspection",
                         "support-chat", "defect-detector") if f">{n}</a>" in rows}
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


def test_reports_are_listed_and_served_sandboxed(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "q3 what-if.html").write_text("<h1>what if</h1>")
    (reports / "latin1.html").write_bytes(b"<p>caf\xe9</p>")
    (tmp_path / "secret.html").write_text("SECRET")
    (reports / "link.html").symlink_to(tmp_path / "secret.html")
    with api_on(f"sqlite:///{tmp_path / 'p.db'}") as a:
        a.client.app.state.reports_dir = reports  # type: ignore[attr-defined]
        _login(a, "vision")
        assert 'href="/ui/reports/q3%20what-if.html"' in a.client.get("/ui/reports").text
        res = a.client.get("/ui/reports/q3%20what-if.html")
        assert res.text == "<h1>what if</h1>"
        assert res.headers["content-security-policy"] == "sandbox; frame-ancestors 'none'"
        assert res.headers["cache-control"] == "no-store"
        assert a.client.get("/ui/reports/latin1.html").status_code == 200
        assert a.client.get("/ui/reports/link.html").status_code == 404  # points outside
        assert a.client.get("/ui/reports/missing.html").status_code == 404


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
        assert [w["name"] for w in bursts["items"]] == ["llm-pretrain"]


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
