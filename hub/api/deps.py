"""Shared route plumbing: the runtime, bearer-token claims, bounded body reads, JSON bodies."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.responses import Response

from protocol.errors import TooLarge

from ..auth import AccessClaims, unauthorized
from ..runtime import HubRuntime

__all__ = ["json_response", "node_claims", "read_body", "runtime", "token_endpoint_url"]

_bearer = HTTPBearer(auto_error=False, description="Access token from /v1/oauth/token")


def runtime(request: Request) -> HubRuntime:
    rt: HubRuntime = request.app.state.hub
    return rt


async def node_claims(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
) -> AccessClaims:
    """Token signature/expiry only; each route re-checks the node's status in its transaction."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized("Bearer access token required")
    rt = runtime(request)
    try:
        return rt.tokens.check(credentials.credentials)
    except Exception:
        rt.metrics.auth_failures.labels("token").inc()
        raise


async def read_body(request: Request, max_bytes: int) -> bytes:
    """Read at most `max_bytes`, refusing larger bodies with `too_large` before buffering them."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge("request body exceeds the size limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge("request body exceeds the size limit")
        chunks.append(chunk)
    return b"".join(chunks)


def json_response(body: Any, status_code: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(data, status_code=status_code, media_type="application/json",
                    headers=headers)


def token_endpoint_url(request: Request) -> str:
    rt = runtime(request)
    base = rt.settings.public_url or str(request.base_url).rstrip("/")
    return base + "/v1/oauth/token"
