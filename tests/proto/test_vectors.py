"""The implementation against protocol/vectors (SPEC section 12)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from protocol import (
    EncryptionKeyPair,
    ProtocolError,
    SigningKeyPair,
    b64u_decode,
    canonical_bytes,
    open_envelope,
    parse_envelope,
    parse_time,
    seal,
    verify_directory,
)
from protocol.keys import KeyBinding
from protocol.vectors.generate import build, rng

VECTORS = Path(__file__).resolve().parents[2] / "protocol" / "vectors"
VALID = json.loads((VECTORS / "valid.json").read_text(encoding="utf-8"))
INVALID = json.loads((VECTORS / "invalid.json").read_text(encoding="utf-8"))


def _directory(v: dict[str, Any]):  # type: ignore[no-untyped-def]
    hub = b64u_decode(v["keys"]["hub"]["signing_public"])
    return verify_directory(canonical_bytes(v["directory"]), hub, now=parse_time(v["cases"][0]["verify_at"]))


def test_generator_reproduces_files_byte_for_byte() -> None:
    valid, invalid = build()
    assert valid == (VECTORS / "valid.json").read_bytes()
    assert invalid == (VECTORS / "invalid.json").read_bytes()


@pytest.mark.parametrize("case", VALID["cases"], ids=lambda c: c["name"])
def test_valid_vector_reproduces_and_opens(case: dict[str, Any]) -> None:
    keys = VALID["keys"]
    inp = case["inputs"]
    sender = keys["sender"] if inp["from"] == keys["sender"]["node"] else keys["recipient"]
    recipient = keys["recipient"] if sender is keys["sender"] else keys["sender"]
    from datetime import timedelta
    env = seal(
        sender=inp["from"],
        signing_key=SigningKeyPair.generate(bytes.fromhex(sender["signing_seed"])),
        recipient=inp["to"],
        recipient_key=KeyBinding.from_json(recipient["binding"]),
        kind=inp["kind"],
        document=inp["document"],
        message_id=inp["message_id"],
        thread=inp["thread"],
        created_at=parse_time(inp["created_at"]),
        ttl=timedelta(seconds=inp["ttl_seconds"]),
        meta=inp["meta"],
        rng=rng(bytes.fromhex(inp["rng_seed"])),
    )
    assert env.raw.decode("ascii") == case["envelope"]
    assert env.digest == case["envelope_digest"]
    enc = EncryptionKeyPair.generate(bytes.fromhex(recipient["encryption_secret"]))
    opened = open_envelope(case["envelope"].encode(), recipient=inp["to"],
                           encryption_keys={enc.kid: enc}, resolver=_directory(VALID),
                           now=parse_time(case["verify_at"]))
    assert opened.document_json == json.loads(json.dumps(inp["document"])) or opened.header.kind != "referral"
    assert len(parse_envelope(case["envelope"].encode()).ciphertext) - 16 == case["padded_size"]


@pytest.mark.parametrize("case", INVALID["cases"], ids=lambda c: c["name"])
def test_invalid_vector_refused_with_code(case: dict[str, Any]) -> None:
    keys = INVALID["keys"]
    enc = EncryptionKeyPair.generate(bytes.fromhex(keys["recipient"]["encryption_secret"]))
    raw = case["envelope"].encode("utf-8")
    with pytest.raises(ProtocolError) as info:
        if "max_bytes" in case:
            parse_envelope(raw, max_bytes=case["max_bytes"])
        open_envelope(raw, recipient=keys["recipient"]["node"], encryption_keys={enc.kid: enc},
                      resolver=_directory(INVALID), now=parse_time(case["verify_at"]))
    assert info.value.code == case["code"], info.value.detail


def test_required_invalid_cases_present() -> None:
    names = {c["name"] for c in INVALID["cases"]}
    for required in ["tampered-header", "tampered-ciphertext", "bad-outer-signature",
                     "bad-inner-signature", "wrong-recipient-key", "expired", "future-dated",
                     "unsupported-version", "oversized", "malformed-base64", "non-canonical-json",
                     "header-inner-mismatch"]:
        assert required in names
    kinds = {c["inputs"]["kind"] for c in VALID["cases"]}
    assert kinds == {"referral", "status", "receipt", "consent_withdrawn", "problem"}
