"""Round trip through a real HTTP fake of the Primero v2 API (separate process).

Outbound: a seed-configuration case with a service marked for external referral is read with
the cursor, converted and handed to the node; a remote referral is recorded in Primero.
Inbound: the same referral document is written as a new case (matched by the external-id field).
Decisions: the recipient's accepted and completed land as Primero referral statuses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.base import Converted, ConvertOptions, MappingError, SourceRecord
from adapters.primero import adapter
from adapters.primero.client import PrimeroClient
from adapters.primero.sync import InboundDecision, InboundReferral, PrimeroSync

USER, PASSWORD = "rssn_sync", "s3cret-pass"

CASE = {
    "name_first": "María José", "name_last": "Núñez Peña", "name_middle": "del Carmen",
    "sex": "female", "age": 29, "date_of_birth": "1997-03-14", "nationality": ["venezuela"],
    "protection_concerns": ["gbv_survivor", "trafficked_smuggled"], "risk_level": "high",
    "module_id": "primeromodule-cp", "consent_for_services": True, "disclosure_other_orgs": True,
    "interview_subject": "individual", "registration_date": "2026-11-19",
    "owned_by_full_name": "Lucía Gómez", "owned_by_agency_id": "agency-sin-fronteras",
    "unhcr_individual_no": "803-100016547",
    "services_section": [
        {"unique_id": "6dd4bca7-5d10-4662-ade1-20fe99bef602",
         "service_type": "legal_assistance_service", "service_referral": "external_referral",
         "service_referral_notes": "Necesita orientación legal sobre el procedimiento de asilo",
         "service_response_timeframe": "3_days"},
        {"unique_id": "11111111-5d10-4662-ade1-20fe99bef602",
         "service_type": "psychosocial_service", "service_referral": "internal_referral",
         "service_referral_notes": "internal follow-up"},
    ],
}


class Node:
    """Stands in for the node: records what the adapter sends, queues what it receives."""

    def __init__(self) -> None:
        self.sent: list[tuple[dict[str, Any], dict[str, str]]] = []
        self.inbox: list[Any] = []
        self.acked: list[str] = []
        self.fail = False

    def send(self, doc: dict[str, Any], refs: dict[str, str]) -> str:
        if self.fail:
            raise ConnectionError("node down")
        self.sent.append((doc, refs))
        return f"0190f5a0-0000-7000-8000-{len(self.sent):012d}"

    def poll(self) -> list[Any]:
        return list(self.inbox)

    def ack(self, event_id: str) -> None:
        self.acked.append(event_id)
        self.inbox = [e for e in self.inbox if e.event_id != event_id]


def _client(url: str) -> PrimeroClient:
    return PrimeroClient(url, username=USER, password=PASSWORD, per=2)


def test_round_trip_identity_services_status(fake_primero: str, tmp_path: Path) -> None:
    mapping = adapter.load_mapping(None)
    seeded = httpx.post(fake_primero + "/__seed", json={"data": CASE}).json()["data"]
    for i in range(3):  # cases without a network referral, to exercise pagination (per=2)
        httpx.post(fake_primero + "/__seed", json={"data": {"name_first": f"X{i}", "sex": "male"}})
    node = Node()
    sync = PrimeroSync(tmp_path / "a", _client(fake_primero), mapping, node.send, node.poll,
                       node.ack)
    stats = sync.poll_once()
    assert stats.errors == []
    assert stats.scanned == 4 and stats.sent == 1
    doc, refs = node.sent[0]
    assert refs["primero_record_id"] == seeded["id"]
    assert refs["source_key"] == f"primero:{seeded['id']}:6dd4bca7-5d10-4662-ade1-20fe99bef602"
    assert doc["subject"]["given_name"] == "María José"
    assert doc["subject"]["nationality"] == ["VE"]
    assert doc["services"] == ["legal_aid"]
    assert doc["concerns"] == ["sgbv_survivor", "trafficking_victim"]
    assert doc["priority"] == "high"
    assert {"system": "primero", "value": seeded["case_id_display"]} in \
        doc["subject"]["identifiers"]
    assert {"system": "primero_record", "value": seeded["id"]} in doc["subject"]["identifiers"]
    network_id = sync.outbound_rows()[0]["network_referral_id"]
    refs_in_primero = httpx.get(f"{fake_primero}/api/v2/cases/{seeded['id']}/referrals",
                                auth=(USER, PASSWORD)).json()["data"]
    assert len(refs_in_primero) == 1 and refs_in_primero[0]["remote"] is True

    # the receiving organisation's connector writes the referral into its Primero
    node_b = Node()
    node_b.inbox.append(InboundReferral("ev-1", network_id, doc))
    sync_b = PrimeroSync(tmp_path / "b", _client(fake_primero), mapping, node_b.send,
                         node_b.poll, node_b.ack)
    st = sync_b.poll_once()
    assert st.errors == [] and st.cases_written == 1 and node_b.acked == ["ev-1"]
    created = httpx.get(fake_primero + "/api/v2/cases", params={"rssn_referral_id": network_id},
                        auth=(USER, PASSWORD)).json()["data"]
    assert len(created) == 1
    c = created[0]
    for k in ("name_first", "name_last", "name_middle", "sex", "date_of_birth", "age",
              "nationality", "unhcr_individual_no"):
        assert c[k] == CASE[k], k
    assert c["services_section"][0]["service_type"] == "legal_assistance_service"
    assert sorted(c["protection_concerns"]) == sorted(CASE["protection_concerns"])
    # re-reading the written case yields the same identity and services: convert it as outbound
    # (as if a caseworker there referred it on: drop the inbound marker, add an intake date)
    reread = {**c, "registration_date": "2026-11-21",
              "services_section": [{**c["services_section"][0], "rssn_referral_id": None}]}
    again = adapter.convert(SourceRecord(c["case_id_display"], reread), mapping, ConvertOptions())
    assert isinstance(again[0], Converted), again
    doc2 = again[0].document
    for k in ("given_name", "family_name", "other_names", "sex", "date_of_birth", "nationality"):
        assert doc2["subject"][k] == doc["subject"][k], k
    assert doc2["services"] == doc["services"] and doc2["concerns"] == doc["concerns"]
    # replayed inbound event: written once
    node_b.inbox.append(InboundReferral("ev-1", network_id, doc))
    assert sync_b.poll_once().cases_written == 0

    # decisions come back to the sender's Primero
    node.inbox.append(InboundDecision("ev-2", network_id, "accepted"))
    st = sync.poll_once()
    assert st.decisions_written == 1 and st.sent == 0
    node.inbox.append(InboundDecision("ev-3", network_id, "completed", "Atendida el 21/11"))
    sync.poll_once()
    t = httpx.get(f"{fake_primero}/api/v2/cases/{seeded['id']}/referrals",
                  auth=(USER, PASSWORD)).json()["data"][0]
    assert t["status"] == "done" and t["rejection_note"] == "Atendida el 21/11"

    # an unknown status is never read as accepted
    node.inbox.append(InboundDecision("ev-4", network_id, "bogus"))
    assert sync.poll_once().decisions_written == 0
    sync.close()

    # restart: cursor and work survive, nothing is sent twice
    sync2 = PrimeroSync(tmp_path / "a", _client(fake_primero), mapping, node.send, node.poll,
                        node.ack)
    assert sync2.cursor is not None
    assert sync2.poll_once().sent == 0 and len(node.sent) == 1
    sync2.close()


def test_send_failure_keeps_work_pending(fake_primero: str, tmp_path: Path) -> None:
    mapping = adapter.load_mapping(None)
    httpx.post(fake_primero + "/__seed", json={"data": CASE})
    node = Node()
    node.fail = True
    sync = PrimeroSync(tmp_path, _client(fake_primero), mapping, node.send, node.poll, node.ack)
    st = sync.poll_once()
    assert st.sent == 0 and st.errors
    assert [r["state"] for r in sync.outbound_rows()] == ["pending"]
    sync.close()
    node.fail = False
    sync = PrimeroSync(tmp_path, _client(fake_primero), mapping, node.send, node.poll, node.ack)
    assert sync.poll_once().sent == 1
    assert [r["state"] for r in sync.outbound_rows()] == ["sent"]
    sync.close()


def test_bad_credentials_and_stale_mapping(fake_primero: str, tmp_path: Path) -> None:
    from adapters.primero.client import PrimeroError

    node = Node()
    with pytest.raises(PrimeroError) as e:
        PrimeroSync(tmp_path, PrimeroClient(fake_primero, username=USER, password="wrong"),
                    adapter.load_mapping(None), node.send, node.poll)
    assert e.value.status == 401
    stale = tmp_path / "m.json"
    stale.write_text('{"extends": "default", "options": {"sex": {"other_b25f252": "unknown"}}}')
    with pytest.raises(MappingError) as me:
        PrimeroSync(tmp_path, PrimeroClient(fake_primero, token="test-idp-token"),
                    adapter.load_mapping(stale), node.send, node.poll)
    assert "other_b25f252" in str(me.value)
