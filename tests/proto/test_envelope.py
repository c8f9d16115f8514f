from __future__ import annotations

import json
from datetime import timedelta

import pytest

from protocol import (
    KeyBinding,
    canonical_bytes,
    open_envelope,
    parse_envelope,
    verify_outer,
)
from protocol import errors as E
from protocol.envelope import MAX_ENVELOPE_BYTES, bucket_size

from tests.proto.conftest import MINIMAL, NOW, World


def _open(world: World, raw: bytes, *, who=None, now=NOW):  # type: ignore[no-untyped-def]
    who = who or world.b
    return open_envelope(raw, recipient=who.node, encryption_keys={who.enc.kid: who.enc},
                         resolver=world.directory, now=now)


def test_round_trip_keeps_document_and_proof(world: World) -> None:
    env = world.seal(world.a, world.b, meta={"priority": "high", "category": "sgbv"})
    opened = _open(world, env.raw)
    assert opened.document_json["subject"]["family_name"] == "Pérez"
    assert opened.header.meta == {"priority": "high", "category": "sgbv"}
    # the statement is independently verifiable later (non-repudiation)
    from protocol.envelope import PREFIX_INNER
    from protocol.keys import verify_signature
    verify_signature(world.a.sig.public, PREFIX_INNER + opened.statement, opened.inner_signature)


def test_hub_verifies_without_keys_to_content(world: World) -> None:
    env = world.seal(world.a, world.b)
    verify_outer(parse_envelope(env.raw), world.directory, now=NOW)
    assert b"P\xc3\xa9rez" not in env.raw and b"Ana" not in env.raw


def test_other_node_cannot_open(world: World) -> None:
    env = world.seal(world.a, world.b)
    with pytest.raises(E.WrongRecipient):
        _open(world, env.raw, who=world.c)


def test_message_id_and_thread_are_in_header(world: World) -> None:
    env = world.seal(world.a, world.b, message_id="0193a0b0-0000-7000-8000-000000000001")
    assert env.header.id == "0193a0b0-0000-7000-8000-000000000001"
    assert json.loads(env.raw)["header"]["id"] == env.header.id


@pytest.mark.parametrize("n", [0, 1, 1022, 1023, 1024, 5000, 70000, 1048575, 1048576, 3000000])
def test_bucket_sizes(n: int) -> None:
    b = bucket_size(n)
    assert b >= n + 1
    if b <= 1024 * 1024:
        assert b & (b - 1) == 0 and b >= 1024
    else:
        assert b % (1024 * 1024) == 0 and b - (n + 1) < 1024 * 1024


def test_padding_hides_length(world: World) -> None:
    short = world.seal(world.a, world.b)
    longer = world.seal(world.a, world.b, document={**MINIMAL, "reason": MINIMAL["reason"] + " y más"})
    assert len(short.ciphertext) == len(longer.ciphertext)


def test_expired_and_future(world: World) -> None:
    env = world.seal(world.a, world.b, ttl=timedelta(hours=1))
    with pytest.raises(E.Expired):
        _open(world, env.raw, now=NOW + timedelta(hours=1))
    with pytest.raises(E.FutureDated):
        _open(world, env.raw, now=NOW - timedelta(minutes=6))
    _open(world, env.raw, now=NOW - timedelta(minutes=4))  # within skew


def test_impersonation_refused(world: World) -> None:
    """C signs with its own key but claims to be A: the directory key for A does not match."""
    from protocol import seal
    env = seal(sender="shelter-mx", signing_key=world.c.sig, recipient=world.b.node,
               recipient_key=world.b.binding, kind="referral", document=MINIMAL,
               message_id="0193a0b0-0000-7000-8000-000000000002",
               thread="0193a0b0-0000-7000-8000-000000000003", created_at=NOW)
    with pytest.raises(E.UnknownKey):
        verify_outer(parse_envelope(env.raw), world.directory, now=NOW)


def test_seal_refuses_binding_of_other_node(world: World) -> None:
    from protocol import seal
    with pytest.raises(E.WrongRecipient):
        seal(sender=world.a.node, signing_key=world.a.sig, recipient=world.c.node,
             recipient_key=world.b.binding, kind="referral", document=MINIMAL,
             message_id="0193a0b0-0000-7000-8000-000000000002",
             thread="0193a0b0-0000-7000-8000-000000000003", created_at=NOW)


def test_seal_refuses_invalid_document(world: World) -> None:
    with pytest.raises(E.Malformed):
        world.seal(world.a, world.b, document={**MINIMAL, "priority": "whenever"})


def test_size_limit(world: World) -> None:
    with pytest.raises(E.TooLarge):
        parse_envelope(b" " * (MAX_ENVELOPE_BYTES + 1))


def test_meta_whitelist(world: World) -> None:
    with pytest.raises(E.Malformed):
        world.seal(world.a, world.b, meta={"priority": "high", "name": "Ana"})
    with pytest.raises(E.Malformed):
        world.seal(world.a, world.b, meta={"category": "Ana Pérez"})


def test_swapped_binding_detected(world: World) -> None:
    """A hub that replaces B's encryption key with its own cannot produce B's signature."""
    from protocol import EncryptionKeyPair
    evil = EncryptionKeyPair.generate()
    forged = KeyBinding(world.b.node, evil.kid, evil.public, world.b.binding.not_before,
                        world.b.binding.not_after, world.b.binding.signature)
    with pytest.raises(E.BadSignature):
        forged.verify(world.b.sig.public)


def test_canonical_envelope(world: World) -> None:
    env = world.seal(world.a, world.b)
    assert canonical_bytes(json.loads(env.raw)) == env.raw
    with pytest.raises(E.NonCanonical):
        parse_envelope(json.dumps(json.loads(env.raw), indent=1).encode())


def test_errors_carry_stable_codes() -> None:
    codes = {c.code for c in E.ERROR_CODES.values()}
    for required in ["bad_signature", "unknown_key", "wrong_recipient", "expired", "replayed",
                     "malformed", "unsupported_version", "too_large", "consent_missing",
                     "invalid_transition", "non_canonical", "header_mismatch", "future_dated",
                     "decryption_failed", "conflict"]:
        assert required in codes
    p = E.Expired("x", field="header.expires_at").to_problem()
    assert p["type"] == "urn:rssn:problem:expired" and p["status"] == 422


def test_parse_envelope_value_matches_bytes_form(world: World) -> None:
    from protocol import parse_envelope_value

    env = world.seal(world.a, world.b, meta={"priority": "urgent"})
    from_value = parse_envelope_value(json.loads(env.raw))
    assert from_value.raw == env.raw and from_value.digest == env.digest
    verify_outer(from_value, world.directory, now=NOW)
    with pytest.raises(E.Malformed):
        parse_envelope_value([1, 2])
    with pytest.raises(E.UnsupportedVersion):
        parse_envelope_value({**json.loads(env.raw), "header": {**json.loads(env.raw)["header"], "v": 9}})
    with pytest.raises(E.TooLarge):
        parse_envelope_value(json.loads(env.raw), max_bytes=100)
