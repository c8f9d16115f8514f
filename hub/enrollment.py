"""Invitations and enrollment.

Why one-time tokens stored hashed: an invite travels out of band (e-mail,
phone) and is the only thing that lets an organisation join; whoever reads
the hub's database must not be able to use pending invites, and a used or
expired token must be worthless. The enrolling node proves it holds the
signing key it registers by signing the token (protocol.enrollment_proof).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from common.logging import get_logger
from common.problems import ProblemHTTPException
from protocol import (
    KeyBinding,
    ProtocolError,
    b64u_decode,
    canonical_bytes,
    signing_kid,
    validate_node_id,
    verify_enrollment_proof,
)
from protocol.errors import Malformed, NotAuthorized, UnknownKey

from .store import queries as q

__all__ = ["EnrollRequest", "create_invite", "enroll", "revoke", "token_hash"]

_log = get_logger(__name__)

_COUNTRY = re.compile(r"^[A-Z]{2}$")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def validate_org(org: str) -> str:
    org = org.strip()
    if not org or len(org) > 200:
        raise ValueError("organisation name must be 1-200 characters")
    return org


def validate_country(country: str) -> str:
    cc = country.strip().upper()
    if not _COUNTRY.match(cc):
        raise ValueError("country must be an ISO 3166-1 alpha-2 code")
    return cc


def create_invite(
    engine: sa.Engine, *, node_id: str, organization: str, country: str, ttl_days: int = 7
) -> tuple[str, datetime]:
    """A fresh one-time token (returned once, stored as SHA-256) and its expiry."""
    validate_node_id(node_id)
    org = validate_org(organization)
    cc = validate_country(country)
    token = secrets.token_urlsafe(32)
    now = q.now_ms()
    expires = now + ttl_days * 86_400_000
    with engine.begin() as conn:
        q.insert_invite(
            conn,
            token_sha256=token_hash(token),
            node_id=node_id,
            organization=org,
            country=cc,
            now=now,
            expires_at=expires,
        )
    _log.info("invite_created", node=node_id)
    expiry = q.ms_to_dt(expires)
    assert expiry is not None
    return token, expiry


def revoke(engine: sa.Engine, node_id: str) -> bool:
    """Revoke at once: the node's tokens stop working on their next use, and it leaves the
    directory (new version) so nobody encrypts to it any more."""
    with engine.begin() as conn:
        changed = q.revoke_node(conn, node_id, q.now_ms())
        if changed:
            q.bump_directory_version(conn)
    if changed:
        _log.info("node_revoked", node=node_id)
    return changed


@dataclass(frozen=True)
class EnrollRequest:
    node_id: str
    token: str
    signing_key: bytes
    binding: KeyBinding
    proof: bytes
    software_version: str | None

    @classmethod
    def from_json(cls, body: Any) -> EnrollRequest:
        if not isinstance(body, dict):
            raise Malformed("enrollment request must be an object")
        for k in ("node_id", "token", "signing_key", "encryption_key", "proof"):
            if k not in body:
                raise Malformed("enrollment member missing", field=k)
        token = body["token"]
        if not isinstance(token, str) or not (0 < len(token) <= 512):
            raise Malformed("token must be a string", field="token")
        version = body.get("software_version")
        if version is not None and (not isinstance(version, str) or len(version) > 64):
            raise Malformed("software_version must be a short string", field="software_version")
        return cls(
            node_id=validate_node_id(body["node_id"]),
            token=token,
            signing_key=b64u_decode(body["signing_key"], field="signing_key", length=32),
            binding=KeyBinding.from_json(body["encryption_key"]),
            proof=b64u_decode(body["proof"], field="proof", length=64),
            software_version=version,
        )


def _refuse_token() -> ProblemHTTPException:
    return ProblemHTTPException(
        401, "unauthorized", "enrollment token is invalid, used or expired"
    )


def enroll(engine: sa.Engine, req: EnrollRequest) -> int:
    """Register (or re-key) the node in one transaction; returns the new directory version.

    Raises ProblemHTTPException (401 unauthorized) for a bad token and ProtocolError for a
    bad proof (401 bad_signature), a node id mismatch (403 not_authorized) or a binding that
    is not valid now (401 unknown_key).
    """
    now = q.now_ms()
    now_dt = datetime.now(UTC)
    with engine.begin() as conn:
        invite = q.get_invite_for_update(conn, token_hash(req.token))
        if invite is None or invite.used_at_ms is not None or invite.expires_at_ms <= now:
            _log.info("enroll_refused", node=req.node_id, code="unauthorized")
            raise _refuse_token()
        if invite.node_id != req.node_id:
            _log.info("enroll_refused", node=req.node_id, code="not_authorized")
            raise NotAuthorized("token was issued for another node id", field="node_id")
        try:
            verify_enrollment_proof(
                req.node_id, req.token, req.signing_key, req.binding, req.proof
            )
        except ProtocolError as exc:
            _log.info("enroll_refused", node=req.node_id, code=exc.code)
            raise
        if req.binding.not_after <= now_dt or req.binding.not_before > now_dt + timedelta(days=1):
            raise UnknownKey("encryption key binding is not valid now", field="encryption_key")
        if not q.mark_invite_used(conn, invite.token_sha256, now):
            raise _refuse_token()
        key_changed = q.upsert_node(
            conn,
            node_id=req.node_id,
            organization=invite.organization,
            country=invite.country,
            signing_key=req.signing_key,
            signing_kid=signing_kid(req.signing_key),
            now=now,
            software_version=req.software_version,
        )
        q.replace_node_keys(
            conn,
            req.node_id,
            kid=req.binding.kid,
            binding_json=canonical_bytes(req.binding.to_json()).decode("utf-8"),
            not_before=q.dt_to_ms(req.binding.not_before),
            not_after=q.dt_to_ms(req.binding.not_after),
            now=now,
            keep_old=not key_changed,
        )
        version = q.bump_directory_version(conn)
    _log.info("node_enrolled", node=req.node_id, kid=req.binding.kid, version=version)
    return version
