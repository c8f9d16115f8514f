"""GET /v1/directory: the signed directory, exactly the bytes of sign_directory()."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from ..auth import AccessClaims
from .deps import json_response, node_claims, runtime

router = APIRouter(tags=["directory"])


@router.get("/v1/directory", summary="Signed, versioned, expiring directory of active nodes")
async def get_directory(
    request: Request, claims: AccessClaims = Depends(node_claims)  # noqa: B008
) -> Response:
    rt = runtime(request)
    ua = request.headers.get("user-agent")

    def work() -> bytes:
        with rt.engine.begin() as conn:
            state = rt.check_node(conn, claims, ua)
            return rt.signed_directory(conn, state.directory_version).signed

    return json_response(await run_in_threadpool(work))
