"""The local API (in-process TestClient, node talking to a real hub) and webhooks (a real
receiver on a loopback socket): signing, retries, the delivery log."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
from fastapi.testclient import TestClient

from node.api.deps import create_api_key
from node.app import create_app
from node.hub_client import HubUnavailable
from node.samples import sample_referral
from node.webhooks import WebhookDeliverer, add_webhook, delivery_log, verify_signature
from tests.node.conftest import pump


@pytest.fixture
def api(make_node):
    a = make_node("shelter-mx", "Shelter", "MX")
    b = make_node("legal-gt", "Legal Aid", "GT")
    key_a = create_api_key(a.engine, "case-system")
    key_b = create_api_key(b.engine, "case-system")
    ca = TestClient(create_app(a.settings, node=a, start_workers=False))
    cb = TestClient(create_app(b.settings, node=b, start_workers=False))
    ca.headers["Authorization"] = f"Bearer {key_a}"
    cb.headers["Authorization"] = f"Bearer {key_b}"
    return a, b, ca, cb


def test_api_requires_a_key(api):
    a, _, ca, _ = api
    r = TestClient(create_app(a.settings, node=a, start_workers=False)).get("/api/v1/referrals")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "unauthorized"
    r = ca.get("/api/v1/referrals", headers={"Authorization": "Bearer rssn_wrong"})
    assert r.status_code == 401


def test_api_referral_flow(api):
    a, b, ca, cb = api
    r = ca.post("/api/v1/referrals", json={"to": b.node_id, "referral": sample_referral(0)})
    assert r.status_code == 202, r.text
    rid = r.json()["id"]
    assert r.json()["status"] == "requested"
    pump(a, b)
    items = cb.get("/api/v1/referrals", params={"direction": "inbound"}).json()["items"]
    assert [i["id"] for i in items] == [rid]
    assert {"id", "direction", "from", "to", "status", "updated_at"} <= set(items[0])
    assert items[0]["from"] == a.node_id and items[0]["status"] == "received"
    assert cb.get("/api/v1/referrals", params={"status": "accepted"}).json()["items"] == []
    r = cb.post(f"/api/v1/referrals/{rid}/status", json={"status": "completed"})
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "invalid_transition"
    r = cb.post(f"/api/v1/referrals/{rid}/status", json={"status": "accepted", "note": "ok"})
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    pump(a, b)
    d = ca.get(f"/api/v1/referrals/{rid}").json()
    assert d["status"] == "accepted"
    assert d["referral"]["priority"] == "high"
    assert [(h["actor"], h["event"]) for h in d["history"]] == [
        (a.node_id, "requested"), (b.node_id, "received"), (b.node_id, "accepted")]
    assert all(h["at"].endswith("Z") for h in d["history"])
    r = ca.post(f"/api/v1/referrals/{rid}/withdraw-consent", json={"note": "asked us to stop"})
    assert r.status_code == 202 and r.json()["restricted"] is True
    pump(a, b)
    assert cb.get(f"/api/v1/referrals/{rid}").json()["restricted"] is True
    assert ca.get(f"/api/v1/referrals/{rid}").json()["consent_withdrawal_acknowledged_at"]
    assert ca.get("/api/v1/referrals/0190b1d6-0000-7000-8000-000000000000").status_code == 404


def test_api_refusals_are_problems(api):
    _, b, ca, _ = api
    bad_consent = sample_referral(0, consent_status="refused")
    r = ca.post("/api/v1/referrals", json={"to": b.node_id, "referral": bad_consent})
    assert r.status_code == 422 and r.json()["code"] == "consent_missing"
    doc = sample_referral(0)
    del doc["consent"]
    r = ca.post("/api/v1/referrals", json={"to": b.node_id, "referral": doc})
    assert r.status_code == 422 and r.json()["code"] == "consent_missing"
    doc = sample_referral(0)
    doc["subject"]["secret_field"] = "Ana Lopez"
    r = ca.post("/api/v1/referrals", json={"to": b.node_id, "referral": doc})
    assert r.status_code == 400 and r.json()["code"] == "malformed"
    assert "Ana Lopez" not in r.text and "secret_field" not in r.text
    r = ca.post("/api/v1/referrals", json={"to": "nobody-x", "referral": sample_referral(0)})
    assert r.status_code == 422 and r.json()["code"] == "wrong_recipient"
    r = ca.post("/api/v1/referrals", json={"to": b.node_id})
    assert r.status_code == 422 and r.json()["code"] == "validation_error"
    assert ca.get("/api/v1/referrals").json()["items"] == []


def test_api_directory_and_docs(api):
    a, b, ca, _ = api
    d = ca.get("/api/v1/directory").json()
    # the hub is shared by this session's tests: everyone enrolled so far is a member
    assert {i["node_id"] for i in d["items"]} >= {a.node_id, b.node_id}
    gt = next(i for i in d["items"] if i["node_id"] == b.node_id)
    assert gt["organization"] == "Legal Aid" and gt["country"] == "GT"
    assert gt["signing_key_fingerprint"].startswith("SHA256:")
    assert ca.get("/docs").status_code == 200
    paths = ca.get("/openapi.json").json()["paths"]
    assert "/api/v1/referrals/{referral_id}/withdraw-consent" in paths
    s = ca.get("/api/v1/status").json()
    assert s["hub_reachable"] is True and s["outbox_depth"] == 0


def test_api_takes_referrals_while_the_hub_is_unreachable(make_node, proxy):
    a = make_node("shelter-mx", via_proxy=True)
    b = make_node("legal-gt")
    ca = TestClient(create_app(a.settings, node=a, start_workers=False))
    ca.headers["Authorization"] = f"Bearer {create_api_key(a.engine, 'case-system')}"
    a.refresh_directory(force=True)  # it knows legal-gt, then the line to the hub is cut
    proxy.down()
    r = ca.post("/api/v1/referrals", json={"to": b.node_id, "referral": sample_referral(0)})
    assert r.status_code == 202, r.text
    s = ca.get("/api/v1/status").json()
    assert s["hub_reachable"] is False and s["outbox_depth"] == 1
    with pytest.raises(HubUnavailable):
        pump(a)
    proxy.up()
    pump(a, b)
    assert ca.get(f"/api/v1/referrals/{r.json()['id']}").json()["status"] == "received"
    assert ca.get("/api/v1/status").json()["outbox_depth"] == 0


class _Recorder(BaseHTTPRequestHandler):
    calls: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    fail_first = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).calls.append((dict(self.headers), body))
        if type(self).fail_first > 0:
            type(self).fail_first -= 1
            self.send_response(500)
        else:
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_webhooks_signed_retried_logged(make_node):
    a = make_node("shelter-mx")
    b = make_node("legal-gt")
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.calls = []
    _Recorder.fail_first = 1
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        _, secret = add_webhook(b.engine, url, ["referral.received", "referral.status"])
        with pytest.raises(ValueError):
            add_webhook(b.engine, url, ["referral.nope"])
        rid = a.create_referral(b.node_id, sample_referral(0))["id"]
        pump(a, b)
        deliverer = WebhookDeliverer(b)
        rows = deliverer.due()
        assert len(rows) == 1
        assert deliverer.deliver(rows[0]) is False  # 500: retried later with backoff
        assert deliverer.due() == []
        log = delivery_log(b.engine)
        assert log[0]["state"] == "pending" and log[0]["last_status_code"] == 500
        import sqlalchemy as sa

        from node.store.queries import WEBHOOK_DELIVERIES, now_utc

        with b.engine.begin() as conn:  # time passes
            conn.execute(sa.update(WEBHOOK_DELIVERIES).values(next_attempt_at=now_utc()))
        assert deliverer.deliver(deliverer.due()[0]) is True
        deliverer.close()
        headers, body = _Recorder.calls[-1]
        assert verify_signature(secret, body, headers["X-RSSN-Signature"])
        assert not verify_signature("whsec_other", body, headers["X-RSSN-Signature"])
        event = json.loads(body)
        assert event["type"] == "referral.received" == headers["X-RSSN-Event"]
        assert event["data"]["referral_id"] == rid
        assert "subject" not in body.decode()  # ids and statuses only
        log = delivery_log(b.engine)
        assert log[0]["state"] == "delivered" and log[0]["attempts"] == 2
    finally:
        server.shutdown()


def test_metrics_are_content_free(api):
    _, b, ca, _ = api
    ca.post("/api/v1/referrals", json={"to": b.node_id, "referral": sample_referral(0)})
    text = ca.get("/metrics").text
    assert 'rssn_node_outbox_messages{kind="referral",state="pending"} 1.0' in text
    assert 'rssn_node_referrals{direction="outbound",status="requested"} 1.0' in text
    assert "fictional" not in text
