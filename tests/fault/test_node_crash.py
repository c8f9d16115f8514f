"""Nodes killed with SIGKILL while they send (outbox) and while they process their inbox.

Proves: a sending node killed between handing a batch to the hub and recording the hub's
receipts resends the very same envelopes (same ids, same bytes), which the hub answers as
duplicates; a receiving node killed at any moment of its inbox processing, including the
window after its commit and before its acknowledgement to the hub, processes every referral
exactly once (the hub redelivers un-acked items; the node's inbox deduplicates by message
id); its receipts reach the sender, which is killed while applying them, once each.
"""

from __future__ import annotations

import random
import time

import pytest

from node.samples import sample_referral
from tests.fault.exchange import compare, wait_settled
from tests.fault.harness import Network
from tests.helpers.processes import wait_until
from tests.reliability_summary import Recorder, full_run

pytestmark = pytest.mark.timeout(2400)


def _count(node, sql: str) -> int:  # type: ignore[no-untyped-def]
    return int(node.sql(sql)[0][0])


def test_nodes_killed_while_sending_and_processing(network: Network, tally: Recorder) -> None:
    full = full_run()
    referrals = 800 if full else 400
    receiver_kills = 12 if full else 6
    sender_kills = 6 if full else 3
    rng = random.Random(21)
    hub = network.start_hub()
    a = network.add_node("shelter-mx", "Casa Refugio", "MX", via_link=True,
                         extra_env={"RSSN_NODE_BATCH_LIMIT": "40"})
    b = network.add_node("legal-gt", "Asistencia Legal", "GT", start=False,
                         extra_env={"RSSN_NODE_BATCH_LIMIT": "25",
                                    "RSSN_NODE_FAULT_PAUSE_BEFORE_ACK_S": "60"})
    assert a.link is not None
    a.knows(b.node_id)
    # The referrals wait in A's outbox while its link is down (the case system still works).
    a.link.cut()
    ids = {a.send(b.node_id, sample_referral(i)) for i in range(referrals)}
    assert len(ids) == referrals
    a.link.restore()

    # 1) The sender dies while its outbox drains into the hub.
    for _ in range(sender_kills):
        before = _count(a, "SELECT COUNT(*) FROM outbox WHERE state = 'pending'")
        if before == 0:
            break
        wait_until(lambda before=before: _count(
            a, "SELECT COUNT(*) FROM outbox WHERE state = 'pending'") < before,
            timeout=180, interval=0.02, message="sender draining its outbox")
        time.sleep(rng.uniform(0.0, 0.2))
        a.proc.kill9()
        tally.fault("sender_sigkill_mid_outbox")
        a.proc.start()
    wait_until(lambda: _count(a, "SELECT COUNT(*) FROM outbox WHERE state = 'pending'") == 0,
               timeout=300, message="all handed to the hub")
    assert hub.sql("SELECT COUNT(*) FROM messages WHERE kind = 'referral'")[0][0] == referrals

    # 2) The receiver dies after committing a batch and before acknowledging it.
    b.proc.start()
    b.proc.wait_for_log("inbox_committed_awaiting_ack", timeout=180)
    stored = _count(b, "SELECT COUNT(*) FROM referrals")
    assert 0 < stored < referrals
    b.proc.kill9()
    tally.fault("receiver_sigkill_after_commit_before_ack")

    # 3) The receiver dies at arbitrary moments while batches are being processed, and the
    #    sender dies while it applies the receipts coming back.
    b.proc.env.pop("RSSN_NODE_FAULT_PAUSE_BEFORE_ACK_S", None)
    for i in range(receiver_kills):
        b.proc.start()
        before = _count(b, "SELECT COUNT(*) FROM referrals")
        if before >= referrals:
            break
        wait_until(lambda before=before: _count(b, "SELECT COUNT(*) FROM referrals") > before,
                   timeout=180, interval=0.02, message="receiver processing again")
        time.sleep(rng.uniform(0.0, 0.3))
        b.proc.kill9()
        tally.fault("receiver_sigkill_mid_inbox")
        if i % 2 == 1:
            a.proc.kill9()
            tally.fault("sender_sigkill_mid_receipts")
            a.proc.start()
    if not b.proc.running:  # the loop may end early with the receiver up, having caught up
        b.proc.start()
    wait_settled([(a, b, ids)], timeout=600)
    lost, dup = compare(tally, hub, a, b, ids)
    recognised = sum(d.get("duplicate_count", 0) for d in b.proc.json_logs()
                     if d.get("event") == "inbox_batch")
    tally.note(referrals=referrals, redelivered_items_recognised=recognised)
    assert (lost, dup) == (0, 0)
    # The crash after commit must have caused a redelivery that was recognised, not re-run.
    assert recognised >= 1
    assert b.quarantined() == [] and a.quarantined() == []
    inbox = b.sql("SELECT COUNT(*), COUNT(DISTINCT message_id) FROM inbox WHERE kind = 'referral'")
    assert inbox[0][0] == inbox[0][1] == referrals
    assert all(s == "received" for s in a.outbound().values())
    assert hub.sql("SELECT COUNT(*) FROM mailbox")[0][0] == 0
