"""A member is cut off from the hub for 72 hours (simulated) while both sides keep working.

The network's wall clock is moved forward 72 hours (libfaketime, see harness.py) while the
node's link to the hub is down: its access token, the directory it verified and its
pending work all age by three days. The hub is restarted during that time (maintenance),
the nodes are not.

Proves: referrals sent to the cut-off member wait at the hub and are delivered, once each,
when it comes back; referrals its case system created while cut off wait in its outbox
(sealed once, same id) and are delivered once; the node re-authenticates and re-verifies the
directory by itself; nothing fails or is duplicated.
"""

from __future__ import annotations

import time

import pytest

from node.samples import sample_referral
from tests.fault.exchange import compare, wait_settled
from tests.fault.harness import Network
from tests.helpers.processes import wait_until
from tests.reliability_summary import Recorder, full_run

pytestmark = pytest.mark.timeout(1800)


def test_member_cut_off_for_72_hours(network: Network, tally: Recorder) -> None:
    per_phase = 150 if full_run() else 60
    network.use_shared_clock()
    hub = network.start_hub()
    a = network.add_node("shelter-mx", "Casa Refugio", "MX")
    b = network.add_node("legal-gt", "Asistencia Legal", "GT", via_link=True)
    assert b.link is not None
    # Online first: one referral each way goes through.
    ab = {a.send(b.node_id, sample_referral(0))}
    ba = {b.send(a.node_id, sample_referral(1))}
    wait_settled([(a, b, ab), (b, a, ba)], timeout=300)

    b.link.cut()
    tally.fault("member_link_cut")
    ab |= {a.send(b.node_id, sample_referral(i)) for i in range(per_phase)}
    ba |= {b.send(a.node_id, sample_referral(i)) for i in range(per_phase)}
    wait_until(lambda: not a.outbox_states().get("pending"), timeout=300,
               message="A handed everything to the hub")
    # Three days pass. The hub is restarted for maintenance on the way; the nodes run on.
    hub.proc.terminate()
    network.set_clock("+72h")
    hub.proc.start()
    tally.fault("clock_forward_72h")
    network.set_clock("+72h")  # every running service now reads the new time
    ab |= {a.send(b.node_id, sample_referral(i)) for i in range(per_phase)}
    ba |= {b.send(a.node_id, sample_referral(i)) for i in range(per_phase)}
    time.sleep(5)  # B's sender and receiver keep failing (and backing off) meanwhile
    assert b.outbox_states().get("pending", 0) == 2 * per_phase
    # Cut off means cut off: nothing of what A sent since has reached B.
    assert b.sql("SELECT COUNT(*) FROM referrals WHERE direction = 'inbound'")[0][0] == 1
    b.link.restore()
    wait_settled([(a, b, ab), (b, a, ba)], timeout=600)
    lost = dup = 0
    for src, dst, ids in ((a, b, ab), (b, a, ba)):
        lo, du = compare(tally, hub, src, dst, ids, offline_hours=72)
        lost, dup = lost + lo, dup + du
    assert (lost, dup) == (0, 0)
    for n in (a, b):
        assert n.quarantined() == [], n.node_id
        assert not n.outbox_states().get("failed"), n.node_id
    assert all(s == "received" for s in a.outbound().values())
    assert all(s == "received" for s in b.outbound().values())
    # The node renewed its access after three days without help, and the hub still
    # refuses nothing: the link was the only thing broken.
    assert b.proc.starts == 1 and a.proc.starts == 1
    # A node commits, then acks: poll rather than catch the moment in between.
    wait_until(lambda: hub.sql("SELECT COUNT(*) FROM mailbox")[0][0] == 0, timeout=120,
               message="hub mailboxes drained")
    # The simulation happened: the hub's ledger spans three days of its own clock.
    first, last = hub.sql("SELECT MIN(submitted_at_ms), MAX(submitted_at_ms) FROM messages")[0]
    assert last - first >= 71 * 3600 * 1000
    assert hub.sql("SELECT COUNT(*) FROM messages WHERE expired_at_ms IS NOT NULL")[0][0] == 0
