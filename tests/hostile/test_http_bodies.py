"""Malformed request bodies against every write route of a running hub and a running node.

Deeply nested JSON (up to 100,000 levels), oversized bodies, invalid UTF-8 (overlong
forms, encoded surrogates, truncated sequences, UTF-16, BOM), JSON that is not quite JSON
(NaN, Infinity, huge numbers, duplicate keys, comments, trailing commas, control
characters, lone surrogate escapes), empty bodies and wrong content types.

Proves: each is refused with a 4xx (problem+json from the service, or 400 from the HTTP
server for a request it cannot parse), never a 5xx, never accepted; the services log no
unhandled exception and keep serving.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from node.samples import sample_referral
from tests.hostile.conftest import HubWorld, NodeWorld
from tests.reliability_summary import Recorder

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")

MIB = 1024 * 1024


def payloads() -> Iterator[tuple[str, bytes]]:
    for n in (64, 1_000, 10_000, 100_000):
        yield f"nested arrays {n}", b"[" * n + b"]" * n
        yield f"nested objects {n}", b'{"a":' * n + b"1" + b"}" * n
        yield f"unclosed nesting {n}", b'{"envelopes":' + b"[" * n
    yield "12 MiB string", b'{"a":"' + b"x" * (12 * MIB) + b'"}'
    yield "wide array", b"[" + b"1," * 200_000 + b"1]"
    yield "many keys", b"{" + b",".join(b'"k%d":1' % i for i in range(50_000)) + b"}"
    yield from {
        "invalid byte": b'{"a":"\xff"}', "overlong slash": b'{"a":"\xc0\xaf"}',
        "encoded surrogate": b'{"a":"\xed\xa0\x80"}', "truncated sequence": b'{"a":"\xe2\x82"}',
        "latin-1": '{"nombre":"Jos\xe9"}'.encode("latin-1"), "utf-16": '{"a":1}'.encode("utf-16"),
        "bom": b'\xef\xbb\xbf{"a":1}', "nul byte": b'{"a":"\x00"}', "raw nul": b"\x00" * 64,
        "NaN": b'{"a":NaN}', "Infinity": b'{"a":Infinity}', "huge exponent": b'{"a":1e999}',
        "huge integer": b'{"a":' + b"9" * 5000 + b"}", "negative zero": b'{"a":-0}',
        "duplicate keys": b'{"a":1,"a":2}', "comment": b'{"a":1 /* c */}',
        "trailing comma": b'{"a":1,}', "single quotes": b"{'a':1}", "unquoted key": b"{a:1}",
        "control character": b'{"a":"x\x01y"}', "lone surrogate escape": b'{"a":"\\ud800"}',
        "reversed surrogates": b'{"a":"\\udc00\\ud800"}', "empty": b"", "whitespace": b"  \n\t ",
        "null": b"null", "number": b"42", "string": b'"x"', "array": b"[]", "true": b"true",
        "two documents": b'{"a":1}{"b":2}', "trailing garbage": b'{"a":1}xyz',
        "truncated": b'{"envelopes":[{"header":', "html": b"<html><body>hi</body></html>",
        "xml": b"<?xml version='1.0'?><a/>", "form": b"a=1&b=2",
        "prototype pollution": b'{"__proto__":{"admin":true},"constructor":{"a":1}}',
        "wrong types": b'{"envelopes":"x","ids":{"a":1},"node_id":[1],"to":{},"status":7}',
    }.items()


WRONG_TYPES = ["text/plain", "application/xml", "multipart/form-data; boundary=x",
               "application/x-www-form-urlencoded", "application/octet-stream"]


def _judge(tally: Recorder, client: httpx.Client, method: str, path: str, headers: dict[str, str],
           ctype: str | None, name: str, body: bytes) -> None:
    h = dict(headers)
    if ctype is not None:
        h["Content-Type"] = ctype
    resp = client.request(method, path, content=body, headers=h)
    from_server = resp.status_code == 400 and resp.text.startswith("Invalid HTTP request")
    problem = resp.headers.get("content-type", "").startswith("application/problem+json")
    ok = 400 <= resp.status_code < 500 and (problem or from_server)
    tally.hostile(f"http:{method} {path}|{ctype}", body, accepted_wrongly=not ok,
                  detail=f"{name} ({ctype}) -> {resp.status_code} {resp.text[:80]}")
    assert ok, (method, path, ctype, name, resp.status_code, resp.text[:200])


def _valid_referral(doc: object) -> bool:
    from protocol import ProtocolError
    from protocol.documents import parse_document

    try:
        parse_document("referral", doc)
    except (ProtocolError, ValueError, TypeError):
        return False
    return True


def _no_unhandled(log: str) -> None:
    assert '"event":"unhandled_exception"' not in log, [
        line[:300] for line in log.splitlines() if "unhandled_exception" in line][:3]


def test_hub_refuses_malformed_bodies(hub_world: HubWorld, tally: Recorder) -> None:
    w = hub_world
    s = w.sender
    routes = [("POST", "/v1/enroll", {}), ("POST", "/v1/oauth/token", {}),
              ("POST", "/v1/messages", None), ("POST", "/v1/messages/batch", None),
              ("POST", "/v1/mailbox/ack", None), ("PUT", "/v1/services", None)]
    with httpx.Client(base_url=w.hub.url, timeout=120) as c:
        for method, path, headers in routes:
            for name, body in payloads():
                hdrs = headers if headers is not None else s.auth(s.login())
                json_type = "application/x-www-form-urlencoded" if path == "/v1/oauth/token" \
                    else "application/json"
                if path == "/v1/oauth/token" and name == "form":
                    continue  # well-formed form fields, just not a client assertion: below
                _judge(tally, c, method, path, hdrs, json_type, name, body)
                if len(body) < MIB:
                    for ctype in [*WRONG_TYPES, None]:
                        if ctype == json_type or (path == "/v1/oauth/token" and
                                                  ctype is not None and "form" in ctype):
                            continue
                        _judge(tally, c, method, path, hdrs, ctype, name, body)
        # A valid form with no assertion, and a valid JSON envelope sent as a form.
        _judge(tally, c, "POST", "/v1/oauth/token", {}, "application/x-www-form-urlencoded",
               "form without assertion", b"grant_type=client_credentials")
        assert c.get("/readyz").status_code == 200
    _no_unhandled(w.hub.log_text())


def test_node_refuses_malformed_bodies(node_world: NodeWorld, tally: Recorder) -> None:
    a = node_world.a
    rid = a.send(node_world.b.node_id, sample_referral(1))
    routes = [("POST", "/api/v1/referrals"), ("POST", f"/api/v1/referrals/{rid}/status"),
              ("POST", "/api/v1/referrals/00000000-0000-0000-0000-000000000000/"
                       "withdraw-consent")]
    c = a.api()
    for method, path in routes:
        for name, body in payloads():
            if path.endswith("withdraw-consent") and name in ("empty", "whitespace", "null"):
                continue  # no body is a valid withdrawal request (for an unknown referral: 404)
            _judge(tally, c, method, path, {}, "application/json", name, body)
            if len(body) < MIB:
                for ctype in [*WRONG_TYPES, None]:
                    _judge(tally, c, method, path, {}, ctype, name, body)
    # Valid JSON that is not a referral document: every field wrong in turn.
    base = {"to": node_world.b.node_id, "referral": sample_referral(2)}
    for key in list(base["referral"]):
        for bad in (None, 1, "", [], {}, "x" * 70_000):
            doc = json.loads(json.dumps(base))
            doc["referral"][key] = bad
            if _valid_referral(doc["referral"]):
                continue  # an optional member left empty: not hostile
            _judge(tally, c, "POST", "/api/v1/referrals", {}, "application/json",
                   f"referral.{key}={bad!r}"[:40], json.dumps(doc).encode())
    assert c.get("/readyz").status_code == 200
    _no_unhandled(a.proc.log_text())
    assert len(a.outbound()) == 1  # only the genuine referral exists
