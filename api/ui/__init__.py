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

import json
import math
import os
import re
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
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
from placement.model.policy import CRITERIA
from placement.service.settings import Settings
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
KINDS = ("inference", "rag", "training", "finetune", "batch")
PHASES = ("submitted", "placed", "queued", "rejected", "running", "succeeded", "failed",
          "cancelled", "released")
ACTIONS = ("place", "burst", "queue", "reject")
# What a report folder may serve, by suffix: the simulator writes report.html, PNG plots and
# summary.json. Documents that could carry scripts are sandboxed (see `report_file`).
REPORT_TYPES = {".html": "text/html", ".htm": "text/html", ".png": "image/png",
                ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml",
                ".json": "application/json", ".csv": "text/csv", ".txt": "text/plain"}
DOCUMENTS = {".html", ".htm", ".svg"}
# A report page may show its own images and inline styles; it runs no script, sends no form,
# opens no window, and loads nothing from elsewhere. Same-origin (without scripts) only so
# that its images are fetched with the dashboard's SameSite=Strict cookie.
REPORT_CSP = ("sandbox allow-same-origin; default-src 'none'; img-src 'self' data:; "
              "style-src 'unsafe-inline'")
MAX_REPORTS = 500  # listed at most, newest first
MAX_SUMMARY_BYTES = 8 << 20


def num(value: Any, digits: int = 2) -> str:
    """A number for people: at most `digits` decimals, no trailing zeros, thousands grouped
    (`18.37`, `100`, `0.5`); a tiny non-zero value keeps one significant digit; None is a dash."""
    if value is None or isinstance(value, bool):
        return "–" if value is None else str(value)
    if not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "–"
    if value != 0 and abs(value) < 0.5 * 10.0 ** -digits:
        return f"{value:.1g}"
    text = f"{value:,.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def usd(value: Any) -> str:
    """Dollars for people: `$208.82`, `$1,250.00`."""
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return "–"
    return f"-${-value:,.2f}" if value < 0 else f"${value:,.2f}"


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
templates.env.filters["num"] = num
templates.env.filters["usd"] = usd
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
        bursts = [(workload_json(w), decision_json(d, full=False)) for w, d in
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
    ordered = sorted(sites.values(), key=lambda x: (x["type"] != "onprem", x["name"]))
    return _page(request, "overview.html", who, sites=ordered, day=day,
                 month=month, bursts=bursts, burst_rate=burst_rate,
                 bursts_on=_bursts_on(request), signals=rt.signals is not None)


def _bursts_on(request: Request) -> bool:
    """Whether this service provisions burst decisions (`PLACEMENT_BURSTS`): the app's state
    when it says so, else the settings the app was built from by default (the environment),
    read once."""
    state = request.app.state
    on: bool | None = getattr(state, "bursts", None)
    if on is None:
        try:
            on = Settings().bursts
        except ValueError:  # settings the app could not have started with: say off
            on = False
        state.bursts = on
    return bool(on)


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
        for name in c["criteria"]:  # the engine's criteria, in its order
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
            "groups": _rejection_groups(rejected),
            "criteria": list(next((c["criteria"] for c in decision["candidates"]
                                   if c["criteria"]), CRITERIA))}


# The parts of a reason that vary between candidates rejected for the same cause: a
# parenthesis, a dollar amount, a number standing alone (not the digits in `A100`, `us-east-1`).
SLOT = re.compile(r"\([^()]*\)|\$-?[\d,]*\d(?:\.\d+)?|(?<![\w.$-])-?\d+(?:\.\d+)?(?![\w-])")


def _slot(values: tuple[str, ...]) -> str:
    """One slot of a group's reason: the value all members share, else `…` (inside the
    parentheses and after the words they share: `(has: …)`)."""
    if len(set(values)) == 1:
        return values[0]
    if not values[0].startswith("("):
        return "…"
    common = values[0]
    for v in values[1:]:
        common = common[:next((i for i, (a, b) in enumerate(zip(common, v, strict=False))
                               if a != b), min(len(common), len(v)))]
    cut = max(common.rfind(" "), common.rfind("("))
    return f"{common[:cut + 1]}…)"


def _rejection_groups(rejected: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rejected candidates, one group per filter and reason pattern (the reason with its
    varying numbers and parentheses as slots): the reason (a slot shown when all members agree
    on it, else `…`), the sites and capacities it covers, and how many. Largest first."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for c in rejected:
        reason = c["reason"] or ""
        key = (c["rejected_by"], tuple(SLOT.split(reason)))
        g = groups.setdefault(key, {"filter": c["rejected_by"], "text": key[1], "slots": [],
                                    "sites": {}, "also": set(), "count": 0})
        g["slots"].append(SLOT.findall(reason))
        g["count"] += 1
        g["also"].update(c["also_failed"] or [])
        what = " ".join(x for x in (c["capacity"], c["gpu_type"]) if x)
        g["sites"].setdefault(c["site"], [])
        if what and what not in g["sites"][c["site"]]:
            g["sites"][c["site"]].append(what)
    out = []
    for g in groups.values():
        shown = [_slot(vals) for vals in zip(*g["slots"], strict=True)]
        text = g["text"][0] + "".join(v + t for v, t in zip(shown, g["text"][1:], strict=True))
        out.append({"filter": g["filter"], "reason": text, "count": g["count"],
                    "also": sorted(g["also"]),
                    "sites": [{"site": k, "what": v} for k, v in g["sites"].items()]})
    out.sort(key=lambda g: (-g["count"], g["filter"], g["reason"]))
    return out


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
    """Simulation reports (HTML files, in subfolders too) under the reports directory, when one
    is configured, newest first, each with its trace, date and headline from the summary.json
    beside it."""
    who = _principal(request)
    if who is None:
        return _login_redirect(request)
    folder: Path | None = getattr(request.app.state, "reports_dir", None)
    found = _find_reports(folder) if folder and folder.is_dir() else []
    return _page(request, "reports.html", who, reports=found[:MAX_REPORTS],
                 more=max(0, len(found) - MAX_REPORTS), folder=folder)


def _find_reports(folder: Path) -> list[dict[str, Any]]:
    root = folder.resolve()
    found = []
    for here, dirs, files in os.walk(root):  # links to folders are not followed
        dirs.sort()
        for name in sorted(files):
            path = Path(here) / name
            if path.suffix.lower() not in (".html", ".htm") or _inside(root, path) is None:
                continue
            found.append(_report_entry(root, path))
    found.sort(key=lambda r: r["sort"], reverse=True)
    return found


def _inside(root: Path, path: Path) -> Path | None:
    """`path` resolved, when it is a file under `root` (a link that leads out is not)."""
    try:
        real = path.resolve()
    except (OSError, RuntimeError):
        return None
    return real if real.is_relative_to(root) and real.is_file() else None


def _report_entry(root: Path, path: Path) -> dict[str, Any]:
    """A report as listed: its link, folder, date (UTC) and what its summary.json says."""
    rel = path.relative_to(root)
    folder = rel.parent.as_posix()
    entry: dict[str, Any] = {"href": rel.as_posix(), "folder": "" if folder == "." else folder,
                             "trace": None, "workloads": None, "headline": [],
                             "summary": "missing"}
    summary = path.parent / "summary.json"
    dated = path
    if summary.exists() or summary.is_symlink():
        entry["summary"] = "unreadable"
        real = _inside(root, summary)
        data: Any = None
        if real is not None and real.stat().st_size <= MAX_SUMMARY_BYTES:
            try:
                data = json.loads(real.read_bytes())
            except (OSError, ValueError):
                data = None
        if (isinstance(data, dict) and isinstance(data.get("trace"), str)
                and isinstance(data.get("headline", []), list)):
            entry.update(summary="ok", trace=data["trace"],
                         headline=[str(x) for x in data.get("headline", [])],
                         workloads=data.get("workloads") if isinstance(
                             data.get("workloads"), int | float) else None)
            dated = real or path
    try:
        stamp = dated.stat().st_mtime
    except OSError:
        stamp = 0.0
    entry["date"] = datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M UTC")
    entry["sort"] = (stamp, entry["href"])
    return entry


@router.get("/reports/{name:path}", response_model=None)
def report_file(request: Request, name: str) -> Response:
    """A file of a report (its HTML, plots, summary) from under the reports directory: only a
    file that exists there, of a known type; `..` or a link that leads out is not found."""
    who = _principal(request)
    if who is None:
        return _login_redirect(request)
    folder: Path | None = getattr(request.app.state, "reports_dir", None)
    kind = REPORT_TYPES.get(Path(name).suffix.lower())
    path = None
    if folder is not None and kind is not None and "\x00" not in name:
        path = _inside(folder.resolve(), folder / name)
    if path is None or kind is None:
        return _page(request, "missing.html", who, status=404, what=name)
    headers = {"X-Content-Type-Options": "nosniff"}
    if Path(name).suffix.lower() in DOCUMENTS:
        # A report is a document, not part of the dashboard: no scripts, forms or windows.
        headers["Content-Security-Policy"] = REPORT_CSP
    return FileResponse(path, media_type=kind, headers=headers)
