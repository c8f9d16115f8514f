"""Messages that expire undelivered, and the failure reported to their senders.

A member is cut off; fifteen days pass (the network's wall clock is moved with libfaketime,
see harness.py). Referrals live fourteen days.

Proves:
* referrals waiting at the hub for the cut-off member expire there: the hub deletes the
  ciphertext and puts a hub-signed `expired` notice in the sender's mailbox; the sending node
  marks each referral `failed` (its case system sees it) and the recipient never processes
  them, even after it comes back;
* referrals the cut-off member's case system created meanwhile expire in its own outbox:
  when the link returns the hub refuses them with `expired`, and the node marks them
  `failed` for its case system; nothing is retried for ever, nothing vanishes silently;
* afterwards the network works normally again.
"""

from __future__ import annotations

import pytest

from node.samples import sample_referral
from tests.fault.exchange import wait_settled
from tests.fault.harness import Network
from tests.helpers.processes import wait_until
from tests.reliability_summary import Recorder, full_run

pytestmark = pytest.mark.timeout(1800)


def test_messages_expire_undelivered_and_senders_are_told(network: Network,
                                                          tally: Recorder) -> None:
    count = 60 if full_run() else 20
    network.use_shared_clock()
    hub = network.start_hub()
    a = network.add_node("shelter-mx", "Casa Refugio", "MX")
    b = network.add_node("legal-gt", "Asistencia Legal", "GT", via_link=True)
    assert b.link is not None
    a.knows(b.node_id)
    b.knows(a.node_id)
    b.link.cut()
    tally.fault("member_link_cut")
    to_b = {a.send(b.node_id, sample_referral(i)) for i in range(count)}
    to_a = {b.send(a.node_id, sample_referral(i)) for i in range(count // 2)}
    wait_until(lambda: not a.outbox_states().get("pending"), timeout=300,
               message="A handed everything to the hub")
    assert hub.sql("SELECT COUNT(*) FROM mailbox WHERE recipient = 'legal-gt'")[0][0] == count

    network.set_clock("+15d")
    tally.fault("clock_forward_15d")

    # The hub's sweeper expires them and tells A; A fails each referral for its case system.
    wait_until(lambda: set(a.outbound(b.node_id).values()) == {"failed"}, timeout=300,
               message="A marks every expired referral failed")
    notes = a.sql("SELECT referral_id, note FROM history WHERE event = 'failed'")
    assert {r[0] for r in notes} == to_b and {r[1] for r in notes} == {"expired"}
    assert hub.sql("SELECT COUNT(*) FROM mailbox WHERE item_type = 'envelope'")[0][0] == 0
    expired = {r[0] for r in hub.sql(
        "SELECT thread FROM messages WHERE expired_at_ms IS NOT NULL AND kind = 'referral'")}
    assert expired == to_b

    # B comes back: its own queued referrals are refused as expired and failed locally;
    # it never sees what expired for it.
    b.link.restore()
    wait_until(lambda: set(b.outbound(a.node_id).values()) == {"failed"}, timeout=300,
               message="B marks its expired outbox referrals failed")
    b_notes = b.sql("SELECT referral_id, note FROM history WHERE event = 'failed'")
    assert {r[0] for r in b_notes} == to_a and {r[1] for r in b_notes} == {"expired"}
    polled = b.sql("SELECT value FROM kv WHERE key = 'last_successful_poll'")
    wait_until(lambda: b.sql("SELECT value FROM kv WHERE key = 'last_successful_poll'")
               != polled, timeout=120, message="B polled the hub after coming back")

    processed_by_b = b.processed_referrals(a.node_id)
    processed_by_a = a.processed_referrals(b.node_id)
    lost_ab, dup_ab = tally.exchange(
        "referrals shelter-mx->legal-gt (expired at the hub)", sent=to_b,
        processed=dict(processed_by_b),
        failed_reported={k for k, v in a.outbound(b.node_id).items() if v == "failed"})
    lost_ba, dup_ba = tally.exchange(
        "referrals legal-gt->shelter-mx (expired in the outbox)", sent=to_a,
        processed=dict(processed_by_a),
        failed_reported={k for k, v in b.outbound(a.node_id).items() if v == "failed"})
    assert (lost_ab, dup_ab, lost_ba, dup_ba) == (0, 0, 0, 0)
    assert not processed_by_b and not processed_by_a
    assert b.sql("SELECT COUNT(*) FROM referrals WHERE direction = 'inbound'")[0][0] == 0

    # The network works normally afterwards.
    fresh_ab = {a.send(b.node_id, sample_referral(100))}
    fresh_ba = {b.send(a.node_id, sample_referral(101))}
    wait_settled([(a, b, fresh_ab), (b, a, fresh_ba)], timeout=300)
    assert set(a.outbound(b.node_id)[i] for i in fresh_ab) == {"received"}
    assert set(b.outbound(a.node_id)[i] for i in fresh_ba) == {"received"}
