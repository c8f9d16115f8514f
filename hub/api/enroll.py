"""POST /v1/enroll: a node joins with its one-time token, keys and proof of possession."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from protocol import b64u, fingerprint, parse_json

from ..enrollment import EnrollRequest, enroll
from ..store import queries as q
from .deps import json_response, read_body, runtime, token_endpoint_url

router = APIRouter(tags=["enrollment"])

_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["node_id", "token", "signing_key", "encryption_key", "proof"],
                    "properties": {
                        "node_id": {"type": "string"},
                        "token": {"type": "string"},
                        "signing_key": {"type": "string", "description": "b64u Ed25519 public"},
                        "encryption_key": {"type": "object", "description": "KeyBinding"},
                        "proof": {"type": "string", "description": "b64u enrollment_proof"},
                        "software_version": {"type": "string"},
                    },
                }
            }
        },
    }
}


@router.post("/v1/enroll", status_code=201, openapi_extra=_SCHEMA,
             summary="Enroll a node with a one-time token")
async def enroll_node(request: Request) -> Response:
    rt = runtime(request)
    body = await read_body(request, 64 * 1024)
    req = EnrollRequest.from_json(parse_json(body))

    def work() -> bytes:
        enroll(rt.engine, req)
        with rt.engine.begin() as conn:
            return rt.signed_directory(conn, q.directory_version(conn)).signed

    signed = await run_in_threadpool(work)
    key = rt.hub_key
    head = {
        "hub_key": b64u(key.public),
        "hub_kid": key.kid,
        "hub_fingerprint": fingerprint(key.public),
        "token_endpoint": token_endpoint_url(request),
    }
    # Embed the signed directory bytes verbatim (they are canonical JSON).
    prefix = orjson.dumps(head)[:-1]
    return json_response(prefix + b',"directory":' + signed + b"}", status_code=201)
