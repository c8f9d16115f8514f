"""A minimal node-side client for hub tests, built only from protocol/ + httpx + joserfc.

Why not node/: the hub must be tested against the wire contract, not against one
implementation of the other side (notes/HUB_NODE_CONTRACT.md).
"""

from __future__ import annotations

import secrets
import time
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import OKPKey

from protocol import (
    Directory,
    EncryptionKeyPair,
    Envelope,
    KeyBinding,
    SigningKeyPair,
    b64u,
    b64u_decode,
    canonical_bytes,
    enrollment_proof,
    open_envelope,
    seal,
    verify_directory,
    verify_hub_notice,
    verify_transport_receipt,
)

warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

#: A referral whose free-text fields carry canary strings (found nowhere else on the hub).
def referral_document(canary: str = "") -> dict[str, Any]:
    return {
        "priority": "high",
        "services": ["legal_aid"],
        "concerns": ["sgbv_survivor"],
        "subject": {"given_name": f"Ana{canary}", "family_name": "Perez", "sex": "female",
                    "age": 29, "nationality": ["VE"]},
        "consent": {"status": "granted", "given_by": "subject",
                    "obtained_at": "2026-11-20T10:00:00Z", "legal_basis": "consent"},
        "reason": f"Needs legal counselling on asylum procedure {canary}".strip(),
        "referrer": {"name": "Case worker", "organization": "Sin Fronteras"},
    }


def status_document(status: str = "accepted") -> dict[str, Any]:
    return {"status": status, "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class NodeClient:
    base_url: str
    node_id: str
    signing: SigningKeyPair = field(default_factory=SigningKeyPair.generate)
    enc: EncryptionKeyPair = field(default_factory=EncryptionKeyPair.generate)
    binding: KeyBinding | None = None
    hub_key: bytes | None = None
    token_endpoint: str | None = None
    directory: Directory | None = None
    access_token: str | None = None
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(
            base_url=self.base_url, timeout=60.0,
            headers={"User-Agent": "rssn-node/0.1.0-test"},
        )

    def close(self) -> None:
        self.http.close()

    # --- enrollment ---------------------------------------------------------------------

    def make_binding(self) -> KeyBinding:
        t = now()
        return KeyBinding.create(
            self.signing, self.node_id, self.enc, t - timedelta(hours=1), t + timedelta(days=365)
        )

    def enroll_request(self, token: str) -> dict[str, Any]:
        binding = self.binding or self.make_binding()
        self.binding = binding
        return {
            "node_id": self.node_id,
            "token": token,
            "signing_key": b64u(self.signing.public),
            "encryption_key": binding.to_json(),
            "proof": b64u(enrollment_proof(self.signing, self.node_id, token, binding)),
            "software_version": "0.1.0-test",
        }

    def enroll(self, token: str) -> httpx.Response:
        r = self.http.post("/v1/enroll", json=self.enroll_request(token))
        if r.status_code == 201:
            body = r.json()
            self.hub_key = b64u_decode(body["hub_key"], length=32)
            self.token_endpoint = body["token_endpoint"]
            self.directory = verify_directory(
                canonical_bytes(body["directory"]), self.hub_key, now=datetime.now(UTC)
            )
        return r

    # --- authentication -----------------------------------------------------------------

    def assertion(self, **overrides: Any) -> str:
        t = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.node_id,
            "sub": self.node_id,
            "aud": self.token_endpoint,
            "jti": secrets.token_urlsafe(16),
            "iat": t,
            "exp": t + 120,
        }
        claims.update(overrides.pop("claims", {}))
        key = overrides.pop("key", self.signing)
        okp = OKPKey.import_key(
            {"kty": "OKP", "crv": "Ed25519", "x": b64u(key.public), "d": b64u(key.seed)}
        )
        header = {"alg": "EdDSA", "kid": key.kid, "typ": "JWT"}
        return jwt.encode(header, claims, okp, algorithms=["EdDSA"])

    def token_request(
        self, assertion: str | None = None, client_id: str | None = ""
    ) -> httpx.Response:
        """`client_id=""` sends our node id; None leaves the optional member out."""
        assert self.token_endpoint, "enroll first"
        data = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion or self.assertion(),
        }
        if client_id is not None:
            data["client_id"] = client_id or self.node_id
        return self.http.post(self.token_endpoint, data=data)

    def login(self) -> str:
        r = self.token_request()
        assert r.status_code == 200, r.text
        self.access_token = r.json()["access_token"]
        return self.access_token

    def auth(self, token: str | None = None) -> dict[str, str]:
        tok = token or self.access_token
        if tok is None:
            tok = self.login()
        return {"Authorization": f"Bearer {tok}"}

    # --- directory ----------------------------------------------------------------------

    def refresh_directory(self) -> Directory:
        r = self.http.get("/v1/directory", headers=self.auth())
        assert r.status_code == 200, r.text
        assert self.hub_key is not None
        min_version = self.directory.version if self.directory else 0
        self.directory = verify_directory(
            r.content, self.hub_key, now=datetime.now(UTC), min_version=min_version
        )
        return self.directory

    # --- messages -----------------------------------------------------------------------

    def seal_to(
        self,
        recipient: str,
        *,
        kind: str = "referral",
        document: dict[str, Any] | None = None,
        message_id: str | None = None,
        thread: str | None = None,
        ttl: timedelta = timedelta(days=14),
        created_at: datetime | None = None,
        meta: dict[str, str] | None = None,
        sender: str | None = None,
    ) -> Envelope:
        d = self.directory or self.refresh_directory()
        if recipient not in d.entries:
            d = self.refresh_directory()
        created = created_at or now()
        rkey = d.entry(recipient).current_encryption_key(created)
        if meta is None:
            meta = {"priority": "high", "category": "sgbv"} if kind == "referral" else {}
            if kind == "status" and document:
                meta = {"status": document["status"]}
        return seal(
            sender=sender or self.node_id,
            signing_key=self.signing,
            recipient=recipient,
            recipient_key=rkey,
            kind=kind,
            document=document if document is not None else referral_document(),
            message_id=message_id or str(uuid.uuid4()),
            thread=thread or str(uuid.uuid4()),
            created_at=created,
            ttl=ttl,
            meta=meta or None,
        )

    def submit(self, env: Envelope | bytes, token: str | None = None) -> httpx.Response:
        raw = env.raw if isinstance(env, Envelope) else env
        return self.http.post(
            "/v1/messages", content=raw, headers={**self.auth(token),
                                                  "Content-Type": "application/json"}
        )

    def submit_batch(self, envs: list[Envelope | dict[str, Any]]) -> httpx.Response:
        items = []
        for e in envs:
            if isinstance(e, Envelope):
                import json

                items.append(json.loads(e.raw))
            else:
                items.append(e)
        return self.http.post("/v1/messages/batch", json={"envelopes": items},
                              headers=self.auth())

    def verify_receipt(self, env: Envelope, receipt: dict[str, Any]) -> None:
        assert self.hub_key is not None
        verify_transport_receipt(
            receipt, self.hub_key, message_id=env.header.id, envelope_digest=env.digest
        )

    # --- mailbox ------------------------------------------------------------------------

    def pull(self, wait: float = 0, limit: int = 100, token: str | None = None) -> httpx.Response:
        return self.http.get(
            "/v1/mailbox", params={"wait": wait, "limit": limit}, headers=self.auth(token),
            timeout=wait + 60,
        )

    def items(self, wait: float = 0, limit: int = 100) -> list[dict[str, Any]]:
        r = self.pull(wait, limit)
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    def ack(self, ids: list[str], token: str | None = None) -> httpx.Response:
        return self.http.post("/v1/mailbox/ack", json={"ids": ids}, headers=self.auth(token))

    def open_item(self, item: dict[str, Any]) -> Any:
        assert item["type"] == "envelope"
        d = self.directory or self.refresh_directory()
        return open_envelope(
            canonical_bytes(item["envelope"]),
            recipient=self.node_id,
            encryption_keys={self.enc.kid: self.enc},
            resolver=d,
            now=datetime.now(UTC),
        )

    def verify_notice(self, item: dict[str, Any]) -> dict[str, Any]:
        assert item["type"] == "notice" and self.hub_key is not None
        return verify_hub_notice(item["notice"], self.hub_key)
