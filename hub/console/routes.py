"""The console's pages: overview, referrals, flows, nodes, directory/map, users, exports.

Every route depends on `signed_in(...)` with the roles allowed; country focal points
get a Scope that keeps only referrals touching their country. All data comes from the
content-free ledger, node table and published directories: there is no code path
from here to envelope bodies (the `mailbox.body` column is never selected).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from . import exports, hsds, i18n, monitor, services
from .charts import PALETTE, bar_chart, funnel_chart, line_chart
from .passwords import verify_password
from .web import (
    LANG_COOKIE,
    LOGIN_CSRF_COOKIE,
    SECURITY_HEADERS,
    SESSION_COOKIE,
    ConsoleState,
    Forbidden,
    LoginRequired,
    Principal,
    check_csrf,
    now_ms,
    redirect,
    safe_next,
    sessions_t,
    sha256_hex,
    signed_token,
    users_t,
    verify_signed,
)

__all__ = ["ALL_ROLES", "router"]

router = APIRouter(prefix="/console", include_in_schema=False)
ALL_ROLES = ("regional", "country", "auditor")
PERIODS = {"30": 30, "90": 90, "365": 365}
MAX_IMPORT_BYTES = 4 * 1024 * 1024


def state_of(request: Request) -> ConsoleState:
    return request.app.state.console  # type: ignore[no-any-return]


def signed_in(*roles: str) -> Callable[[Request], Principal]:
    allowed = frozenset(roles)

    def dep(request: Request) -> Principal:
        p = state_of(request).principal(request)
        if p is None:
            raise LoginRequired
        if p.role not in allowed:
            raise Forbidden
        return p

    return dep


Reader = Annotated[Principal, Depends(signed_in(*ALL_ROLES))]
Regional = Annotated[Principal, Depends(signed_in("regional"))]
AnyUser = Annotated[Principal, Depends(signed_in(*ALL_ROLES))]


def _now() -> datetime:
    return datetime.now(UTC)


def _period(request: Request) -> tuple[str, datetime]:
    key = request.query_params.get("period", "365")
    if key not in PERIODS:
        key = "365"
    return key, _now() - timedelta(days=PERIODS[key])


def _referrals(
    state: ConsoleState, me: Principal, since: datetime | None, thread: str | None = None
) -> tuple[dict[str, monitor.NodeInfo], list[monitor.Referral]]:
    now = _now()
    with state.engine.connect() as conn:
        nodes = monitor.load_nodes(conn)
        refs = monitor.load_referrals(conn, nodes, me.scope, now=now, since=since, thread=thread)
        conn.rollback()
    return nodes, refs


def _visible_countries(nodes: dict[str, monitor.NodeInfo], me: Principal) -> list[str]:
    return sorted({n.country for n in nodes.values() if n.country})


# --- sign-in ----------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, next: str = "/console/", error: str = "") -> Response:
    state = state_of(request)
    if state.principal(request) is not None:
        return redirect(safe_next(next))
    raw, cookie = signed_token(state, "login")
    lang = state.language(request, None)
    t = i18n.translator(lang)
    messages = {
        "credentials": t("Wrong email or password, or the account is locked."),
        "expired": t("The form has expired. Please try again."),
        "session": t("Your session has expired. Please sign in again."),
    }
    resp = state.render(
        request,
        "login.html",
        {
            "csrf": raw,
            "next": safe_next(next),
            "error": messages.get(error, ""),
            "oidc": state.cfg.oidc_enabled,
            "oidc_label": state.cfg.oidc_label,
        },
        principal=None,
        status_code=401 if error == "credentials" else 200,
    )
    state.set_cookie(request, resp, LOGIN_CSRF_COOKIE, cookie, max_age=3600)
    if request.query_params.get("lang") in i18n.LANGUAGES:
        state.set_cookie(
            request, resp, LANG_COOKIE, request.query_params["lang"], max_age=365 * 86400
        )
    return resp


@router.post("/login")
def login_submit(
    request: Request,
    email: Annotated[str, Form(max_length=254)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=200)],
    next: Annotated[str, Form(max_length=500)] = "/console/",
) -> Response:
    state = state_of(request)
    expected = verify_signed(state, "login", request.cookies.get(LOGIN_CSRF_COOKIE), 3600)
    target = safe_next(next)
    if expected is None or expected != csrf_token:
        return redirect(f"/console/login?error=expired&next={target}")
    email = email.strip().lower()
    now = now_ms()
    with state.engine.connect() as conn:
        user = conn.execute(sa.select(users_t).where(users_t.c.email == email)).first()
        conn.rollback()
    locked = user is not None and (user.disabled or user.locked_until_ms > now)
    ok = verify_password(user.password_hash if user is not None else None, password)
    if user is None or locked or not ok:
        if user is not None and not locked:
            fails = user.failed_logins + 1
            lock = 0
            if fails >= state.cfg.max_failed_logins:
                lock, fails = now + state.cfg.lockout_minutes * 60_000, 0
            with state.engine.begin() as conn:
                conn.execute(
                    users_t.update()
                    .where(users_t.c.user_id == user.user_id)
                    .values(failed_logins=fails, locked_until_ms=lock)
                )
        return login_page(request, next=target, error="credentials")
    return start_session(request, state, user.user_id, target)


def start_session(request: Request, state: ConsoleState, user_id: str, target: str) -> Response:
    with state.engine.begin() as conn:
        old = request.cookies.get(SESSION_COOKIE)
        if old:  # no session fixation: whatever came in is discarded
            conn.execute(sessions_t.delete().where(sessions_t.c.token_sha256 == sha256_hex(old)))
        token, _csrf = state.create_session(conn, user_id)
        conn.execute(
            users_t.update()
            .where(users_t.c.user_id == user_id)
            .values(failed_logins=0, locked_until_ms=0, last_login_ms=now_ms())
        )
    resp = redirect(target)
    state.set_cookie(
        request, resp, SESSION_COOKIE, token, max_age=state.cfg.session_hours * 3600
    )
    resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/console")
    return resp


@router.post("/logout")
def logout(
    request: Request, me: AnyUser, csrf_token: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    state = state_of(request)
    check_csrf(request, me.csrf_token, csrf_token)
    with state.engine.begin() as conn:
        conn.execute(sessions_t.delete().where(sessions_t.c.token_sha256 == me.token_sha256))
    resp = redirect("/console/login")
    resp.delete_cookie(SESSION_COOKIE, path="/console")
    return resp


@router.post("/language")
def set_language(
    request: Request,
    me: AnyUser,
    language: Annotated[str, Form(max_length=5)],
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=500)] = "/console/",
) -> Response:
    """Each person's own display language (not data: auditors may change it too)."""
    state = state_of(request)
    check_csrf(request, me.csrf_token, csrf_token)
    if language in i18n.LANGUAGES:
        with state.engine.begin() as conn:
            conn.execute(
                users_t.update().where(users_t.c.user_id == me.user_id).values(language=language)
            )
    return redirect(safe_next(next))


# --- overview ---------------------------------------------------------------------------


@router.get("/")
def overview_page(request: Request, me: Reader) -> Response:
    state = state_of(request)
    period, since = _period(request)
    nodes, refs = _referrals(state, me, since)
    ov = monitor.overview(refs, _now())
    members = monitor.members(refs, nodes, me.scope)
    t = i18n.translator(me.language)
    charts = {
        "status": bar_chart(
            [(s, t(s), n) for s, n in ov["by_status"]], title=t("Referrals by status")
        ),
        "funnel": funnel_chart(
            [(s, t(s), n) for s, n in ov["funnel"]], title=t("From sent to completed")
        ),
        "overdue": bar_chart(
            [(p, t(p), n) for p, n in ov["overdue"]], title=t("Overdue referrals by priority")
        ),
        "trend": line_chart(
            [w["week"] for w in ov["trend"]],
            [
                (PALETTE["accepted"], t("sent (week)"), [w["sent"] for w in ov["trend"]]),
                (PALETTE["completed"], t("completed (week)"),
                 [w["completed"] for w in ov["trend"]]),
            ],
            title=t("Referrals sent per week"),
        ),
    }
    return state.render(
        request,
        "overview.html",
        {"ov": ov, "charts": charts, "members": members[:25], "period": period, "nav": "overview"},
        principal=me,
    )


# --- referrals --------------------------------------------------------------------------

REF_FILTERS = ("country", "from_country", "to_country", "org", "priority", "category", "status",
               "deadline", "q")


def _ref_filters(request: Request) -> dict[str, str]:
    return {k: request.query_params.get(k, "").strip()[:64] for k in REF_FILTERS}


@router.get("/referrals")
def referrals_page(request: Request, me: Reader) -> Response:
    state = state_of(request)
    period, since = _period(request)
    nodes, refs = _referrals(state, me, since)
    f = _ref_filters(request)
    shown = monitor.filter_referrals(refs, f)
    visible_nodes = sorted(
        (n for n in nodes.values() if me.scope.sees_country(n.country)),
        key=lambda n: (n.country, n.organization),
    )
    return state.render(
        request,
        "referrals.html",
        {
            "refs": shown[:500],
            "total": len(shown),
            "f": f,
            "period": period,
            "countries": _visible_countries(nodes, me),
            "orgs": visible_nodes,
            "priorities": monitor.PRIORITIES,
            "categories": monitor.CATEGORIES,
            "statuses": monitor.STATUSES,
            "deadline_states": monitor.DEADLINE_STATES,
            "query": request.url.query,
            "nav": "referrals",
        },
        principal=me,
    )


@router.get("/referrals/{thread}")
def referral_page(request: Request, me: Reader, thread: str) -> Response:
    state = state_of(request)
    if len(thread) > 64:
        return not_found(request, me)
    nodes, refs = _referrals(state, me, None, thread=thread)
    if not refs:
        # Outside the scope or unknown: the same answer, so scope reveals nothing.
        return not_found(request, me)
    return state.render(
        request,
        "referral.html",
        {"r": refs[0], "nodes": nodes, "nav": "referrals"},
        principal=me,
    )


def not_found(request: Request, me: Principal) -> Response:
    return state_of(request).render(
        request, "error.html", {"title": "Not found", "nav": ""}, principal=me, status_code=404
    )


# --- flows ------------------------------------------------------------------------------


@router.get("/flows")
def flows_page(request: Request, me: Reader) -> Response:
    state = state_of(request)
    period, since = _period(request)
    _nodes, refs = _referrals(state, me, since)
    fl = monitor.flows(refs)
    countries = sorted(set(fl["senders"]) | set(fl["receivers"]))
    return state.render(
        request,
        "flows.html",
        {"fl": fl, "countries": countries, "period": period, "nav": "flows"},
        principal=me,
    )


@router.get("/flows.json")
def flows_json(request: Request, me: Reader) -> Response:
    state = state_of(request)
    _period_key, since = _period(request)
    _nodes, refs = _referrals(state, me, since)
    fl = monitor.flows(refs)
    body = {"flows": [{"from": a, "to": b, "count": n} for (a, b), n in fl["pairs"]]}
    return JSONResponse(body, headers=SECURITY_HEADERS)


@router.get("/api/referrals")
def referrals_json(request: Request, me: Reader) -> Response:
    """The referral list as JSON for scripts: exactly the rows and columns of the referrals
    export (same scope, period and filters; content-free ledger metadata only)."""
    state = state_of(request)
    period, since = _period(request)
    _nodes, refs = _referrals(state, me, since)
    table = exports.referrals_table(
        monitor.filter_referrals(refs, _ref_filters(request)), _now()
    )
    body = {
        "period_days": PERIODS[period],
        "total": len(table.rows),
        "columns": table.headers,
        "hxl": table.hxl,
        "items": [dict(zip(table.headers, row, strict=True)) for row in table.rows],
    }
    return JSONResponse(body, headers=SECURITY_HEADERS)


# --- nodes ------------------------------------------------------------------------------


@router.get("/nodes")
def nodes_page(request: Request, me: Reader) -> Response:
    state = state_of(request)
    health = _health(state, me)
    return state.render(
        request,
        "nodes.html",
        {
            "active": [h for h in health if h.status == "active"],
            "revoked": [h for h in health if h.status != "active"],
            "nav": "nodes",
        },
        principal=me,
    )


def _health(state: ConsoleState, me: Principal) -> list[monitor.NodeHealth]:
    with state.engine.connect() as conn:
        nodes = monitor.load_nodes(conn)
        health = monitor.node_health(
            conn,
            nodes,
            me.scope,
            now=_now(),
            late=timedelta(minutes=state.cfg.late_minutes),
            down=timedelta(minutes=state.cfg.down_minutes),
        )
        conn.rollback()
    return health


# --- directory and map ------------------------------------------------------------------

DIR_FILTERS = ("country", "service_type", "population")


def _directory(
    state: ConsoleState, request: Request
) -> tuple[dict[str, monitor.NodeInfo], list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
    with state.engine.connect() as conn:
        nodes = monitor.load_nodes(conn)
        rows, _docs = services.load_directory(conn, nodes)
        conn.rollback()
    f = {k: request.query_params.get(k, "").strip()[:64] for k in DIR_FILTERS}
    return nodes, rows, services.filter_services(rows, f), f


@router.get("/directory")
def directory_page(request: Request, me: Reader) -> Response:
    state = state_of(request)
    nodes, rows, shown, f = _directory(state, request)
    countries = sorted({c for s in rows for c in s["countries"]} | {
        n.country for n in nodes.values() if n.status == "active"})
    return state.render(
        request,
        "directory.html",
        {
            "services": shown,
            "total": len(rows),
            "f": f,
            "countries": countries,
            "service_types": sorted(
                {c for s in rows for c in s["service_types"]}
            ),
            "populations": hsds.POPULATIONS,
            "active_nodes": sorted(
                (n for n in nodes.values() if n.status == "active"), key=lambda n: n.node_id
            ),
            "query": request.url.query,
            "flash": request.query_params.get("imported", ""),
            "errors": [],
            "nav": "directory",
        },
        principal=me,
    )


@router.get("/directory/services.geojson")
def directory_geojson(request: Request, me: Reader) -> Response:
    state = state_of(request)
    _nodes, _rows, shown, _f = _directory(state, request)
    features = []
    for s in shown:
        for loc in s["locations"]:
            if loc.get("latitude") is None or loc.get("longitude") is None:
                continue
            features.append(
                {
                    "type": "Feature",
                    "geometry": {
                        "type": "Point",
                        "coordinates": [loc["longitude"], loc["latitude"]],
                    },
                    "properties": {
                        "service_id": s["service_id"],
                        "service": s["name"],
                        "organization": s["organization"],
                        "location": loc.get("name") or loc.get("city") or "",
                        "country": loc.get("country"),
                        "service_types": [
                            i18n.vocab_label("service", c, me.language) for c in s["service_types"]
                        ],
                        "hours": s["hours"],
                        "email": s["email"],
                        "phones": s["phones"],
                    },
                }
            )
    return JSONResponse(
        {"type": "FeatureCollection", "features": features},
        headers=SECURITY_HEADERS,
        media_type="application/geo+json",
    )


@router.get("/directory/hsds.json")
def directory_hsds(request: Request, me: Reader) -> Response:
    """HSDS 3.0 export: every published service, dereferenced, with its organization."""
    state = state_of(request)
    with state.engine.connect() as conn:
        nodes = monitor.load_nodes(conn)
        _rows, docs = services.load_directory(conn, nodes)
        conn.rollback()
    out: list[dict[str, Any]] = []
    for node_id in sorted(docs):
        out.extend(hsds.export_services(docs[node_id]))
    body = json.dumps(out, ensure_ascii=False, indent=1).encode("utf-8")
    headers = dict(SECURITY_HEADERS)
    headers["Content-Disposition"] = 'attachment; filename="rssn-directory-hsds.json"'
    return Response(body, media_type="application/json", headers=headers)


@router.post("/directory/import")
async def directory_import(
    request: Request,
    me: Regional,
    node_id: Annotated[str, Form(max_length=63)],
    file: Annotated[UploadFile, File()],
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """A regional coordinator loads an HSDS file on behalf of a member (e.g. before its node)."""
    state = state_of(request)
    check_csrf(request, me.csrf_token, csrf_token)
    raw = await file.read(MAX_IMPORT_BYTES + 1)
    errors: list[str] = []
    if len(raw) > MAX_IMPORT_BYTES:
        errors = ["$: file too large"]
    else:
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            errors = ["$: not JSON"]
    if not errors:
        from starlette.concurrency import run_in_threadpool

        def store() -> list[str]:
            with state.engine.begin() as conn:
                nodes = monitor.load_nodes(conn)
                if node_id not in nodes or nodes[node_id].status != "active":
                    return ["node_id: not an active node"]
                try:
                    services.publish(conn, node_id, doc, source="import", now=now_ms())
                except hsds.HsdsError as exc:
                    return exc.errors
            return []

        errors = await run_in_threadpool(store)
    if not errors:
        return redirect("/console/directory?imported=1")
    nodes, rows, shown, f = _directory(state, request)
    return state.render(
        request,
        "directory.html",
        {
            "services": shown,
            "total": len(rows),
            "f": f,
            "countries": sorted({c for s in rows for c in s["countries"]}),
            "service_types": sorted({c for s in rows for c in s["service_types"]}),
            "populations": hsds.POPULATIONS,
            "active_nodes": sorted(
                (n for n in nodes.values() if n.status == "active"), key=lambda n: n.node_id
            ),
            "query": "",
            "flash": "",
            "errors": errors,
            "nav": "directory",
        },
        principal=me,
        status_code=422,
    )


# --- users ------------------------------------------------------------------------------


@router.get("/users")
def users_page(request: Request, me: Regional) -> Response:
    state = state_of(request)
    with state.engine.connect() as conn:
        users = conn.execute(
            sa.select(
                users_t.c.email, users_t.c.role, users_t.c.country, users_t.c.language,
                users_t.c.disabled, users_t.c.last_login_ms, users_t.c.oidc_subject,
            ).order_by(users_t.c.role, users_t.c.email)
        ).all()
        conn.rollback()
    return state.render(
        request, "users.html", {"users": users, "ms_to_dt": monitor.ms_to_dt, "nav": "users"},
        principal=me,
    )


# --- exports ----------------------------------------------------------------------------

EXPORT_VIEWS = ("referrals", "status", "overdue", "flows", "members", "nodes", "directory")


@router.get("/export/{name}")
def export(request: Request, me: Reader, name: str) -> Response:
    state = state_of(request)
    view, _, fmt = name.partition(".")
    if view not in EXPORT_VIEWS or fmt not in ("csv", "xlsx"):
        return not_found(request, me)
    k = state.cfg.min_cell
    _key, since = _period(request)
    table: exports.Table
    if view == "nodes":
        table = exports.nodes_table(_health(state, me))
    elif view == "directory":
        _n, _rows, shown, _f = _directory(state, request)
        table = exports.directory_table(shown)
    else:
        nodes, refs = _referrals(state, me, since)
        if view == "referrals":
            table = exports.referrals_table(
                monitor.filter_referrals(refs, _ref_filters(request)), _now()
            )
        elif view == "status":
            table = exports.status_table(monitor.overview(refs, _now()), k)
        elif view == "overdue":
            table = exports.overdue_table(monitor.overview(refs, _now()), k)
        elif view == "flows":
            table = exports.flows_table(monitor.flows(refs), k)
        else:
            table = exports.members_table(monitor.members(refs, nodes, me.scope), k)
    stamp = _now().strftime("%Y%m%d")
    headers = dict(SECURITY_HEADERS)
    headers["Content-Disposition"] = f'attachment; filename="rssn-{view}-{stamp}.{fmt}"'
    if fmt == "csv":
        return Response(exports.to_csv(table), media_type="text/csv; charset=utf-8",
                        headers=headers)
    return Response(
        exports.to_xlsx(table),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers=headers,
    )
