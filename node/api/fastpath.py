"""POST /api/v1/referrals without the framework's per-request machinery (issue 8).

Why: creating a referral costs the node under a millisecond of real work (validate, check
consent, seal, a share of a group commit), and FastAPI's routing, dependency solving,
body model and response serialisation cost about as much again; at a steady 200
referrals/s that decides whether the node keeps up. This ASGI middleware answers exactly
the ordinary case itself: a JSON body `{"to": str, "referral": {...}}`, an API key that
checks out, and the same code (`Node.create_referral_async`) and answers (202 with the
summary, or the protocol's problem+json) as the route in node.api.referrals.

Everything else (no or unknown key, another content type, a body the route's model would
refuse, any other path) is passed to the full application with the body replayed, so
refusals keep coming from one place. It sits inside the access-log and unexpected-error
middlewares. The route itself stays for the OpenAPI description and for the other cases.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from common.logging import get_logger
from common.problems import ProblemResponse
from protocol import ProtocolError

__all__ = ["ReferralsFastPath"]

_log = get_logger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PATH = "/api/v1/referrals"
#: Larger bodies go the route's way (its limits and answers apply).
MAX_BODY = 1024 * 1024


def _replay(first: dict[str, Any], receive: Receive) -> Receive:
    sent = False

    async def again() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return first
        return await receive()

    return again


class ReferralsFastPath:
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
        node = getattr(getattr(scope.get("app"), "state", None), "node", None)
        authorization = ctype = length = None
        for k, v in scope["headers"]:
            if k == b"authorization":
                authorization = v.decode("latin-1")
            elif k == b"content-type":
                ctype = v
            elif k == b"content-length":
                length = v
        scheme, _, key = (authorization or "").partition(" ")
        if (node is None or scheme.lower() != "bearer" or not key.strip()
                or ctype is None or ctype.split(b";")[0].strip().lower() != b"application/json"
                or length is None or not length.isdigit() or int(length) > MAX_BODY):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay(message, receive), send)
                return
            chunks.append(message.get("body", b""))
            more = bool(message.get("more_body"))
            if sum(map(len, chunks)) > MAX_BODY:
                first = {"type": "http.request", "body": b"".join(chunks), "more_body": more}
                await self.app(scope, _replay(first, receive), send)
                return
        body = b"".join(chunks)
        replay = _replay({"type": "http.request", "body": body, "more_body": False}, receive)
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            value = None
        to = value.get("to") if isinstance(value, dict) else None
        referral = value.get("referral") if isinstance(value, dict) else None
        if not isinstance(to, str) or not isinstance(referral, dict) or not _key_ok(node, key):
            await self.app(scope, replay, send)  # the route's model and key check answer
            return
        scope["route"] = self._find_route(scope)  # the access log shows the route template
        try:
            summary = await node.create_referral_async(to, referral)
        except ProtocolError as exc:
            problem = exc.to_problem()
            problem.setdefault("code", exc.code)
            _log.info("request_refused", code=exc.code, status=exc.http_status, method="POST",
                      path=PATH)
            await ProblemResponse(problem, status_code=int(exc.http_status))(scope, replay, send)
            return
        data = orjson.dumps(summary)
        await send({"type": "http.response.start", "status": 202,
                    "headers": [(b"content-length", str(len(data)).encode()),
                                (b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": data})


def _key_ok(node: Any, key: str) -> bool:
    from node.api.deps import key_name

    return key_name(node, key.strip()) is not None
