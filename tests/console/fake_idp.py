"""A tiny OpenID Connect provider for tests: discovery, authorize (auto-consent), token, JWKS.

Run: python -m tests.console.fake_idp PORT EMAIL
It signs ID tokens with an RS256 key made at start, checks the client secret (HTTP Basic)
and PKCE (S256), and echoes the nonce it was given. Loopback only.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import sys
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse
from joserfc import jwt
from joserfc.jwk import RSAKey

CLIENT_ID = "rssn-console"
CLIENT_SECRET = "fake-idp-secret"


def make_app(base: str, email: str) -> FastAPI:
    app = FastAPI()
    key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
    codes: dict[str, dict[str, Any]] = {}

    @app.get("/.well-known/openid-configuration")
    def discovery() -> dict[str, Any]:
        return {
            "issuer": base,
            "authorization_endpoint": base + "/authorize",
            "token_endpoint": base + "/token",
            "jwks_uri": base + "/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    @app.get("/jwks")
    def jwks() -> dict[str, Any]:
        return {"keys": [key.as_dict(private=False)]}

    @app.get("/authorize")
    def authorize(request: Request) -> RedirectResponse:
        q = request.query_params
        assert q["client_id"] == CLIENT_ID and q["response_type"] == "code"
        assert q["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        codes[code] = {"nonce": q["nonce"], "challenge": q["code_challenge"],
                       "redirect_uri": q["redirect_uri"]}
        return RedirectResponse(f"{q['redirect_uri']}?code={code}&state={q['state']}", 302)

    @app.post("/token")
    def token(
        request: Request,
        code: str = Form(...),
        redirect_uri: str = Form(...),
        code_verifier: str = Form(...),
    ) -> JSONResponse:
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {basic}":
            return JSONResponse({"error": "invalid_client"}, 401)
        grant = codes.pop(code, None)
        if grant is None or grant["redirect_uri"] != redirect_uri:
            return JSONResponse({"error": "invalid_grant"}, 400)
        digest = hashlib.sha256(code_verifier.encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant["challenge"]:
            return JSONResponse({"error": "invalid_grant"}, 400)
        now = int(time.time())
        claims = {"iss": base, "sub": "idp-user-42", "aud": CLIENT_ID, "iat": now,
                  "exp": now + 300, "nonce": grant["nonce"], "email": email,
                  "email_verified": True}
        id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)
        return JSONResponse({"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                             "expires_in": 300, "id_token": id_token})

    return app


if __name__ == "__main__":
    port, email = int(sys.argv[1]), sys.argv[2]
    uvicorn.run(make_app(f"http://127.0.0.1:{port}", email), host="127.0.0.1", port=port,
                log_level="warning")
