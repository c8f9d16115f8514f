"""The hub's signed directory, transport receipts and enrollment proofs (SPEC sections 8-10).

Why signed by the hub and pinned by nodes: a node must be able to tell that the
directory it routes by is the operator's, and each entry's encryption keys are
additionally bound by the member's own signing key (keys.KeyBinding), so the hub
can publish and revoke members but cannot substitute a member's keys unnoticed
once the member's signing key is pinned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .canonical import canonical_bytes, parse_canonical
from .errors import BadSignature, Expired, Malformed, UnknownKey
from .keys import (
    KeyBinding,
    SigningKeyPair,
    b64u,
    b64u_decode,
    format_time,
    parse_time,
    signing_kid,
    validate_node_id,
    verify_signature,
)

__all__ = [
    "PREFIX_DIRECTORY",
    "PREFIX_ENROLL",
    "PREFIX_TRANSPORT_RECEIPT",
    "Directory",
    "DirectoryEntry",
    "enrollment_proof",
    "make_transport_receipt",
    "sign_directory",
    "verify_directory",
    "verify_enrollment_proof",
    "verify_transport_receipt",
]

PREFIX_DIRECTORY = b"rssn/v1/directory\x00"
PREFIX_TRANSPORT_RECEIPT = b"rssn/v1/transport-receipt\x00"
PREFIX_ENROLL = b"rssn/v1/enroll\x00"


@dataclass(frozen=True)
class DirectoryEntry:
    node_id: str
    organization: str
    country: str
    signing_key: bytes
    encryption_keys: tuple[KeyBinding, ...]
    services: tuple[dict[str, Any], ...] = ()

    @property
    def signing_kid(self) -> str:
        return signing_kid(self.signing_key)

    def current_encryption_key(self, at: datetime) -> KeyBinding:
        """The newest binding valid at `at`: senders encrypt to this one."""
        valid = [b for b in self.encryption_keys if b.valid_at(at)]
        if not valid:
            raise UnknownKey("node has no encryption key valid now", field="recipient_kid")
        return max(valid, key=lambda b: (b.not_before, b.kid))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "node_id": self.node_id,
            "organization": self.organization,
            "country": self.country,
            "signing_key": b64u(self.signing_key),
            "signing_kid": self.signing_kid,
            "encryption_keys": [b.to_json() for b in self.encryption_keys],
        }
        if self.services:
            out["services"] = [dict(s) for s in self.services]
        return out

    @classmethod
    def from_json(cls, data: object) -> DirectoryEntry:
        if not isinstance(data, dict):
            raise Malformed("directory entry must be an object", field="entries")
        try:
            node_id = validate_node_id(data["node_id"])
            signing_key = b64u_decode(data["signing_key"], field="signing_key", length=32)
            bindings = tuple(KeyBinding.from_json(b) for b in data["encryption_keys"])
            org, country = data["organization"], data["country"]
            services = tuple(data.get("services", ()))
        except (KeyError, TypeError) as exc:
            raise Malformed("directory entry members", field="entries") from exc
        if not isinstance(org, str) or not isinstance(country, str):
            raise Malformed("directory entry members", field="entries")
        if data.get("signing_kid") != signing_kid(signing_key):
            raise Malformed("signing_kid does not match signing_key", field="signing_kid")
        for b in bindings:
            if b.node != node_id:
                raise BadSignature("binding for another node in entry")
            b.verify(signing_key)
        return cls(node_id, org, country, signing_key, bindings, services)


@dataclass(frozen=True)
class Directory:
    """A versioned, expiring snapshot; implements envelope.KeyResolver."""

    version: int
    issued_at: datetime
    expires_at: datetime
    entries: Mapping[str, DirectoryEntry] = field(default_factory=dict)
    hub_kid: str = ""

    def entry(self, node_id: str) -> DirectoryEntry:
        e = self.entries.get(node_id)
        if e is None:
            raise UnknownKey("node is not in the directory", field="node_id")
        return e

    def signing_key(self, node_id: str, kid: str) -> bytes:
        e = self.entry(node_id)
        if e.signing_kid != kid:
            raise UnknownKey("sender key id is not the node's signing key", field="sender_kid")
        return e.signing_key

    def encryption_key(self, node_id: str, kid: str, at: datetime) -> KeyBinding:
        for b in self.entry(node_id).encryption_keys:
            if b.kid == kid:
                if not b.valid_at(at):
                    raise UnknownKey("recipient key not valid at this time", field="recipient_kid")
                return b
        raise UnknownKey("recipient key id unknown", field="recipient_kid")

    def body(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "issued_at": format_time(self.issued_at),
            "expires_at": format_time(self.expires_at),
            "entries": [self.entries[k].to_json() for k in sorted(self.entries)],
        }


def sign_directory(directory: Directory, hub_key: SigningKeyPair) -> bytes:
    """Canonical bytes {"directory": body, "hub_kid": kid, "sig": Ed25519(prefix || JCS(body))}."""
    body = directory.body()
    sig = hub_key.sign(PREFIX_DIRECTORY + canonical_bytes(body))
    return canonical_bytes({"directory": body, "hub_kid": hub_key.kid, "sig": b64u(sig)})


def verify_directory(
    data: bytes, hub_public: bytes, *, now: datetime, min_version: int = 0
) -> Directory:
    """Verify against the pinned hub key; refuse expired or rolled-back (older) directories."""
    value = parse_canonical(data)
    if not isinstance(value, dict) or set(value) != {"directory", "hub_kid", "sig"}:
        raise Malformed("signed directory members", field="directory")
    if value["hub_kid"] != signing_kid(hub_public):
        raise UnknownKey("directory signed by another hub key", field="hub_kid")
    sig = b64u_decode(value["sig"], field="sig", length=64)
    body = value["directory"]
    verify_signature(hub_public, PREFIX_DIRECTORY + canonical_bytes(body), sig)
    if not isinstance(body, dict) or not isinstance(body.get("entries"), list):
        raise Malformed("directory body", field="directory")
    version = body.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < min_version:
        raise Malformed("directory version is older than one already seen", field="version")
    issued = parse_time(body.get("issued_at"), field="issued_at")
    expires = parse_time(body.get("expires_at"), field="expires_at")
    if now >= expires:
        raise Expired("directory expired", field="expires_at")
    entries = [DirectoryEntry.from_json(e) for e in body["entries"]]
    return Directory(version, issued, expires, {e.node_id: e for e in entries}, value["hub_kid"])


def build_directory(
    entries: Iterable[DirectoryEntry], *, version: int, issued_at: datetime, expires_at: datetime
) -> Directory:
    return Directory(version, issued_at, expires_at, {e.node_id: e for e in entries})


__all__ += ["build_directory"]


# -- transport receipts (hub -> sender: "I accepted and stored this envelope") ---------------


def _receipt_body(message_id: str, envelope_digest: str, accepted_at: datetime) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "envelope_digest": envelope_digest,
        "accepted_at": format_time(accepted_at),
    }


def make_transport_receipt(
    hub_key: SigningKeyPair, message_id: str, envelope_digest: str, accepted_at: datetime
) -> dict[str, Any]:
    body = _receipt_body(message_id, envelope_digest, accepted_at)
    sig = hub_key.sign(PREFIX_TRANSPORT_RECEIPT + canonical_bytes(body))
    return {**body, "hub_kid": hub_key.kid, "sig": b64u(sig)}


def verify_transport_receipt(
    receipt: Mapping[str, Any], hub_public: bytes, *, message_id: str, envelope_digest: str
) -> None:
    """The sender checks the hub accepted *this* envelope (same id, same digest)."""
    if receipt.get("message_id") != message_id or receipt.get("envelope_digest") != envelope_digest:
        raise BadSignature("transport receipt is for another envelope")
    if receipt.get("hub_kid") != signing_kid(hub_public):
        raise UnknownKey("transport receipt signed by another hub key", field="hub_kid")
    accepted = parse_time(receipt.get("accepted_at"), field="accepted_at")
    sig = b64u_decode(receipt.get("sig"), field="sig", length=64)
    body = _receipt_body(message_id, envelope_digest, accepted)
    verify_signature(hub_public, PREFIX_TRANSPORT_RECEIPT + canonical_bytes(body), sig)


# -- enrollment proof of possession ----------------------------------------------------------


def _enroll_body(node_id: str, token: str, signing_key: bytes, binding: KeyBinding) -> bytes:
    import hashlib

    return PREFIX_ENROLL + canonical_bytes(
        {
            "node_id": node_id,
            "token_sha256": b64u(hashlib.sha256(token.encode("utf-8")).digest()),
            "signing_key": b64u(signing_key),
            "encryption_key": binding.to_json(),
        }
    )


def enrollment_proof(
    signer: SigningKeyPair, node_id: str, token: str, binding: KeyBinding
) -> bytes:
    """Signature proving the enrolling node holds the signing key it registers."""
    return signer.sign(_enroll_body(node_id, token, signer.public, binding))


def verify_enrollment_proof(
    node_id: str, token: str, signing_key: bytes, binding: KeyBinding, proof: bytes
) -> None:
    if binding.node != node_id:
        raise BadSignature("binding names another node")
    binding.verify(signing_key)
    verify_signature(signing_key, _enroll_body(node_id, token, signing_key, binding), proof)


# -- hub notices (hub -> sender: "your envelope expired undelivered / failed") ---------------

PREFIX_HUB_NOTICE = b"rssn/v1/hub-notice\x00"
__all__ += ["PREFIX_HUB_NOTICE", "make_hub_notice", "verify_hub_notice"]


def make_hub_notice(
    hub_key: SigningKeyPair,
    *,
    notice_id: str,
    to: str,
    message_id: str,
    code: str,
    at: datetime,
) -> dict[str, Any]:
    """A hub-signed `problem` about an envelope the hub could not deliver (code e.g. 'expired').

    It is not an envelope (the hub has no business encrypting), but it is signed, so the sender
    can prove the network told it, and it carries only ids and a stable code.
    """
    body = {
        "kind": "problem",
        "notice_id": notice_id,
        "to": validate_node_id(to),
        "message_id": message_id,
        "code": code,
        "at": format_time(at),
    }
    sig = hub_key.sign(PREFIX_HUB_NOTICE + canonical_bytes(body))
    return {**body, "hub_kid": hub_key.kid, "sig": b64u(sig)}


def verify_hub_notice(notice: Mapping[str, Any], hub_public: bytes) -> dict[str, Any]:
    expected = {"kind", "notice_id", "to", "message_id", "code", "at", "hub_kid", "sig"}
    if set(notice) != expected or notice.get("kind") != "problem":
        raise Malformed("hub notice members", field="notice")
    if notice["hub_kid"] != signing_kid(hub_public):
        raise UnknownKey("notice signed by another hub key", field="hub_kid")
    body = {k: notice[k] for k in ("kind", "notice_id", "to", "message_id", "code", "at")}
    sig = b64u_decode(notice["sig"], field="sig", length=64)
    verify_signature(hub_public, PREFIX_HUB_NOTICE + canonical_bytes(body), sig)
    return body
