"""Structured JSON logs for hub and node, with a guard against personal data.

Why this exists: the network carries referrals of survivors of sexual and
gender-based violence, children at risk and victims of trafficking. Logs are
copied to places (terminals, log shippers, support tickets) that the
encrypted stores never reach, so *no personal data may ever be logged*: only
ids, codes, counts, durations and the like. Code review alone does not
enforce that, so every event passes :func:`_guard_personal_data`, which keeps
only allow-listed keys and replaces the value of any other key with
``"[redacted]"`` (the key stays visible so a developer notices and either
renames it to an allowed, content-free key or stops logging it).

Everything -- structlog events and stdlib records from uvicorn, alembic, httpx
-- goes through one handler and one renderer, producing one JSON object per
line (orjson) with an ISO-8601 UTC ``timestamp``, ``level``, ``service`` and
``event``.

Usage::

    from common.logging import configure_logging, get_logger, install_access_log_context
    configure_logging("hub", level="INFO")
    log = get_logger(__name__)
    log.info("message_accepted", message_id=mid, to_node=node_id)
    structlog.contextvars.bind_contextvars(message_id=mid)  # per-request context
    install_access_log_context(app)   # optional: route templates in access logs
    uvicorn.run(app, host=..., port=..., log_config=None)  # keep our handlers

``log_config=None`` matters: uvicorn's default dictConfig would otherwise
install its own plain-text handlers after ours.

The guard sees keys, not free text: keep ``event`` a constant snake_case name
and put values in allow-listed keys (``*_id``, ``code``, ``count``...). Pass
exceptions as ``error=exc`` (logged as their protocol code or class name) and
use ``log.exception(...)`` for tracebacks (frames only, no messages).
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from types import TracebackType
from typing import Any, TextIO, cast
from urllib.parse import urlsplit, urlunsplit

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "ALLOWED_KEYS",
    "REDACTED",
    "configure_logging",
    "get_logger",
    "install_access_log_context",
    "reset_logging",
]

REDACTED = "[redacted]"

#: Exact keys that may carry a value. Everything here is content-free by
#: construction (ids, codes, counts, protocol vocabulary, HTTP plumbing).
ALLOWED_KEYS: frozenset[str] = frozenset(
    {
        # log plumbing
        "event", "level", "timestamp", "service", "logger", "exception", "error_type",
        # identifiers and protocol vocabulary
        "id", "code", "status", "kind", "node", "from_node", "to_node", "recipient_node",
        "sender_node", "key_id", "kid", "state", "from_state", "to_state", "transition",
        "version", "protocol_version", "revision", "from_revision", "to_revision",
        "target", "dialect", "profile", "reason", "outcome", "direction", "queue",
        # counts and measures
        "count", "depth", "attempt", "attempts", "duration_ms", "size_bytes", "limit",
        "batch_size", "retry_in_ms", "delay_ms", "timeout_s", "pid",
        # HTTP plumbing (values are sanitised: no query strings, no credentials)
        "method", "path", "route", "http_version", "status_code", "port", "host", "url",
        "hub_url",
        # errors: codes or exception class names, never exception messages
        "error",
    }
)

#: Key suffixes that are content-free by convention (``message_id``,
#: ``referral_ids``, ``retry_count``, ``latency_ms``, ``error_code``...).
_ALLOWED_SUFFIXES: tuple[str, ...] = (
    "_id", "_ids", "_count", "_ms", "_code", "_codes", "_status", "_kind", "_node",
    "_version", "_revision", "_bytes",
)

_URL_KEYS = frozenset({"url", "hub_url"})
_URL_IN_TEXT = re.compile(r"(?P<base>https?://[^\s\"'?#]+)(?P<rest>[?#][^\s\"']*)?")
_USERINFO = re.compile(r"(?P<scheme>https?://)[^/\s@\"']+@")
_MAX_TEXT = 300

_LEADING_KEYS = ("timestamp", "level", "service", "event")
_service_name: str = "rssn"
_handler_marker = "_rssn_common_handler"


def _key_allowed(key: str) -> bool:
    return key in ALLOWED_KEYS or key.endswith(_ALLOWED_SUFFIXES)


def _sanitize_url(value: object) -> str:
    """Keep scheme, host, port and path; drop credentials, query and fragment."""
    try:
        parts = urlsplit(str(value))
    except ValueError:
        return REDACTED
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return REDACTED
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    try:
        port = parts.port
    except ValueError:
        return REDACTED
    if port is not None:
        netloc = f"{netloc}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _sanitize_text(text: str) -> str:
    """Strip query strings and credentials from any URL embedded in free text.

    Why: third-party log lines (httpx: ``HTTP Request: GET http://...``) embed
    full URLs, and query strings are where stray data tends to hide.
    """
    text = _USERINFO.sub(r"\g<scheme>", text)
    text = _URL_IN_TEXT.sub(
        lambda m: m.group("base") + ("?[redacted]" if m.group("rest") else ""), text
    )
    if len(text) > _MAX_TEXT:
        text = text[:_MAX_TEXT] + "...[truncated]"
    return text


def _error_value(value: object) -> object:
    """Exceptions are logged as their protocol code or class name, never their message.

    Why: exception messages (pydantic, sqlalchemy, json) routinely quote the
    offending input, which may be personal data.
    """
    if isinstance(value, BaseException):
        code = getattr(value, "code", None)
        if isinstance(code, str):
            return code
        return type(value).__name__
    if isinstance(value, str):
        return _sanitize_text(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    return REDACTED


def _safe_value(value: object) -> object:
    if isinstance(value, str):
        return _sanitize_text(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, list | tuple | set | frozenset):
        return [_safe_value(v) for v in value]
    # Nested mappings / arbitrary objects could smuggle anything: refuse.
    return REDACTED


def _guard_personal_data(
    _logger: WrappedLogger, _method: str, event_dict: EventDict
) -> EventDict:
    """Drop the value of every key that is not allow-listed (see module docstring).

    Keys stay (with ``"[redacted]"``) so the mistake is visible in the very
    first test run rather than silently losing the field.
    """
    out: EventDict = {k: event_dict[k] for k in _LEADING_KEYS if k in event_dict}
    for key, value in event_dict.items():
        if not isinstance(key, str) or not _key_allowed(key):
            out[str(key)] = REDACTED
        elif key in _URL_KEYS:
            out[key] = _sanitize_url(value)
        elif key == "error":
            out[key] = _error_value(value)
        elif key == "event":
            out[key] = _sanitize_text(str(value))
        elif key == "exception":
            out[key] = value  # built by _render_exception_safely: frames and types only
        else:
            out[key] = _safe_value(value)
    return out


def _render_exception_safely(
    _logger: WrappedLogger, _method: str, event_dict: EventDict
) -> EventDict:
    """Turn ``exc_info`` into a traceback *without exception messages*.

    Why: a traceback's frames (file, line, function) are what a developer
    needs, while the message (``str(exc)``) may quote input. The chain of
    exception types is kept; messages are replaced by the protocol code when
    the exception has one.
    """
    exc_info = event_dict.pop("exc_info", None)
    event_dict.pop("stack_info", None)
    if not exc_info:
        return event_dict
    exc: BaseException | None
    if isinstance(exc_info, BaseException):
        exc = exc_info
    elif isinstance(exc_info, tuple):
        exc = cast(BaseException | None, exc_info[1])
    else:
        exc = sys.exc_info()[1]
    if exc is None:
        return event_dict
    lines: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    chain: list[BaseException] = []
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or current.__context__
    for item in reversed(chain):
        tb: TracebackType | None = item.__traceback__
        for frame in traceback.extract_tb(tb):
            lines.append(f'File "{frame.filename}", line {frame.lineno}, in {frame.name}')
        code = getattr(item, "code", None)
        suffix = f" [{code}]" if isinstance(code, str) else ""
        lines.append(f"{type(item).__module__}.{type(item).__qualname__}{suffix}")
    event_dict["exception"] = "\n".join(lines)
    event_dict.setdefault("error_type", type(exc).__name__)
    return event_dict


# --- uvicorn access log -----------------------------------------------------

_current_scope: contextvars.ContextVar[MutableMapping[str, Any] | None] = (
    contextvars.ContextVar("rssn_current_scope", default=None)
)


def _route_template(scope: MutableMapping[str, Any] | None) -> str | None:
    if scope is None:
        return None
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) else None


def _rewrite_uvicorn_access(
    _logger: WrappedLogger, _method: str, event_dict: EventDict
) -> EventDict:
    """Replace uvicorn's access line with method, path (template) and status.

    Why: uvicorn's line contains the client address and the full path with
    query string. We keep neither.
    """
    args = event_dict.pop("positional_args", None)
    record = event_dict.get("_record")
    if not isinstance(record, logging.LogRecord) or record.name != "uvicorn.access":
        return event_dict
    event_dict["event"] = "http_request"
    if isinstance(args, tuple) and len(args) == 5:
        _client, method, full_path, http_version, status = args
        path = _route_template(_current_scope.get()) or str(full_path).split("?", 1)[0]
        event_dict.update(
            method=str(method), path=path, http_version=str(http_version), status=status
        )
    return event_dict


ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


class _AccessLogContextMiddleware:
    """Remembers the ASGI scope so the access-log processor can find the route template.

    The router writes ``scope["route"]`` into the same dict during routing, and
    uvicorn emits the access line from inside the app's ``send`` call, i.e. in
    this context.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        token = _current_scope.set(scope if scope.get("type") == "http" else None)
        try:
            await self.app(scope, receive, send)
        finally:
            _current_scope.reset(token)


def install_access_log_context(app: Any) -> None:
    """Make uvicorn access lines show route templates (``/v1/messages/{message_id}``).

    Call before the app starts. Without it, access lines show the concrete
    path (still without query string).
    """
    app.add_middleware(_AccessLogContextMiddleware)


# --- configuration ------------------------------------------------------------


def _add_service(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    event_dict["service"] = _service_name
    return event_dict


def _orjson_dumps(obj: Any, **_kw: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def configure_logging(service: str, *, level: str = "INFO", stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging to one JSON-lines handler on ``stream``.

    Safe to call more than once (tests do): the previous handler installed by
    this function is replaced, other handlers are left alone. ``stream``
    defaults to the *current* ``sys.stderr``.
    """
    global _service_name
    _service_name = service
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        raise ValueError(f"unknown log level: {level}")

    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp")
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
        _add_service,
    ]

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, _rewrite_uvicorn_access],
        pass_foreign_args=True,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _render_exception_safely,
            _guard_personal_data,
            structlog.processors.JSONRenderer(serializer=_orjson_dumps),
        ],
    )
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter)
    setattr(handler, _handler_marker, True)

    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _handler_marker, False):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)

    # Third-party loggers: no own handlers, propagate to root, so every line
    # is JSON. (uvicorn's dictConfig is skipped with log_config=None.)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "alembic", "httpx", "sqlalchemy"):
        lib_logger = logging.getLogger(name)
        lib_logger.handlers.clear()
        lib_logger.propagate = True
        lib_logger.setLevel(logging.NOTSET)
    # Connection-level chatter is never useful in production.
    logging.getLogger("httpcore").setLevel(max(numeric_level, logging.WARNING))
    # SQLAlchemy's engine logger prints statements *with bound parameters* at INFO: envelope
    # bytes on the hub, referral fields on a node. Never below WARNING, whatever the level.
    for name in ("sqlalchemy", "sqlalchemy.engine", "sqlalchemy.engine.Engine", "sqlalchemy.pool"):
        logging.getLogger(name).setLevel(max(numeric_level, logging.WARNING))

    structlog.configure(
        # No PositionalArgumentsFormatter: ``log.info("x %s", value)`` would
        # splice ``value`` into the event text past the guard; instead the
        # arguments arrive as ``positional_args`` and are redacted.
        # filter_by_level first: an event below the configured level is dropped before the
        # other processors run (they cost tens of microseconds per call on hot paths).
        processors=[structlog.stdlib.filter_by_level, *shared,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a logger used before configure_logging() must not stay
        # bound to the pre-configuration pipeline.
        cache_logger_on_first_use=False,
    )


def _configure_defaults() -> None:
    """Guarded JSON to stderr even before :func:`configure_logging` is called.

    Why: structlog's out-of-the-box pipeline prints every key verbatim; an
    event logged at import time or by a script that forgot to configure
    logging must still pass the guard.
    """
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
            _add_service,
            _render_exception_safely,
            _guard_personal_data,
            structlog.processors.JSONRenderer(serializer=_orjson_dumps),
        ],
        logger_factory=_StderrLoggerFactory(),
        # The stdlib flavour keeps positional args out of the event text.
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


class _StderrLoggerFactory:
    """PrintLogger on the *current* ``sys.stderr`` (pytest swaps it per test)."""

    def __call__(self, *args: Any) -> structlog.PrintLogger:
        return structlog.PrintLogger(sys.stderr)


_configure_defaults()


def reset_logging() -> None:
    """Undo :func:`configure_logging` (remove our handler, restore guarded defaults).

    For tests that configure logging into a buffer and must not leave the
    process logging into it afterwards.
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _handler_marker, False):
            root.removeHandler(old)
    _configure_defaults()


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A structlog logger; pass ``__name__`` so the ``logger`` field says where."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
