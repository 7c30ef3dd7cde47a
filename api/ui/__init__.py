"""The web dashboard under /ui: capacity, placements and why, for people rather than scripts.

Server-rendered HTML (Jinja2 templates and static files shipped in this package; no build step,
no CDN). Pages read through the same store queries and JSON shapes as the REST API, with the
same tokens: logging in with a token opens a server-side session (its random id, stored only
hashed, is all the HttpOnly, SameSite=Strict cookie holds; it ends on logout, after
SESSION_SECONDS, or when the token is revoked), and a member sees only its own team's
workloads. Every form post must come from the dashboard's own origin, and every response
forbids framing, sniffing and caching.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.routers.workloads import decision_json, workload_json
from placement.control.auth import (
    SESSION_SECONDS,
    Principal,
    end_session,
    session_principal,
    start_session,
)
from placement.control.runtime import Runtime
from placement.errors import InvalidRequestError, UnauthorizedError
from placement.model.common import NAME_PATTERN
from placement.store import workloads as store
from placement.store.db import utcnow
from placement.store.inventory import capacity
from placement.store.spend import active_bursts, estimate_totals
from placement.store.workloads import WorkloadFilter

HERE = Path(__file__).parent
NAME = re.compile(NAME_PATTERN.strip("^$"))
COOKIE = "placement_session"
OLD_COOKIE = "placement_token"  # held the raw token before sessions: cleared when seen
FRAME_ANCESTORS = "frame-ancestors 'none'"
PAGE_SIZE = 25
CRITERIA = ("latency", "data_gravity", "cost", "wait")
KINDS = ("inference", "rag", "training", "finetune", "batch")
PHASES = ("submitted", "placed", "queued", "rejected", "running", "succeeded", "failed",
          "cancelled", "released")
ACTIONS = ("place", "burst", "queue", "reject")



def harden(headers: MutableHeaders, *, no_store: bool = True) -> None:
    """No framing (merged into a CSP already set), no MIME sniffing, no caching."""
    csp = headers.get("content-security-policy")
    if not csp:
        headers["content-security-policy"] = FRAME_ANCESTORS
    elif "frame-ancestors" not in csp:
        headers["content-security-policy"] = f"{csp.rstrip('; ')}; {FRAME_ANCESTORS}"
    headers["x-content-type-options"] = "nosniff"
    if no_store:
        headers["cache-control"] = "no-store"


class HardenedRoute(APIRoute):
    """A dashboard route: its response gets the headers of `harden`, and a leftover cookie
    that held a raw token is cleared."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def hardened(request: Request) -> Response:
            response = await handler(request)
            harden(response.headers)
            if OLD_COOKIE in request.cookies:
                response.delete_cookie(OLD_COOKIE, path="/ui")
            return response

        return hardened


class _HardenedStatic:
    """Static files with nosniff and no framing (cacheable: they hold no data)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_hardened(message: Message) -> None:
            if message["type"] == "http.response.start":
                harden(MutableHeaders(scope=message), no_store=False)
            await send(message)

        await self.app(scope, receive, send_hardened)


templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(prefix="/ui", include_in_schema=False, route_class=HardenedRoute)
static = _HardenedStatic(StaticFiles(directory=str(HERE / "static")))


def _runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def _principal(request: Request) -> Principal | None:
    """The caller behind the session cookie: None without a live session (never opened,
    logged out, expired, or its token revoked). Read on each page: revocation is at once."""
    sid = request.cookies.get(COOKIE)
    if not sid or len(sid) > 128:
        return None
    with _runtime(request).db.read() as s:
        return session_principal(s, sid)


def _same_origin(request: Request) -> bool:
    """A state-changing form must come from the dashboard itself: its Origin (or, without
    one, its Referer) is this request's own scheme://host (https too when the cookie is
    marked Secure, behind a TLS-terminating proxy). Neither header: refused."""
    host = (request.headers.get("host") or "").lower()
    if not host:
        return False
    allowed = {f"{request.url.scheme}://{host}"}
    if getattr(request.app.state, "secure_cookie", None):
        allowed.add(f"https://{host}")
    origin = request.headers.get("origin")
    if origin is not None:  # "null" (a sandboxed or privacy-sensitive context) is refused
        return origin.strip().rstrip("/").lower() in allowed
    referer = request.headers.get("referer")
    if not referer:
        return False
    try:
        parts = urlsplit(referer.strip())
    except ValueError:
        return False
    return f"{parts.scheme}://{parts.netloc}".lower() in allowed


def _cross_site() -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><title>Refused</title><p>This form was not sent from the dashboard "
        "itself (its Origin or Referer header is another site, or missing), so it was refused. "
        'Open <a href="/ui/">the dashboard</a> and try again.</p>', status_code=403)


def _secure(request: Request) -> bool:
    secure: bool | None = getattr(request.app.state, "secure_cookie", None)
    return request.url.scheme == "https" if secure is None else secure


def _login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/ui/login?" + urlencode({"next": target}), status_code=303)


def _page(request: Request, name: str, who: Principal, status: int = 200,
          **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"who": who, "nav": name, **context},
                                      status_code=status)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/ui/") -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"next": _safe(next),
                                                              "error": None, "who": None})


@router.post("/login", response_class=HTMLResponse, response_model=None)
async def login(request: Request) -> Response:
    if not _same_origin(request):
        return _cross_site()
    form = parse_qs((await request.body()).decode(errors="replace"))
    token = (form.get("token") or [""])[0].strip()
    target = _safe((form.get("next") or ["/ui/"])[0])
    seconds = float(getattr(request.app.state, "session_seconds", SESSION_SECONDS))

    def open_session() -> str:
        with _runtime(request).db.write() as s:
            return start_session(s, token, seconds)

    try:
        sid = await run_in_threadpool(open_session)  # the store is not used on the event loop
    except UnauthorizedError:
        return templates.TemplateResponse(
            request, "login.html", {"next": target, "who": None,
                                    "error": "That token is unknown or revoked."},
            status_code=401)
    res = RedirectResponse(target, status_code=303)
    res.set_cookie(COOKIE, sid, httponly=True, samesite="strict", path="/ui",
                   secure=_secure(request), max_age=int(seconds))
    return res


@router.post("/logout", response_model=None)
def logout(request: Request) -> Response:
    """End the session (its row is deleted) and clear the cookie."""
    if not _same_origin(request):
        return _cross_site()
    sid = request.cookies.get(COOKIE)
    if sid and len(sid) <= 128:
        with _runtime(request).db.write() as s:
            end_session(s, sid)
    res = RedirectResponse("/ui/login", status_code=303)
    res.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict",
                      secure=_secure(request))
    return res


def _safe(target: str) -> str:
    """Only redirect within the dashboard."""
    return target if target.startswith("/ui/") and "//" not in target else "/ui/"


@router.get("/", response_class=HTMLResponse, response_model=None)
def overview(request: Request) -> Response:
    who = _principal(request)
    if who is None:
        return _login_redirect(request)
    rt = _runtime(request)
    team = None if who.is_admin else who.team
    now = utcnow()
    with rt.db.read() as s:
        rows = capacity(s)
        day = estimate_totals(s, since=now - timedelta(days=1), team=team)
        month = estimate_totals(s, since=now - timedelta(days=30), team=team)
        bursts = [(workload_json(w), decision_json(d)) for w, d in
                  active_bursts(s, team=team)]
    engine = rt.current_engine()
    kinds = {site.name: site.spec.type for site in engine.inventory.sites} if engine else {}
    utilization = _utilization(rt)
    sites: dict[str, dict[str, Any]] = {}
    for row in rows:
        site = sites.setdefault(row.site, {"name": row.site, "type": kinds.get(row.site, "?"),
                                           "gpus": [], "utilization": utilization.get(row.site)})
        site["gpus"].append({"type": row.gpu_type, "total": row.total,
                             "reserved": row.reserved, "free": row.total - row.reserved})
    burst_rate = sum((d["decision"]["estimates"] or {}).get("usd_per_hour", 0.0)
                     for _, d in bursts)
    return _page(request, "overview.html", who, sites=list(sites.values()), day=day,
                 month=month, bursts=bursts, burst_rate=burst_rate,
                 signals=rt.signals is not None)


def _utilization(rt: Runtime) -> dict[str, dict[str, Any]]:
    """Live GPU utilization per site, with its freshness, when signals are configured."""
    engine = rt.current_engine()
    if rt.signals is None or engine is None:
        return {}
    ci = engine.ci
    seen = rt.signals.observed(engine.inventory, ci.site_index, ci.group_index,
                               len(ci.group_site))
    return {r.site: r.as_dict() for r in seen.readings if r.signal == "gpu_utilization_pct"}


def _filters(request: Request, who: Principal) -> tuple[WorkloadFilter, dict[str, str]]:
    q = request.query_params
    chosen = {k: q[k] for k in ("team", "kind", "phase", "site", "action")
              if q.get(k) and NAME.fullmatch(q[k])}
    if chosen.get("kind") not in (None, *KINDS):
        chosen.pop("kind")
    if chosen.get("phase") not in (None, *PHASES):
        chosen.pop("phase")
    if chosen.get("action") not in (None, *ACTIONS):
        chosen.pop("action")
    if not who.is_admin:
        chosen["team"] = who.team or ""
    return WorkloadFilter(chosen.get("team"), chosen.get("kind"), chosen.get("phase"),
                          chosen.get("site"), chosen.get("action")), chosen


def _rows(request: Request, who: Principal) -> dict[str, Any]:
    filt, chosen = _filters(request, who)
    rt = _runtime(request)
    cursor = request.query_params.get("cursor") or None
    notice = None
    with rt.db.read() as s:
        try:
            rows, nxt = store.list_workloads(s, filt=filt, limit=PAGE_SIZE, cursor=cursor)
        except InvalidRequestError:
            notice, cursor = "That page link was malformed; showing the newest workloads.", None
            rows, nxt = store.list_workloads(s, filt=filt, limit=PAGE_SIZE, cursor=None)
    more = urlencode({**chosen, "cursor": nxt}) if nxt else None
    return {"workloads": [workload_json(r) for r in rows], "chosen": chosen, "more": more,
            "query": urlencode(chosen), "first_page": cursor is None, "notice": notice,
            "refresh": urlencode(chosen if cursor is None else {**chosen, "cursor": cursor})}


@router.get("/workloads", response_class=HTMLResponse, response_model=None)
def workloads(request: Request) -> Response:
    who = _principal(request)
    if who is None:
        return _login_redirect(request)
    rt = _runtime(request)
    inv = rt.current_inventory()
    sites = sorted(s.name for s in inv.sites) if inv is not None else []
    return _page(request, "workloads.html", who, kinds=KINDS, phases=PHASES,
                 actions=ACTIONS, sites=sites, **_rows(request, who))


@router.get("/workloads/rows", response_class=HTMLResponse, response_model=None)
def workload_rows(request: Request) -> Response:
    """The list (table and pager) alone: the first page refreshes itself with it."""
    who = _principal(request)
    if who is None:
        return Response(status_code=401)
    return _page(request, "_list.html", who, **_rows(request, who))


@router.get("/workloads/{workload_id}", response_class=HTMLResponse, response_model=None)
def workload(request: Request, workload_id: str) -> Response:
    who = _principal(request)
    if who is None:
        return _login_redirect(request)
    rt = _runtime(request)
    try:
        wid = uuid.UUID(workload_id)
    except ValueError:
        return _page(request, "missing.html", who, status=404, what=workload_id)
    with rt.db.read() as s:
        mine = None if who.is_admin else who.team or ""  # a member sees only its team's
        row = store.get_workload(s, workload_id=wid, team=mine)
        if row is None:
            return _page(request, "missing.html", who, status=404, what=workload_id)
        drow = store.get_decision(s, decision_id=row.decision_id)
        events = [{"at": e.at, "type": e.type, "message": e.message} for e in
                  store.list_events(s, workload_id=wid)]
    w = workload_json(row, drow)
    decision = w["decision"]["decision"] if w["decision"] else None
    return _page(request, "workload.html", who, w=w, d=decision, events=events,
                 chart=_chart(decision) if decision else None)


def _chart(decision: dict[str, Any]) -> dict[str, Any]:
    """One bar per considered candidate, stacked by weighted criterion (the total score)."""
    bars = []
    for c in decision["candidates"]:
        if c["total_score"] is None:
            continue
        weights = {k: v["weight"] for k, v in c["criteria"].items() if v["weight"] > 0}
        total_weight = sum(weights.values()) or 1.0
        x, parts = 0.0, []
        for name in CRITERIA:
            crit = c["criteria"].get(name)
            if crit is None or name not in weights or crit["score"] is None:
                continue
            width = weights[name] * crit["score"] / total_weight
            parts.append({"name": name, "x": x, "width": width, "score": crit["score"],
                          "weight": weights[name], "raw": crit["raw"], "unit": crit["unit"]})
            x += width
        chosen = (c["site"], c["gpu_type"], c["capacity"]) == (
            decision["site"], decision["gpu_type"], decision["capacity"])
        bars.append({"label": f"{c['site']} · {c['capacity']} {c['gpu_type']}",
                     "total": c["total_score"], "rank": c["rank"], "chosen": chosen,
                     "parts": parts, "feasible": c["feasible"]})
    bars.sort(key=lambda b: (b["rank"] is None, b["rank"] or 0))
    rejected = [c for c in decision["candidates"] if c["rejected_by"]]
    return {"bars": bars[:20], "hidden": max(0, len(bars) - 20), "rejected": rejected,
            "criteria": CRITERIA}


@router.get("/policy", response_class=HTMLResponse, response_model=None)
def policy(request: Request) -> Response:
    who = _principal(request)
    if who is None:
        return _login_redirect(request)
    rt = _runtime(request)
    spec = rt.policy.spec.model_dump(mode="json", exclude_none=True)
    return _page(request, "policy.html", who, version=rt.policy_version,
                 policy_name=rt.policy.name, spec=spec, reload=rt.reload, source=rt.config_dir)


@router.get("/reports", response_class=HTMLResponse, response_model=None)
def reports(request: Request) -> Response:
    """Simulation reports (HTML files) from the reports directory, when one is configured."""
    who = _principal(request)
    if who is None:
        return _login_redirect(request)
    folder: Path | None = getattr(request.app.state, "reports_dir", None)
    files = sorted(p.name for p in folder.glob("*.html")) if folder and folder.is_dir() else []
    return _page(request, "reports.html", who, files=files, folder=folder)


@router.get("/reports/{name}", response_model=None)
def report(request: Request, name: str) -> Response:
    who = _principal(request)
    if who is None:
        return _login_redirect(request)
    folder: Path | None = getattr(request.app.state, "reports_dir", None)
    path = (folder / name).resolve() if folder else None
    if (folder is None or path is None or not name.endswith(".html")
            or not path.is_relative_to(folder.resolve()) or not path.is_file()):
        return _page(request, "missing.html", who, status=404, what=name)
    # A report is a document, not part of the dashboard: no scripts, no access to its cookies.
    return FileResponse(path, media_type="text/html", headers={
        "Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"})
