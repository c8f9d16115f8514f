"""Envelopes: sign-then-encrypt inside, sign-the-ciphertext outside (SPEC sections 4-6).

The visible header tells the hub where to route and lets it authenticate the
sender (outer signature over header + ciphertext digest) without being able
to read anything. The inner statement carries the sender's own signature over
(version, id, kind, from, to, thread, created_at, document), so the recipient
keeps non-repudiable proof of what was sent even after the envelope is gone.

Everything here is pure: time (`now`) and randomness (`rng`) are parameters.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import nacl.bindings
import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.public
import orjson

from .canonical import canonical_bytes, parse_canonical
from .errors import (
    DecryptionFailed,
    Expired,
    FutureDated,
    HeaderMismatch,
    Malformed,
    NonCanonical,
    TooLarge,
    UnknownKey,
    UnsupportedVersion,
    WrongRecipient,
)
from .keys import (
    EncryptionKeyPair,
    KeyBinding,
    SigningKeyPair,
    b64u,
    b64u_decode,
    format_time,
    parse_time,
    validate_node_id,
    verify_signature,
)

__all__ = [
    "CATEGORIES",
    "DEFAULT_MAX_SKEW",
    "MAX_ENVELOPE_BYTES",
    "MAX_PLAINTEXT_BYTES",
    "MONITORING_FIELDS",
    "PREFIX_INNER",
    "PREFIX_OUTER",
    "PROTOCOL_VERSION",
    "Envelope",
    "Header",
    "KeyResolver",
    "Opened",
    "Rng",
    "bucket_size",
    "check_times",
    "digest",
    "open_envelope",
    "parse_envelope",
    "parse_envelope_value",
    "seal",
    "verify_outer",
]

PROTOCOL_VERSION = 1
PREFIX_OUTER = b"rssn/v1/envelope\x00"
PREFIX_INNER = b"rssn/v1/document\x00"

#: Padded plaintext is at most this large (SPEC 6): attachments are capped below it.
MAX_PLAINTEXT_BYTES = 8 * 1024 * 1024
#: Whole envelope on the wire (base64 of the padded plaintext plus header).
MAX_ENVELOPE_BYTES = 11 * 1024 * 1024 + 64 * 1024
DEFAULT_MAX_SKEW = timedelta(minutes=5)
#: A message may not ask to live longer than this (the hub's mailbox retention).
MAX_TTL = timedelta(days=30)

KINDS = ("referral", "status", "receipt", "consent_withdrawn", "problem")
PRIORITIES = ("urgent", "high", "normal")
STATUSES = (
    "requested",
    "received",
    "accepted",
    "declined",
    "in_progress",
    "completed",
    "cancelled",
    "failed",
)
#: Coarse, content-free categories a sender MAY expose for monitoring.
CATEGORIES = (
    "sgbv",
    "child_protection",
    "trafficking",
    "lgbti",
    "health",
    "legal",
    "basic_needs",
    "other",
)
#: The only header members the hub may see beyond routing: whitelisted, closed vocabularies.
MONITORING_FIELDS: Mapping[str, tuple[str, ...]] = {
    "priority": PRIORITIES,
    "category": CATEGORIES,
    "status": STATUSES,
}

_HEADER_REQUIRED = (
    "v",
    "id",
    "kind",
    "from",
    "to",
    "thread",
    "created_at",
    "expires_at",
    "sender_kid",
    "recipient_kid",
)
_ENVELOPE_MEMBERS = {"header", "sealed_key", "nonce", "ciphertext", "sig"}
_SEALED_KEY_BYTES = 32 + 32 + 16  # ephemeral pk + box(content key) with MAC

#: rng(n) -> n random bytes. Production passes None (libsodium's CSPRNG); vectors pass a fixed stream.
Rng = Callable[[int], bytes]


def _is_uuid(text: str) -> bool:
    return _UUID.fullmatch(text) is not None


def digest(data: bytes) -> str:
    """base64url(SHA-256(data)): the envelope digest used by receipts and deduplication."""
    return b64u(hashlib.sha256(data).digest())


def bucket_size(n: int) -> int:
    """Padded size for n plaintext bytes: powers of two from 1 KiB to 1 MiB, then whole MiB."""
    need = n + 1  # ISO/IEC 7816-4 padding always adds at least one byte
    size = 1024
    while size < need and size < 1024 * 1024:
        size *= 2
    if size >= need:
        return size
    mib = 1024 * 1024
    return -(-need // mib) * mib


@dataclass(frozen=True)
class Header:
    """The visible, signed part of an envelope: routing and content-free metadata only."""

    id: str
    kind: str
    sender: str
    recipient: str
    thread: str
    created_at: datetime
    expires_at: datetime
    sender_kid: str
    recipient_kid: str
    meta: Mapping[str, str] = field(default_factory=dict)
    v: int = PROTOCOL_VERSION

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": self.v,
            "id": self.id,
            "kind": self.kind,
            "from": self.sender,
            "to": self.recipient,
            "thread": self.thread,
            "created_at": format_time(self.created_at),
            "expires_at": format_time(self.expires_at),
            "sender_kid": self.sender_kid,
            "recipient_kid": self.recipient_kid,
        }
        if self.meta:
            out["meta"] = dict(self.meta)
        return out

    @classmethod
    def from_json(cls, data: object) -> Header:
        """Validation order per SPEC 7.2: shape, version, then each member."""
        if not isinstance(data, dict):
            raise Malformed("header must be an object", field="header")
        if "v" not in data:
            raise Malformed("header.v missing", field="header.v")
        if data["v"] != PROTOCOL_VERSION or isinstance(data["v"], bool):
            raise UnsupportedVersion("protocol version not supported", field="header.v")
        allowed = {*_HEADER_REQUIRED, "meta"}
        missing = [k for k in _HEADER_REQUIRED if k not in data]
        if missing:
            raise Malformed("header member missing", field=f"header.{missing[0]}")
        extra = sorted(set(data) - allowed)
        if extra:
            raise Malformed("unknown header member", field=f"header.{extra[0]}")
        for k in ("id", "kind", "from", "to", "thread", "sender_kid", "recipient_kid"):
            if not isinstance(data[k], str):
                raise Malformed("must be a string", field=f"header.{k}")
        if not _is_uuid(data["id"]):
            raise Malformed("message id must be a lowercase UUID", field="header.id")
        if not _is_uuid(data["thread"]):
            raise Malformed("thread must be a lowercase UUID", field="header.thread")
        if data["kind"] not in KINDS:
            raise Malformed("unknown kind", field="header.kind")
        for k in ("from", "to"):
            try:
                validate_node_id(data[k])
            except Malformed as exc:
                raise Malformed("invalid node id", field=f"header.{k}") from exc
        for k in ("sender_kid", "recipient_kid"):
            if not (0 < len(data[k]) <= 64):
                raise Malformed("invalid key id", field=f"header.{k}")
        meta = data.get("meta", {})
        if not isinstance(meta, dict) or ("meta" in data and not meta):
            raise Malformed("meta must be a non-empty object when present", field="header.meta")
        for mk, mv in meta.items():
            if mk not in MONITORING_FIELDS:
                raise Malformed("meta member not whitelisted", field=f"header.meta.{mk}")
            if mv not in MONITORING_FIELDS[mk]:
                raise Malformed("meta value not in vocabulary", field=f"header.meta.{mk}")
        created = parse_time(data["created_at"], field="header.created_at")
        expires = parse_time(data["expires_at"], field="header.expires_at")
        if not created < expires <= created + MAX_TTL:
            raise Malformed(
                "expires_at must be after created_at and within 30 days", field="header.expires_at"
            )
        return cls(
            id=data["id"],
            kind=data["kind"],
            sender=data["from"],
            recipient=data["to"],
            thread=data["thread"],
            created_at=created,
            expires_at=expires,
            sender_kid=data["sender_kid"],
            recipient_kid=data["recipient_kid"],
            meta=dict(meta),
        )

    def canonical(self) -> bytes:
        return canonical_bytes(self.to_json())


@dataclass(frozen=True)
class Envelope:
    header: Header
    sealed_key: bytes
    nonce: bytes
    ciphertext: bytes
    signature: bytes
    raw: bytes = field(repr=False)
    #: JCS(header), kept from parsing so verification does not canonicalise twice.
    header_bytes: bytes = field(default=b"", repr=False)

    @property
    def digest(self) -> str:
        return digest(self.raw)

    def body_digest(self) -> bytes:
        """SHA-256 over sealed_key || nonce || ciphertext (fixed-length prefixes: unambiguous)."""
        return hashlib.sha256(self.sealed_key + self.nonce + self.ciphertext).digest()

    def outer_signing_input(self) -> bytes:
        hb = self.header_bytes or self.header.canonical()
        return PREFIX_OUTER + hb + hashlib.sha256(self.sealed_key + self.nonce + self.ciphertext).digest()


@dataclass(frozen=True)
class Opened:
    """What the recipient keeps: the verified header, the document and the signed statement."""

    header: Header
    document: Any  # a protocol.documents model for header.kind
    document_json: dict[str, Any]
    statement: bytes  # canonical signed inner bytes (without padding): non-repudiation proof
    inner_signature: bytes


class KeyResolver(Protocol):
    """Where keys come from: the verified directory (hub and node both hold one)."""

    def signing_key(self, node_id: str, kid: str) -> bytes:
        """The Ed25519 public key of node_id with this kid, or raise UnknownKey."""
        ...


def _outer_input(header: Header, body: bytes) -> bytes:
    return PREFIX_OUTER + header.canonical() + hashlib.sha256(body).digest()


def _inner_statement(header: Header, document_json: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "v": header.v,
        "id": header.id,
        "kind": header.kind,
        "from": header.sender,
        "to": header.recipient,
        "thread": header.thread,
        "created_at": format_time(header.created_at),
        "document": dict(document_json),
    }


def _random(rng: Rng | None, n: int) -> bytes:
    if rng is None:
        return os.urandom(n)
    out = rng(n)
    if len(out) != n:
        raise ValueError("rng returned the wrong number of bytes")
    return out


def _seal_key(content_key: bytes, recipient_public: bytes, rng: Rng | None) -> bytes:
    """libsodium crypto_box_seal. With an rng the ephemeral key comes from it (for vectors);
    the construction is libsodium's own (epk || crypto_box(m, blake2b(epk||pk), pk, esk)), so
    either output opens with crypto_box_seal_open."""
    if rng is None:
        return nacl.bindings.crypto_box_seal(content_key, recipient_public)
    eph = nacl.public.PrivateKey(_random(rng, 32))
    epk = bytes(eph.public_key)
    nonce = nacl.hash.blake2b(
        epk + recipient_public, digest_size=24, encoder=nacl.encoding.RawEncoder
    )
    boxed = nacl.bindings.crypto_box(content_key, nonce, recipient_public, bytes(eph))
    return epk + boxed


def seal(
    *,
    sender: str,
    signing_key: SigningKeyPair,
    recipient: str,
    recipient_key: KeyBinding,
    kind: str,
    document: Mapping[str, Any],
    message_id: str,
    thread: str,
    created_at: datetime,
    ttl: timedelta = timedelta(days=14),
    meta: Mapping[str, str] | None = None,
    rng: Rng | None = None,
) -> Envelope:
    """Build a signed, encrypted envelope (SPEC 5). `document` is the JSON form of the body.

    The document is validated for its kind before anything is signed, so a sender can never
    produce an envelope its peer must refuse for shape.
    """
    from .documents import document_to_json, parse_document

    if recipient_key.node != recipient:
        raise WrongRecipient("recipient key belongs to another node", field="recipient_key")
    if not recipient_key.valid_at(created_at):
        raise UnknownKey("recipient key not valid at created_at", field="recipient_key")
    document_json = document_to_json(parse_document(kind, dict(document)))
    header = Header.from_json(
        Header(
            id=message_id,
            kind=kind,
            sender=sender,
            recipient=recipient,
            thread=thread,
            created_at=created_at,
            expires_at=created_at + ttl,
            sender_kid=signing_key.kid,
            recipient_kid=recipient_key.kid,
            meta=dict(meta or {}),
        ).to_json()
    )
    statement = canonical_bytes(_inner_statement(header, document_json))
    inner_sig = signing_key.sign(PREFIX_INNER + statement)
    inner = canonical_bytes({**_inner_statement(header, document_json), "sig": b64u(inner_sig)})
    size = bucket_size(len(inner))
    if size > MAX_PLAINTEXT_BYTES:
        raise TooLarge("document exceeds the plaintext limit", field="document")
    padded = nacl.bindings.sodium_pad(inner, size)
    content_key = _random(rng, 32)
    nonce = _random(rng, 24)
    aad = header.canonical()
    ciphertext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        padded, aad, nonce, content_key
    )
    sealed_key = _seal_key(content_key, recipient_key.public_key, rng)
    signature = signing_key.sign(_outer_input(header, sealed_key + nonce + ciphertext))
    raw = canonical_bytes(
        {
            "header": header.to_json(),
            "sealed_key": b64u(sealed_key),
            "nonce": b64u(nonce),
            "ciphertext": b64u(ciphertext),
            "sig": b64u(signature),
        }
    )
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise TooLarge("envelope exceeds the size limit")
    return Envelope(header, sealed_key, nonce, ciphertext, signature, raw, aad)


_B64U_TEXT = re.compile(r"[A-Za-z0-9_-]*")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _is_b64u_text(value: object) -> bool:
    return isinstance(value, str) and _B64U_TEXT.fullmatch(value) is not None


def _load(data: bytes) -> Any:
    """Fast parse (orjson, C) with the strict parser as the arbiter of every failure."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return parse_canonical(data)  # raises the precise typed error, or handles big ints


def _assemble_raw(value: Mapping[str, Any], header_bytes: bytes) -> bytes:
    return b"".join(
        (
            b'{"ciphertext":"', value["ciphertext"].encode(), b'","header":', header_bytes,
            b',"nonce":"', value["nonce"].encode(), b'","sealed_key":"',
            value["sealed_key"].encode(), b'","sig":"', value["sig"].encode(), b'"}',
        )
    )


def _plain_members(value: Mapping[str, Any]) -> bool:
    return (
        set(value) == _ENVELOPE_MEMBERS
        and isinstance(value.get("header"), dict)
        and all(_is_b64u_text(value[k]) for k in ("ciphertext", "nonce", "sealed_key", "sig"))
    )


def _check_version(value: Mapping[str, Any]) -> None:
    header_json = value.get("header")
    if isinstance(header_json, dict) and "v" in header_json:
        v = header_json["v"]
        if v != PROTOCOL_VERSION or isinstance(v, bool):
            raise UnsupportedVersion("protocol version not supported", field="header.v")


def _build(value: Mapping[str, Any], raw: bytes, header_bytes: bytes) -> Envelope:
    header = Header.from_json(value["header"])
    sealed_key = b64u_decode(value["sealed_key"], field="sealed_key", length=_SEALED_KEY_BYTES)
    nonce = b64u_decode(value["nonce"], field="nonce", length=24)
    ciphertext = b64u_decode(value["ciphertext"], field="ciphertext")
    if len(ciphertext) < 1024 + 16 or (len(ciphertext) - 16) != bucket_size(len(ciphertext) - 17):
        raise Malformed("ciphertext length is not a padding bucket", field="ciphertext")
    signature = b64u_decode(value["sig"], field="sig", length=64)
    return Envelope(header, sealed_key, nonce, ciphertext, signature, raw, header_bytes)


def parse_envelope(data: bytes, *, max_bytes: int = MAX_ENVELOPE_BYTES) -> Envelope:
    """Structural checks only (SPEC 7.1): size, canonical JSON, members, version, base64."""
    if not isinstance(data, bytes | bytearray):
        raise Malformed("envelope must be bytes")
    if len(data) > max_bytes:
        raise TooLarge("envelope exceeds the size limit")
    data = bytes(data)
    value = _load(data)
    if not isinstance(value, dict):
        raise Malformed("envelope must be an object")
    _check_version(value)
    # Canonical form (RFC 8785). The four binary members are base64url text, which JCS
    # writes verbatim, so the expected bytes are assembled around the canonical header.
    if not _plain_members(value):
        parse_canonical(data)
        raise Malformed("envelope members", field="envelope")
    header_bytes = canonical_bytes(value["header"])
    if _assemble_raw(value, header_bytes) != data:
        parse_canonical(data)  # a precise error for invalid UTF-8, duplicates, ...
        raise NonCanonical("bytes are not RFC 8785 canonical")
    return _build(value, data, header_bytes)


def parse_envelope_value(value: object, *, max_bytes: int = MAX_ENVELOPE_BYTES) -> Envelope:
    """Like parse_envelope for an envelope already parsed from JSON (e.g. one member of a batch).

    The canonical bytes are rebuilt from the value, so the envelope's digest is the same as if
    it had arrived alone; only the "bytes were canonical" check has nothing to compare.
    """
    if not isinstance(value, dict):
        raise Malformed("envelope must be an object")
    _check_version(value)
    if not _plain_members(value):
        raise Malformed("envelope members", field="envelope")
    header_bytes = canonical_bytes(value["header"])
    raw = _assemble_raw(value, header_bytes)
    if len(raw) > max_bytes:
        raise TooLarge("envelope exceeds the size limit")
    return _build(value, raw, header_bytes)


def check_times(header: Header, now: datetime, max_skew: timedelta = DEFAULT_MAX_SKEW) -> None:
    """Refuse messages from the future (beyond skew) and expired ones (SPEC 7.3)."""
    if header.created_at > now + max_skew:
        raise FutureDated("created_at is beyond the allowed clock skew", field="header.created_at")
    if now >= header.expires_at:
        raise Expired("message expired", field="header.expires_at")


def verify_outer(
    envelope: Envelope,
    resolver: KeyResolver,
    *,
    now: datetime,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
) -> None:
    """What the hub checks (SPEC 7.3-7.4): times, sender key, outer signature. No decryption."""
    check_times(envelope.header, now, max_skew)
    public = resolver.signing_key(envelope.header.sender, envelope.header.sender_kid)
    verify_signature(public, envelope.outer_signing_input(), envelope.signature)


def open_envelope(
    data: bytes | Envelope,
    *,
    recipient: str,
    encryption_keys: Mapping[str, EncryptionKeyPair],
    resolver: KeyResolver,
    now: datetime,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
) -> Opened:
    """Full verification by the recipient (SPEC 7): outer, decrypt, inner signature, document."""
    from .documents import document_to_json, parse_document

    env = data if isinstance(data, Envelope) else parse_envelope(data)
    h = env.header
    if h.recipient != recipient:
        raise WrongRecipient("envelope is addressed to another node", field="header.to")
    verify_outer(env, resolver, now=now, max_skew=max_skew)
    key = encryption_keys.get(h.recipient_kid)
    if key is None:
        raise WrongRecipient("no private key for recipient_kid", field="header.recipient_kid")
    try:
        content_key = nacl.bindings.crypto_box_seal_open(env.sealed_key, key.public, key.secret)
        padded = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            env.ciphertext, env.header_bytes or h.canonical(), env.nonce, content_key
        )
        inner = nacl.bindings.sodium_unpad(padded, len(padded))
    except (nacl.exceptions.CryptoError, nacl.exceptions.ValueError, ValueError) as exc:
        raise DecryptionFailed("ciphertext does not open") from exc
    value = parse_canonical(inner)
    if not isinstance(value, dict) or set(value) != {
        "v",
        "id",
        "kind",
        "from",
        "to",
        "thread",
        "created_at",
        "document",
        "sig",
    }:
        raise Malformed("inner statement members", field="inner")
    sig = b64u_decode(value.pop("sig"), field="inner.sig", length=64)
    document_json = value.get("document")
    if not isinstance(document_json, dict):
        raise Malformed("document must be an object", field="inner.document")
    expected = _inner_statement(h, document_json)
    if value != expected:
        raise HeaderMismatch("inner statement does not match the header")
    statement = canonical_bytes(value)
    sender_public = resolver.signing_key(h.sender, h.sender_kid)
    verify_signature(sender_public, PREFIX_INNER + statement, sig)
    document = parse_document(h.kind, document_json)
    if document_to_json(document) != document_json:
        raise Malformed("document is not in normal form", field="inner.document")
    return Opened(h, document, document_json, statement, sig)
