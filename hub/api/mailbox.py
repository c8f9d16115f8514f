"""GET /v1/mailbox (long-poll) and POST /v1/mailbox/ack: a node reads only its own mail."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from ..auth import AccessClaims
from ..delivery import ack, pull, render_items
from .deps import json_response, node_claims, runtime

router = APIRouter(tags=["mailbox"])


@router.get("/v1/mailbox", summary="Pull waiting items (long-poll), oldest first")
async def get_mailbox(
    request: Request,
    claims: AccessClaims = Depends(node_claims),  # noqa: B008
    wait: float = Query(0, ge=0, le=30, description="seconds to wait for an item"),
    limit: int = Query(100, ge=1, le=500),
) -> Response:
    rt = runtime(request)
    items = await pull(rt, claims, wait=wait, limit=limit,
                       user_agent=request.headers.get("user-agent"),
                       disconnected=request.is_disconnected)
    return json_response(render_items(items))


class AckRequest(BaseModel):
    ids: list[str] = Field(max_length=1000)


class AckResponse(BaseModel):
    acked: int


@router.post("/v1/mailbox/ack", response_model=AckResponse,
             summary="Acknowledge items after committing them locally (deletes them)")
async def post_ack(
    request: Request,
    body: AckRequest,
    claims: AccessClaims = Depends(node_claims),  # noqa: B008
) -> Response:
    rt = runtime(request)
    ids = [i for i in body.ids if 0 < len(i) <= 64]
    n = await run_in_threadpool(ack, rt, claims, ids, request.headers.get("user-agent"))
    return json_response({"acked": n})
