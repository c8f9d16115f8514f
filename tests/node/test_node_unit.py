"""Node logic against a real hub process: lifecycle, dedup, quarantine, consent, outbox.

The node runs in process so each test can step its sender and receiver; the hub is a
real `rssn-hub` (tests/node/conftest.py). Node ids carry a per-test suffix.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from node.hub_client import HubRejected, retrying
from node.inbox import InboxProcessor
from node.keystore import KeyStoreError, load_keys
from node.outbox import OutboxSender
from node.samples import sample_referral
from node.store.queries import INBOX, OUTBOX, QUARANTINE, REFERRALS
from protocol import seal
from protocol.documents import monitoring_fields, parse_document
from protocol.errors import Conflict, ConsentMissing, InvalidTransition, WrongRecipient
from tests.helpers.processes import wait_until
from tests.hub.client import status_document
from tests.node.conftest import PASS, fetch, pump
from tests.node.realhub import RecordingTransport, tamper_ciphertext

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


def count(node, table, *where) -> int:
    with node.engine.connect() as conn:
        q = sa.select(sa.func.count()).select_from(table)
        for w in where:
            q = q.where(w)
        return int(conn.execute(q).scalar())


def test_referral_lifecycle_both_sides(make_node):
    a = make_node("shelter-mx", "Shelter", "MX")
    b = make_node("legal-gt", "Legal Aid", "GT")
    created = a.create_referral(b.node_id, sample_referral(0))
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
    assert da["history"][2]["actor"] == b.node_id
    assert da["history"][2]["note"] == "we can see her tomorrow"
    assert db["referral"]["subject"]["given_name"] == sample_referral(0)["subject"]["given_name"]
    # every referral/status message got a receipt, and nothing is left to send
    assert count(a, OUTBOX, OUTBOX.c.state == "pending") == 0
    assert count(b, OUTBOX, OUTBOX.c.state == "pending") == 0
    assert count(a, OUTBOX, OUTBOX.c.delivered_at.is_(None), OUTBOX.c.kind != "receipt") == 0
    assert count(b, OUTBOX, OUTBOX.c.delivered_at.is_(None), OUTBOX.c.kind != "receipt") == 0


def test_duplicates_are_processed_once(make_node):
    a = make_node("shelter-mx")
    b = make_node("legal-gt")
    rid = a.create_referral(b.node_id, sample_referral(1))["id"]
    OutboxSender(a).send_once(OutboxSender(a).pending())
    items = fetch(b)
    assert len(items) == 1
    r1 = InboxProcessor(b).process(items)
    r2 = InboxProcessor(b).process(items)  # the hub re-delivers before our ack arrived
    assert r1.stored == 1 and r2.stored == 0 and r2.duplicates == 1
    assert r1.ack == r2.ack == [items[0]["id"]]
    # ... and really re-delivers: the lease on the un-acked item runs out
    again = wait_until(lambda: fetch(b), timeout=60, message="un-acked item delivered again")
    assert [i["id"] for i in again] == [items[0]["id"]]
    r3 = InboxProcessor(b).process(again)
    assert r3.stored == 0 and r3.duplicates == 1
    assert b.client.ack(r3.ack) == 1
    assert count(b, REFERRALS) == 1 and count(b, INBOX) == 1
    assert count(b, OUTBOX, OUTBOX.c.kind == "receipt") == 1
    assert b.referral_summary(rid)["status"] == "received"


def test_outbox_retries_keep_the_message_id(make_node, proxy):
    calls = RecordingTransport()
    a = make_node("shelter-mx", via_proxy=True, transport=calls)
    b = make_node("legal-gt")
    rid = a.create_referral(b.node_id, sample_referral(2))["id"]
    a.client.directory()  # an access token in hand: what follows counts message posts only
    with a.engine.connect() as conn:
        before = conn.execute(sa.select(OUTBOX.c.message_id, OUTBOX.c.envelope)).all()
    proxy.drop(3)  # the line to the hub fails three times
    sender = OutboxSender(a)
    retry = retrying(max_wait=0.01, max_attempts=10)
    for attempt in retry:
        with attempt:
            sender.send_once(sender.pending())
    assert retry.statistics["attempt_number"] == 4 and proxy.dropped == 3
    assert calls.count("POST", "/v1/messages") == 4
    with a.engine.connect() as conn:
        after = conn.execute(sa.select(OUTBOX.c.message_id, OUTBOX.c.envelope, OUTBOX.c.state)
                             ).all()
    assert [(m, e) for m, e, _ in after] == [tuple(r) for r in before]
    assert after[0].state == "sent"
    # Resending the same bytes (crash before marking sent) is an idempotent 200.
    assert a.client.post_message(before[0].envelope.encode())["message_id"] == before[0].message_id
    # The hub holds the message exactly once.
    assert [i["id"] for i in fetch(b)] == [before[0].message_id]
    assert a.referral_summary(rid)["status"] == "requested"


def test_batch_send_when_several_pending(make_node):
    calls = RecordingTransport()
    a = make_node("shelter-mx", transport=calls)
    b = make_node("legal-gt")
    ids = [a.create_referral(b.node_id, sample_referral(i))["id"] for i in range(5)]
    sent, failed = OutboxSender(a).send_once(OutboxSender(a).pending())
    assert (sent, failed) == (5, 0)
    assert calls.count("POST", "/v1/messages/batch") == 1
    assert calls.count("POST", "/v1/messages") == 0
    result = InboxProcessor(b).process(fetch(b))
    assert result.stored == 5
    assert {r["id"] for r in b.list_referrals(direction="inbound")} == set(ids)


def test_undecryptable_envelope_is_quarantined_and_answered(make_node):
    """A sender's envelope that the hub accepts (outer signature fine) but that does not
    open: quarantined, acked, answered with a problem; the sender marks the referral failed."""
    a = make_node("shelter-mx")
    b = make_node("legal-gt")
    rid = a.create_referral(b.node_id, sample_referral(0))["id"]
    with a.engine.begin() as conn:  # the sender's sealing step was broken
        row = conn.execute(sa.select(OUTBOX)).one()
        bad = tamper_ciphertext(row.envelope.encode(), a.keys.signing)
        from protocol import digest

        conn.execute(sa.update(OUTBOX).values(envelope=bad.decode(), envelope_digest=digest(bad)))
    assert OutboxSender(a).send_once(OutboxSender(a).pending()) == (1, 0)
    items = fetch(b)
    assert [i["id"] for i in items] == [row.message_id]
    result = InboxProcessor(b).process(items)
    assert result.quarantined == 1 and result.stored == 0 and result.ack == [items[0]["id"]]
    with b.engine.connect() as conn:
        q = conn.execute(sa.select(QUARANTINE)).one()
    assert q.code == "decryption_failed" and q.from_node == a.node_id
    assert json.loads(q.raw)["header"]["id"] == items[0]["id"]
    assert count(b, REFERRALS) == 0
    b.client.ack(result.ack)
    pump(a, b)
    detail = a.referral_detail(rid)
    assert detail["status"] == "failed"
    assert [h["event"] for h in detail["history"]][-2:] == ["problem", "failed"]
    assert detail["history"][-1]["note"] == "decryption_failed"


def test_status_from_a_member_outside_the_referral_is_refused(make_node, make_member):
    """Another enrolled member (sealing with protocol/ only) tries to accept someone else's
    referral: the hub routes it (it cannot read it), the recipient refuses and says why."""
    a = make_node("shelter-mx")
    b = make_node("legal-gt")
    rid = a.create_referral(b.node_id, sample_referral(0))["id"]
    pump(a, b)
    mallory = make_member("intruder-hn")
    env = mallory.seal_to(b.node_id, kind="status", document=status_document("completed"),
                          thread=rid)
    assert mallory.submit(env).status_code == 202
    result = InboxProcessor(b).process(fetch(b))
    assert (result.quarantined, result.stored) == (1, 0)
    b.client.ack(result.ack)
    with b.engine.connect() as conn:
        q = conn.execute(sa.select(QUARANTINE)).one()
    assert (q.code, q.from_node, q.message_id) == ("not_authorized", mallory.node_id,
                                                   env.header.id)
    assert b.referral_summary(rid)["status"] == "received"
    pump(b)
    answer = wait_until(lambda: mallory.items(), timeout=60, message="problem answer")
    opened = mallory.open_item(answer[0])
    assert opened.header.kind == "problem" and opened.header.sender == b.node_id
    assert (opened.document_json["message_id"], opened.document_json["code"]) == (
        env.header.id, "not_authorized")


def test_consent_refused_before_sending(make_node):
    a = make_node("shelter-mx")
    b = make_node("legal-gt", "Legal Aid")
    with pytest.raises(ConsentMissing):
        a.create_referral(b.node_id, sample_referral(0, consent_status="withdrawn"))
    with pytest.raises(ConsentMissing):
        a.create_referral(b.node_id, sample_referral(0, recipients=["someone-else"]))
    a.create_referral(b.node_id, sample_referral(0, recipients=[b.node_id]))
    with pytest.raises(WrongRecipient):
        a.create_referral("nobody-here", sample_referral(0))
    assert count(a, OUTBOX) == 1 and count(a, REFERRALS) == 1


def test_illegal_transitions(make_node):
    a = make_node("shelter-mx")
    b = make_node("legal-gt")
    rid = a.create_referral(b.node_id, sample_referral(0))["id"]
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


def test_consent_withdrawal_restricts_and_is_acknowledged(make_node):
    a = make_node("shelter-mx")
    b = make_node("legal-gt")
    rid = a.create_referral(b.node_id, sample_referral(3))["id"]
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


def _send_short_lived(a, rid: str, to: str) -> str:
    """Hand the hub the referral's envelope re-sealed with a lifetime of seconds.

    The message id and thread stay those of the queued referral, so the hub's expiry
    notice points at it. A loaded machine may be too slow for the first lifetime: the hub
    then refuses it as expired and a longer one is tried.
    """
    with a.engine.connect() as conn:
        row = conn.execute(sa.select(OUTBOX).where(OUTBOX.c.referral_id == rid)).one()
    document = a.referral_detail(rid)["referral"]
    for seconds in (4, 15, 60):
        created = datetime.now(UTC).replace(microsecond=0)
        env = seal(sender=a.node_id, signing_key=a.keys.signing, recipient=to,
                   recipient_key=a.peer_entry(to).current_encryption_key(created),
                   kind="referral", document=document, message_id=row.message_id, thread=rid,
                   created_at=created, ttl=timedelta(seconds=seconds),
                   meta=monitoring_fields(parse_document("referral", document)))
        try:
            a.client.post_message(env.raw)
        except HubRejected as exc:
            assert exc.code == "expired", exc.code
            continue
        with a.engine.begin() as conn:
            conn.execute(sa.update(OUTBOX).where(OUTBOX.c.message_id == row.message_id)
                         .values(envelope=env.raw.decode(), envelope_digest=env.digest,
                                 state="sent"))
        return str(row.message_id)
    raise AssertionError("the hub refused every lifetime as expired")


def test_hub_expiry_notice_fails_the_referral(make_node):
    a = make_node("shelter-mx")
    b = make_node("legal-gt")  # never collects its mail
    rid = a.create_referral(b.node_id, sample_referral(0))["id"]
    mid = _send_short_lived(a, rid, b.node_id)
    # The hub's sweeper deletes the envelope at expiry and tells the sender.
    items = wait_until(lambda: fetch(a, wait=5), timeout=120, message="expiry notice")
    assert [(i["type"], i["notice"]["code"], i["notice"]["message_id"]) for i in items] == [
        ("notice", "expired", mid)]
    InboxProcessor(a).process(items)
    InboxProcessor(a).process(items)  # redelivered notice: no second effect
    d = a.referral_detail(rid)
    assert d["status"] == "failed"
    assert [h["event"] for h in d["history"]].count("failed") == 1
    assert fetch(b) == []  # nothing left for the recipient


def test_wrong_passphrase_is_a_clear_error(make_node):
    a = make_node("shelter-mx")
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        load_keys(a.settings.keys_path, "not the passphrase")
    assert load_keys(a.settings.keys_path, PASS).node_id == a.node_id


def test_forgery_does_not_shadow_the_genuine_message_and_replays_are_refused(
        make_node, make_member):
    a = make_node("shelter-mx")
    b = make_node("legal-gt")
    rid = a.create_referral(b.node_id, sample_referral(0))["id"]
    OutboxSender(a).send_once(OutboxSender(a).pending())
    genuine = fetch(b)
    mid = genuine[0]["id"]
    from protocol import SigningKeyPair, b64u

    # An honest hub refuses both attacks: a member posing as the sender ...
    mallory = make_member("intruder-hn")
    posing = mallory.seal_to(b.node_id, sender=a.node_id, message_id=mid, thread=rid)
    r = mallory.submit(posing)
    assert r.status_code == 403 and r.json()["code"] == "not_authorized"
    # ... and the sender's own id again with other (validly signed) bytes.
    again = a.seal(kind="referral", to=b.node_id, thread=rid, message_id=mid,
                   document=sample_referral(0))
    with pytest.raises(HubRejected) as refused:
        a.client.post_message(again.raw)
    assert refused.value.code == "conflict"
    # The node does not rely on that: as if a compromised hub delivered them anyway.
    forged = json.loads(json.dumps(genuine))
    forged[0]["envelope"]["sig"] = b64u(SigningKeyPair.generate().sign(b"forged"))
    assert InboxProcessor(b).process(forged).quarantined == 1
    r1 = InboxProcessor(b).process(genuine)
    assert r1.stored == 1 and r1.quarantined == 0
    assert b.referral_summary(rid)["status"] == "received"
    item = {"id": mid, "type": "envelope", "envelope": json.loads(again.raw)}
    r2 = InboxProcessor(b).process([item])
    r3 = InboxProcessor(b).process([item])
    assert (r2.quarantined, r3.quarantined, r3.duplicates) == (1, 0, 1)
    with b.engine.connect() as conn:
        codes = sorted(c for (c,) in conn.execute(sa.select(QUARANTINE.c.code)))
    assert codes == ["bad_signature", "replayed"]
    assert count(b, REFERRALS) == 1 and count(b, INBOX) == 1


def test_parallel_sends_to_a_new_member_share_one_directory_refresh(make_node):
    from concurrent.futures import ThreadPoolExecutor

    a = make_node("shelter-mx")  # its stored directory predates legal-gt
    b = make_node("legal-gt")
    assert b.node_id not in a.directory.entries
    with ThreadPoolExecutor(8) as ex:
        ids = list(ex.map(lambda i: a.create_referral(b.node_id, sample_referral(i))["id"],
                          range(16)))
    assert len(set(ids)) == 16
