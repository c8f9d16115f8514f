"""Property tests (hypothesis): tampering anywhere is refused with a typed error; round trips hold."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import ProtocolError, canonical_bytes, open_envelope, parse_canonical, seal

from tests.proto.conftest import MINIMAL, NOW, World

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _open(world: World, raw: bytes):  # type: ignore[no-untyped-def]
    return open_envelope(raw, recipient=world.b.node, encryption_keys={world.b.enc.kid: world.b.enc},
                         resolver=world.directory, now=NOW)


_BASE: dict[str, bytes] = {}


def _base(world: World) -> bytes:
    if "raw" not in _BASE:
        _BASE["raw"] = world.seal(world.a, world.b, meta={"priority": "high"}).raw
    return _BASE["raw"]


@SETTINGS
@given(data=st.data())
def test_any_single_byte_change_is_refused(world: World, data: st.DataObject) -> None:
    raw = _base(world)
    pos = data.draw(st.integers(0, len(raw) - 1), label="position")
    new = data.draw(st.integers(0, 255).filter(lambda b: b != raw[pos]), label="byte")
    mutated = raw[:pos] + bytes([new]) + raw[pos + 1 :]
    try:
        _open(world, mutated)
    except ProtocolError as exc:
        assert exc.code  # a typed refusal with a stable code
    else:
        raise AssertionError(f"mutation at {pos} accepted")


@SETTINGS
@given(data=st.data())
def test_any_byte_deletion_or_insertion_is_refused(world: World, data: st.DataObject) -> None:
    raw = _base(world)
    pos = data.draw(st.integers(0, len(raw) - 1))
    if data.draw(st.booleans()):
        mutated = raw[:pos] + raw[pos + 1 :]
    else:
        mutated = raw[:pos] + bytes([data.draw(st.integers(0, 255))]) + raw[pos:]
    try:
        _open(world, mutated)
    except ProtocolError:
        pass
    else:
        raise AssertionError("mutation accepted")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_round_trip_arbitrary_referrals(world: World, data: st.DataObject) -> None:
    from tests.strategies import referral_documents

    doc: dict[str, Any] = data.draw(referral_documents())
    from protocol.documents import document_to_json, parse_document

    normal = document_to_json(parse_document("referral", doc))
    env = seal(sender=world.a.node, signing_key=world.a.sig, recipient=world.b.node,
               recipient_key=world.b.binding, kind="referral", document=doc,
               message_id=str(uuid.uuid4()), thread=str(uuid.uuid4()), created_at=NOW)
    opened = _open(world, env.raw)
    assert opened.document_json == normal


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers(-2**53 + 1, 2**53 - 1) | st.text(),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4),
                    max_leaves=20))
def test_canonical_round_trip(value: Any) -> None:
    raw = canonical_bytes(value)
    assert parse_canonical(raw) == value
    assert canonical_bytes(parse_canonical(raw)) == raw


def test_minimal_document_is_what_issue_requires(world: World) -> None:
    assert _open(world, world.seal(world.a, world.b, document=MINIMAL).raw).document_json["priority"] == "high"


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**60, 2**60) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
    max_leaves=25,
)


@settings(max_examples=500, deadline=None)
@given(_json)
def test_fast_canonical_path_equals_reference_jcs(value: Any) -> None:
    """canonical_bytes takes an orjson fast path for plain values: it must equal rfc8785's output."""
    import rfc8785

    from protocol.errors import Malformed

    try:
        expected = rfc8785.dumps(value)
    except Exception:
        try:
            canonical_bytes(value)
        except Malformed:
            return
        raise AssertionError("fast path accepted a value JCS refuses") from None
    assert canonical_bytes(value) == expected
