"""POST /v1/messages without the framework's per-request machinery (issue 8).

Why: a single-envelope submission costs the hub about half a millisecond of real work
(parse, one signature check, a share of a group commit, one receipt signature), and
FastAPI's routing, dependency solving, request/response objects and exception middleware
cost about as much again. This ASGI middleware answers exactly the ordinary case itself:
a bearer token that checks out and a body within the size limit, with the same code
(`hub.ingest`) and the same answers (202/200 with the receipt, or the protocol's
problem+json for a rejected envelope) as the route in hub.api.messages.

Everything else (no or bad token, oversized body, any other path or method) is passed to
the full application with the body replayed, so refusals keep coming from one place. It
sits inside the access-log and unexpected-error middlewares, so logging and 500s are the
same as for every other route. The route itself stays for the OpenAPI description.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.logging import get_logger
from common.problems import ProblemResponse, problem_response
from protocol import MAX_ENVELOPE_BYTES, ProtocolError

from ..auth import bearer_token
from ..ingest import ingest_async

__all__ = ["MessagesFastPath"]

_log = get_logger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PATH = "/v1/messages"


def _replay(first: dict[str, Any], receive: Receive) -> Receive:
    """A receive that hands out the already-read part of the body first."""
    sent = False

    async def again() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return first
        return await receive()

    return again


class MessagesFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._route: Any = None

    def _find_route(self, scope: Scope) -> Any:
        if self._route is None:
            for r in getattr(scope.get("app"), "routes", ()):
                if getattr(r, "path", None) == PATH and "POST" in (getattr(r, "methods", ())
                                                                     or ()):
                    self._route = r
                    break
        return self._route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        app = scope.get("app")
        rt = getattr(getattr(app, "state", None), "hub", None)
        authorization = user_agent = length = None
        for k, v in scope["headers"]:
            if k == b"authorization":
                authorization = v.decode("latin-1")
            elif k == b"user-agent":
                user_agent = v.decode("latin-1")
            elif k == b"content-length":
                length = v
        if rt is None or (length is not None and (not length.isdigit()
                                                  or int(length) > MAX_ENVELOPE_BYTES)):
            await self.app(scope, receive, send)
            return
        try:
            claims = rt.tokens.check(bearer_token(authorization))
        except Exception:  # the route answers (401 problem) and counts the failure
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay(message, receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            more = bool(message.get("more_body"))
            if size > MAX_ENVELOPE_BYTES:  # the route refuses it (413) from the same bytes
                first = {"type": "http.request", "body": b"".join(chunks), "more_body": more}
                await self.app(scope, _replay(first, receive), send)
                return
        body = b"".join(chunks)
        scope["route"] = self._find_route(scope)  # the access log shows the route template
        response: Any
        try:
            with rt.metrics.ingest_seconds.time():
                [outcome] = await ingest_async(rt, claims, [body], user_agent=user_agent)
        except ProtocolError as exc:
            problem = exc.to_problem()
            problem.setdefault("code", exc.code)
            _log.info("request_refused", code=exc.code, status=exc.http_status, method="POST",
                      path=PATH)
            response = ProblemResponse(problem, status_code=int(exc.http_status))
        except StarletteHTTPException as exc:  # e.g. the node was revoked (401 problem)
            response = problem_response(
                exc.status_code, getattr(exc, "code", None) or "unauthorized",
                getattr(exc, "title", None),
                exc.detail if isinstance(exc.detail, str) else None, headers=exc.headers)
        else:
            if outcome.status == "rejected":
                assert outcome.problem is not None
                response = ProblemResponse(outcome.problem, status_code=outcome.http_status)
            else:
                if outcome.recipient:
                    rt.waiters.notify([outcome.recipient])
                data = orjson.dumps({"message_id": outcome.message_id, "status": "accepted",
                                     "receipt": outcome.receipt})
                await send({"type": "http.response.start",
                            "status": 202 if outcome.status == "accepted" else 200,
                            "headers": [(b"content-length", str(len(data)).encode()),
                                        (b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": data})
                return
        await response(scope, receive, send)
