"""problem+json: stable codes, and bad input never echoed back."""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Query
from pydantic import BaseModel, ConfigDict

from common.ids import is_uuid7
from common.logging import configure_logging, reset_logging
from common.problems import (
    PROBLEM_MEDIA_TYPE,
    ProblemHTTPException,
    install_problem_handlers,
    problem_response,
)
from protocol.errors import NotAuthorized, ProtocolError, Replayed, TooLarge

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

CANARY = "CANARY-Fatima-Nkosi-0412"


class Referral(BaseModel):
    model_config = ConfigDict(extra="forbid")
    referral_id: str
    priority: int
    tags: dict[str, int] = {}


def _make_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/referrals/{kind}")
    def create(kind: str, body: Referral) -> dict[str, str]:
        if kind == "boom":
            raise RuntimeError(f"database said {CANARY}")
        if kind == "replayed":
            raise Replayed("message id 0190 already used", field="id")
        if kind == "big":
            raise TooLarge()
        return {"referral_id": body.referral_id}

    @app.get("/search")
    def search(limit: int = Query(...)) -> dict[str, int]:
        return {"limit": limit}

    @app.get("/secret")
    def secret() -> None:
        raise ProblemHTTPException(
            401, "unauthorized", "Bearer token required", headers={"WWW-Authenticate": "Bearer"}
        )

    @app.get("/forbidden")
    def forbidden() -> None:
        raise NotAuthorized("node n-2 may not read this")

    @app.get("/plain-problem")
    def plain() -> Any:
        return problem_response(409, "already_done", "Already done", "ref r-1 is closed")

    return app


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure_logging("problems-test", stream=buffer)
    yield buffer
    reset_logging()


@pytest.fixture
def client(log_buffer: io.StringIO) -> TestClient:
    return TestClient(_make_app(), raise_server_exceptions=False)


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"urn:rssn:problem:{code}"
    assert isinstance(body["title"], str) and isinstance(body["detail"], str)
    return body


def test_validation_error_never_echoes_input(client: TestClient, log_buffer: io.StringIO) -> None:
    payload = {
        "referral_id": 12345,
        "priority": CANARY,
        CANARY: "extra key",
        "tags": {CANARY: CANARY},
    }
    response = client.post("/referrals/gbv", json=payload)
    body = _problem(response, 422, "validation_error")
    assert CANARY not in response.text
    assert "12345" not in response.text
    for err in body["errors"]:
        assert set(err) == {"loc", "type"}
    locs = [tuple(e["loc"]) for e in body["errors"]]
    assert ("body", "priority") in locs
    assert ("body", "[redacted]") in locs  # the unexpected key is input, not vocabulary
    assert ("body", "tags", "[redacted]") in locs
    assert CANARY not in log_buffer.getvalue()


def test_query_validation_never_echoes_input(client: TestClient) -> None:
    response = client.get("/search", params={"limit": CANARY})
    body = _problem(response, 422, "validation_error")
    assert body["errors"] == [{"loc": ["query", "limit"], "type": "int_parsing"}]
    assert CANARY not in response.text


def test_invalid_json_is_malformed_400(client: TestClient) -> None:
    response = client.post(
        "/referrals/gbv",
        content=('{"referral_id": "' + CANARY + '", broken').encode(),
        headers={"content-type": "application/json"},
    )
    body = _problem(response, 400, "malformed")
    assert body["errors"][0]["type"] == "json_invalid"
    assert CANARY not in response.text


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_is_415(client: TestClient, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(
        "/referrals/gbv",
        content=json.dumps({"referral_id": CANARY, "priority": 1}).encode(),
        headers=headers,
    )
    _problem(response, 415, "unsupported_media_type")
    assert CANARY not in response.text


def test_problem_json_content_type_is_accepted(client: TestClient) -> None:
    response = client.post(
        "/referrals/gbv",
        content=json.dumps({"referral_id": "r-1", "priority": 1}).encode(),
        headers={"content-type": "application/merge-patch+json; charset=utf-8"},
    )
    assert response.status_code == 200


def test_protocol_error_keeps_code_status_and_field(client: TestClient) -> None:
    response = client.post("/referrals/replayed", json={"referral_id": "r", "priority": 1})
    body = _problem(response, 409, "replayed")
    assert body == {**Replayed("message id 0190 already used", field="id").to_problem()}

    _problem(client.post("/referrals/big", json={"referral_id": "r", "priority": 1}), 413,
             "too_large")
    _problem(client.get("/forbidden"), 403, "not_authorized")


def test_every_protocol_error_class_maps_to_its_status() -> None:
    from protocol.errors import ERROR_CODES

    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/raise/{code}")
    def raise_(code: str) -> None:
        raise ERROR_CODES[code]("refused")

    client = TestClient(app)
    for code, cls in ERROR_CODES.items():
        assert issubclass(cls, ProtocolError)
        _problem(client.get(f"/raise/{code}"), cls.http_status, code)


def test_http_exceptions_get_codes(client: TestClient) -> None:
    _problem(client.get("/nowhere"), 404, "not_found")
    response = client.delete("/search")
    _problem(response, 405, "method_not_allowed")
    assert "GET" in response.headers.get("allow", "")


def test_problem_http_exception_keeps_headers(client: TestClient) -> None:
    response = client.get("/secret")
    body = _problem(response, 401, "unauthorized")
    assert body["detail"] == "Bearer token required"
    assert response.headers["www-authenticate"] == "Bearer"


def test_problem_response_helper(client: TestClient) -> None:
    body = _problem(client.get("/plain-problem"), 409, "already_done")
    assert body["title"] == "Already done" and body["detail"] == "ref r-1 is closed"


def test_unexpected_exception_is_generic_500_with_logged_error_id(
    client: TestClient, log_buffer: io.StringIO
) -> None:
    response = client.post("/referrals/boom", json={"referral_id": "r", "priority": 1})
    body = _problem(response, 500, "internal")
    assert CANARY not in response.text
    assert "RuntimeError" not in response.text
    instance = body["instance"]
    assert instance.startswith("urn:rssn:error:")
    error_id = instance.removeprefix("urn:rssn:error:")
    assert is_uuid7(error_id)

    logged = [json.loads(x) for x in log_buffer.getvalue().splitlines()]
    [entry] = [x for x in logged if x["event"] == "unhandled_exception"]
    assert entry["error_id"] == error_id
    assert entry["error"] == "RuntimeError"
    assert entry["path"] == "/referrals/{kind}"
    assert "exception" in entry
    assert CANARY not in log_buffer.getvalue()


def test_server_survives_after_500(client: TestClient) -> None:
    client.post("/referrals/boom", json={"referral_id": "r", "priority": 1})
    ok = client.post("/referrals/gbv", json={"referral_id": "r-9", "priority": 1})
    assert ok.status_code == 200 and ok.json() == {"referral_id": "r-9"}
