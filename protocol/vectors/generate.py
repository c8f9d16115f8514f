"""Regenerate protocol/vectors/valid.json and invalid.json byte for byte.

Run: python -m protocol.vectors.generate [--check]

Everything random comes from `rng(seed)`: SHA-512 in counter mode, so another
implementation can reproduce each envelope exactly (SPEC section 12).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..canonical import canonical_bytes
from ..directory import DirectoryEntry, build_directory, sign_directory
from ..envelope import (
    PREFIX_INNER,
    Envelope,
    Header,
    _inner_statement,
    _outer_input,
    _seal_key,
    bucket_size,
    seal,
)
from ..keys import EncryptionKeyPair, KeyBinding, SigningKeyPair, b64u, format_time

HERE = Path(__file__).parent
NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def rng(seed: bytes) -> Callable[[int], bytes]:
    """Deterministic byte stream: SHA-512(seed || counter_be32) blocks, consumed in order."""
    return _Stream(seed).take


class _Stream:
    def __init__(self, seed: bytes) -> None:
        self.seed, self.buf, self.ctr = seed, b"", 0

    def take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.buf += hashlib.sha512(self.seed + self.ctr.to_bytes(4, "big")).digest()
            self.ctr += 1
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def _seed(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


SENDER = "shelter-mx"
RECIPIENT = "legal-aid-gt"
OTHER = "unhcr-cr"
sender_sig = SigningKeyPair.generate(_seed("rssn vector: sender signing"))
sender_enc = EncryptionKeyPair.generate(_seed("rssn vector: sender encryption"))
recipient_sig = SigningKeyPair.generate(_seed("rssn vector: recipient signing"))
recipient_enc = EncryptionKeyPair.generate(_seed("rssn vector: recipient encryption"))
other_enc = EncryptionKeyPair.generate(_seed("rssn vector: stranger encryption"))
hub_sig = SigningKeyPair.generate(_seed("rssn vector: hub signing"))
VALID_FROM = datetime(2026, 1, 1, tzinfo=UTC)
VALID_TO = datetime(2028, 1, 1, tzinfo=UTC)
sender_binding = KeyBinding.create(sender_sig, SENDER, sender_enc, VALID_FROM, VALID_TO)
recipient_binding = KeyBinding.create(recipient_sig, RECIPIENT, recipient_enc, VALID_FROM, VALID_TO)

MINIMAL_REFERRAL: dict[str, Any] = {
    "priority": "high",
    "services": ["legal_aid"],
    "concerns": ["sgbv_survivor"],
    "subject": {
        "given_name": "Ana",
        "family_name": "Pérez",
        "sex": "female",
        "age": 29,
        "nationality": ["VE"],
    },
    "consent": {
        "status": "granted",
        "given_by": "subject",
        "obtained_at": "2026-11-20T10:00:00Z",
        "legal_basis": "consent",
    },
    "reason": "Needs legal counselling on asylum procedure",
    "referrer": {"name": "Case worker", "organization": "Sin Fronteras"},
}


def _referral(reason_len: int) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(json.dumps(MINIMAL_REFERRAL))
    if reason_len:
        base = "Necesita asesoría legal sobre el procedimiento de asilo. "
        doc["reason"] = (base * (reason_len // len(base) + 1))[:reason_len]
    return doc


def _uuid(n: int) -> str:
    return f"0193a0b0-0000-7000-8000-{n:012x}"


def directory_bytes() -> bytes:
    d = build_directory(
        [
            DirectoryEntry(SENDER, "Casa Refugio", "MX", sender_sig.public, (sender_binding,)),
            DirectoryEntry(
                RECIPIENT, "Asesoría Legal", "GT", recipient_sig.public, (recipient_binding,)
            ),
        ],
        version=7,
        issued_at=NOW - timedelta(hours=1),
        expires_at=NOW + timedelta(days=3650),
    )
    return sign_directory(d, hub_sig)


def _valid_cases() -> list[dict[str, Any]]:
    thread = _uuid(1)
    specs: list[tuple[str, str, dict[str, Any], dict[str, str]]] = [
        (
            "referral-minimal",
            "referral",
            MINIMAL_REFERRAL,
            {"priority": "high", "category": "sgbv"},
        ),
        ("referral-3k", "referral", _referral(3000), {"priority": "high"}),
        ("referral-4k", "referral", _referral(4000), {}),
        (
            "status-accepted",
            "status",
            {"status": "accepted", "at": "2026-11-28T11:00:00Z", "note": "Cita el lunes"},
            {"status": "accepted"},
        ),
        (
            "receipt",
            "receipt",
            {
                "message_id": _uuid(100),
                "envelope_digest": b64u(hashlib.sha256(b"x").digest()),
                "received_at": "2026-11-28T11:30:00Z",
            },
            {},
        ),
        ("consent-withdrawn", "consent_withdrawn", {"withdrawn_at": "2026-11-28T11:45:00Z"}, {}),
        (
            "problem",
            "problem",
            {"message_id": _uuid(101), "code": "consent_missing", "detail": "consent scope"},
            {},
        ),
    ]
    # one large case exercising the MiB buckets through an attachment-free long safety note
    big = _referral(0)
    big["safety_notes"] = "Ñ" * 1999
    specs.append(("referral-unicode", "referral", big, {"priority": "high"}))
    att = _referral(0)
    att["attachments"] = [
        {
            "filename": "consentimiento.pdf",
            "media_type": "application/pdf",
            "content_b64": base64.b64encode(
                hashlib.shake_256(b"rssn vector pdf").digest(24000)
            ).decode(),
        }
    ]
    specs.append(("referral-attachment-24k", "referral", att, {"priority": "normal"}))
    cases = []
    for i, (name, kind, doc, meta) in enumerate(specs):
        seed = _seed(f"rssn vector case {name}")
        sender, signer, recipient, binding = SENDER, sender_sig, RECIPIENT, recipient_binding
        if kind in ("status", "receipt", "problem"):
            sender, signer, recipient, binding = RECIPIENT, recipient_sig, SENDER, sender_binding
        env = seal(
            sender=sender,
            signing_key=signer,
            recipient=recipient,
            recipient_key=binding,
            kind=kind,
            document=doc,
            message_id=_uuid(10 + i),
            thread=thread,
            created_at=NOW - timedelta(minutes=30),
            ttl=timedelta(days=14),
            meta=meta,
            rng=rng(seed),
        )
        cases.append(
            {
                "name": name,
                "inputs": {
                    "from": sender,
                    "to": recipient,
                    "kind": kind,
                    "message_id": env.header.id,
                    "thread": thread,
                    "created_at": format_time(env.header.created_at),
                    "ttl_seconds": 14 * 86400,
                    "meta": meta,
                    "document": doc,
                    "rng_seed": seed.hex(),
                },
                "verify_at": format_time(NOW),
                "envelope": env.raw.decode("ascii"),
                "envelope_digest": env.digest,
                "padded_size": len(env.ciphertext) - 16,
            }
        )
    return cases


def _assemble(
    header: Header,
    statement: dict[str, Any],
    inner_sig: bytes,
    *,
    recipient_public: bytes,
    seed: bytes,
    signer: SigningKeyPair = sender_sig,
) -> Envelope:
    import nacl.bindings

    r = rng(seed)
    inner = canonical_bytes({**statement, "sig": b64u(inner_sig)})
    padded = nacl.bindings.sodium_pad(inner, bucket_size(len(inner)))
    key, nonce = r(32), r(24)
    ct = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        padded, header.canonical(), nonce, key
    )
    sk = _seal_key(key, recipient_public, r)
    sig = signer.sign(_outer_input(header, sk + nonce + ct))
    raw = canonical_bytes(
        {
            "header": header.to_json(),
            "sealed_key": b64u(sk),
            "nonce": b64u(nonce),
            "ciphertext": b64u(ct),
            "sig": b64u(sig),
        }
    )
    return Envelope(header, sk, nonce, ct, sig, raw)


def _mutate_json(raw: bytes, fn: Callable[[dict[str, Any]], None]) -> str:
    obj = json.loads(raw)
    fn(obj)
    return canonical_bytes(obj).decode("ascii")


def _invalid_cases(base: dict[str, Any]) -> list[dict[str, Any]]:
    raw: bytes = base["envelope"].encode("ascii")
    at = base["verify_at"]
    out: list[dict[str, Any]] = []

    def add(name: str, envelope: str, code: str, verify_at: str = at, **extra: Any) -> None:
        out.append(
            {"name": name, "envelope": envelope, "verify_at": verify_at, "code": code, **extra}
        )

    def flip_b64(s: str, pos: int) -> str:
        c = "A" if s[pos] != "A" else "B"
        return s[:pos] + c + s[pos + 1 :]

    add(
        "tampered-header",
        _mutate_json(raw, lambda o: o["header"]["meta"].update(priority="urgent")),
        "bad_signature",
    )
    add(
        "tampered-ciphertext",
        _mutate_json(raw, lambda o: o.update(ciphertext=flip_b64(o["ciphertext"], 40))),
        "bad_signature",
    )
    add(
        "bad-outer-signature",
        _mutate_json(raw, lambda o: o.update(sig=flip_b64(o["sig"], 10))),
        "bad_signature",
    )
    add(
        "unsupported-version",
        _mutate_json(raw, lambda o: o["header"].update(v=2)),
        "unsupported_version",
    )
    add(
        "malformed-base64",
        _mutate_json(raw, lambda o: o.update(nonce=o["nonce"][:-1] + "+")),
        "malformed",
    )
    add("not-json", raw.decode()[:-1], "malformed")
    add(
        "non-canonical-json",
        raw.decode().replace('{"ciphertext"', '{ "ciphertext"', 1),
        "non_canonical",
    )
    add(
        "unknown-header-member",
        _mutate_json(raw, lambda o: o["header"].update(subject="x")),
        "malformed",
    )
    add(
        "meta-not-whitelisted",
        _mutate_json(raw, lambda o: o["header"]["meta"].update(name="Ana")),
        "malformed",
    )
    add("expired", raw.decode(), "expired", verify_at=format_time(NOW + timedelta(days=15)))
    add(
        "future-dated",
        raw.decode(),
        "future_dated",
        verify_at=format_time(NOW - timedelta(hours=2)),
    )
    add("oversized", raw.decode(), "too_large", max_bytes=1024)
    add(
        "wrong-recipient-node",
        _mutate_json(raw, lambda o: o["header"].update(to=OTHER)),
        "wrong_recipient",
    )

    header = Header.from_json(json.loads(raw)["header"])
    doc = base["inputs"]["document"]

    # inner signature made with another key (outer valid): bad_signature at step 7
    st = _inner_statement(header, doc)
    forged = SigningKeyPair.generate(_seed("forger")).sign(PREFIX_INNER + canonical_bytes(st))
    env = _assemble(header, st, forged, recipient_public=recipient_enc.public, seed=_seed("inv1"))
    add("bad-inner-signature", env.raw.decode(), "bad_signature")

    # inner statement names another thread than the header: header_mismatch
    st2 = {**_inner_statement(header, doc), "thread": _uuid(999)}
    sig2 = sender_sig.sign(PREFIX_INNER + canonical_bytes(st2))
    env = _assemble(header, st2, sig2, recipient_public=recipient_enc.public, seed=_seed("inv2"))
    add("header-inner-mismatch", env.raw.decode(), "header_mismatch")

    # recipient_kid names a key the recipient does not hold
    h3 = Header.from_json({**header.to_json(), "recipient_kid": other_enc.kid})
    st3 = _inner_statement(h3, doc)
    env = _assemble(
        h3,
        st3,
        sender_sig.sign(PREFIX_INNER + canonical_bytes(st3)),
        recipient_public=other_enc.public,
        seed=_seed("inv3"),
    )
    add("wrong-recipient-key", env.raw.decode(), "wrong_recipient")

    # signed correctly but the content key is sealed to another key than recipient_kid claims
    st4 = _inner_statement(header, doc)
    env = _assemble(
        header,
        st4,
        sender_sig.sign(PREFIX_INNER + canonical_bytes(st4)),
        recipient_public=other_enc.public,
        seed=_seed("inv4"),
    )
    add("content-key-for-another-key", env.raw.decode(), "decryption_failed")

    # sender_kid is not the sender's signing key
    rogue = SigningKeyPair.generate(_seed("rogue"))
    h5 = Header.from_json({**header.to_json(), "sender_kid": rogue.kid})
    st5 = _inner_statement(h5, doc)
    env = _assemble(
        h5,
        st5,
        rogue.sign(PREFIX_INNER + canonical_bytes(st5)),
        recipient_public=recipient_enc.public,
        seed=_seed("inv5"),
        signer=rogue,
    )
    add("unknown-sender-key", env.raw.decode(), "unknown_key")

    # a valid signature over a document that breaks the schema (no consent): consent or malformed
    bad_doc = {k: v for k, v in doc.items() if k != "consent"}
    st6 = _inner_statement(header, bad_doc)
    env = _assemble(
        header,
        st6,
        sender_sig.sign(PREFIX_INNER + canonical_bytes(st6)),
        recipient_public=recipient_enc.public,
        seed=_seed("inv6"),
    )
    add("referral-without-consent", env.raw.decode(), "consent_missing")
    return out


def _dump(x: Any) -> bytes:
    return (json.dumps(x, indent=1, ensure_ascii=False, sort_keys=True) + "\n").encode()


def build() -> tuple[bytes, bytes]:
    keys = {
        "sender": {
            "node": SENDER,
            "signing_seed": sender_sig.seed.hex(),
            "signing_public": b64u(sender_sig.public),
            "signing_kid": sender_sig.kid,
            "encryption_secret": sender_enc.secret.hex(),
            "binding": sender_binding.to_json(),
        },
        "recipient": {
            "node": RECIPIENT,
            "signing_seed": recipient_sig.seed.hex(),
            "signing_public": b64u(recipient_sig.public),
            "signing_kid": recipient_sig.kid,
            "encryption_secret": recipient_enc.secret.hex(),
            "binding": recipient_binding.to_json(),
        },
        "hub": {"signing_seed": hub_sig.seed.hex(), "signing_public": b64u(hub_sig.public)},
    }
    directory = json.loads(directory_bytes())
    valid = _valid_cases()
    invalid = _invalid_cases(valid[0])
    common = {"protocol_version": 1, "keys": keys, "directory": directory}
    v = {
        "description": "Envelopes an implementation MUST reproduce byte for byte and open.",
        **common,
        "cases": valid,
    }
    i = {
        "description": "Envelopes an implementation MUST refuse with `code`, verified as the "
        "recipient at `verify_at` (optional max_bytes overrides the size limit).",
        **common,
        "cases": invalid,
    }
    return _dump(v), _dump(i)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="fail if the files differ")
    args = ap.parse_args(argv)
    valid, invalid = build()
    targets = {HERE / "valid.json": valid, HERE / "invalid.json": invalid}
    if args.check:
        stale = [p.name for p, b in targets.items() if not p.exists() or p.read_bytes() != b]
        if stale:
            print("stale vectors: " + ", ".join(stale), file=sys.stderr)
            return 1
        return 0
    for p, b in targets.items():
        p.write_bytes(b)
        print(f"wrote {p} ({len(b)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
