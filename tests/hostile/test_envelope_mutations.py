"""Hypothesis-driven mutations of a genuine envelope, fed to the protocol verifier in-process.

Each variant goes through what the hub checks (``parse_envelope``, ``verify_outer``, the
recipient check of hub/ingest.py) and what the recipient checks (``open_envelope``).

Proves: no variant of a genuine envelope that differs from it by even one byte, in any
header field, any member or any byte region, is accepted by either; every refusal is a
ProtocolError with a stable code (never a crash). Header changes re-signed by another
member's key (impersonation, tampering by a member) are refused the same way.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.ingest import check_recipient
from protocol import (
    ERROR_CODES,
    DirectoryEntry,
    EncryptionKeyPair,
    KeyBinding,
    ProtocolError,
    SigningKeyPair,
    build_directory,
    open_envelope,
    parse_envelope,
    seal,
    verify_outer,
)
from tests.hostile.mutations import (
    HEADER_FIELDS,
    ODD_VALUES,
    Mutation,
    apply,
    header_resigned,
    mutations,
)
from tests.hub.client import referral_document
from tests.reliability_summary import Recorder, full_run

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
EXAMPLES = 20_000 if full_run() else 6_500


class _Party:
    def __init__(self, node: str) -> None:
        self.node = node
        self.sig = SigningKeyPair.generate(bytes([len(node)]) * 32)
        self.enc = EncryptionKeyPair.generate(bytes([len(node) + 1]) * 32)
        self.binding = KeyBinding.create(self.sig, node, self.enc, NOW - timedelta(days=1),
                                         NOW + timedelta(days=365))

    def entry(self) -> DirectoryEntry:
        return DirectoryEntry(node_id=self.node, organization=f"Org {self.node}", country="MX",
                              signing_key=self.sig.public, encryption_keys=(self.binding,))


A, B, C = _Party("mx-sender"), _Party("gt-recipient-b"), _Party("cr-third-member")
DIRECTORY = build_directory([A.entry(), B.entry(), C.entry()], version=3, issued_at=NOW,
                            expires_at=NOW + timedelta(days=1))
GENUINE = seal(sender=A.node, signing_key=A.sig, recipient=B.node, recipient_key=B.binding,
               kind="referral", document=referral_document(), message_id=str(uuid.UUID(int=7)),
               thread=str(uuid.UUID(int=8)), created_at=NOW, meta={"priority": "high"}).raw


def hub_view(data: bytes) -> None:
    env = parse_envelope(data)
    verify_outer(env, DIRECTORY, now=NOW + timedelta(minutes=1))
    check_recipient(env, DIRECTORY)


def recipient_view(data: bytes) -> Any:
    return open_envelope(data, recipient=B.node, encryption_keys={B.enc.kid: B.enc},
                         resolver=DIRECTORY, now=NOW + timedelta(minutes=1))


def judge(tally: Recorder, data: bytes, what: str, *, hub_may_accept: bool = False) -> None:
    """Both views must refuse ``data`` with a ProtocolError carrying a known code.

    ``hub_may_accept``: the variant is a consistent envelope *of its signer* (a member
    re-sending someone else's ciphertext under its own name); the hub cannot tell, only the
    recipient can (the inner signature names the real author), so only the recipient's
    refusal is required.
    """
    if data == GENUINE:
        return
    tally.hostile("envelope", data)
    views = (recipient_view,) if hub_may_accept else (hub_view, recipient_view)
    for view in views:
        try:
            view(data)
        except ProtocolError as exc:
            assert exc.code in ERROR_CODES, exc.code
            continue
        except Exception as exc:  # a crash is as bad as an acceptance: record, then fail
            tally.hostile("envelope", data, accepted_wrongly=True,
                          detail=f"{view.__name__} crashed on {what}: {type(exc).__name__}")
            raise
        tally.hostile("envelope", data, accepted_wrongly=True,
                      detail=f"{view.__name__} accepted {what}")
        raise AssertionError(f"{view.__name__} accepted a mutated envelope: {what}")


def test_genuine_envelope_passes_both_views() -> None:
    hub_view(GENUINE)
    assert recipient_view(GENUINE).document_json["reason"]


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(m=mutations(len(GENUINE)))
def test_mutated_envelopes_are_refused(tally: Recorder, m: Mutation) -> None:
    judge(tally, apply(GENUINE, m), m.describe())


def test_every_field_with_every_odd_value(tally: Recorder) -> None:
    """Exhaustive over the header: each field set to each odd value, and removed."""
    for f in HEADER_FIELDS:
        judge(tally, apply(GENUINE, Mutation("drop_field", f)), f"drop {f}")
        for v in ODD_VALUES:
            judge(tally, apply(GENUINE, Mutation("field", f, v)), f"{f}={v!r}"[:60])
    for member in ("header", "sealed_key", "nonce", "ciphertext", "sig"):
        judge(tally, apply(GENUINE, Mutation("drop_member", member)), f"drop {member}")
        for v in ODD_VALUES:
            judge(tally, apply(GENUINE, Mutation("member", member, v)), f"{member}={v!r}"[:60])


def test_every_byte_flipped(tally: Recorder) -> None:
    """Exhaustive over the bytes: one bit flipped at every position of the envelope."""
    step = 1 if full_run() else 3
    for pos in range(0, len(GENUINE), step):
        judge(tally, apply(GENUINE, Mutation("flip", pos=pos, byte=pos % 8)), f"flip {pos}")


@settings(max_examples=600 if full_run() else 250, deadline=None, derandomize=True,
          database=None, suppress_health_check=list(HealthCheck))
@given(
    changes=st.fixed_dictionaries({}, optional={
        "from": st.sampled_from([B.node, C.node]),
        "to": st.sampled_from([A.node, C.node]),
        "sender_kid": st.sampled_from([B.sig.kid, C.sig.kid]),
        "recipient_kid": st.sampled_from([C.enc.kid, A.enc.kid]),
        "id": st.uuids().map(str),
        "thread": st.uuids().map(str),
        "kind": st.sampled_from(["status", "receipt", "problem", "consent_withdrawn"]),
        "created_at": st.sampled_from(["2026-11-28T11:00:00Z", "2026-11-27T12:00:00Z"]),
        "expires_at": st.sampled_from(["2026-12-20T12:00:00Z", "2026-12-01T12:00:00Z"]),
    }).filter(bool),
    signer=st.sampled_from(["C", "B"]),
)
def test_header_changes_resigned_by_another_member_are_refused(
        tally: Recorder, changes: dict[str, str], signer: str) -> None:
    """A member who holds *its own* key rewrites the header (impersonation, redirection,
    replay under a new id, kind swap, time shift) and signs the result."""
    key = C.sig if signer == "C" else B.sig
    try:
        data = header_resigned(GENUINE, changes, key)
    except ProtocolError:
        return  # the header itself is invalid: covered by the mutations above
    party = C if signer == "C" else B
    consistent = changes.get("from") == party.node and changes.get("sender_kid") == party.sig.kid
    judge(tally, data, f"resigned by {signer}: {sorted(changes)}", hub_may_accept=consistent)
