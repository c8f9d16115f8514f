"""Schemathesis against the OpenAPI documents the running hub and node publish.

Every operation is fuzzed with schema-conforming data (positive) and with data that breaks
the schema (negative), authenticated as a real member (hub) or with a real API key (node),
so the requests reach the handlers rather than stopping at authentication.

Proves: no 5xx for any generated request; no negative (schema-violating) request is
accepted (2xx); every refusal is problem+json. Positive requests may succeed (they are
valid); the hub and node stay ready throughout.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.hostile.conftest import HubWorld, NodeWorld
from tests.reliability_summary import Recorder, full_run

pytestmark = pytest.mark.filterwarnings("ignore")
PER_OPERATION = 150 if full_run() else 45


def _key(case: Any) -> bytes:
    body = case.body
    try:
        body_repr = json.dumps(body, sort_keys=True, default=repr)
    except Exception:
        body_repr = repr(body)
    parts = [case.method, case.formatted_path, json.dumps(case.query, sort_keys=True,
                                                          default=repr),
             json.dumps(case.headers, sort_keys=True, default=repr), str(case.media_type),
             body_repr]
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).digest()


def _truly_negative(case: Any) -> bool:
    """False when the case's only schema violations are ones the request no longer carries
    or that HTTP APIs ignore by design: an Authorization header we replace with a valid one,
    and unknown extra query parameters or headers (``additionalProperties``)."""
    try:
        mutations = case.meta.phase.data.mutations
    except AttributeError:
        return True
    if not mutations:
        return True
    for m in mutations:
        loc = str(getattr(m.parameter_location, "value", m.parameter_location))
        if loc == "header" and m.parameter == "Authorization":
            continue
        if loc in ("query", "header", "cookie") and tuple(m.keywords) == ("additionalProperties",):
            continue
        if loc in ("query", "header") and set(m.keywords) <= {"type"} and \
                _declared_type(case, m.parameter) == "string":
            continue  # on the wire every query value is a string: "not a string" cannot exist
        return True
    return False


def _declared_type(case: Any, name: str | None) -> str | None:
    for p in case.operation.iter_parameters():
        if p.name == name:
            schema = p.definition.get("schema") or {}
            types = [schema.get("type")] + [s.get("type") for s in schema.get("anyOf", [])]
            kinds = {t for t in types if t and t != "null"}
            return kinds.pop() if len(kinds) == 1 else None
    return None


def _no_long_poll(case: Any) -> None:
    """A valid ``wait`` makes GET /v1/mailbox hold the request up to 30 s: use 0 instead
    (still valid, so the request keeps its meaning)."""
    q = case.query
    if case.path == "/v1/mailbox" and isinstance(q, dict) and "wait" in q:
        try:
            if 0 <= float(q["wait"]) <= 30:
                q["wait"] = 0
        except (TypeError, ValueError):
            pass


def _ctype(resp: Any) -> str:
    for name, value in resp.headers.items():
        if name.lower() == "content-type":
            return str(value[0] if isinstance(value, list) else value)
    return ""


def _fuzz(tally: Recorder, spec: dict[str, Any], base_url: str, headers: dict[str, str],
          target: str, skip: set[tuple[str, str]] = frozenset()) -> dict[str, int]:  # type: ignore[assignment]
    schema = schemathesis.openapi.from_dict(spec)
    session = requests.Session()
    stats: dict[str, int] = {}
    for result in schema.get_all_operations():
        op = result.ok()
        if (op.method.upper(), op.path) in skip:
            continue
        for mode, seed_n in ((GenerationMode.POSITIVE, 1), (GenerationMode.NEGATIVE, 2)):
            try:
                strategy = op.as_strategy(generation_mode=mode)
            except Exception:  # nothing negative can be generated for this operation
                continue

            run = _runner(tally, op, mode, seed_n, strategy, base_url, session, headers,
                          target, stats)
            try:
                run()
            except Unsatisfiable:
                continue  # e.g. no way to break the schema of an operation without inputs
    return stats


def _runner(tally: Recorder, op: Any, mode: GenerationMode, seed_n: int, strategy: Any,
            base_url: str, session: requests.Session, headers: dict[str, str], target: str,
            stats: dict[str, int]) -> Any:
    @seed(seed_n)
    @settings(max_examples=PER_OPERATION, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: Any) -> None:
        _no_long_poll(case)
        try:
            resp = case.call(base_url=base_url, session=session,
                             headers={**headers, **(case.headers or {})}, timeout=60)
        except (requests.exceptions.InvalidHeader, ValueError, UnicodeError):
            return  # the client library refuses to send it: nothing reached the service
        status = resp.status_code
        accepted = status < 400
        if accepted and op.path == "/v1/messages/batch":
            # The contract: a batch answers 200 with a verdict per envelope.
            try:
                results = resp.json()["results"]
                accepted = any(r.get("status") != "rejected" for r in results)
            except Exception:
                accepted = True
        wrong = status >= 500 or (mode == GenerationMode.NEGATIVE and accepted
                                  and _truly_negative(case))
        if 400 <= status < 500 and not (
                _ctype(resp).startswith("application/problem+json")
                or resp.text.startswith("Invalid HTTP request")):
            wrong = True
        tally.hostile(f"openapi:{target}", _key(case), accepted_wrongly=wrong,
                      detail=f"{mode.value} {op.method.upper()} {op.path} -> {status} "
                             f"{resp.text[:100]}")
        label = f"{mode.value} {op.method.upper()} {op.path}"
        stats[label] = stats.get(label, 0) + 1
        assert not wrong, (label, status, resp.text[:300], case.body, case.query, case.headers,
                           case.path_parameters)

    return run


def test_hub_openapi(hub_world: HubWorld, tally: Recorder) -> None:
    w = hub_world
    spec = httpx.get(w.hub.url + "/openapi.json", timeout=30).json()
    token = w.sender.login()
    stats = _fuzz(tally, spec, w.hub.url, {"Authorization": f"Bearer {token}"}, "hub")
    tally.note(hub_operations=stats)
    assert any(k.startswith("negative") for k in stats)
    assert httpx.get(w.hub.url + "/readyz", timeout=30).status_code == 200
    assert '"event":"unhandled_exception"' not in w.hub.log_text()


def test_node_openapi(node_world: NodeWorld, tally: Recorder) -> None:
    a = node_world.a
    spec = httpx.get(a.url + "/openapi.json", timeout=30).json()
    stats = _fuzz(tally, spec, a.url, {"Authorization": f"Bearer {a.key}"}, "node")
    tally.note(node_operations=stats)
    assert any(k.startswith("negative") for k in stats)
    assert httpx.get(a.url + "/readyz", timeout=30).status_code == 200
    assert '"event":"unhandled_exception"' not in a.proc.log_text()
