"""Canary strings in every free-text field of referral documents, through a full lifecycle.

A referral whose every free-text field (names, contact details, location, identifiers,
caregiver, consent restrictions and attestation, reason, safety notes, referrer, an
attachment's name and content) carries its own canary goes from one real node to another
through the real hub; the recipient accepts it, works on it and completes it with canary
notes; a second referral has its consent withdrawn with a canary note. A third member
exchanges unrelated referrals meanwhile.

Then every place that is not the sender's or the recipient's own store is scanned, in
every encoding (scan.py): the hub's database (SQLite file with its WAL, or every
PostgreSQL table), every file in the hub's data directory, the hub's and all nodes' logs,
the hub's /metrics, the third member's database and files, and the non-database files of
the two parties. The parties' own databases are scanned too and must contain the canaries
(so the scan is known to work).

Proves: zero canary hits outside the sender's and recipient's stores. Also: node private
keys and the hub's private key are on disk only sealed (never raw, base64, base64url or
hex, in any file of any data directory or database), and the key files are owner-only.
"""

from __future__ import annotations

import base64
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.db import make_engine
from hub.hubkey import load_hub_key
from node.keystore import load_keys
from node.samples import sample_referral
from tests.fault.exchange import wait_settled
from tests.fault.harness import HUB_PASS, NODE_PASS, HubProc, Network, NodeProc
from tests.helpers.processes import wait_until
from tests.reliability_summary import Recorder
from tests.security.scan import encodings, files_under, hits, pg_dump_text

pytestmark = pytest.mark.timeout(1200)


def canary_referral(tag: str, recipient: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A valid referral with a distinct canary in each free-text field; returns (doc, canaries)."""
    c: dict[str, str] = {}

    def k(name: str) -> str:
        c[name] = f"ZQX{tag}{name.replace('.', '').replace('_', '')}{secrets.token_hex(4)}"
        return c[name]

    attachment_text = k("attachment.content")
    doc = sample_referral(0)
    doc["subject"].update({
        "given_name": k("subject.given_name"), "family_name": k("subject.family_name"),
        "other_names": [k("subject.other_names")], "gender_identity": k("subject.gender"),
        "age": 30,
        "safe_contact": {"method": "phone", "value": k("safe_contact.value"),
                         "notes": k("safe_contact.notes")},
        "location": {"country": "MX", "admin1": k("location.admin1"),
                     "admin2": k("location.admin2"), "place": k("location.place")},
        "identifiers": [{"system": "unhcr_individual", "value": k("identifier.value")}],
    })
    doc["caregiver"] = {"given_name": k("caregiver.given_name"),
                        "family_name": k("caregiver.family_name"), "relationship": "mother",
                        "contact": {"method": "sms", "value": k("caregiver.contact"),
                                    "notes": k("caregiver.contact_notes")},
                        "notes": k("caregiver.notes")}
    doc["consent"].update({"restrictions": [k("consent.restrictions")],
                           "scope": {"recipients": [recipient],
                                     "purposes": [k("consent.purposes")]}})
    doc["reason"] = k("reason")
    doc["safety_notes"] = k("safety_notes")
    doc["referrer"] = {"name": k("referrer.name"), "organization": k("referrer.organization"),
                       "position": k("referrer.position"), "contact": k("referrer.contact")}
    doc["attachments"] = [{"filename": k("attachment.filename") + ".txt",
                           "media_type": "text/plain",
                           "content_b64": base64.b64encode(attachment_text.encode()).decode()}]
    return doc, c


def _status(node: NodeProc, rid: str, status: str, note: str) -> None:
    r = node.post(f"/api/v1/referrals/{rid}/status", {"status": status, "note": note})
    assert r.status_code == 200, r.text


def _wait_status(node: NodeProc, rid: str, status: str) -> None:
    wait_until(lambda: node.get(f"/api/v1/referrals/{rid}")["status"] == status, timeout=180,
               message=f"{node.node_id}: {rid} {status}")


def _lifecycle(network: Network, tally: Recorder) -> tuple[dict[str, str], HubProc,
                                                            NodeProc, NodeProc, NodeProc]:
    hub = network.hub
    assert hub is not None
    a = network.add_node("mx-shelter", "Casa Refugio", "MX")
    b = network.add_node("gt-legal", "Asistencia Legal", "GT")
    c = network.add_node("cr-third", "HIAS Costa Rica", "CR")
    a.knows(b.node_id, c.node_id)
    canaries: dict[str, str] = {}
    doc1, c1 = canary_referral("A", b.node_id)
    doc2, c2 = canary_referral("B", b.node_id)
    canaries.update(c1)
    canaries.update(c2)
    r1 = a.send(b.node_id, doc1)
    r2 = a.send(b.node_id, doc2)
    _wait_status(a, r1, "received")
    _wait_status(a, r2, "received")
    for status in ("accepted", "in_progress", "completed"):
        note = f"ZQXnote{status.replace('_', '')}{secrets.token_hex(4)}"
        canaries[f"status.{status}"] = note
        _status(b, r1, status, note)
        _wait_status(a, r1, status)
    withdraw = f"ZQXwithdraw{secrets.token_hex(4)}"
    canaries["withdraw.note"] = withdraw
    r = a.post(f"/api/v1/referrals/{r2}/withdraw-consent", {"note": withdraw})
    assert r.status_code == 202, r.text
    wait_until(lambda: a.get(f"/api/v1/referrals/{r2}")["consent_withdrawal_acknowledged_at"],
               timeout=180, message="withdrawal acknowledged")
    # The third member's unrelated traffic, so its stores are not trivially empty.
    ids = {c.send(a.node_id, sample_referral(3))}
    wait_settled([(c, a, ids)], timeout=180)
    # The recipient holds the full document.
    assert b.get(f"/api/v1/referrals/{r1}")["referral"]["reason"] == doc1["reason"]
    return canaries, hub, a, b, c


def _scan(tally: Recorder, location: str, data: bytes, needles: list[bytes], *,
          allowed: bool = False) -> int:
    n = hits(data, needles)
    tally.canary(location, n, allowed=allowed)
    return n


def _node_db_bytes(node: NodeProc) -> bytes:
    return b"".join(p.read_bytes() for p in files_under(node.data_dir) if ".db" in p.name)


def _run(network: Network, tally: Recorder, hub_db: str | None) -> None:
    network.start_hub(db_url=hub_db)
    canaries, hub, a, b, c = _lifecycle(network, tally)
    needles = sorted({e for v in canaries.values() for e in encodings(v)})
    # Let the hub write what it writes after the fact (delivery times, last seen, metrics).
    metrics = httpx.get(hub.url + "/metrics", timeout=30).text.encode()
    found = 0
    found += _scan(tally, "hub /metrics", metrics, needles)
    if hub_db:
        found += _scan(tally, "hub PostgreSQL tables", pg_dump_text(hub_db), needles)
    for p in files_under(hub.data_dir):
        found += _scan(tally, f"hub file {p.name}", p.read_bytes(), needles)
    found += _scan(tally, "hub logs", hub.proc.log_text().encode(), needles)
    for n in (a, b, c):
        found += _scan(tally, f"{n.node_id} logs", n.proc.log_text().encode(), needles)
    for p in files_under(c.data_dir):
        found += _scan(tally, f"third member file {p.name}", p.read_bytes(), needles)
    for n in (a, b):
        for p in files_under(n.data_dir):
            if ".db" not in p.name:
                found += _scan(tally, f"{n.node_id} file {p.name}", p.read_bytes(), needles)
    # The parties' own stores are allowed to hold the canaries, and must (scan works).
    for n in (a, b):
        own = _scan(tally, f"{n.node_id} own database", _node_db_bytes(n), needles,
                    allowed=True)
        assert own > 0, f"the scan found nothing in {n.node_id}'s own database"
    assert found == 0, [s for s in tally.rec["scanned"] if s["hits"] and not s["allowed"]]
    _keys_never_in_clear(tally, hub, [a, b, c], hub_db)


def _keys_never_in_clear(tally: Recorder, hub: HubProc, nodes: list[NodeProc],
                         hub_db: str | None) -> None:
    secrets_by_owner: dict[str, list[bytes]] = {}
    for n in nodes:
        keys = load_keys(n.data_dir / "keys.sealed.json", NODE_PASS)
        secrets_by_owner[n.node_id] = [keys.signing.seed] + [k.secret for k, _ in keys.encryption]
        mode = stat.S_IMODE((n.data_dir / "keys.sealed.json").stat().st_mode)
        assert mode & 0o077 == 0, f"{n.node_id} key file mode {oct(mode)}"
    import sqlalchemy as sa

    engine = make_engine(hub.store_url, poolclass=sa.pool.NullPool)
    try:
        secrets_by_owner["hub"] = [load_hub_key(engine, HUB_PASS).seed]
    finally:
        engine.dispose()
    needles = sorted({e for ss in secrets_by_owner.values() for s in ss for e in encodings(s)})
    places: list[tuple[str, bytes]] = []
    for root in [hub.data_dir, *(n.data_dir for n in nodes)]:
        places += [(f"{root.name}/{p.name}", p.read_bytes()) for p in files_under(root)]
    if hub_db:
        places.append(("hub PostgreSQL tables", pg_dump_text(hub_db)))
    places.append(("hub logs", hub.proc.log_text().encode()))
    places += [(f"{n.node_id} logs", n.proc.log_text().encode()) for n in nodes]
    leaks = [(where, hits(data, needles)) for where, data in places if hits(data, needles)]
    tally.note(key_places_scanned=len(places), key_leaks=leaks)
    assert leaks == []


def test_canaries_stay_with_sender_and_recipient_sqlite(network: Network,
                                                        tally: Recorder) -> None:
    _run(network, tally, None)


@pytest.mark.pg
def test_canaries_stay_with_sender_and_recipient_postgresql(
        network: Network, tally: Recorder, pg_url_factory: Callable[[], str]) -> None:
    _run(network, tally, pg_url_factory())


def test_scan_finds_what_it_looks_for() -> None:
    """The scanner itself: a canary is found raw, hex, base64, JSON-escaped, in any case."""
    secret = "ZQXcanaryñ42"
    for data in (secret.encode(), secret.encode().hex().encode(),
                 base64.b64encode(b"xx" + secret.encode() + b"yy"),
                 b'{"a":"ZQXcanary\\u00f142"}'):
        assert hits(data, encodings(secret)) >= 1, data
    assert hits(b"..ZQXCANARY42..", encodings("ZQXcanary42")) == 1
    assert hits(b"nothing here", encodings(secret)) == 0
    assert Path(__file__).exists()
