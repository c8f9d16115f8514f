"""JSON logs: one renderer for structlog and stdlib, and no personal data in any line."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.logging import (
    REDACTED,
    _guard_personal_data,
    configure_logging,
    get_logger,
    reset_logging,
)
from tests.helpers.processes import ServiceProcess

CANARY = "CANARY-Amina-Diallo-1987"

ReadLogs = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def logs() -> Iterator[ReadLogs]:
    """Configure logging into a buffer; returns a function parsing the lines so far."""
    buffer = io.StringIO()
    configure_logging("test-svc", level="DEBUG", stream=buffer)

    def read() -> list[dict[str, Any]]:
        return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]

    yield read
    reset_logging()


def test_json_lines_with_standard_fields(logs: ReadLogs) -> None:
    get_logger("rssn.test").info("message_accepted", message_id="m-1", count=3)
    [line] = logs()
    assert line["event"] == "message_accepted"
    assert line["service"] == "test-svc"
    assert line["level"] == "info"
    assert line["logger"] == "rssn.test"
    assert line["message_id"] == "m-1" and line["count"] == 3
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", line["timestamp"])


def test_disallowed_keys_are_redacted_but_visible(logs: ReadLogs) -> None:
    get_logger("t").info(
        "referral_created",
        referral_id="r-1",
        to_node="ngo-b",
        survivor_name=CANARY,
        payload={"name": CANARY},
        notes=[CANARY],
    )
    [line] = logs()
    assert line["referral_id"] == "r-1" and line["to_node"] == "ngo-b"
    assert line["survivor_name"] == REDACTED
    assert line["payload"] == REDACTED
    assert line["notes"] == REDACTED
    assert CANARY not in json.dumps(line)


def test_allowed_key_cannot_smuggle_structures(logs: ReadLogs) -> None:
    get_logger("t").info("x", status={"name": CANARY}, referral_ids=["a", "b"])
    [line] = logs()
    assert line["status"] == REDACTED
    assert line["referral_ids"] == ["a", "b"]


def test_urls_lose_credentials_query_and_fragment(logs: ReadLogs) -> None:
    get_logger("t").info(
        "hub_contacted",
        url=f"https://user:secret@hub.example:8443/v1/inbox?name={CANARY}#frag",
        hub_url="not a url",
    )
    [line] = logs()
    assert line["url"] == "https://hub.example:8443/v1/inbox"
    assert line["hub_url"] == REDACTED


def test_event_text_loses_query_strings(logs: ReadLogs) -> None:
    logging.getLogger("httpx").info(
        'HTTP Request: %s %s "%s"', "GET", f"http://127.0.0.1:9/x?q={CANARY}", "HTTP/1.1 200 OK"
    )
    [line] = logs()
    assert line["logger"] == "httpx" and line["service"] == "test-svc"
    assert "http://127.0.0.1:9/x?[redacted]" in line["event"]
    assert CANARY not in json.dumps(line)


def test_exceptions_logged_without_messages(logs: ReadLogs) -> None:
    log = get_logger("t")
    try:
        raise ValueError(f"bad value {CANARY}")
    except ValueError as exc:
        log.exception("handler_failed", error=exc, message_id="m-2")
    [line] = logs()
    assert line["error"] == "ValueError"
    assert line["error_type"] == "ValueError"
    assert "test_exceptions_logged_without_messages" in line["exception"]
    assert "ValueError" in line["exception"]
    assert CANARY not in json.dumps(line)


def test_chained_exception_and_protocol_code(logs: ReadLogs) -> None:
    from protocol.errors import Replayed

    try:
        try:
            raise KeyError(CANARY)
        except KeyError as inner:
            raise Replayed(f"seen {CANARY}") from inner
    except Replayed as exc:
        get_logger("t").error("refused", error=exc, exc_info=True)
    [line] = logs()
    assert line["error"] == "replayed"
    assert "KeyError" in line["exception"] and "[replayed]" in line["exception"]
    assert CANARY not in json.dumps(line)


def test_stdlib_loggers_share_renderer_and_guard(logs: ReadLogs) -> None:
    logging.getLogger("alembic.runtime.migration").info("Running upgrade  -> 0001, init")
    logging.getLogger("some.lib").warning("value %s", "ok", extra={"person": CANARY})
    lines = logs()
    assert [entry["logger"] for entry in lines] == ["alembic.runtime.migration", "some.lib"]
    assert all(entry["service"] == "test-svc" for entry in lines)
    assert lines[1]["event"] == "value ok" and lines[1]["level"] == "warning"
    assert CANARY not in json.dumps(lines)


def test_uvicorn_access_record_is_rewritten(logs: ReadLogs) -> None:
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "203.0.113.7:5555", "GET", f"/v1/x?who={CANARY}", "1.1", 404
    )
    [line] = logs()
    assert line["event"] == "http_request"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/v1/x", 404)
    assert "203.0.113.7" not in json.dumps(line)
    assert CANARY not in json.dumps(line)


def test_level_filtering() -> None:
    buffer = io.StringIO()
    configure_logging("svc", level="WARNING", stream=buffer)
    try:
        get_logger("t").info("hidden")
        get_logger("t").warning("shown")
    finally:
        reset_logging()
    assert [json.loads(x)["event"] for x in buffer.getvalue().splitlines()] == ["shown"]


def test_unknown_level_rejected() -> None:
    with pytest.raises(ValueError):
        configure_logging("svc", level="LOUD", stream=io.StringIO())


def test_reconfigure_replaces_only_our_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    other = logging.NullHandler()
    logging.getLogger().addHandler(other)
    try:
        configure_logging("svc", stream=first)
        configure_logging("svc2", stream=second)
        get_logger("t").info("once")
        assert first.getvalue() == ""
        assert json.loads(second.getvalue())["service"] == "svc2"
        assert other in logging.getLogger().handlers
    finally:
        logging.getLogger().removeHandler(other)
        reset_logging()


def test_positional_args_never_reach_the_event_text(logs: ReadLogs) -> None:
    get_logger("t").info("referral for %s", CANARY)
    [line] = logs()
    assert line["event"] == "referral for %s"
    assert line["positional_args"] == REDACTED
    assert CANARY not in json.dumps(line)


def test_guarded_json_even_before_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    reset_logging()
    get_logger("early").warning("early_event", node="n-1", full_name=CANARY)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "early_event" and line["node"] == "n-1"
    assert line["full_name"] == REDACTED
    assert CANARY not in json.dumps(line)


def test_guard_processor_directly() -> None:
    out = _guard_personal_data(
        None, "info", {"event": "e", "node": "n", "dob": "1990-01-01", "kid": "k1", 7: "x"}
    )
    assert out == {"event": "e", "node": "n", "dob": REDACTED, "kid": "k1", "7": REDACTED}


APP_SOURCE = textwrap.dedent(
    """
    import sys
    import uvicorn
    from fastapi import FastAPI
    from common.logging import configure_logging, get_logger, install_access_log_context

    configure_logging("access-test")
    app = FastAPI()
    install_access_log_context(app)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/items/{item_id}")
    def item(item_id: str, q: str = "") -> dict[str, str]:
        get_logger("app").info("item_read", item_id=item_id, query_text=q)
        return {"id": item_id}

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None)
    """
)


def test_real_uvicorn_access_log_has_template_and_no_query(
    tmp_path: Path, spawn_service: Callable[..., ServiceProcess], port: int
) -> None:
    script = tmp_path / "app.py"
    script.write_text(APP_SOURCE)
    proc = spawn_service(
        [sys.executable, str(script), str(port)],
        name="access-app",
        health_url=f"http://127.0.0.1:{port}/healthz",
    )
    response = httpx.get(f"http://127.0.0.1:{port}/items/abc-123", params={"q": CANARY})
    assert response.status_code == 200

    access = proc.wait_for_log(
        lambda d: d.get("event") == "http_request" and d.get("path", "").startswith("/items")
    )
    assert access["path"] == "/items/{item_id}"
    assert access["method"] == "GET" and access["status"] == 200
    assert access["service"] == "access-test"
    assert "127.0.0.1" not in json.dumps(access)  # no client address
    proc.terminate()
    text = proc.log_text()
    assert CANARY not in text
    lines = [json.loads(x) for x in text.splitlines() if x.strip()]  # every line is JSON
    assert any(d.get("event") == "item_read" and d.get("query_text") == REDACTED for d in lines)


def test_sqlalchemy_statements_never_reach_the_log_even_at_debug() -> None:
    """Bound parameters (envelope bytes, referral fields) must not be logged (hub finding)."""
    import io

    import sqlalchemy as sa

    from common.logging import configure_logging, reset_logging

    buf = io.StringIO()
    configure_logging("test", level="DEBUG", stream=buf)
    try:
        engine = sa.create_engine("sqlite://")
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (x TEXT)"))
            conn.execute(sa.text("INSERT INTO t VALUES (:x)"), {"x": "CANARY-Pérez-7731"})
        engine.dispose()
        assert "CANARY" not in buf.getvalue()
        assert "INSERT INTO" not in buf.getvalue()
    finally:
        reset_logging()
