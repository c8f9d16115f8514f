"""POST /v1/oauth/token: client credentials with a private_key_jwt client assertion."""

from __future__ import annotations

from authlib.oauth2.rfc6749 import InvalidClientError
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from common.logging import get_logger
from common.problems import problem_response

from ..auth import NodeAssertionVerifier, NodeClient
from ..store import queries as q
from .deps import json_response, runtime, token_endpoint_url

router = APIRouter(tags=["authentication"])
_log = get_logger(__name__)

_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["grant_type", "client_assertion_type", "client_assertion"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["client_credentials"]},
                        "client_assertion_type": {
                            "type": "string",
                            "enum": ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"],
                        },
                        "client_assertion": {"type": "string"},
                        "client_id": {"type": "string"},
                    },
                }
            }
        },
    }
}


@router.post("/v1/oauth/token", openapi_extra=_SCHEMA, summary="Exchange a client assertion")
async def token(request: Request) -> Response:
    rt = runtime(request)
    form_data = await request.form(max_files=0, max_fields=10, max_part_size=16 * 1024)
    form = {k: v for k, v in form_data.items() if isinstance(v, str)}
    if form.get("grant_type") != "client_credentials":
        return problem_response(
            400, "validation_error", "Unsupported grant type",
            "grant_type must be client_credentials", extra={"error": "unsupported_grant_type"},
        )
    audience = token_endpoint_url(request)

    def remember(node_id: str, jti: str, exp_ms: int) -> bool:
        with rt.engine.begin() as conn:
            return q.remember_jti(conn, node_id, jti, exp_ms)

    def query_client(node_id: str) -> NodeClient | None:
        with rt.engine.begin() as conn:
            n = q.get_node(conn, node_id)
        if n is None or n.status != "active":
            return None
        return NodeClient(n.node_id, bytes(n.signing_key), n.signing_kid)

    def work() -> tuple[str, int, str]:
        verifier = NodeAssertionVerifier([audience], remember)
        client, _ = verifier.authenticate(form, query_client)
        access, ttl = rt.tokens.issue(client.client_id, client.signing_kid)
        return access, ttl, client.client_id

    try:
        access, ttl, node_id = await run_in_threadpool(work)
    except InvalidClientError as exc:
        rt.metrics.auth_failures.labels("assertion").inc()
        _log.info("token_refused", code="unauthorized", reason=str(exc.description)[:100])
        return problem_response(
            401, "unauthorized", "Client authentication failed", str(exc.description)[:200],
            headers={"WWW-Authenticate": 'Bearer realm="rssn-hub"', "Cache-Control": "no-store"},
            extra={"error": "invalid_client"},
        )
    rt.metrics.tokens.inc()
    _log.info("token_issued", node=node_id)
    return json_response(
        {"access_token": access, "token_type": "Bearer", "expires_in": ttl, "scope": "messages"},
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )
