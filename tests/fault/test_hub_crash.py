"""The hub is killed with SIGKILL again and again while two members exchange referrals.

Proves: a hub crash at any moment (mid-request, mid-transaction, mid-long-poll, between a
node's commit and its ack) loses nothing and makes nothing be processed twice. Senders
resend the same bytes (same message id) until the hub's receipt; the hub keeps every
accepted envelope across restarts; recipients deduplicate redelivered items by message id.

Short version (make test): 2,000 referrals and 20 kills. Full version
(RSSN_RELIABILITY_FULL=1, make reliability, CI): 4,000 referrals and 40 kills, then the same
on a hub backed by PostgreSQL.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest

from tests.fault.exchange import Traffic, compare, wait_settled
from tests.fault.harness import Network
from tests.reliability_summary import Recorder, full_run

pytestmark = pytest.mark.timeout(3600)


def _run(network: Network, tally: Recorder, *, referrals: int, kills: int,
         db_url: str | None, seed: int) -> None:
    rng = random.Random(seed)
    hub = network.start_hub(db_url=db_url)
    a = network.add_node("shelter-mx", "Casa Refugio", "MX")
    b = network.add_node("legal-gt", "Asistencia Legal", "GT")
    traffic = Traffic()
    # Spread creation over roughly the time the kills take, so the exchange is sustained.
    planned = kills * 4.0
    traffic.start(a, b, referrals // 2, seconds=planned)
    traffic.start(b, a, referrals - referrals // 2, seconds=planned, offset=1)
    t0 = time.monotonic()
    done = 0
    downtime = 0.0
    while done < kills or traffic.running():
        time.sleep(rng.uniform(0.3, 4.0))
        hub.proc.kill9()
        done += 1
        tally.fault("hub_sigkill")
        down = time.monotonic()
        time.sleep(rng.uniform(0.0, 1.5))
        hub.proc.start()
        downtime += time.monotonic() - down
    traffic.join()
    assert not traffic.errors, traffic.errors[:5]
    ab, ba = traffic.sent[(a.node_id, b.node_id)], traffic.sent[(b.node_id, a.node_id)]
    assert len(ab) + len(ba) == referrals
    wait_settled([(a, b, ab), (b, a, ba)], timeout=900)
    lost, dup = 0, 0
    for src, dst, ids in ((a, b, ab), (b, a, ba)):
        lo, du = compare(tally, hub, src, dst, ids, hub_kills=done)
        lost, dup = lost + lo, dup + du
    redelivered = sum(d.get("duplicate_count", 0) for n in (a, b) for d in n.proc.json_logs()
                      if d.get("event") == "inbox_batch")
    tally.note(referrals=referrals, hub_kills=done, seconds=round(time.monotonic() - t0),
               hub_downtime_seconds=round(downtime), redelivered_items_recognised=redelivered)
    assert (lost, dup) == (0, 0)
    for n in (a, b):
        assert n.quarantined() == [], n.node_id
        assert not n.outbox_states().get("failed"), n.node_id
    assert all(s == "received" for s in a.outbound().values())
    assert all(s == "received" for s in b.outbound().values())
    # Nothing left behind at the hub: every item acknowledged, every referral delivered.
    assert hub.sql("SELECT COUNT(*) FROM mailbox")[0][0] == 0
    assert hub.sql("SELECT COUNT(*) FROM messages WHERE kind = 'referral' AND "
                   "delivered_at_ms IS NULL")[0][0] == 0


def test_hub_killed_repeatedly_during_sustained_exchange(network: Network,
                                                         tally: Recorder) -> None:
    if full_run():
        _run(network, tally, referrals=4000, kills=40, db_url=None, seed=11)
    else:
        _run(network, tally, referrals=2000, kills=20, db_url=None, seed=11)


@pytest.mark.slow
def test_hub_on_postgresql_killed_repeatedly(network: Network, tally: Recorder,
                                             pg_url_factory: Callable[[], str]) -> None:
    if not full_run():
        pytest.skip("full reliability run only (RSSN_RELIABILITY_FULL=1): the SQLite hub "
                    "carries the short version")
    _run(network, tally, referrals=2000, kills=20, db_url=pg_url_factory(), seed=12)
