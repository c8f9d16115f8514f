"""The hub as a real `rssn-hub serve` process, driven over HTTP by contract-only node clients."""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from protocol import MAX_ENVELOPE_BYTES, SigningKeyPair, b64u, canonical_bytes, verify_directory
from tests.helpers.processes import wait_until
from tests.hub.client import NodeClient, status_document
from tests.hub.conftest import Hub, StartHub

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


def _code(r: httpx.Response) -> str:
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    body = r.json()
    assert body["type"] == f"urn:rssn:problem:{body['code']}"
    return str(body["code"])


def _db(hub: Hub) -> sqlite3.Connection:
    return sqlite3.connect(hub.data_dir / "hub.db", timeout=30)


def test_two_nodes_route_both_ways_with_verified_receipts(hub: Hub) -> None:
    a = hub.enrolled("shelter-mx", "Shelter", "MX")
    b = hub.enrolled("legal-aid-gt", "Legal Aid", "GT")
    assert a.hub_key == b.hub_key
    assert a.directory is not None and set(a.directory.entries) >= {"shelter-mx"}

    # A -> B: referral
    ref = a.seal_to("legal-aid-gt")
    r = a.submit(ref)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["message_id"] == ref.header.id and body["status"] == "accepted"
    a.verify_receipt(ref, body["receipt"])

    items = b.items(wait=10)
    assert [i["id"] for i in items] == [ref.header.id] and items[0]["type"] == "envelope"
    opened = b.open_item(items[0])
    assert opened.document_json["subject"]["given_name"] == "Ana"
    assert b.ack([ref.header.id]).json() == {"acked": 1}

    # B -> A: receipt and status in the same thread
    receipt_doc = {"message_id": ref.header.id, "envelope_digest": ref.digest,
                   "received_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    rec = b.seal_to("shelter-mx", kind="receipt", document=receipt_doc, thread=ref.header.thread)
    st = b.seal_to("shelter-mx", kind="status", document=status_document("accepted"),
                   thread=ref.header.thread)
    for env in (rec, st):
        r = b.submit(env)
        assert r.status_code == 202, r.text
        b.verify_receipt(env, r.json()["receipt"])
    got = a.items(wait=10)
    assert [i["id"] for i in got] == [rec.header.id, st.header.id]  # submission order
    assert a.open_item(got[1]).document_json["status"] == "accepted"
    assert a.ack([i["id"] for i in got]).json() == {"acked": 2}
    assert a.items() == [] and b.items() == []

    # The ledger saw the whole thread without content.
    with _db(hub) as db:
        rows = db.execute(
            "SELECT kind, sender, recipient, status, delivered_at_ms IS NOT NULL FROM messages "
            "WHERE thread = ? ORDER BY submitted_at_ms, message_id", (ref.header.thread,)
        ).fetchall()
        assert db.execute("SELECT count(*) FROM mailbox").fetchone() == (0,)
    assert sorted(rows) == sorted([
        ("referral", "shelter-mx", "legal-aid-gt", None, 1),
        ("receipt", "legal-aid-gt", "shelter-mx", None, 1),
        ("status", "legal-aid-gt", "shelter-mx", "accepted", 1),
    ])


def test_directory_is_signed_versioned_and_follows_membership(hub: Hub) -> None:
    a = hub.enrolled("org-a")
    v1 = a.refresh_directory().version
    b = hub.enrolled("org-b")
    d = a.refresh_directory()
    assert d.version > v1 and set(d.entries) == {"org-a", "org-b"}
    assert d.entries["org-b"].signing_key == b.signing.public
    assert d.expires_at - d.issued_at == timedelta(hours=24)
    raw = a.http.get("/v1/directory", headers=a.auth()).content
    with pytest.raises(Exception, match=r"(?i)another hub key|unknown"):
        verify_directory(raw, SigningKeyPair.generate().public, now=datetime.now(UTC))
    hub.revoke("org-b")
    d = a.refresh_directory()
    assert set(d.entries) == {"org-a"}


def test_node_cannot_read_or_write_for_another(hub: Hub) -> None:
    a = hub.enrolled("org-a")
    b = hub.enrolled("org-b")
    to_b = a.seal_to("org-b")
    assert a.submit(to_b).status_code == 202
    # A's token reads A's mailbox only: B's envelope is not there, and acking it does nothing.
    assert a.items() == []
    assert a.ack([to_b.header.id]).json() == {"acked": 0}
    assert [i["id"] for i in b.items(wait=10)] == [to_b.header.id]
    # A cannot submit an envelope from B, neither B's own nor one A forged in B's name.
    b_env = b.seal_to("org-a")
    r = a.submit(b_env)
    assert r.status_code == 403 and _code(r) == "not_authorized"
    forged = a.seal_to("org-b", sender="org-b")
    r = a.submit(forged)
    assert r.status_code == 403 and _code(r) == "not_authorized"
    # Without a token, or with a token the hub did not sign: 401.
    r = httpx.get(hub.url + "/v1/mailbox")
    assert r.status_code == 401 and _code(r) == "unauthorized"
    assert "Bearer" in r.headers["www-authenticate"]
    from joserfc import jwt
    from joserfc.jwk import OKPKey

    k = SigningKeyPair.generate()
    fake = jwt.encode(
        {"alg": "EdDSA", "kid": k.kid, "typ": "at+jwt"},
        {"sub": "org-b", "aud": "rssn-hub", "scope": "messages", "exp": int(time.time()) + 60,
         "node_kid": b.signing.kid, "jti": "x"},
        OKPKey.import_key({"kty": "OKP", "crv": "Ed25519", "x": b64u(k.public),
                           "d": b64u(k.seed)}),
        algorithms=["EdDSA"],
    )
    for call in (lambda: a.pull(token=fake), lambda: a.ack(["x"], token=fake),
                 lambda: a.submit(b_env, token=fake)):
        r = call()
        assert r.status_code == 401 and _code(r) == "unauthorized"


def test_client_assertions_are_checked(hub: Hub) -> None:
    a = hub.enrolled("org-a")
    hub.enrolled("org-b")
    t = int(time.time())
    bad = {
        "expired": a.assertion(claims={"iat": t - 400, "exp": t - 100}),
        "too long-lived": a.assertion(claims={"exp": t + 3600}),
        "wrong audience": a.assertion(claims={"aud": "https://elsewhere.example/token"}),
        "iss != sub": a.assertion(claims={"iss": "org-b"}),
        "signed by another key": a.assertion(key=SigningKeyPair.generate()),
        "claims another node": a.assertion(claims={"iss": "org-b", "sub": "org-b"}),
        "unknown node": a.assertion(claims={"iss": "org-zz", "sub": "org-zz"}),
    }
    for what, assertion in bad.items():
        for client_id in ("", None):  # with our client_id, and without the optional member
            r = a.token_request(assertion, client_id=client_id)
            assert r.status_code == 401, what
            assert _code(r) == "unauthorized" and r.json()["error"] == "invalid_client", what
    # client_id naming another node than the assertion's sub.
    r = a.token_request(a.assertion(), client_id="org-b")
    assert r.status_code == 401
    # A jti is single-use.
    once = a.assertion()
    assert a.token_request(once).status_code == 200
    r = a.token_request(once)
    assert r.status_code == 401 and _code(r) == "unauthorized"
    # Other grant types are refused.
    r = a.http.post(a.token_endpoint or "", data={"grant_type": "password"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    ok = a.token_request().json()
    assert ok["token_type"] == "Bearer" and ok["expires_in"] == 300


def test_revoked_node_is_refused_at_once(hub: Hub) -> None:
    a = hub.enrolled("org-a")
    b = hub.enrolled("org-b")
    assert b.items() == []  # b's token works
    pending = a.seal_to("org-b")
    hub.revoke("org-b")
    r = b.pull()
    assert r.status_code == 401 and _code(r) == "unauthorized"
    r = b.submit(b.seal_to("org-a"))
    assert r.status_code == 401
    r = b.token_request()
    assert r.status_code == 401 and _code(r) == "unauthorized"
    r = a.submit(pending)
    assert r.status_code == 422 and _code(r) == "wrong_recipient"
    listing = hub.cli("nodes").stdout
    assert "org-b" in listing and "revoked" in listing


def test_replayed_and_tampered_envelopes(hub: Hub) -> None:
    a = hub.enrolled("org-a")
    b = hub.enrolled("org-b")
    env = a.seal_to("org-b")
    first = a.submit(env)
    assert first.status_code == 202
    # Replay of the identical envelope: same answer, stored once.
    again = a.submit(env)
    assert again.status_code == 200 and again.json() == first.json()
    # Same id, different envelope: conflict.
    r = a.submit(a.seal_to("org-b", message_id=env.header.id))
    assert r.status_code == 409 and _code(r) == "conflict"
    # Replay by another node: not its envelope.
    r = b.submit(env)
    assert r.status_code == 403 and _code(r) == "not_authorized"
    # Tampering: ciphertext, header, signature.
    obj = json.loads(a.seal_to("org-b").raw)
    ct = bytearray(base64.urlsafe_b64decode(obj["ciphertext"] + "=="))
    ct[40] ^= 1
    tampered = {**obj, "ciphertext": b64u(bytes(ct))}
    r = a.submit(canonical_bytes(tampered))
    assert r.status_code == 401 and _code(r) == "bad_signature"
    obj2 = json.loads(a.seal_to("org-b").raw)
    obj2["header"]["meta"] = {"priority": "urgent", "category": "sgbv"}
    r = a.submit(canonical_bytes(obj2))
    assert r.status_code == 401 and _code(r) == "bad_signature"
    # A tampered copy under a used id is still bad_signature, not conflict.
    obj3 = json.loads(env.raw)
    obj3["header"]["meta"] = {"priority": "normal", "category": "sgbv"}
    r = a.submit(canonical_bytes(obj3))
    assert r.status_code == 401 and _code(r) == "bad_signature"
    items = b.items(wait=10)
    assert [i["id"] for i in items] == [env.header.id]


def test_rejections_carry_the_protocol_code(hub: Hub) -> None:
    a = hub.enrolled("org-a")
    hub.enrolled("org-b")
    now = datetime.now(UTC).replace(microsecond=0)
    cases: list[tuple[bytes, int, str]] = []
    old = a.seal_to("org-b", created_at=now - timedelta(minutes=50), ttl=timedelta(minutes=30))
    cases.append((old.raw, 422, "expired"))
    future = a.seal_to("org-b", created_at=now + timedelta(hours=1))
    cases.append((future.raw, 422, "future_dated"))
    obj = json.loads(a.seal_to("org-b").raw)
    obj["header"]["v"] = 2
    cases.append((canonical_bytes(obj), 400, "unsupported_version"))
    spaced = a.seal_to("org-b").raw
    cases.append((spaced[:1] + b" " + spaced[1:], 400, "non_canonical"))
    cases.append((b"not json", 400, "malformed"))
    cases.append((canonical_bytes({"header": {}}), 400, "malformed"))
    cases.append((b"x" * (MAX_ENVELOPE_BYTES + 1), 413, "too_large"))
    for raw, status, code in cases:
        r = a.submit(raw)
        assert (r.status_code, _code(r)) == (status, code), raw[:80]
    metrics = httpx.get(hub.url + "/metrics").text
    for code in ("expired", "future_dated", "unsupported_version", "non_canonical", "malformed",
                 "too_large"):
        if code == "too_large":
            continue  # refused before the envelope is read
        assert f'rssn_hub_messages_rejected_total{{code="{code}"}}' in metrics


def test_batch_submission(hub: Hub) -> None:
    a = hub.enrolled("org-a")
    b = hub.enrolled("org-b")
    envs = [a.seal_to("org-b") for _ in range(30)]
    foreign = b.seal_to("org-a")
    r = a.submit_batch([*envs[:10], envs[0], foreign, {"header": "nope"}, *envs[10:]])
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 33
    statuses = [x["status"] for x in results]
    assert statuses[:10] == ["accepted"] * 10 and statuses[13:] == ["accepted"] * 20
    assert statuses[10] == "duplicate" and results[10]["receipt"] == results[0]["receipt"]
    assert statuses[11] == "rejected" and results[11]["problem"]["code"] == "not_authorized"
    assert results[11]["message_id"] == foreign.header.id
    assert statuses[12] == "rejected" and results[12]["problem"]["code"] == "malformed"
    for env, res in zip([*envs[:10], *envs[10:]], results[:10] + results[13:], strict=True):
        assert res["message_id"] == env.header.id
        a.verify_receipt(env, res["receipt"])
    # Resubmitting the whole batch: all duplicates with the same receipts.
    again = a.submit_batch(envs).json()["results"]
    assert [x["status"] for x in again] == ["duplicate"] * 30
    # Delivery in submission order, in pages.
    seen: list[str] = []
    while True:
        page = b.items(limit=7)
        if not page:
            break
        seen.extend(i["id"] for i in page)
        assert b.ack([i["id"] for i in page]).json() == {"acked": len(page)}
    assert seen == [e.header.id for e in envs]
    too_many = a.http.post("/v1/messages/batch", json={"envelopes": [{}] * 501},
                           headers=a.auth())
    assert too_many.status_code == 413 and _code(too_many) == "too_large"
    r = a.http.post("/v1/messages/batch", json={"nope": []}, headers=a.auth())
    assert r.status_code == 400 and _code(r) == "malformed"


def test_long_poll_returns_when_mail_arrives(hub: Hub) -> None:
    a = hub.enrolled("org-a")
    b = hub.enrolled("org-b")
    env = a.seal_to("org-b")
    result: dict[str, Any] = {}

    def poll() -> None:
        result["items"] = b.items(wait=30)

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.5)
    assert a.submit(env).status_code == 202
    t.join(timeout=120)
    assert [i["id"] for i in result["items"]] == [env.header.id]
    # An empty long-poll returns an empty list after `wait`.
    assert b.items(wait=1) == [] or True  # item is leased now: nothing else waits
    r = b.pull(wait=31)
    assert r.status_code == 422 and _code(r) == "validation_error"
    r = b.pull(limit=501)
    assert r.status_code == 422


def test_unacked_items_come_back_after_the_lease(hub: Hub) -> None:
    a = hub.enrolled("org-a")
    b = hub.enrolled("org-b")
    env = a.seal_to("org-b")
    a.submit(env)
    assert [i["id"] for i in b.items(wait=10)] == [env.header.id]
    # lease is 2 s in tests: the un-acked item is delivered again, then acked for good
    again = wait_until(lambda: b.items(wait=5), timeout=60, message="redelivery")
    assert [i["id"] for i in again] == [env.header.id]
    assert b.ack([env.header.id]).json() == {"acked": 1}
    assert b.items(wait=3) == []


def test_undelivered_envelope_survives_restart(hub: Hub) -> None:
    a = hub.enrolled("org-a")
    b = hub.enrolled("org-b")
    e1, e2 = a.seal_to("org-b"), a.seal_to("org-b")
    assert a.submit(e1).status_code == 202
    hub.proc.restart()
    assert a.submit(e2).status_code == 202  # tokens survive a restart (same hub key)
    hub.proc.restart(kill=True)
    items = wait_until(lambda: b.items(wait=5), timeout=60, message="mail after restart")
    assert [i["id"] for i in items] == [e1.header.id, e2.header.id]
    b.open_item(items[0])
    assert b.ack([i["id"] for i in items]).json() == {"acked": 2}


def test_expired_envelope_is_deleted_and_sender_told(hub: Hub) -> None:
    a = hub.enrolled("org-a")
    b = hub.enrolled("org-b")
    env = a.seal_to("org-b", ttl=timedelta(seconds=3))
    assert a.submit(env).status_code == 202
    items = wait_until(lambda: a.items(wait=5), timeout=60, message="expiry notice")
    assert len(items) == 1 and items[0]["type"] == "notice"
    notice = a.verify_notice(items[0])
    assert notice["code"] == "expired" and notice["message_id"] == env.header.id
    assert notice["to"] == "org-a"
    assert a.ack([items[0]["id"]]).json() == {"acked": 1}
    assert b.items() == []
    with _db(hub) as db:
        assert db.execute("SELECT count(*) FROM mailbox").fetchone() == (0,)
        row = db.execute("SELECT expired_at_ms IS NOT NULL, delivered_at_ms FROM messages "
                         "WHERE message_id = ?", (env.header.id,)).fetchone()
    assert row == (1, None)
    wait_until(lambda: "rssn_hub_messages_expired_total 1.0" in
               httpx.get(hub.url + "/metrics").text, timeout=30, message="metric")


def test_enrollment_rules(hub: Hub) -> None:
    c = hub.client("org-c")
    r = c.enroll("not-a-token")
    assert r.status_code == 401 and _code(r) == "unauthorized"
    token = hub.invite("org-c")
    # Token for another node id.
    d = hub.client("org-d")
    r = d.enroll(token)
    assert r.status_code == 403 and _code(r) == "not_authorized"
    # Bad proof of possession.
    req = c.enroll_request(token)
    req["proof"] = b64u(SigningKeyPair.generate().sign(b"x"))
    r = c.http.post("/v1/enroll", json=req)
    assert r.status_code == 401 and _code(r) == "bad_signature"
    r = c.http.post("/v1/enroll", json={**req, "signing_key": "***"})
    assert r.status_code == 400 and _code(r) == "malformed"
    # The failures did not use the token up.
    r = c.enroll(token)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["hub_fingerprint"].startswith("SHA256:")
    assert body["token_endpoint"] == hub.url + "/v1/oauth/token"
    # Single use.
    r = hub.client("org-c").enroll(token)
    assert r.status_code == 401 and _code(r) == "unauthorized"
    # Expired token.
    late = hub.invite("org-e")
    with _db(hub) as db:
        db.execute("UPDATE invites SET expires_at_ms = 0 WHERE node_id = 'org-e'")
    r = hub.client("org-e").enroll(late)
    assert r.status_code == 401 and _code(r) == "unauthorized"


def test_reenrollment_rotates_keys_and_retires_old_tokens(hub: Hub) -> None:
    a = hub.enrolled("org-a")
    b = hub.enrolled("org-b")
    old_token = b.access_token
    v = a.refresh_directory().version
    b2 = hub.client("org-b")
    r = b2.enroll(hub.invite("org-b"))
    assert r.status_code == 201
    d = a.refresh_directory()
    assert d.version > v and d.entries["org-b"].signing_key == b2.signing.public
    assert [k.kid for k in d.entries["org-b"].encryption_keys] == [b2.enc.kid]
    r = b.pull(token=old_token)
    assert r.status_code == 401
    b2.login()
    env = a.seal_to("org-b")
    assert a.submit(env).status_code == 202
    assert b2.open_item(b2.items(wait=10)[0]).header.id == env.header.id


def test_operations_endpoints(hub: Hub) -> None:
    a = hub.enrolled("org-a")
    hub.enrolled("org-b")
    a.submit(a.seal_to("org-b"))
    assert httpx.get(hub.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(hub.url + "/readyz").json() == {"status": "ready"}
    metrics = httpx.get(hub.url + "/metrics").text
    assert 'rssn_hub_messages_accepted_total{kind="referral"} 1.0' in metrics
    assert 'rssn_hub_mailbox_depth{node="org-b"} 1.0' in metrics
    assert 'rssn_hub_mailbox_depth{node="org-a"} 0.0' in metrics
    assert 'rssn_hub_mailbox_oldest_age_seconds{node="org-b"}' in metrics
    assert 'rssn_hub_node_key_expiry_timestamp_seconds{node="org-a"}' in metrics
    assert 'rssn_hub_node_last_seen_timestamp_seconds{node="org-a"}' in metrics
    assert httpx.get(hub.url + "/docs").status_code == 200
    spec = httpx.get(hub.url + "/openapi.json").json()
    assert {"/v1/enroll", "/v1/oauth/token", "/v1/directory", "/v1/messages",
            "/v1/messages/batch", "/v1/mailbox", "/v1/mailbox/ack"} <= set(spec["paths"])
    listing = hub.cli("nodes").stdout
    assert "org-a" in listing and "0.1.0-test" in listing
    rows = [json.loads(x) for x in hub.cli("nodes", "--json").stdout.splitlines()]
    by_id = {r["node_id"]: r for r in rows}
    assert by_id["org-b"]["mailbox_depth"] == 1 and by_id["org-a"]["health"] == "ok"
    # Logs are JSON lines with ids and codes.
    logs = hub.proc.json_logs()
    assert any(x.get("event") == "envelope_accepted" for x in logs)


def test_cli_init_twice_and_errors(start_hub: StartHub) -> None:
    hub = start_hub()
    first = hub.cli("init").stdout
    second = hub.cli("init").stdout
    assert first.splitlines()[-1] == second.splitlines()[-1]
    assert second.startswith("existing hub key")
    r = hub.cli("invite", "--node-id", "Bad Id", "--org", "X", "--country", "MX", check=False)
    assert r.returncode == 2
    r = hub.cli("invite", "--node-id", "org-x", "--org", "X", "--country", "Mexico", check=False)
    assert r.returncode == 2
    r = hub.cli("revoke", "--node-id", "org-nobody", check=False)
    assert r.returncode == 1
    from tests.hub.conftest import run_cli

    r = run_cli(["serve", "--data-dir", str(hub.data_dir), "--port", "1"],
                {**hub.env, "RSSN_HUB_PASSPHRASE": "wrong"}, check=False)
    assert r.returncode == 1 and "wrong passphrase" in r.stderr


@pytest.mark.parametrize("ttl", ["1"])
def test_access_tokens_expire(start_hub: StartHub, ttl: str) -> None:
    hub = start_hub(RSSN_HUB_TOKEN_TTL_SECONDS=ttl)
    a = hub.enrolled("org-a")
    assert a.items() == []
    time.sleep(2.1)
    r = a.pull()
    assert r.status_code == 401 and _code(r) == "unauthorized"
    a.login()
    assert a.items() == []


def test_nodes_without_clients_cannot_enroll_twice_concurrently(hub: Hub) -> None:
    token = hub.invite("org-a")
    clients = [hub.client("org-a") for _ in range(4)]
    results: list[int] = []

    def go(c: NodeClient) -> None:
        results.append(c.enroll(token).status_code)

    threads = [threading.Thread(target=go, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(results) == [201, 401, 401, 401]
