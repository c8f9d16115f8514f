"""POST /v1/messages and /v1/messages/batch: submit envelopes, get transport receipts."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from common.problems import ProblemResponse
from protocol import (
    MAX_ENVELOPE_BYTES,
    Envelope,
    ProtocolError,
    parse_envelope_value,
    parse_json,
)
from protocol.errors import Malformed, TooLarge

from ..auth import AccessClaims
from ..ingest import ingest, ingest_async
from .deps import json_response, node_claims, read_body, runtime

router = APIRouter(tags=["messages"])

_ENVELOPE_SCHEMA = {
    "type": "object",
    "description": "An envelope (RFC 8785 canonical JSON), see protocol SPEC section 5",
    "required": ["header", "sealed_key", "nonce", "ciphertext", "sig"],
}
_ONE = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": _ENVELOPE_SCHEMA}}}}
_BATCH = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["envelopes"],
    "properties": {"envelopes": {"type": "array", "maxItems": 500, "items": _ENVELOPE_SCHEMA}},
}}}}}


@router.post("/v1/messages", status_code=202, openapi_extra=_ONE,
             summary="Submit one envelope")
async def submit(
    request: Request, claims: AccessClaims = Depends(node_claims)  # noqa: B008
) -> Response:
    rt = runtime(request)
    body = await read_body(request, MAX_ENVELOPE_BYTES)
    ua = request.headers.get("user-agent")
    with rt.metrics.ingest_seconds.time():
        [outcome] = await ingest_async(rt, claims, [body], user_agent=ua)
    if outcome.status == "rejected":
        assert outcome.problem is not None
        return ProblemResponse(outcome.problem, status_code=outcome.http_status)
    if outcome.recipient:
        rt.waiters.notify([outcome.recipient])
    return json_response(
        {"message_id": outcome.message_id, "status": "accepted", "receipt": outcome.receipt},
        status_code=202 if outcome.status == "accepted" else 200,
    )


def _split_batch(body: bytes, max_items: int) -> tuple[list[Envelope | ProtocolError],
                                                       list[str | None]]:
    """Members parsed once: each is an already-parsed value, rebuilt into its canonical
    bytes (the digest is the one it would have alone) by `parse_envelope_value`."""
    try:
        # orjson is strict about UTF-8, NaN/Infinity and nesting (it refuses > 1024 levels);
        # what it refuses (or cannot hold, e.g. huge integers) gets the strict parser's
        # precise answer. It keeps the last of duplicate member names: harmless here, because
        # every member is re-serialised canonically from the parsed value and its signature
        # is checked over exactly those bytes, which are the bytes stored and delivered.
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        value = parse_json(body)
    if not isinstance(value, dict) or set(value) != {"envelopes"} or not isinstance(
        value["envelopes"], list
    ):
        raise Malformed('batch body must be {"envelopes": [...]}', field="envelopes")
    envelopes = value["envelopes"]
    if len(envelopes) > max_items:
        raise TooLarge(f"a batch holds at most {max_items} envelopes", field="envelopes")
    raws: list[Envelope | ProtocolError] = []
    ids: list[str | None] = []
    for obj in envelopes:
        hint: Any = None
        if isinstance(obj, dict) and isinstance(obj.get("header"), dict):
            hint = obj["header"].get("id")
        ids.append(hint if isinstance(hint, str) and len(hint) <= 64 else None)
        try:
            if not _flat_header(obj):
                raise Malformed("header members must be strings, numbers or a flat meta object",
                                field="header")
            raws.append(parse_envelope_value(obj))
        except ProtocolError as exc:
            raws.append(exc)
    return raws, ids


def _flat_header(obj: Any) -> bool:
    """A header is flat (meta holds strings): refuse deeper nesting before anything recurses
    into it (the strict parser's depth limit is not applied on the orjson path)."""
    header = obj.get("header") if isinstance(obj, dict) else None
    if not isinstance(header, dict):
        return True  # parse_envelope_value names the problem
    for v in header.values():
        if isinstance(v, list):
            return False
        if isinstance(v, dict) and any(isinstance(x, dict | list) for x in v.values()):
            return False
    return True


@router.post("/v1/messages/batch", openapi_extra=_BATCH,
             summary="Submit up to 500 envelopes in one transaction")
async def submit_batch(
    request: Request, claims: AccessClaims = Depends(node_claims)  # noqa: B008
) -> Response:
    rt = runtime(request)
    body = await read_body(request, rt.settings.max_batch_bytes)
    ua = request.headers.get("user-agent")

    def work() -> list[Any]:
        raws, ids = _split_batch(body, rt.settings.max_batch)
        if not raws:
            return []
        return ingest(rt, claims, raws, user_agent=ua, ids_hint=ids)

    with rt.metrics.ingest_seconds.time():
        outcomes = await run_in_threadpool(work)
    rt.waiters.notify({o.recipient for o in outcomes if o.recipient})
    return json_response({"results": [o.to_json() for o in outcomes]})
