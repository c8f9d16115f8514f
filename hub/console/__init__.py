"""The coordinator console: monitoring pages, service directory and map, exports.

`install_console(app, settings)` adds everything to the hub's FastAPI app:
- `/console/...` server-rendered pages (Jinja2, inline SVG charts, vendored Leaflet);
- `/console/static/...` assets (no CDN, no build step, works offline);
- `PUT /v1/services` / `GET /v1/services` for members publishing HSDS 3.0 services.

Coordinators only ever see content-free metadata: the hub holds nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from common.problems import problem_response
from hub.settings import HubSettings

from .config import ConsoleSettings

__all__ = ["install_console"]

STATIC = Path(__file__).parent / "static"


def install_console(
    app: FastAPI, settings: HubSettings, console: ConsoleSettings | None = None
) -> None:
    from . import api, oidc, routes
    from .web import SECURITY_HEADERS, ConsoleState, CsrfFailed, Forbidden, LoginRequired, redirect

    state = ConsoleState(app=app, hub=settings, cfg=console or ConsoleSettings.from_env())
    app.state.console = state

    async def login_required(request: Request, _exc: Exception) -> Response:
        if request.method in ("GET", "HEAD") and request.url.path.startswith("/console"):
            nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            from urllib.parse import quote

            return redirect("/console/login?next=" + quote(nxt, safe="/"))
        return problem_response(401, "unauthorized", detail="sign in first",
                                headers=SECURITY_HEADERS)

    async def forbidden(request: Request, _exc: Exception) -> Response:
        p = state.principal(request)
        if request.method in ("GET", "HEAD"):
            return state.render(
                request, "error.html", {"title": "Forbidden", "nav": ""}, principal=p,
                status_code=403,
            )
        return problem_response(403, "forbidden", detail="role not allowed",
                                headers=SECURITY_HEADERS)

    async def csrf_failed(_request: Request, _exc: Exception) -> Response:
        return problem_response(403, "csrf", detail="missing or wrong CSRF token",
                                headers=SECURITY_HEADERS)

    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(Forbidden, forbidden)
    app.add_exception_handler(CsrfFailed, csrf_failed)
    app.mount("/console/static", StaticFiles(directory=str(STATIC)), name="console-static")
    app.include_router(oidc.router)
    app.include_router(routes.router)
    app.include_router(api.router)

    @app.get("/console", include_in_schema=False)
    def console_root() -> Any:
        return redirect("/console/")
