"""Optional "sign in with your organisation" through OpenID Connect (authorization code + PKCE).

Why: organisations with an identity provider should not need another password.
Only people who already have a console account (`rssn-hub user add`, with or without a
password) can sign in this way: the provider proves who they are, the hub decides
what they may see. The first sign-in links the account by verified email; later ones
by the provider's (issuer, subject).

authlib (httpx) exchanges the code with the client secret; joserfc verifies the ID
token against the provider's published keys (signature, issuer, audience, expiry, nonce).
State, nonce and PKCE verifier travel in a short-lived signed cookie (SameSite=Lax,
because the provider redirects back cross-site).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import sqlalchemy as sa
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from fastapi import APIRouter, Request
from fastapi.responses import Response
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from common.logging import get_logger

from .web import ConsoleState, redirect, safe_next, users_t

__all__ = ["router"]

router = APIRouter(prefix="/console/oidc", include_in_schema=False)
OIDC_COOKIE = "rssn_console_oidc"
_log = get_logger(__name__)
_discovery_cache: dict[str, tuple[float, dict[str, Any]]] = {}


def _state(request: Request) -> ConsoleState:
    return request.app.state.console  # type: ignore[no-any-return]


async def _discover(state: ConsoleState) -> dict[str, Any]:
    issuer = state.cfg.oidc_issuer
    hit = _discovery_cache.get(issuer)
    if hit and time.monotonic() - hit[0] < 3600:
        return hit[1]
    async with httpx.AsyncClient(timeout=state.cfg.oidc_timeout) as client:
        r = await client.get(issuer + "/.well-known/openid-configuration")
        r.raise_for_status()
        meta = r.json()
    if meta.get("issuer", "").rstrip("/") != issuer:
        raise ValueError("issuer mismatch in discovery document")
    _discovery_cache[issuer] = (time.monotonic(), meta)
    return meta  # type: ignore[no-any-return]


def _redirect_uri(request: Request, state: ConsoleState) -> str:
    base = state.hub.public_url or str(request.base_url).rstrip("/")
    return base + "/console/oidc/callback"


@router.get("/login")
async def oidc_login(request: Request, next: str = "/console/") -> Response:
    state = _state(request)
    if not state.cfg.oidc_enabled:
        return redirect("/console/login")
    meta = await _discover(state)
    flow = {
        "state": generate_token(32),
        "nonce": generate_token(32),
        "verifier": generate_token(64),
        "next": safe_next(next),
    }
    params = httpx.QueryParams(
        {
            "response_type": "code",
            "client_id": state.cfg.oidc_client_id,
            "redirect_uri": _redirect_uri(request, state),
            "scope": "openid email",
            "state": flow["state"],
            "nonce": flow["nonce"],
            "code_challenge": create_s256_code_challenge(flow["verifier"]),
            "code_challenge_method": "S256",
        }
    )
    resp = redirect(f"{meta['authorization_endpoint']}?{params}")
    state.set_cookie(
        request, resp, OIDC_COOKIE, state.signer("oidc").dumps(flow), max_age=600, samesite="lax"
    )
    return resp


@router.get("/callback")
async def oidc_callback(request: Request, code: str = "", state: str = "") -> Response:
    cs = _state(request)
    if not cs.cfg.oidc_enabled:
        return redirect("/console/login")
    try:
        flow = cs.signer("oidc").loads(request.cookies.get(OIDC_COOKIE, ""), max_age=600)
    except Exception:
        flow = None
    if not isinstance(flow, dict) or not code or not secrets.compare_digest(
        str(flow.get("state", "")), state
    ):
        return redirect("/console/login?error=expired")
    # Imported here: authlib's httpx integration warns on import, and most hubs never use it.
    from authlib.integrations.httpx_client import AsyncOAuth2Client

    try:
        meta = await _discover(cs)
        async with AsyncOAuth2Client(
            client_id=cs.cfg.oidc_client_id,
            client_secret=cs.cfg.oidc_client_secret,
            token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method name
            timeout=cs.cfg.oidc_timeout,
        ) as client:
            token = await client.fetch_token(
                meta["token_endpoint"],
                grant_type="authorization_code",
                code=code,
                redirect_uri=_redirect_uri(request, cs),
                code_verifier=flow["verifier"],
            )
            jwks = (await client.get(meta["jwks_uri"])).json()
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise ValueError("no id_token")
        decoded = jwt.decode(id_token, KeySet.import_key_set(jwks))
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": cs.cfg.oidc_issuer},
            aud={"essential": True, "value": cs.cfg.oidc_client_id},
            exp={"essential": True},
            sub={"essential": True},
            nonce={"essential": True, "value": flow["nonce"]},
        ).validate(decoded.claims)
    except (JoseError, ValueError, KeyError, httpx.HTTPError, Exception) as exc:
        _log.warning("oidc_sign_in_failed", error=type(exc).__name__)
        return redirect("/console/login?error=credentials")
    claims = decoded.claims
    subject = f"{cs.cfg.oidc_issuer}|{claims['sub']}"
    email = str(claims.get("email") or "").strip().lower()
    verified = claims.get("email_verified") is True
    user_id = _link_user(cs, subject, email if verified else "")
    if user_id is None:
        _log.warning("oidc_no_account", outcome="refused")
        return redirect("/console/login?error=credentials")
    from .routes import start_session

    resp = start_session(request, cs, user_id, safe_next(flow.get("next")))
    resp.delete_cookie(OIDC_COOKIE, path="/console")
    return resp


def _link_user(state: ConsoleState, subject: str, verified_email: str) -> str | None:
    with state.engine.begin() as conn:
        row = conn.execute(
            sa.select(users_t.c.user_id, users_t.c.disabled).where(
                users_t.c.oidc_subject == subject
            )
        ).first()
        if row is None and verified_email:
            row = conn.execute(
                sa.select(users_t.c.user_id, users_t.c.disabled).where(
                    (users_t.c.email == verified_email) & users_t.c.oidc_subject.is_(None)
                )
            ).first()
            if row is not None:
                conn.execute(
                    users_t.update()
                    .where(users_t.c.user_id == row.user_id)
                    .values(oidc_subject=subject)
                )
        if row is None or row.disabled:
            return None
        return str(row.user_id)
