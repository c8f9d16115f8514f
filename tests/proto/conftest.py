"""A small two-node world built only from protocol/ (no I/O), shared by the protocol tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from protocol import (
    Directory,
    DirectoryEntry,
    EncryptionKeyPair,
    Envelope,
    KeyBinding,
    SigningKeyPair,
    build_directory,
    seal,
)

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)

MINIMAL: dict[str, Any] = {
    "priority": "high",
    "services": ["legal_aid"],
    "concerns": ["sgbv_survivor"],
    "subject": {"given_name": "Ana", "family_name": "Pérez", "sex": "female", "age": 29,
                "nationality": ["VE"]},
    "consent": {"status": "granted", "given_by": "subject", "obtained_at": "2026-11-20T10:00:00Z",
                "legal_basis": "consent"},
    "reason": "Needs legal counselling on asylum procedure",
    "referrer": {"name": "Case worker", "organization": "Sin Fronteras"},
}


@dataclass
class Party:
    node: str
    sig: SigningKeyPair
    enc: EncryptionKeyPair
    binding: KeyBinding


@dataclass
class World:
    a: Party
    b: Party
    c: Party
    directory: Directory

    def seal(self, sender: Party, recipient: Party, kind: str = "referral",
             document: dict[str, Any] | None = None, **kw: Any) -> Envelope:
        return seal(
            sender=sender.node,
            signing_key=sender.sig,
            recipient=recipient.node,
            recipient_key=recipient.binding,
            kind=kind,
            document=MINIMAL if document is None else document,
            message_id=kw.pop("message_id", str(uuid.uuid4())),
            thread=kw.pop("thread", str(uuid.uuid4())),
            created_at=kw.pop("created_at", NOW),
            **kw,
        )


def _party(node: str) -> Party:
    sig, enc = SigningKeyPair.generate(), EncryptionKeyPair.generate()
    binding = KeyBinding.create(sig, node, enc, NOW - timedelta(days=1), NOW + timedelta(days=365))
    return Party(node, sig, enc, binding)


@pytest.fixture(scope="session")
def world() -> World:
    a, b, c = _party("shelter-mx"), _party("legal-aid-gt"), _party("unhcr-cr")
    d = build_directory(
        [DirectoryEntry(p.node, p.node.upper(), "MX", p.sig.public, (p.binding,)) for p in (a, b, c)],
        version=1, issued_at=NOW, expires_at=NOW + timedelta(days=1),
    )
    return World(a, b, c, d)
