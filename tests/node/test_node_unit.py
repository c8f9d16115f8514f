"""Node logic against the in-memory FakeHub: lifecycle, dedup, quarantine, consent, outbox."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from node.inbox import InboxProcessor
from node.keystore import KeyStoreError, load_keys
from node.outbox import OutboxSender
from node.samples import sample_referral
from node.store.queries import INBOX, OUTBOX, QUARANTINE, REFERRALS
from protocol.errors import Conflict, ConsentMissing, InvalidTransition, WrongRecipient
from tests.node.conftest import PASS, fetch, pump


def count(node, table, *where) -> int:
    with node.engine.connect() as conn:
        q = sa.select(sa.func.count()).select_from(table)
        for w in where:
            q = q.where(w)
        return int(conn.execute(q).scalar())


def test_referral_lifecycle_both_sides(make_node, hub):
    a = make_node("shelter-mx", "Shelter", "MX")
    b = make_node("legal-gt", "Legal Aid", "GT")
    created = a.create_referral("legal-gt", sample_referral(0))
    rid = created["id"]
    assert created["status"] == "requested"
    pump(a, b)
    assert b.referral_summary(rid)["status"] == "received"
    assert a.referral_summary(rid)["status"] == "received"
    assert a.referral_summary(rid)["delivered_at"] is not None
    b.change_status(rid, "accepted", note="we can see her tomorrow")
    pump(a, b)
    assert a.referral_summary(rid)["status"] == "accepted"
    b.change_status(rid, "in_progress")
    b.change_status(rid, "completed")
    pump(a, b)
    da, db = a.referral_detail(rid), b.referral_detail(rid)
    assert da["status"] == db["status"] == "completed"
    events = ["requested", "received", "accepted", "in_progress", "completed"]
    assert [h["event"] for h in da["history"]] == events
    assert [h["event"] for h in db["history"]] == events
    assert da["history"][2]["actor"] == "legal-gt"
    assert da["history"][2]["note"] == "we can see her tomorrow"
    assert db["referral"]["subject"]["given_name"] == sample_referral(0)["subject"]["given_name"]
    # every referral/status message got a receipt, and nothing is left to send
    assert count(a, OUTBOX, OUTBOX.c.state == "pending") == 0
    assert count(b, OUTBOX, OUTBOX.c.state == "pending") == 0
    assert count(a, OUTBOX, OUTBOX.c.delivered_at.is_(None), OUTBOX.c.kind != "receipt") == 0
    assert count(b, OUTBOX, OUTBOX.c.delivered_at.is_(None), OUTBOX.c.kind != "receipt") == 0


def test_duplicates_are_processed_once(make_node, hub):
    a = make_node("shelter-mx")
    b = make_node("legal-gt")
    rid = a.create_referral("legal-gt", sample_referral(1))["id"]
    OutboxSender(a).send_once(OutboxSender(a).pending())
    items = fetch(b)
    assert len(items) == 1
    r1 = InboxProcessor(b).process(items)
    r2 = InboxProcessor(b).process(items)  # hub re-delivers before our ack arrived
    assert r1.stored == 1 and r2.stored == 0 and r2.duplicates == 1
    assert r1.ack == r2.ack == [items[0]["id"]]
    assert count(b, REFERRALS) == 1 and count(b, INBOX) == 1
    assert count(b, OUTBOX, OUTBOX.c.kind == "receipt") == 1
    assert b.referral_summary(rid)["status"] == "received"


def test_outbox_retries_keep_the_message_id(make_node, hub):
    a = make_node("shelter-mx")
    make_node("legal-gt")
    rid = a.create_referral("legal-gt", sample_referral(2))["id"]
    with a.engine.connect() as conn:
        before = conn.execute(sa.select(OUTBOX.c.message_id, OUTBOX.c.envelope)).all()
    hub.fail_next = 3
    from node.hub_client import retrying

    sender = OutboxSender(a)
    for attempt in retrying(max_wait=0.01, max_attempts=10):
        with attempt:
            sender.send_once(sender.pending())
    assert hub.posts == 4
    with a.engine.connect() as conn:
        after = conn.execute(sa.select(OUTBOX.c.message_id, OUTBOX.c.envelope, OUTBOX.c.state)
                             ).all()
    assert [(m, e) for m, e, _ in after] == [tuple(r) for r in before]
    assert after[0].state == "sent"
    assert list(hub.accepted) == [before[0].message_id]
    # Resending the same bytes (crash before marking sent) is an idempotent 200.
    assert a.client.post_message(before[0].envelope.encode())["message_id"] == before[0].message_id
    assert a.referral_summary(rid)["status"] == "requested"


def test_batch_send_when_several_pending(make_node, hub):
    a = make_node("shelter-mx")
    b = make_node("legal-gt")
    ids = [a.create_referral("legal-gt", sample_referral(i))["id"] for i in range(5)]
    sent, failed = OutboxSender(a).send_once(OutboxSender(a).pending())
    assert (sent, failed) == (5, 0) and hub.batches == 1
    result = InboxProcessor(b).process(fetch(b))
    assert result.stored == 5
    assert {r["id"] for r in b.list_referrals(direction="inbound")} == set(ids)


def test_tampered_envelope_is_quarantined_and_answered(make_node, hub):
    a = make_node("shelter-mx")
    b = make_node("legal-gt")
    rid = a.create_referral("legal-gt", sample_referral(0))["id"]
    OutboxSender(a).send_once(OutboxSender(a).pending())
    items = fetch(b)
    env = items[0]["envelope"]
    ct = env["ciphertext"]
    env["ciphertext"] = ("A" if ct[5] != "A" else "B").join([ct[:5], ct[6:]])
    result = InboxProcessor(b).process(items)
    assert result.quarantined == 1 and result.stored == 0 and result.ack == [items[0]["id"]]
    with b.engine.connect() as conn:
        q = conn.execute(sa.select(QUARANTINE)).one()
    assert q.code == "bad_signature" and q.from_node == "shelter-mx"
    assert json.loads(q.raw)["header"]["id"] == items[0]["id"]
    assert count(b, REFERRALS) == 0
    b.client.ack(result.ack)
    pump(a, b)
    detail = a.referral_detail(rid)
    assert detail["status"] == "failed"
    assert [h["event"] for h in detail["history"]][-2:] == ["problem", "failed"]
    assert detail["history"][-1]["note"] == "bad_signature"


def test_consent_refused_before_sending(make_node, hub):
    a = make_node("shelter-mx")
    make_node("legal-gt", "Legal Aid")
    with pytest.raises(ConsentMissing):
        a.create_referral("legal-gt", sample_referral(0, consent_status="withdrawn"))
    with pytest.raises(ConsentMissing):
        a.create_referral("legal-gt", sample_referral(0, recipients=["someone-else"]))
    a.create_referral("legal-gt", sample_referral(0, recipients=["legal-gt"]))
    with pytest.raises(WrongRecipient):
        a.create_referral("nobody-here", sample_referral(0))
    assert count(a, OUTBOX) == 1 and count(a, REFERRALS) == 1


def test_illegal_transitions(make_node, hub):
    a = make_node("shelter-mx")
    b = make_node("legal-gt")
    rid = a.create_referral("legal-gt", sample_referral(0))["id"]
    pump(a, b)
    with pytest.raises(InvalidTransition):
        b.change_status(rid, "completed")
    with pytest.raises(InvalidTransition):
        a.change_status(rid, "accepted")  # only the recipient accepts
    with pytest.raises(InvalidTransition):
        b.change_status(rid, "cancelled")  # only the sender cancels
    a.change_status(rid, "cancelled", note="person moved on")
    pump(a, b)
    assert b.referral_summary(rid)["status"] == "cancelled"
    with pytest.raises(InvalidTransition):
        b.change_status(rid, "accepted")


def test_consent_withdrawal_restricts_and_is_acknowledged(make_node, hub):
    a = make_node("shelter-mx")
    b = make_node("legal-gt")
    rid = a.create_referral("legal-gt", sample_referral(3))["id"]
    pump(a, b)
    a.withdraw_consent(rid, note="called the office")
    with pytest.raises(Conflict):
        a.withdraw_consent(rid)
    pump(a, b)
    db, da = b.referral_detail(rid), a.referral_detail(rid)
    assert db["restricted"] is True and db["referral"] is None
    assert "consent_withdrawn" in [h["event"] for h in db["history"]]
    assert da["consent_withdrawal_acknowledged_at"] is not None
    assert da["history"][-1]["event"] == "consent_withdrawal_acknowledged"


def test_hub_expiry_notice_fails_the_referral(make_node, hub):
    a = make_node("shelter-mx")
    make_node("legal-gt")
    rid = a.create_referral("legal-gt", sample_referral(0))["id"]
    OutboxSender(a).send_once(OutboxSender(a).pending())
    with a.engine.connect() as conn:
        mid = conn.execute(sa.select(OUTBOX.c.message_id)).scalar()
    hub.notice_expired("shelter-mx", mid)
    items = fetch(a)
    InboxProcessor(a).process(items)
    InboxProcessor(a).process(items)  # redelivered notice: no second effect
    d = a.referral_detail(rid)
    assert d["status"] == "failed"
    assert [h["event"] for h in d["history"]].count("failed") == 1


def test_wrong_passphrase_is_a_clear_error(make_node, hub):
    a = make_node("shelter-mx")
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        load_keys(a.settings.keys_path, "not the passphrase")
    assert load_keys(a.settings.keys_path, PASS).node_id == "shelter-mx"


def test_forgery_does_not_shadow_the_genuine_message_and_replays_are_refused(make_node, hub):
    a = make_node("shelter-mx")
    b = make_node("legal-gt")
    rid = a.create_referral("legal-gt", sample_referral(0))["id"]
    OutboxSender(a).send_once(OutboxSender(a).pending())
    genuine = fetch(b)
    forged = json.loads(json.dumps(genuine))
    from protocol import SigningKeyPair, b64u

    forged[0]["envelope"]["sig"] = b64u(SigningKeyPair.generate().sign(b"forged"))
    assert InboxProcessor(b).process(forged).quarantined == 1
    r = InboxProcessor(b).process(genuine)
    assert r.stored == 1 and r.quarantined == 0
    assert b.referral_summary(rid)["status"] == "received"
    # the same message id again with other (validly signed) bytes: refused, not re-applied
    mid = genuine[0]["id"]
    again = a.seal(kind="referral", to="legal-gt", thread=rid, message_id=mid,
                   document=b.referral_detail(rid)["referral"])
    item = {"id": mid, "type": "envelope", "envelope": json.loads(again.raw)}
    r2 = InboxProcessor(b).process([item])
    r3 = InboxProcessor(b).process([item])
    assert (r2.quarantined, r3.quarantined, r3.duplicates) == (1, 0, 1)
    with b.engine.connect() as conn:
        codes = sorted(c for (c,) in conn.execute(sa.select(QUARANTINE.c.code)))
    assert codes == ["bad_signature", "replayed"]
    assert count(b, REFERRALS) == 1 and count(b, INBOX) == 1


def test_parallel_sends_to_a_new_member_share_one_directory_refresh(make_node, hub):
    from concurrent.futures import ThreadPoolExecutor

    a = make_node("shelter-mx")  # its stored directory predates legal-gt
    make_node("legal-gt")
    with ThreadPoolExecutor(8) as ex:
        ids = list(ex.map(lambda i: a.create_referral("legal-gt", sample_referral(i))["id"],
                          range(16)))
    assert len(set(ids)) == 16
