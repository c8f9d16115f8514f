"""Scale-out: two `rssn-hub serve` processes on one PostgreSQL database, each SIGKILLed once
while three real nodes exchange referrals through them.

How the nodes reach the hub processes, as members would:

* ``ngo-a`` was enrolled with both processes' URLs (``--hub URL1 --hub URL2``) and uses the
  first; ``ngo-b`` with the same two in the other order. So ``ngo-a`` submits through one
  process while ``ngo-b`` collects through the other, and each fails over when its process
  dies.
* ``ngo-c`` knows one address: a round-robin TCP forwarder in front of both processes (the
  load balancer; tests/deploy/rrproxy.py).

Run: the exchange starts, the first process is killed (-9) once a third of the referrals
exist, restarted at half, then the second process is killed at two thirds (so everyone must
go through the restarted first one) and restarted after the last referral. Then every
referral sent is compared with what the recipient processed (exactly once each), what the
hub's ledger recorded (one accepted and delivered envelope each), and the receipts that came
back (every sender sees "received"); nothing may be left in a mailbox or an outbox.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.deploy.cluster import Hubs, NodeProc, enroll, node_env, start_node
from tests.deploy.rrproxy import RoundRobinProxy
from tests.fault.exchange import Traffic, wait_settled
from tests.helpers.processes import ServiceProcess, free_port, wait_until

pytestmark = pytest.mark.timeout(900)

#: Referrals per direction; 150 in all.
PAIRS = {("ngo-a", "ngo-b"): 40, ("ngo-b", "ngo-a"): 40, ("ngo-c", "ngo-a"): 25,
         ("ngo-a", "ngo-c"): 20, ("ngo-c", "ngo-b"): 25}
SPREAD_SECONDS = 20.0


def _served(proc: ServiceProcess, start: int) -> set[str]:
    """Which hub jobs a process did in its ``start``-th run (accepted envelopes, handed out
    mail, took acknowledgements), from its JSON log lines."""
    marker = f"--- test harness: start #{start} of {proc.name} ---"
    nxt = f"--- test harness: start #{start + 1} of {proc.name} ---"
    text = ""
    for stream in (proc.stdout_text(), proc.stderr_text()):
        if start > 1:
            stream = stream.split(marker, 1)[1] if marker in stream else ""
        text += stream.split(nxt, 1)[0]
    events = {"envelopes_accepted": "accepted", "envelope_accepted": "accepted",
              "mailbox_pulled": "pulled", "mailbox_acked": "acked"}
    return {job for event, job in events.items() if f'"event":"{event}"' in text}


def test_two_hub_processes_one_database_each_killed_once(
    tmp_path: Path, spawn_service: Callable[..., ServiceProcess],
    pg_url_factory: Callable[[], str],
) -> None:
    p1, p2 = free_port(), free_port()
    proxy = RoundRobinProxy([p1, p2]).start()
    # Both processes present themselves under the balancer's address (token audience).
    hubs = Hubs(tmp_path, spawn_service, db_url=pg_url_factory(),
                extra_env={"RSSN_HUB_PUBLIC_URL": proxy.url})
    hubs.init()
    hub1 = hubs.start("hub1", port=p1)
    hub2 = hubs.start("hub2", port=p2)
    u1, u2 = hubs.url("hub1"), hubs.url("hub2")
    routes = {"ngo-a": [u1, u2], "ngo-b": [u2, u1], "ngo-c": [proxy.url]}
    nodes: dict[str, NodeProc] = {}
    try:
        for node_id, urls in routes.items():
            env = node_env()
            d = tmp_path / node_id
            key = enroll(hubs, node_id, urls, env, d)
            nodes[node_id] = start_node(spawn_service, node_id, d, key, env)
        assert '"hub_url": "' + ",".join(routes["ngo-a"]) in (
            tmp_path / "ngo-a" / "node.json").read_text()

        total = sum(PAIRS.values())
        traffic = Traffic()
        for i, ((src, dst), count) in enumerate(PAIRS.items()):
            traffic.start(nodes[src], nodes[dst], count, seconds=SPREAD_SECONDS, offset=i * 1000)

        def created(fraction: float) -> None:
            wait_until(lambda: traffic.total >= fraction * total or not traffic.running(),
                       timeout=300, interval=0.2, message=f"{fraction:.0%} of referrals created")

        created(1 / 3)
        hub1.kill9()
        created(1 / 2)
        hub1.start()
        created(2 / 3)
        hub2.kill9()
        traffic.join(600)
        hub2.start()
        assert not traffic.errors, traffic.errors[:5]
        assert traffic.total == total

        pairs = [(nodes[s], nodes[d], traffic.sent[(s, d)]) for s, d in PAIRS]
        t0 = time.monotonic()
        wait_settled(pairs, timeout=300)
        settle_seconds = time.monotonic() - t0

        # -- every referral delivered once, its receipt back once ---------------------------
        for src, dst, ids in pairs:
            assert len(ids) == PAIRS[(src.node_id, dst.node_id)]
            statuses = src.outbound(dst.node_id)
            assert {statuses[i] for i in ids} == {"received"}, (src.node_id, dst.node_id)
            processed = dst.processed_referrals(src.node_id)
            assert set(processed) == ids, (src.node_id, dst.node_id)
            assert set(processed.values()) == {1}, processed
            receipts = src.processed_receipts(dst.node_id)
            assert set(receipts) == ids and set(receipts.values()) == {1}, receipts
        for n in nodes.values():
            assert n.quarantined() == [], n.node_id
            assert not n.outbox_states().get("pending") and not n.outbox_states().get("failed")
        # The hub's ledger: one accepted envelope per referral, each delivered.
        ledger = hubs.sql("SELECT thread, COUNT(*), COUNT(delivered_at_ms) FROM messages "
                          "WHERE kind = 'referral' GROUP BY thread")
        sent = set().union(*(ids for _, _, ids in pairs))
        assert {r[0] for r in ledger} == sent
        assert {(r[1], r[2]) for r in ledger} == {(1, 1)}
        assert hubs.sql("SELECT COUNT(*) FROM mailbox")[0][0] == 0

        # -- both processes did the work, before and after their restarts -------------------
        every_job = {"accepted", "pulled", "acked"}
        assert _served(hub1, 1) == every_job and _served(hub2, 1) == every_job
        # The restarted first process carried everyone while the second was down.
        assert _served(hub1, 2) == every_job
        assert proxy.forwarded[p1] and proxy.forwarded[p2] and proxy.refused, (
            proxy.forwarded, proxy.refused)
        # Nodes noticed the deaths and moved to the other process.
        for node_id in ("ngo-a", "ngo-b"):
            assert '"event":"hub_failover"' in nodes[node_id].proc.log_text(), node_id
        print(f"scale-out: {total} referrals, 2 kills, settled {settle_seconds:.0f}s after the "
              f"last one; forwarder connections {dict(proxy.forwarded)}, "
              f"refused {dict(proxy.refused)}")
    finally:
        for n in nodes.values():
            n.close()
        proxy.close()
