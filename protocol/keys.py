"""Identities: node ids, Ed25519 signing keys, X25519 encryption keys and their bindings.

Why the binding: a node keeps one long-lived Ed25519 identity (pinned in the
directory) but rotates its X25519 encryption keys. Each encryption key is
bound to the node by a signature of its signing key over (node, key id,
public key, validity period), so a hub that swaps an encryption key in the
directory is caught by every sender (SPEC section 3).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import nacl.exceptions
import nacl.public
import nacl.signing

from .canonical import canonical_bytes
from .errors import BadSignature, Malformed

__all__ = [
    "PREFIX_BINDING",
    "EncryptionKeyPair",
    "KeyBinding",
    "SigningKeyPair",
    "b64u",
    "b64u_decode",
    "encryption_kid",
    "fingerprint",
    "format_time",
    "parse_time",
    "signing_kid",
    "validate_node_id",
    "verify_signature",
]

PREFIX_BINDING = b"rssn/v1/key-binding\x00"

_NODE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_B64U = re.compile(r"^[A-Za-z0-9_-]*$")


def validate_node_id(node_id: object) -> str:
    """A node id is a lowercase DNS-label-like slug of 3-63 chars, no leading/trailing hyphen."""
    if not isinstance(node_id, str) or not _NODE_ID.match(node_id) or "--" in node_id:
        raise Malformed("node id must be a lowercase slug of 3-63 characters", field="node_id")
    return node_id


def b64u(data: bytes) -> str:
    """Base64url without padding (RFC 4648 section 5), the only binary encoding on the wire."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: object, *, field: str = "base64", length: int | None = None) -> bytes:
    """Strict decoding: alphabet, no padding, canonical trailing bits, optional exact length."""
    if not isinstance(text, str) or not _B64U.match(text) or len(text) % 4 == 1:
        raise Malformed("invalid base64url", field=field)
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise Malformed("invalid base64url", field=field) from exc
    if b64u(raw) != text:
        raise Malformed("non-canonical base64url", field=field)
    if length is not None and len(raw) != length:
        raise Malformed(f"expected {length} bytes", field=field)
    return raw


def _kid(prefix: str, public_key: bytes) -> str:
    return prefix + b64u(hashlib.sha256(public_key).digest()[:16])


def signing_kid(public_key: bytes) -> str:
    """Key id of an Ed25519 public key: 'sig-' + base64url(SHA-256(pk)[:16])."""
    return _kid("sig-", public_key)


def encryption_kid(public_key: bytes) -> str:
    """Key id of an X25519 public key: 'enc-' + base64url(SHA-256(pk)[:16])."""
    return _kid("enc-", public_key)


def fingerprint(public_key: bytes) -> str:
    """Human-comparable fingerprint, read aloud during the key ceremony."""
    h = hashlib.sha256(public_key).hexdigest().upper()
    return "SHA256:" + ":".join(h[i : i + 4] for i in range(0, 32, 4))


def format_time(t: datetime) -> str:
    """RFC 3339 UTC with a 'Z' and whole seconds: the only time form on the wire."""
    if t.tzinfo is None:
        raise Malformed("naive datetime", field="time")
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def parse_time(text: object, *, field: str = "time") -> datetime:
    if not isinstance(text, str) or not _TIME.match(text):
        raise Malformed("time must be RFC 3339 UTC 'YYYY-MM-DDTHH:MM:SSZ'", field=field)
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise Malformed("invalid time", field=field) from exc


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Ed25519 verification (RFC 8032 section 5.1.7) raising the protocol's typed error."""
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError) as exc:
        raise BadSignature("signature does not verify") from exc


@dataclass(frozen=True)
class SigningKeyPair:
    """An Ed25519 key pair; the 32-byte seed is the secret (RFC 8032 section 5.1.5)."""

    seed: bytes = field(repr=False)

    @classmethod
    def generate(cls, seed: bytes | None = None) -> SigningKeyPair:
        if seed is None:
            return cls(bytes(nacl.signing.SigningKey.generate()))
        if len(seed) != 32:
            raise Malformed("Ed25519 seed must be 32 bytes", field="seed")
        return cls(seed)

    # cached_property writes to the instance __dict__, which a frozen dataclass permits:
    # deriving the libsodium key once matters on the hub's signing hot path.
    @cached_property
    def _sk(self) -> nacl.signing.SigningKey:
        return nacl.signing.SigningKey(self.seed)

    @cached_property
    def public(self) -> bytes:
        return bytes(self._sk.verify_key)

    @cached_property
    def kid(self) -> str:
        return signing_kid(self.public)

    def sign(self, message: bytes) -> bytes:
        return self._sk.sign(message).signature


@dataclass(frozen=True)
class EncryptionKeyPair:
    """An X25519 key pair (RFC 7748) used only to receive content keys."""

    secret: bytes = field(repr=False)

    @classmethod
    def generate(cls, secret: bytes | None = None) -> EncryptionKeyPair:
        if secret is None:
            return cls(bytes(nacl.public.PrivateKey.generate()))
        if len(secret) != 32:
            raise Malformed("X25519 secret must be 32 bytes", field="secret")
        return cls(secret)

    @property
    def public(self) -> bytes:
        return bytes(nacl.public.PrivateKey(self.secret).public_key)

    @property
    def kid(self) -> str:
        return encryption_kid(self.public)


@dataclass(frozen=True)
class KeyBinding:
    """A node's statement, signed with its Ed25519 key, that an X25519 key is its own for a period."""

    node: str
    kid: str
    public_key: bytes
    not_before: datetime
    not_after: datetime
    signature: bytes = b""

    def statement(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "kid": self.kid,
            "kty": "X25519",
            "public_key": b64u(self.public_key),
            "not_before": format_time(self.not_before),
            "not_after": format_time(self.not_after),
        }

    def signing_input(self) -> bytes:
        return PREFIX_BINDING + canonical_bytes(self.statement())

    @classmethod
    def create(
        cls,
        signer: SigningKeyPair,
        node: str,
        key: EncryptionKeyPair | bytes,
        not_before: datetime,
        not_after: datetime,
    ) -> KeyBinding:
        public = key.public if isinstance(key, EncryptionKeyPair) else key
        if not_after <= not_before:
            raise Malformed("binding validity is empty", field="not_after")
        unsigned = cls(
            validate_node_id(node), encryption_kid(public), public, not_before, not_after
        )
        return cls(
            unsigned.node,
            unsigned.kid,
            public,
            not_before,
            not_after,
            signer.sign(unsigned.signing_input()),
        )

    def verify(self, signing_public: bytes) -> None:
        """Raise BadSignature unless the node's signing key made this binding."""
        if encryption_kid(self.public_key) != self.kid:
            raise BadSignature("binding kid does not match its key")
        verify_signature(signing_public, self.signing_input(), self.signature)

    def valid_at(self, t: datetime) -> bool:
        return self.not_before <= t < self.not_after

    def to_json(self) -> dict[str, Any]:
        return {**self.statement(), "sig": b64u(self.signature)}

    @classmethod
    def from_json(cls, data: object) -> KeyBinding:
        if not isinstance(data, dict):
            raise Malformed("key binding must be an object", field="key_binding")
        expected = {"node", "kid", "kty", "public_key", "not_before", "not_after", "sig"}
        if set(data) != expected or data.get("kty") != "X25519":
            raise Malformed("key binding members", field="key_binding")
        kid = data["kid"]
        if not isinstance(kid, str):
            raise Malformed("kid", field="key_binding.kid")
        return cls(
            node=validate_node_id(data["node"]),
            kid=kid,
            public_key=b64u_decode(data["public_key"], field="key_binding.public_key", length=32),
            not_before=parse_time(data["not_before"], field="key_binding.not_before"),
            not_after=parse_time(data["not_after"], field="key_binding.not_after"),
            signature=b64u_decode(data["sig"], field="key_binding.sig", length=64),
        )
