"""An in-memory hub behind httpx.MockTransport, built from the protocol library.

Why: unit tests of the node's inbox/outbox logic need a hub they can switch off,
make flaky or inspect, without processes or timing. It follows
HUB_NODE_CONTRACT.md closely enough for the node (enroll, token, directory,
messages, batch, mailbox, ack) and is NOT a substitute for the real hub: the
integration tests use `rssn-hub` processes.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from protocol import (
    DirectoryEntry,
    KeyBinding,
    ProtocolError,
    SigningKeyPair,
    b64u,
    b64u_decode,
    build_directory,
    canonical_bytes,
    digest,
    fingerprint,
    make_hub_notice,
    make_transport_receipt,
    parse_envelope,
    sign_directory,
    verify_enrollment_proof,
    verify_outer,
)

BASE = "http://fakehub.test"


@dataclass
class FakeHub:
    key: SigningKeyPair = field(default_factory=SigningKeyPair.generate)
    tokens: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    entries: dict[str, DirectoryEntry] = field(default_factory=dict)
    mailboxes: dict[str, OrderedDict[str, dict[str, Any]]] = field(default_factory=dict)
    accepted: dict[str, str] = field(default_factory=dict)  # message id -> digest
    version: int = 0
    down: bool = False
    fail_next: int = 0  # answer 503 to this many message posts
    posts: int = 0
    batches: int = 0
    acks: list[str] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def invite(self, node_id: str, org: str = "Org", country: str = "MX") -> str:
        token = f"tok-{node_id}"
        self.tokens[token] = (node_id, org, country)
        return token

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def signed_directory(self) -> bytes:
        now = datetime.now(UTC).replace(microsecond=0)
        d = build_directory(self.entries.values(), version=self.version, issued_at=now,
                            expires_at=now + timedelta(hours=24))
        return sign_directory(d, self.key)

    def notice_expired(self, sender: str, message_id: str) -> None:
        from common.ids import new_message_id

        n = make_hub_notice(self.key, notice_id=new_message_id(), to=sender,
                            message_id=message_id, code="expired", at=datetime.now(UTC))
        self.mailboxes.setdefault(sender, OrderedDict())[n["notice_id"]] = {
            "id": n["notice_id"], "type": "notice", "notice": n}

    # -- HTTP ----------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("hub down", request=request)
        with self.lock:
            return self._route(request)

    def _caller(self, request: httpx.Request) -> str | None:
        auth = request.headers.get("authorization", "")
        return auth.removeprefix("Bearer fake-") if auth.startswith("Bearer fake-") else None

    def _problem(self, status: int, code: str) -> httpx.Response:
        return httpx.Response(status, json={"type": f"urn:rssn:problem:{code}", "title": code,
                                            "status": status, "code": code})

    def _route(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/healthz":
            return httpx.Response(200, json={"status": "ok"})
        if path == "/v1/enroll":
            return self._enroll(json.loads(request.content))
        if path == "/v1/oauth/token":
            from urllib.parse import parse_qs

            form = parse_qs(request.content.decode())
            from joserfc import jwt
            from joserfc.jwk import OKPKey

            assertion = form["client_assertion"][0]
            claims = json.loads(
                b64u_decode(assertion.split(".")[1]).decode())  # unverified peek for sub
            entry = self.entries.get(claims["sub"])
            if entry is None:
                return self._problem(401, "unauthorized")
            key = OKPKey.import_key({"kty": "OKP", "crv": "Ed25519",
                                     "x": b64u(entry.signing_key)})
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                jwt.decode(assertion, key, algorithms=["EdDSA"])
            assert claims["aud"] == f"{BASE}/v1/oauth/token"
            return httpx.Response(200, json={"access_token": f"fake-{claims['sub']}",
                                             "token_type": "Bearer", "expires_in": 300})
        caller = self._caller(request)
        if caller is None or caller not in self.entries:
            return self._problem(401, "unauthorized")
        if path == "/v1/directory":
            return httpx.Response(200, content=self.signed_directory(),
                                  headers={"content-type": "application/json"})
        if path == "/v1/messages":
            self.posts += 1
            if self.fail_next > 0:
                self.fail_next -= 1
                return self._problem(503, "unavailable")
            status, body = self._accept(caller, request.content)
            return httpx.Response(status, json=body)
        if path == "/v1/messages/batch":
            self.batches += 1
            if self.fail_next > 0:
                self.fail_next -= 1
                return self._problem(503, "unavailable")
            envs = json.loads(request.content)["envelopes"]
            results = []
            for e in envs:
                status, body = self._accept(caller, canonical_bytes(e))
                if status in (200, 202):
                    results.append({"message_id": body["message_id"],
                                    "status": "duplicate" if status == 200 else "accepted",
                                    "receipt": body["receipt"]})
                else:
                    results.append({"message_id": None, "status": "rejected", "problem": body})
            return httpx.Response(200, json={"results": results})
        if path == "/v1/mailbox":
            limit = int(request.url.params.get("limit", "100"))
            box = self.mailboxes.get(caller, OrderedDict())
            return httpx.Response(200, json={"items": list(box.values())[:limit]})
        if path == "/v1/mailbox/ack":
            ids = json.loads(request.content)["ids"]
            box = self.mailboxes.get(caller, OrderedDict())
            n = 0
            for i in ids:
                if box.pop(i, None) is not None:
                    n += 1
                    self.acks.append(i)
            return httpx.Response(200, json={"acked": n})
        return self._problem(404, "not_found")

    def _enroll(self, body: dict[str, Any]) -> httpx.Response:
        tok = self.tokens.pop(body["token"], None)
        if tok is None:
            return self._problem(401, "unauthorized")
        node_id, org, country = tok
        if node_id != body["node_id"]:
            return self._problem(403, "not_authorized")
        binding = KeyBinding.from_json(body["encryption_key"])
        signing = b64u_decode(body["signing_key"], length=32)
        try:
            verify_enrollment_proof(node_id, body["token"], signing, binding,
                                    b64u_decode(body["proof"]))
        except ProtocolError:
            return self._problem(401, "bad_signature")
        self.entries[node_id] = DirectoryEntry(node_id, org, country, signing, (binding,))
        self.version += 1
        return httpx.Response(201, json={
            "hub_key": b64u(self.key.public), "hub_kid": self.key.kid,
            "hub_fingerprint": fingerprint(self.key.public),
            "token_endpoint": f"{BASE}/v1/oauth/token",
            "directory": json.loads(self.signed_directory()),
        })

    def _accept(self, caller: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        try:
            env = parse_envelope(raw)
            if env.header.sender != caller:
                return 403, {"code": "not_authorized"}
            d = build_directory(self.entries.values(), version=self.version,
                                issued_at=datetime.now(UTC), expires_at=datetime.now(UTC)
                                + timedelta(hours=1))
            verify_outer(env, d, now=datetime.now(UTC))
            if env.header.recipient not in self.entries:
                return 422, {"code": "wrong_recipient"}
        except ProtocolError as exc:
            return exc.http_status, exc.to_problem()
        mid = env.header.id
        dg = digest(raw)
        receipt = make_transport_receipt(self.key, mid, dg, datetime.now(UTC))
        if mid in self.accepted:
            if self.accepted[mid] != dg:
                return 409, {"code": "conflict"}
            return 200, {"message_id": mid, "status": "accepted", "receipt": receipt}
        self.accepted[mid] = dg
        self.mailboxes.setdefault(env.header.recipient, OrderedDict())[mid] = {
            "id": mid, "type": "envelope", "envelope": json.loads(raw)}
        return 202, {"message_id": mid, "status": "accepted", "receipt": receipt}
