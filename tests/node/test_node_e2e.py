"""Real processes: an `rssn-hub` and `rssn-node`s on loopback, talking HTTP.

These are the issue's "must show" tests: the lifecycle end to end, a receiver killed
in the middle of its inbox processing, and a recipient offline while 200 referrals
are sent. Every wait polls for a condition with a generous timeout.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from node.samples import sample_referral
from node.webhooks import verify_signature
from tests.helpers.processes import wait_until
from tests.node.net import Net, NodeProc, cli, wait_status


@pytest.fixture
def net(tmp_path: Path, spawn_service) -> Net:
    n = Net(tmp_path, spawn_service)
    n.start_hub()
    return n


def send(a: NodeProc, to: str, i: int) -> str:
    r = a.post("/api/v1/referrals", {"to": to, "referral": sample_referral(i)})
    assert r.status_code in (201, 202), r.text
    return str(r.json()["id"])


def db_rows(node: NodeProc, sql: str) -> list[tuple]:
    conn = sqlite3.connect(node.data_dir / "node.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.headers["X-RSSN-Signature"], body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_referral_accepted_end_to_end(net: Net):
    a = net.add_node("shelter-mx", "Casa Refugio", "MX")
    b = net.add_node("legal-gt", "Asistencia Legal", "GT", start=False)
    hook = HTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.received = []
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    secret = cli("node", "webhook", "add", "--data-dir", str(b.data_dir), "--url",
                 f"http://127.0.0.1:{hook.server_address[1]}/rssn", "--events",
                 "referral.received,referral.status", env=b.env).strip().splitlines()[-1]
    b.proc.start()
    directory = a.get("/api/v1/directory")["items"]
    assert {i["node_id"] for i in directory} >= {"shelter-mx", "legal-gt"}
    rid = send(a, "legal-gt", 0)
    wait_status(b, rid, "received")
    r = b.post(f"/api/v1/referrals/{rid}/status", {"status": "accepted", "note": "mañana 9h"})
    assert r.status_code == 200, r.text
    da = wait_status(a, rid, "accepted")
    db = b.get(f"/api/v1/referrals/{rid}")
    expected = [("shelter-mx", "requested"), ("legal-gt", "received"), ("legal-gt", "accepted")]
    assert [(h["actor"], h["event"]) for h in da["history"]] == expected
    assert [(h["actor"], h["event"]) for h in db["history"]] == expected
    assert da["history"][-1]["note"] == "mañana 9h"
    assert db["referral"] == da["referral"]
    # an illegal move is a 409 problem, and changes nothing
    r = a.post(f"/api/v1/referrals/{rid}/status", {"status": "completed"})
    assert r.status_code == 409 and r.json()["code"] == "invalid_transition"
    out = cli("node", "status", "--data-dir", str(a.data_dir), env=a.env)
    assert "hub reachable" in out and "True" in out
    wait_until(lambda: "outbox depth           0" in cli("node", "status", "--data-dir",
                                                        str(a.data_dir), env=a.env),
               timeout=60, message="outbox drained")
    # the case system behind B was told, with signed events
    wait_until(lambda: len(_Hook.received) >= 1, timeout=60, message="webhook delivered")
    sig, body = _Hook.received[0]
    assert verify_signature(secret, body, sig)
    assert json.loads(body)["data"]["referral_id"] == rid
    hook.shutdown()
    log = cli("node", "webhook", "log", "--data-dir", str(b.data_dir), env=b.env)
    assert '"state": "delivered"' in log
    # the hub goes down: the node still takes referrals, queues them and says so
    assert net.hub is not None
    net.hub.kill9()
    rid2 = send(a, "legal-gt", 1)
    status = cli("node", "status", "--data-dir", str(a.data_dir), env=a.env)
    assert "hub reachable          False" in status
    assert "outbox depth           1" in status
    assert "oldest unsent message  -" not in status
    net.hub.start()
    wait_status(b, rid2, "received", timeout=180)
    # a wrong passphrase is one clear line, not a traceback
    b.proc.terminate()
    bad = subprocess.run(
        [sys.executable, "-c", "from node.cli import main; main()", "serve", "--data-dir",
         str(b.data_dir), "--port", str(b.port)],
        env={**b.env, "RSSN_NODE_PASSPHRASE": "not it"}, capture_output=True, text=True,
        timeout=120, check=False)
    assert bad.returncode == 1
    assert "error: wrong passphrase" in bad.stderr and "Traceback" not in bad.stderr


def _assert_exactly_once(a: NodeProc, b: NodeProc, ids: list[str]) -> None:
    inbound = b.referrals(direction="inbound")
    assert sorted(i["id"] for i in inbound) == sorted(ids)
    received = db_rows(b, "SELECT referral_id FROM history WHERE event = 'received'")
    assert Counter(r[0] for r in received) == Counter(ids)
    receipts = db_rows(b, "SELECT referral_id FROM outbox WHERE kind = 'receipt'")
    assert Counter(r[0] for r in receipts) == Counter(ids)
    inbox = db_rows(b, "SELECT COUNT(*), COUNT(DISTINCT message_id) FROM inbox")
    assert inbox[0][0] == inbox[0][1] == len(ids)
    wait_until(lambda: all(i["status"] == "received" for i in a.referrals()), timeout=180,
               message="sender sees every referral received")
    hist = db_rows(a, "SELECT referral_id FROM history WHERE event = 'received'")
    assert Counter(r[0] for r in hist) == Counter(ids)


@pytest.mark.slow
def test_receiver_killed_mid_inbox_processes_everything_once(net: Net):
    a = net.add_node("shelter-mx", "Casa Refugio", "MX")
    b = net.add_node("legal-gt", "Asistencia Legal", "GT", start=False,
                     extra_env={"RSSN_NODE_BATCH_LIMIT": "20",
                                "RSSN_NODE_FAULT_PAUSE_BEFORE_ACK_S": "30"})
    ids = [send(a, "legal-gt", i) for i in range(120)]
    wait_until(lambda: db_rows(a, "SELECT COUNT(*) FROM outbox WHERE state='pending'")[0][0] == 0,
               timeout=120, message="all handed to the hub")
    # 1) Crash between commit and ack: the batch is stored but the hub still holds it.
    b.proc.start()
    b.proc.wait_for_log("inbox_committed_awaiting_ack", timeout=120)
    stored = db_rows(b, "SELECT COUNT(*) FROM referrals")[0][0]
    assert 0 < stored < len(ids)
    b.proc.kill9()
    # 2) Crash at an arbitrary moment while batches are being processed.
    b.proc.env.pop("RSSN_NODE_FAULT_PAUSE_BEFORE_ACK_S", None)
    b.proc.start()
    wait_until(lambda: db_rows(b, "SELECT COUNT(*) FROM referrals")[0][0] > stored,
               timeout=120, interval=0.02, message="processing resumed")
    b.proc.kill9()
    # 3) Restart for good: every referral exactly once.
    b.proc.start()
    wait_until(lambda: len(b.referrals(direction="inbound")) == len(ids), timeout=180,
               message="all referrals stored")
    def duplicates_seen() -> bool:
        logs = [d for d in b.proc.json_logs() if d.get("event") == "inbox_batch"]
        return sum(d.get("duplicate_count", 0) for d in logs) >= 1

    wait_until(duplicates_seen, timeout=120, message="redelivered batch recognised")
    _assert_exactly_once(a, b, ids)


@pytest.mark.slow
def test_offline_recipient_gets_200_referrals_once(net: Net):
    a = net.add_node("shelter-mx", "Casa Refugio", "MX")
    b = net.add_node("unhcr-cr", "UNHCR Costa Rica", "CR", start=False)
    ids = [send(a, "unhcr-cr", i) for i in range(200)]
    assert len(set(ids)) == 200
    wait_until(lambda: db_rows(a, "SELECT COUNT(*) FROM outbox WHERE state='pending'")[0][0] == 0,
               timeout=180, message="all handed to the hub")
    assert all(r["status"] == "requested" for r in a.referrals())
    b.proc.start()
    wait_until(lambda: len(b.referrals(direction="inbound")) == 200, timeout=180,
               message="all 200 arrived")
    _assert_exactly_once(a, b, ids)
