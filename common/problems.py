"""RFC 9457 ``application/problem+json`` for every refusal and failure.

Why: a sending node must be able to act on a refusal by its stable ``code``
(retry, re-key, drop, alert) without parsing prose, and bad input must never
be echoed back: a request body may be a referral, and error responses end up
in logs, proxies and support tickets. So:

* every response carries ``type``, ``title``, ``status``, ``detail`` and ``code``;
* validation errors list only ``{"loc", "type"}`` -- never ``msg``, ``input``
  or ``ctx`` (pydantic puts the offending value in all three), and ``loc``
  elements that are not field names declared by the API are replaced by
  ``"[redacted]"`` (a dict key in the body is input too);
* unexpected exceptions become a generic 500 whose ``instance`` is an error id
  (``urn:rssn:error:<uuid7>``) that is also logged, so operators can find the
  traceback without the client learning anything.

Usage::

    app = FastAPI()
    install_problem_handlers(app)
    raise ProblemHTTPException(404, "not_found", "No such message")
"""

from __future__ import annotations

import email.message
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from common.ids import new_message_id
from common.logging import REDACTED, get_logger
from protocol.errors import ProtocolError

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "ProblemHTTPException",
    "ProblemResponse",
    "install_problem_handlers",
    "problem_response",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"

#: Default stable codes for plain HTTP errors (routes should prefer explicit codes).
STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    410: "gone",
    411: "length_required",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal",
    502: "bad_gateway",
    503: "unavailable",
    504: "gateway_timeout",
}

_log = get_logger(__name__)


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE


def _title_for(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _code_for(status: int) -> str:
    return STATUS_CODES.get(status, "internal" if status >= 500 else "bad_request")


def problem_response(
    status: int,
    code: str,
    title: str | None = None,
    detail: str | None = None,
    *,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    """A problem+json response; ``type`` is ``urn:rssn:problem:<code>``, as the protocol's."""
    title = title or _title_for(status)
    body: dict[str, Any] = {
        "type": f"urn:rssn:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail or title,
        "code": code,
    }
    if instance is not None:
        body["instance"] = instance
    if extra:
        for key, value in extra.items():
            body.setdefault(key, value)
    return ProblemResponse(body, status_code=status, headers=dict(headers) if headers else None)


class ProblemHTTPException(StarletteHTTPException):
    """Raise from a route to refuse with a stable code.

    ``detail`` must contain ids and codes only -- it is sent to the client.
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str | None = None,
        *,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status, detail=detail, headers=dict(headers or {}) or None)
        self.code = code
        self.title = title or _title_for(status)


# --- validation errors ----------------------------------------------------------

_LOC_SOURCES = frozenset({"body", "query", "path", "header", "cookie"})


def _collect_names(node: Any, names: set[str]) -> None:
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict):
            names.update(k for k in props if isinstance(k, str))
        if node.get("in") in _LOC_SOURCES and isinstance(node.get("name"), str):
            names.add(node["name"])
        for value in node.values():
            _collect_names(value, names)
    elif isinstance(node, list):
        for value in node:
            _collect_names(value, names)


def _declared_names(request: Request) -> frozenset[str]:
    """Every field/parameter name the API declares (from its OpenAPI document).

    Why: a ``loc`` element that is a declared name is vocabulary, not input;
    anything else (an unexpected dict key, a union branch label) might be
    input and is redacted.
    """
    app = request.app
    cached = getattr(app.state, "_rssn_declared_names", None)
    if isinstance(cached, frozenset):
        return cached
    names: set[str] = set()
    try:
        _collect_names(app.openapi(), names)
    except Exception:  # noqa: S110 - schema generation is best-effort here
        pass
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    for attr in ("path_params", "query_params", "header_params", "cookie_params", "body_params"):
        for param in getattr(dependant, attr, ()) or ():
            for n in (getattr(param, "name", None), getattr(param, "alias", None)):
                if isinstance(n, str):
                    names.add(n)
    frozen = frozenset(names)
    app.state._rssn_declared_names = frozen
    return frozen


def _safe_loc(loc: Sequence[Any], declared: frozenset[str]) -> list[str | int]:
    out: list[str | int] = []
    for i, part in enumerate(loc):
        if isinstance(part, int) and not isinstance(part, bool):
            out.append(part)
        elif isinstance(part, str) and (
            (i == 0 and part in _LOC_SOURCES) or part in declared
        ):
            out.append(part)
        else:
            out.append(REDACTED)
    return out


def _safe_type(value: Any) -> str:
    return value if isinstance(value, str) and value.isidentifier() else "invalid"


def _is_json_content_type(value: str | None) -> bool:
    if not value:
        return False
    message = email.message.Message()
    message["content-type"] = value
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


def _validation_problem(request: Request, exc: RequestValidationError) -> Response:
    errors = list(exc.errors())
    declared = _declared_names(request)
    safe = [
        {"loc": _safe_loc(tuple(e.get("loc", ())), declared), "type": _safe_type(e.get("type"))}
        for e in errors
    ]
    body_errors = [e for e in errors if tuple(e.get("loc", ()))[:1] == ("body",)]
    has_body = bool(request.headers.get("content-length", "0") not in ("", "0")) or (
        "chunked" in request.headers.get("transfer-encoding", "")
    )
    if (
        body_errors
        and has_body
        and not _is_json_content_type(request.headers.get("content-type"))
    ):
        return problem_response(
            415,
            "unsupported_media_type",
            detail="Request body must be application/json",
            headers={"Accept-Post": "application/json"},
        )
    if any(e.get("type") == "json_invalid" for e in errors):
        return problem_response(
            400,
            "malformed",
            "Malformed message or document",
            "Request body is not valid JSON",
            extra={"errors": safe},
        )
    return problem_response(
        422,
        "validation_error",
        "Request failed validation",
        f"{len(safe)} validation error(s); see 'errors' (locations and types only)",
        extra={"errors": safe},
    )


# --- handlers -------------------------------------------------------------------


def _route_path(request: Request) -> str:
    route = request.scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else request.url.path


async def _protocol_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProtocolError)
    problem = exc.to_problem()
    problem.setdefault("code", exc.code)
    status = int(exc.http_status)
    _log.info("request_refused", code=exc.code, status=status, method=request.method,
              path=_route_path(request))
    return ProblemResponse(problem, status_code=status)


async def _http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    code = getattr(exc, "code", None) or _code_for(status)
    title = getattr(exc, "title", None) or _title_for(status)
    detail = exc.detail if isinstance(exc.detail, str) else None
    # Starlette's default detail is the status phrase; keep it.
    return problem_response(status, code, title, detail, headers=exc.headers)


async def _validation_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    response = _validation_problem(request, exc)
    _log.info("request_invalid", status=response.status_code, method=request.method,
              path=_route_path(request), count=len(exc.errors()))
    return response


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]


class _UnexpectedErrorMiddleware:
    """Turns any unhandled exception into a generic 500 with an error id.

    Why a middleware rather than ``add_exception_handler(Exception, ...)``:
    Starlette re-raises after calling such a handler, so the server would log
    the exception a second time through a path we do not control.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            error_id = new_message_id()
            route = scope.get("route")
            template = getattr(route, "path_format", None) or getattr(route, "path", None)
            _log.error(
                "unhandled_exception",
                error_id=error_id,
                method=scope.get("method"),
                path=template if isinstance(template, str) else scope.get("path"),
                error=exc,
                exc_info=exc,
            )
            if started:
                raise
            response = problem_response(
                500,
                "internal",
                "Internal server error",
                "The server could not complete the request; quote the instance id to operators.",
                instance=f"urn:rssn:error:{error_id}",
            )
            await response(scope, receive, send)


def install_problem_handlers(app: FastAPI) -> None:
    """Register problem+json handlers on ``app``; call once, before the app starts."""
    app.add_exception_handler(ProtocolError, _protocol_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_exception_handler)
    app.add_exception_handler(RequestValidationError, _validation_exception_handler)
    app.add_middleware(_UnexpectedErrorMiddleware)


def problem_codes() -> Iterable[str]:
    """The non-protocol codes this module may emit (for documentation and tests)."""
    return sorted({*STATUS_CODES.values(), "malformed"})
