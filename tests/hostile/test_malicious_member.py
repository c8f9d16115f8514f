"""A malicious member sends well-signed envelopes with hostile content to a real node.

The attacker is an enrolled member: the hub accepts its envelopes (they are genuinely its
own, and the hub cannot read content). It seals what an honest node never would (its own
sealing code, skipping the document validation of protocol.seal): documents of the wrong
shape (hypothesis-driven), referrals without valid consent, status changes, receipts,
consent withdrawals and problem reports about referrals it is no party to.

Proves: the recipient node (a real `rssn-node` process) verifies every message end to end
and refuses each one into its quarantine, keeping the raw envelope and the code, tells the
sender why (a `problem` message, ids and codes only), and changes nothing else: no referral
is created from hostile content, the genuine referral between two honest members keeps its
state, and the node keeps running.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import protocol.documents as documents
from node.samples import sample_referral
from protocol import ProtocolError
from tests.hostile.conftest import NodeWorld
from tests.hub.client import NodeClient
from tests.reliability_summary import Recorder, full_run

pytestmark = [pytest.mark.timeout(1200), pytest.mark.filterwarnings("ignore:EdDSA is deprecated")]
GARBAGE = 300 if full_run() else 120


def _valid(kind: str, doc: Any) -> bool:
    try:
        documents.parse_document(kind, doc)
    except (ProtocolError, ValueError, TypeError):
        return False
    return True


def _unchecked_seal(client: NodeClient, to: str, kind: str, doc: Any, thread: str) -> bytes:
    """What an attacker's own code would seal: no document validation."""
    with mock.patch.object(documents, "parse_document", lambda _k, d: d), \
            mock.patch.object(documents, "document_to_json", lambda d: dict(d)):
        env = client.seal_to(to, kind=kind, document=doc, thread=thread, meta={})
    return env.raw


def _json_values() -> st.SearchStrategy[Any]:
    leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**31), 2**31), st.text(max_size=30))
    return st.recursive(leaf, lambda c: st.one_of(st.lists(c, max_size=3),
                                                  st.dictionaries(st.text(max_size=10), c,
                                                                  max_size=4)), max_leaves=8)


@st.composite
def hostile_referrals(draw: st.DrawFn) -> dict[str, Any]:
    doc = sample_referral(draw(st.integers(0, 4)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from([("priority",), ("services",), ("subject",),
                                     ("subject", "age"), ("subject", "given_name"),
                                     ("subject", "sex"), ("consent",), ("consent", "status"),
                                     ("consent", "obtained_at"), ("consent", "legal_basis"),
                                     ("reason",), ("referrer",), ("referrer", "name"),
                                     ("attachments",), ("extra",)]))
        target: Any = doc
        for key in path[:-1]:
            target = target.get(key) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            continue  # an earlier change replaced the parent
        if draw(st.booleans()):
            target.pop(path[-1], None)
        else:
            target[path[-1]] = draw(_json_values())
    return doc


def test_hostile_content_from_a_member_is_quarantined_and_answered(
        node_world: NodeWorld, tally: Recorder) -> None:
    net, a, b = node_world.net, node_world.a, node_world.b
    assert net.hub is not None
    attacker = NodeClient(net.hub.url, f"zz-attacker-{uuid.uuid4().hex[:6]}")
    assert attacker.enroll(net.hub.invite(attacker.node_id, "Impostor", "PA")).status_code == 201
    attacker.login()
    b.knows(attacker.node_id)
    genuine = a.send(b.node_id, sample_referral(0))
    sent: dict[str, str] = {}  # message id -> what
    raws: dict[str, bytes] = {}  # message id -> the envelope (the input, counted once)

    def submit(kind: str, doc: Any, thread: str, what: str) -> None:
        try:
            raw = _unchecked_seal(attacker, b.node_id, kind, doc, thread)
        except (ProtocolError, ValueError, TypeError):
            return  # not even sealable (e.g. not canonical JSON): covered by other tests
        r = attacker.submit(raw)
        assert r.status_code == 202, r.text  # the hub cannot tell: content is sealed
        sent[json.loads(raw)["header"]["id"]] = what
        raws[json.loads(raw)["header"]["id"]] = raw
        tally.hostile("member-content", raw)

    # Referrals refused on consent although well formed.
    for status in ("refused", "withdrawn"):
        doc = sample_referral(1)
        doc["consent"]["status"] = status
        submit("referral", doc, str(uuid.uuid4()), f"consent {status}")
    doc = sample_referral(2)
    doc["consent"]["scope"] = {"recipients": ["someone-else"]}
    submit("referral", doc, str(uuid.uuid4()), "consent scope excludes the recipient")
    child = sample_referral(3)
    child["subject"]["age"] = 12
    submit("referral", child, str(uuid.uuid4()), "child without caregiver")
    # Messages about a referral the attacker is no party to.
    now = "2026-11-28T12:00:00Z"
    submit("status", {"status": "cancelled", "at": now}, genuine, "status on others' referral")
    submit("consent_withdrawn", {"withdrawn_at": now}, genuine, "withdrawal on others' referral")
    submit("problem", {"message_id": str(uuid.uuid4()), "code": "expired", "detail": "x"},
           genuine, "problem on others' referral")
    submit("receipt", {"message_id": str(uuid.uuid4()), "envelope_digest": "0" * 64,
                       "received_at": now}, genuine, "receipt for nothing sent")
    submit("status", {"status": "accepted", "at": now}, str(uuid.uuid4()), "status, no referral")
    for kind in ("status", "receipt", "consent_withdrawn", "problem"):
        submit(kind, sample_referral(0), str(uuid.uuid4()), f"referral body as {kind}")

    @seed(9101)
    @settings(max_examples=GARBAGE, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(doc=hostile_referrals())
    def garbage(doc: dict[str, Any]) -> None:
        if _valid("referral", doc):
            return
        submit("referral", doc, str(uuid.uuid4()), "malformed referral")

    garbage()
    # B verifies and refuses each one, and answers its sender.
    from tests.helpers.processes import wait_until

    def quarantined() -> dict[str, str]:
        return {r[1]: r[3] for r in b.quarantined() if r[1]}

    wait_until(lambda: set(sent) <= set(quarantined()), timeout=300, interval=1.0,
               message="every hostile message quarantined")
    q = quarantined()
    for mid, what in sent.items():
        ok = mid in q
        tally.hostile("member-content", raws[mid], accepted_wrongly=not ok, detail=what)
    inbound = {r[0] for r in b.sql("SELECT id FROM referrals WHERE direction = 'inbound'")}
    assert inbound == {genuine}
    assert b.get(f"/api/v1/referrals/{genuine}")["status"] == "received"
    assert all(r[1] != attacker.node_id for r in b.sql(
        "SELECT event, actor FROM history WHERE referral_id = :g", g=genuine))
    # The sender is told why, with a problem message per refused envelope that names it.
    problems = {r[0] for r in b.sql("SELECT referral_id FROM outbox WHERE kind = 'problem' "
                                    "AND to_node = :t", t=attacker.node_id)}
    assert problems, "the attacker was not told anything"
    assert b.proc.starts == 1 and b.proc.running
    assert '"event":"worker_crashed"' not in b.proc.log_text()
    tally.note(hostile_messages=len(sent), quarantine_codes=sorted(set(q.values())))
    attacker.close()
