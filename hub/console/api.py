"""`PUT /v1/services`: a member publishes its HSDS 3.0 service directory through its node.

Authenticated exactly like every node call (Bearer access token from /v1/oauth/token,
node re-checked as active in the same transaction). Validation errors answer 422
problem+json listing paths and rules, never the submitted values.
"""

from __future__ import annotations

import json
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from common.problems import problem_response
from hub.api.deps import json_response, node_claims, read_body, runtime
from hub.auth import AccessClaims
from hub.store import queries as hubq

from . import hsds, services
from .web import now_ms

__all__ = ["MAX_SERVICES_BYTES", "router"]

router = APIRouter(tags=["directory"])
MAX_SERVICES_BYTES = 4 * 1024 * 1024
Claims = Annotated[AccessClaims, Depends(node_claims)]


@router.put("/v1/services")
async def put_services(request: Request, claims: Claims) -> Response:
    """Replace the caller's published services; the directory version increases on change."""
    rt = runtime(request)
    raw = await read_body(request, MAX_SERVICES_BYTES)
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: deep nesting
        return problem_response(422, "validation_error", detail="body is not JSON",
                                extra={"errors": ["$: not JSON"]})
    ua = request.headers.get("user-agent")

    def store() -> tuple[bool, int, int]:
        with rt.engine.begin() as conn:
            rt.check_node(conn, claims, ua)
            changed, doc = services.publish(
                conn, claims.node_id, document, source="node", now=now_ms()
            )
            return changed, len(doc["services"]), hubq.directory_version(conn)

    try:
        changed, count, version = await run_in_threadpool(store)
    except hsds.HsdsError as exc:
        return problem_response(
            422, "validation_error", detail="not valid HSDS 3.0 for the network's profile",
            extra={"errors": exc.errors},
        )
    return json_response(
        {"node_id": claims.node_id, "services": count, "changed": changed,
         "directory_version": version}
    )


@router.get("/v1/services")
async def get_services(request: Request, claims: Claims) -> Response:
    """What the hub holds for the caller (normalised), or an empty publication."""
    rt = runtime(request)
    ua = request.headers.get("user-agent")

    def load() -> str | None:
        with rt.engine.begin() as conn:
            rt.check_node(conn, claims, ua)
            return conn.execute(
                sa.select(services.published_t.c.document).where(
                    services.published_t.c.node_id == claims.node_id
                )
            ).scalar()

    doc = await run_in_threadpool(load)
    body = json.loads(doc) if doc else {"organization": None, "services": [], "locations": [],
                                        "service_at_locations": []}
    return json_response(body)
