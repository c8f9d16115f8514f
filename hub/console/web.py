"""Console plumbing: shared state, sessions, roles, CSRF, rendering, security headers.

Why server-side sessions (a random cookie whose SHA-256 is stored): a coordinator who
is removed or disabled loses access at the next request, and nothing about the person
travels in the cookie. Cookies are HttpOnly and SameSite=Strict, Secure unless the
console is reached over plain http on loopback (tests) or RSSN_CONSOLE_SECURE_COOKIES=false.

CSRF: every state-changing request carries the session's CSRF token (form field
`csrf_token` or header `X-CSRF-Token`), and an Origin header, when sent, must be ours.
The sign-in form, which has no session yet, uses a double-submit token whose cookie
is signed (itsdangerous) with a key kept in the database.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import sqlalchemy as sa
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from hub.settings import HubSettings

from . import i18n
from .config import ConsoleSettings
from .models import ConsoleSecret, ConsoleSession, ConsoleUser
from .monitor import Scope

__all__ = [
    "SESSION_COOKIE",
    "ConsoleState",
    "Forbidden",
    "LoginRequired",
    "Principal",
]

SESSION_COOKIE = "rssn_console"
LOGIN_CSRF_COOKIE = "rssn_console_login"
LANG_COOKIE = "rssn_console_lang"
TEMPLATES = Path(__file__).parent / "templates"

users_t: sa.Table = ConsoleUser.__table__  # type: ignore[assignment,attr-defined]
sessions_t: sa.Table = ConsoleSession.__table__  # type: ignore[assignment,attr-defined]
secrets_t: sa.Table = ConsoleSecret.__table__  # type: ignore[assignment,attr-defined]

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Permissions-Policy": "geolocation=(), camera=(), microphone=()",
}


def now_ms() -> int:
    return int(time.time() * 1000)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class LoginRequired(Exception):
    """No valid session: HTML pages redirect to the sign-in page, other requests get 401."""


class Forbidden(Exception):
    """Signed in, but the role may not do this (403)."""


class CsrfFailed(Exception):
    """A state-changing request without the right CSRF token or from another origin (403)."""


@dataclass(frozen=True)
class Principal:
    user_id: str
    email: str
    role: str
    country: str | None
    language: str
    csrf_token: str
    token_sha256: str

    @property
    def scope(self) -> Scope:
        if self.role == "country":
            return Scope(frozenset({(self.country or "").upper()}))
        return Scope(None)

    @property
    def can_write(self) -> bool:
        return self.role == "regional"


@dataclass
class ConsoleState:
    app: Any
    hub: HubSettings
    cfg: ConsoleSettings
    templates: jinja2.Environment = field(init=False)
    _own_engine: sa.Engine | None = None
    _secret_cache: bytes | None = None

    @property
    def engine(self) -> sa.Engine:
        """The hub runtime's engine (one pool per process); our own only without a runtime."""
        rt = getattr(self.app.state, "hub", None)
        if rt is not None:
            return rt.engine  # type: ignore[no-any-return]
        if self._own_engine is None:
            from common.db import make_engine

            self._own_engine = make_engine(self.hub.db_url)
        return self._own_engine

    def __post_init__(self) -> None:
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATES)),
            autoescape=jinja2.select_autoescape(["html", "xml"]),
            undefined=jinja2.StrictUndefined,
        )

    # --- signing key for pre-session cookies -----------------------------------------

    def signer(self, salt: str) -> URLSafeTimedSerializer:
        key = self._secret()
        return URLSafeTimedSerializer(key, salt=salt)

    def _secret(self) -> bytes:
        if self._secret_cache is not None:
            return self._secret_cache
        try:
            with self.engine.begin() as conn:
                row = conn.execute(
                    sa.select(secrets_t.c.value).where(secrets_t.c.name == "cookie_signing")
                ).first()
                if row is not None:
                    self._secret_cache = bytes(row[0])
                    return self._secret_cache
                conn.execute(
                    sa.insert(secrets_t).values(name="cookie_signing", value=secrets.token_bytes(32))
                )
        except sa.exc.IntegrityError:  # another hub process made it first
            pass
        with self.engine.connect() as conn:
            self._secret_cache = bytes(
                conn.execute(
                    sa.select(secrets_t.c.value).where(secrets_t.c.name == "cookie_signing")
                ).scalar_one()
            )
        return self._secret_cache

    # --- cookies ----------------------------------------------------------------------

    def secure_cookie(self, request: Request) -> bool:
        mode = self.cfg.secure_cookies
        if mode != "auto":
            return mode == "true"
        if request.url.scheme == "https":
            return True
        host = request.url.hostname or ""
        if host == "localhost":
            return False
        try:
            return not ipaddress.ip_address(host).is_loopback
        except ValueError:
            return True

    def set_cookie(
        self,
        request: Request,
        response: Response,
        name: str,
        value: str,
        *,
        max_age: int,
        samesite: str = "strict",
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/console",
            httponly=True,
            samesite=samesite,  # type: ignore[arg-type]
            secure=self.secure_cookie(request),
        )

    # --- sessions ---------------------------------------------------------------------

    def create_session(self, conn: sa.Connection, user_id: str) -> tuple[str, str]:
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = now_ms()
        conn.execute(
            sa.insert(sessions_t).values(
                token_sha256=sha256_hex(token),
                user_id=user_id,
                csrf_token=csrf,
                created_at_ms=now,
                expires_at_ms=now + self.cfg.session_hours * 3600 * 1000,
                last_seen_ms=now,
            )
        )
        conn.execute(sessions_t.delete().where(sessions_t.c.expires_at_ms < now))
        return token, csrf

    def principal(self, request: Request) -> Principal | None:
        cached = getattr(request.state, "console_principal", None)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        token = request.cookies.get(SESSION_COOKIE)
        if not token or len(token) > 200:
            return None
        digest = sha256_hex(token)
        now = now_ms()
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(
                    sessions_t.c.csrf_token,
                    sessions_t.c.expires_at_ms,
                    sessions_t.c.last_seen_ms,
                    users_t.c.user_id,
                    users_t.c.email,
                    users_t.c.role,
                    users_t.c.country,
                    users_t.c.language,
                    users_t.c.disabled,
                )
                .select_from(sessions_t.join(users_t, users_t.c.user_id == sessions_t.c.user_id))
                .where(sessions_t.c.token_sha256 == digest)
            ).first()
            conn.rollback()
        if row is None or row.expires_at_ms <= now or row.disabled:
            return None
        if now - row.last_seen_ms > 60_000:
            with self.engine.begin() as conn:
                conn.execute(
                    sessions_t.update()
                    .where(sessions_t.c.token_sha256 == digest)
                    .values(last_seen_ms=now)
                )
        p = Principal(
            user_id=row.user_id,
            email=row.email,
            role=row.role,
            country=row.country,
            language=row.language if row.language in i18n.LANGUAGES else "en",
            csrf_token=row.csrf_token,
            token_sha256=digest,
        )
        request.state.console_principal = p
        return p

    # --- rendering --------------------------------------------------------------------

    def language(self, request: Request, principal: Principal | None) -> str:
        if principal is not None:
            return principal.language
        lang = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
        if lang in i18n.LANGUAGES:
            return lang  # type: ignore[return-value]
        return i18n.negotiate(request.headers.get("accept-language"))

    def render(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any],
        *,
        principal: Principal | None,
        status_code: int = 200,
    ) -> HTMLResponse:
        lang = self.language(request, principal)
        t = i18n.translator(lang)
        ctx: dict[str, Any] = {
            "_": t,
            "lang": lang,
            "me": principal,
            "request_path": request.url.path,
            "country_name": lambda cc: i18n.country_name(cc, lang),
            "label": lambda kind, code: i18n.vocab_label(kind, code, lang),
            "fmt_dt": fmt_dt,
            "fmt_age": lambda td: fmt_age(td, t),
            "fmt_hours": lambda h: fmt_hours(h, t),
            "min_cell": self.cfg.min_cell,
        }
        ctx.update(context)
        html = self.templates.get_template(template).render(ctx)
        return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def fmt_dt(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def fmt_age(td: Any, t: Callable[[str], str]) -> str:
    hours = td.total_seconds() / 3600
    if hours < 48:
        return f"{hours:.0f} {t('hours')}"
    return f"{hours / 24:.0f} {t('days')}"


def fmt_hours(h: float | None, t: Callable[[str], str]) -> str:
    if h is None:
        return "-"
    if h < 48:
        return f"{h:.1f} {t('hours')}"
    return f"{h / 24:.1f} {t('days')}"


def check_csrf(request: Request, principal_token: str, submitted: str | None) -> None:
    origin = request.headers.get("origin")
    if origin and origin != "null":
        expected = f"{request.url.scheme}://{request.url.netloc}"
        if origin.rstrip("/") != expected:
            raise CsrfFailed
    value = submitted or request.headers.get("x-csrf-token") or ""
    if not value or not hmac.compare_digest(value.encode(), principal_token.encode()):
        raise CsrfFailed


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def safe_next(value: str | None) -> str:
    """Only console paths are valid redirect targets after sign-in (no open redirects)."""
    if value and value.startswith("/console/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/console/"


def signed_token(state: ConsoleState, salt: str) -> tuple[str, str]:
    raw = secrets.token_urlsafe(24)
    return raw, state.signer(salt).dumps(raw)


def verify_signed(state: ConsoleState, salt: str, cookie: str | None, max_age: int) -> str | None:
    if not cookie:
        return None
    try:
        value = state.signer(salt).loads(cookie, max_age=max_age)
    except BadSignature:
        return None
    return value if isinstance(value, str) else None
