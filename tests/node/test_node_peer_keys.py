"""Key continuity (node/peers.py): a peer's signing key is pinned at first sight; a different
key in a later verified directory is held (nothing sealed to it, nothing accepted from it)
until an operator confirms the new fingerprint out of band."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from node.api.deps import create_api_key
from node.app import create_app
from node.cli import app as cli
from node.samples import sample_referral
from node.store.queries import OUTBOX, QUARANTINE
from protocol import fingerprint
from tests.helpers.processes import wait_until
from tests.hub.client import NodeClient
from tests.node.conftest import pump


def _one(node, query):
    with node.reader.connect() as conn:
        return conn.execute(query).scalar()


def test_key_change_is_pinned_detected_refused_and_cleared_by_trust(make_node, make_member, hub):
    a = make_node("shelter-mx", "Shelter", "MX")
    b = make_member("legal-gt", "Legal Aid", "GT")
    wait_until(lambda: b.node_id in a.refresh_directory(force=True).entries, timeout=30)
    # First sight pins the key.
    pin = a.peer_pins()[b.node_id]
    assert (pin.status, pin.fingerprint) == ("trusted", fingerprint(b.signing.public))
    key = create_api_key(a.engine, "case-system")
    api = TestClient(create_app(a.settings, node=a, start_workers=False))
    api.headers["Authorization"] = f"Bearer {key}"
    held = a.create_referral(b.node_id, sample_referral(1))["id"]  # sealed to the old key
    sealed = _one(a, sa.select(OUTBOX.c.envelope).where(OUTBOX.c.referral_id == held))

    # The hub operator re-enrolls b's id with its own keys: detected on the next directory.
    impostor = NodeClient(hub.url, b.node_id)
    assert impostor.enroll(hub.invite(b.node_id, "Legal Aid", "GT")).status_code == 201
    impostor.login()
    new_fp = fingerprint(impostor.signing.public)
    wait_until(lambda: a.refresh_directory(force=True) and
               a.peer_pins()[b.node_id].status == "changed", timeout=30)
    pin = a.peer_pins()[b.node_id]
    assert (pin.fingerprint, pin.new_fingerprint) == (fingerprint(b.signing.public), new_fp)
    entry = next(i for i in api.get("/api/v1/directory").json()["items"]
                 if i["node_id"] == b.node_id)
    assert entry["key_status"] == "changed" and entry["new_fingerprint"] == new_fp
    assert [c["node_id"] for c in api.get("/api/v1/status").json()["peer_keys_changed"]] == [
        b.node_id]

    # Nothing new is sealed to the new key: 409 unknown_key, never silently.
    r = api.post("/api/v1/referrals", json={"to": b.node_id, "referral": sample_referral(2)})
    assert r.status_code == 409 and r.headers["content-type"].startswith(
        "application/problem+json")
    assert r.json()["code"] == "unknown_key" and "peers trust" in r.json()["detail"]
    r = api.post(f"/api/v1/referrals/{held}/status", json={"status": "cancelled"})
    assert r.status_code == 409 and r.json()["code"] == "unknown_key"
    # What was sealed to the old key stays as it was.
    assert _one(a, sa.select(OUTBOX.c.envelope).where(OUTBOX.c.referral_id == held)) == sealed
    # Inbound envelopes signed by the new key are quarantined with unknown_key.
    env = impostor.seal_to(a.node_id)
    assert impostor.submit(env).status_code == 202
    pump(a)
    with a.reader.connect() as conn:
        codes = conn.execute(sa.select(QUARANTINE.c.code)
                             .where(QUARANTINE.c.message_id == env.header.id)).scalars().all()
    assert codes == ["unknown_key"]

    # A wrong fingerprint is refused and changes nothing.
    runner = CliRunner()
    wrong = runner.invoke(cli, ["peers", "trust", "--data-dir", str(a.settings.data_dir),
                                "--node-id", b.node_id, "--fingerprint",
                                fingerprint(b.signing.public)])
    assert wrong.exit_code != 0
    assert a.peer_pins()[b.node_id].status == "changed"
    listed = runner.invoke(cli, ["peers", "list", "--data-dir", str(a.settings.data_dir)])
    assert listed.exit_code == 0 and "CHANGED" in listed.output and new_fp in listed.output

    # The operator confirms the new fingerprint out of band: sending works again.
    ok = runner.invoke(cli, ["peers", "trust", "--data-dir", str(a.settings.data_dir),
                             "--node-id", b.node_id, "--fingerprint", new_fp])
    assert ok.exit_code == 0, ok.output
    r = api.post("/api/v1/referrals", json={"to": b.node_id, "referral": sample_referral(3)})
    assert r.status_code == 202, r.text
    pin = a.peer_pins()[b.node_id]
    assert (pin.status, pin.fingerprint) == ("trusted", new_fp)
    assert api.get("/api/v1/status").json()["peer_keys_changed"] == []
    impostor.close()
