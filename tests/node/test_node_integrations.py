"""The node side of the adapters: import queues referrals once; the event feed for sync."""

from __future__ import annotations

from pathlib import Path

from adapters.bench import generate_progres_csv
from adapters.cli import run_import
from adapters.primero.sync import InboundDecision, InboundReferral
from node.integrations import ack_inbound_factory, poll_inbound_factory, send_referral_factory
from tests.node.conftest import pump


def test_import_then_feed_events(make_node, tmp_path: Path):
    a = make_node("shelter-mx", "Shelter", "MX")
    b = make_node("unhcr-cr", "UNHCR", "CR")
    src = tmp_path / "extract.csv"
    generate_progres_csv(src, 8, seed=3, fault_rate=0.0)
    send = send_referral_factory(a, b.node_id)
    assert run_import("progres", src, send, None, None, "vital_interest", "Protection Officer") == 0
    assert len(a.list_referrals(direction="outbound")) == 8
    # the same extract again (a crash before the case system recorded the ids): no duplicates
    assert run_import("progres", src, send, None, None, "vital_interest", "Protection Officer") == 0
    assert len(a.list_referrals(direction="outbound")) == 8
    pump(a, b)
    poll_b, ack_b = poll_inbound_factory(b), ack_inbound_factory(b)
    events = poll_b()
    assert len(events) == 8 and all(isinstance(e, InboundReferral) for e in events)
    assert all(e.document["consent"]["legal_basis"] == "vital_interest" for e in events)
    for e in events:
        ack_b(e.event_id)
    assert poll_b() == []
    rid = events[0].referral_id
    b.change_status(rid, "accepted", note="case opened")
    pump(a, b)
    decisions = [e for e in poll_inbound_factory(a)() if isinstance(e, InboundDecision)]
    assert [(d.referral_id, d.status, d.note) for d in decisions] == [(rid, "accepted",
                                                                      "case opened")]
