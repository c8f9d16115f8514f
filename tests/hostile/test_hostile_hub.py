"""A real node served by a hostile hub: tampered, replayed, misaddressed and forged items.

The member enrolls with the real hub (pinning its key) and receives a first referral. Then
the hub is replaced, on the same address, by a hostile one (an HTTP server in the test
process) that holds the real hub key, as an attacker who took over the hub would. It
serves the node's mailbox with: variants of genuine envelopes changed in every region,
genuine envelopes again (replays of processed ones), forged hub notices (other key) and
genuine-key notices about messages the node never sent, items that are not items; and it
serves directories signed with another key or rolled back to an older version.

Proves: the node refuses every hostile item into its quarantine (or ignores a replay as a
duplicate), processes each genuine referral exactly once, acknowledges everything it has
committed (so nothing blocks its mailbox), keeps the directory it verified, and keeps
running. (What a hub with the real key *can* still do, drop or delay mail and substitute
keys, is T2/T6 in docs/THREAT_MODEL.md.)
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from common.db import make_engine
from hub.hubkey import load_hub_key
from node.samples import sample_referral
from protocol import (
    SigningKeyPair,
    canonical_bytes,
    make_hub_notice,
    parse_canonical,
    sign_directory,
    verify_directory,
)
from tests.fault.harness import HUB_PASS, Network
from tests.helpers.processes import wait_until
from tests.hostile.mutations import Mutation, apply
from tests.hub.client import NodeClient
from tests.reliability_summary import Recorder

pytestmark = [pytest.mark.timeout(900), pytest.mark.filterwarnings("ignore:EdDSA is deprecated")]


class _Rogue(BaseHTTPRequestHandler):
    items: ClassVar[list[dict[str, Any]]] = []
    #: Item ids after which the mailbox "page" ends (the next page is served once the
    #: node acknowledged everything before it).
    breaks: ClassVar[set[str]] = set()
    acked: ClassVar[set[str]] = set()
    directories: ClassVar[list[bytes]] = []
    directory_calls: ClassVar[int] = 0
    lock: ClassVar[threading.Lock] = threading.Lock()
    victim: ClassVar[str] = ""

    def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        cls = type(self)
        if self.path.startswith("/healthz") or self.path.startswith("/readyz"):
            return self._send(200, b'{"status":"ok"}')
        if self.path.startswith("/v1/directory"):
            with cls.lock:
                d = cls.directories[cls.directory_calls % len(cls.directories)]
                cls.directory_calls += 1
            return self._send(200, d)
        if self.path.startswith("/v1/mailbox"):
            if self.headers.get("Authorization") != f"Bearer rogue-{cls.victim}":
                return self._send(200, b'{"items":[]}')  # other members: nothing
            page: list[dict[str, Any]] = []
            with cls.lock:
                for i in cls.items:
                    if str(i.get("id")) not in cls.acked:
                        page.append(i)
                    if str(i.get("id")) in cls.breaks and page:
                        break
            return self._send(200, json.dumps({"items": page[:100]}).encode())
        return self._send(404, b"{}")

    def do_POST(self) -> None:
        cls = type(self)
        body = self._body()
        if self.path.startswith("/v1/oauth/token"):
            # Whoever asks gets a token naming it (read from the assertion, unverified).
            from urllib.parse import parse_qs

            form = parse_qs(body.decode())
            who = form.get("client_id", ["?"])[0]
            return self._send(200, json.dumps({"access_token": f"rogue-{who}",
                                               "token_type": "Bearer",
                                               "expires_in": 300}).encode())
        if self.path.startswith("/v1/mailbox/ack"):
            if self.headers.get("Authorization") != f"Bearer rogue-{cls.victim}":
                return self._send(200, b'{"acked":0}')
            ids = json.loads(body).get("ids", [])
            with cls.lock:
                cls.acked |= {str(i) for i in ids}
            return self._send(200, json.dumps({"acked": len(ids)}).encode())
        if self.path.startswith("/v1/messages"):
            return self._send(503, b'{"code":"unavailable"}', "application/problem+json")
        return self._send(404, b"{}")

    def log_message(self, *args: object) -> None:
        pass


def test_node_refuses_what_a_hostile_hub_serves(network: Network, tally: Recorder) -> None:
    _run(network, tally, same_page=False)


def test_tampered_copy_in_the_same_page_does_not_shadow_the_genuine(
        network: Network, tally: Recorder) -> None:
    _run(network, tally, same_page=True)


def _run(network: Network, tally: Recorder, *, same_page: bool) -> None:
    hub = network.start_hub()
    a = network.add_node("mx-shelter", "Casa Refugio", "MX")
    b = network.add_node("gt-legal", "Asistencia Legal", "GT")
    a.knows(b.node_id)
    first = a.send(b.node_id, sample_referral(0))
    wait_until(lambda: a.get(f"/api/v1/referrals/{first}")["status"] == "received", timeout=180)
    known_version = b.get("/api/v1/status")["directory_version"]
    b.proc.terminate()
    genuine_ids = [a.send(b.node_id, sample_referral(i)) for i in (1, 2, 3)]
    wait_until(lambda: not a.outbox_states().get("pending"), timeout=180)
    waiting = [bytes(r[0]) for r in hub.sql(
        "SELECT body FROM mailbox WHERE recipient = :b AND item_type = 'envelope' ORDER BY seq",
        b=b.node_id)]
    assert len(waiting) == 3
    assert b.sql("SELECT COUNT(*) FROM inbox WHERE kind = 'referral'")[0][0] == 1
    # The directory as the real hub signs it, and the hub's key (the attacker has both).
    observer = NodeClient(hub.url, "zz-observer")
    assert observer.enroll(hub.invite("zz-observer", "Observer", "PA")).status_code == 201
    real_directory = observer.http.get("/v1/directory", headers=observer.auth()).content
    observer.close()
    import sqlalchemy as sa

    engine = make_engine(hub.store_url, poolclass=sa.pool.NullPool)
    hub_key = load_hub_key(engine, HUB_PASS)
    engine.dispose()
    current = verify_directory(real_directory, hub_key.public, now=datetime.now(UTC))
    body = parse_canonical(real_directory)["directory"]
    stranger = SigningKeyPair.generate()
    forged = sign_directory_raw(body, stranger)
    rolled_back = sign_directory_raw({**body, "version": known_version - 1}, hub_key)
    assert known_version >= 2
    hub.proc.terminate()

    # What the hostile hub serves.
    items: list[dict[str, Any]] = []
    hostile: list[str] = []

    def add(kind: str, payload: Any, hostile_item: bool = True) -> None:
        item_id = f"rogue-{len(items):04d}"
        items.append({"id": item_id, "type": kind, kind: payload} if kind in ("envelope",
                                                                             "notice")
                     else {"id": item_id, "type": kind, "payload": payload})
        if hostile_item:
            hostile.append(item_id)
            tally.hostile("hub-item", canonical_bytes(items[-1]) if kind != "raw" else
                          json.dumps(items[-1]).encode())

    g0 = waiting[0]
    for n, m in enumerate([Mutation("flip", pos=p, byte=p % 8) for p in
                           range(40, len(g0), max(1, len(g0) // 60))]):
        variant = apply(g0, m)
        try:
            add("envelope", json.loads(variant))
        except ValueError:
            continue
        if n > 80:
            break
    for f in ("to", "from", "id", "kind", "recipient_kid", "created_at"):
        doc = json.loads(g0)
        doc["header"][f] = {"to": "mx-shelter", "from": "zz-observer",
                            "id": "01a22470-0000-7000-8000-000000000000", "kind": "status",
                            "recipient_kid": "enc-AAAAAAAAAAAAAAAAAAAAAA",
                            "created_at": "2026-01-01T00:00:00Z"}[f]
        add("envelope", doc)
    if not same_page:
        _Rogue.breaks = {items[-1]["id"]}  # the tampered copies alone on the first page
    else:
        _Rogue.breaks = set()
    for raw in waiting:  # the genuine ones, each twice
        add("envelope", json.loads(raw), hostile_item=False)
        add("envelope", json.loads(raw), hostile_item=False)
    # A replay of what the node processed before the takeover (the sender keeps the bytes).
    [(first_env,)] = a.sql("SELECT envelope FROM outbox WHERE referral_id = :r AND "
                           "kind = 'referral'", r=first)
    add("envelope", json.loads(first_env), hostile_item=False)
    at = datetime.now(UTC).replace(microsecond=0)
    add("notice", make_hub_notice(stranger, notice_id="01a22470-0000-7000-8000-0000000000a1",
                                  to=b.node_id, message_id=first, code="expired", at=at))
    add("notice", make_hub_notice(hub_key, notice_id="01a22470-0000-7000-8000-0000000000a2",
                                  to=b.node_id, message_id="01a22470-0000-7000-8000-0000000000ff",
                                  code="expired", at=at))
    add("notice", {"kind": "problem"})
    add("raw", "not an item")
    add("envelope", "not an envelope")
    add("envelope", [1, 2, 3])
    _Rogue.items = items
    _Rogue.victim = b.node_id
    _Rogue.acked = set()
    _Rogue.directories = [forged, rolled_back, real_directory]
    _Rogue.directory_calls = 0
    server = ThreadingHTTPServer(("127.0.0.1", hub.port), _Rogue)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        b.proc.start()
        wait_until(lambda: {i["id"] for i in items} <= _Rogue.acked, timeout=300, interval=1.0,
                   message="the node acknowledged every item")
        inbound = {r[0] for r in b.sql("SELECT id FROM referrals WHERE direction = 'inbound'")}
        assert inbound == {first, *genuine_ids}, (
            [(q[1], q[3]) for q in b.quarantined()][-12:],
            [ln[:400] for ln in b.proc.log_text().splitlines()
             if '"warning"' in ln or '"error"' in ln or 'inbox' in ln][-15:])
        # ... and from the genuine bytes: the inbox records each genuine envelope's digest.
        from protocol import parse_envelope

        for raw in waiting:
            env = parse_envelope(raw)
            rows = b.sql("SELECT envelope_digest FROM inbox WHERE message_id = :m",
                         m=env.header.id)
            if rows != [(env.digest,)]:  # a tampered copy was recorded as the message
                tally.hostile("hub-item", f"stored-variant-of-{env.header.id}",
                              accepted_wrongly=True,
                              detail="node recorded a tampered copy served in the same page")
            assert rows == [(env.digest,)], ("processed from other bytes", env.header.id)
        received = b.sql("SELECT referral_id FROM history WHERE event = 'received' "
                         "AND actor = :b", b=b.node_id)
        assert sorted(r[0] for r in received) == sorted([first, *genuine_ids])
        # Every hostile envelope and notice is in quarantine, nothing else was applied.
        quarantined = b.quarantined()
        q_items = len(quarantined)
        refused_all = q_items >= len(hostile) - 2  # a few variants collapse to one key
        tally.note(hostile_hub_items=len(hostile), quarantined=q_items,
                   directory_calls=_Rogue.directory_calls)
        assert refused_all, (q_items, len(hostile))
        assert b.get(f"/api/v1/referrals/{first}")["status"] == "received"
        # The node kept the directory it verified: neither the forged nor the rolled-back one.
        dir_version = b.get("/api/v1/status")["directory_version"]
        assert dir_version in (known_version, current.version)  # never older, never forged
        assert b.proc.running and b.proc.starts == 2
    finally:
        server.shutdown()
        server.server_close()


def sign_directory_raw(body: dict[str, Any], key: SigningKeyPair) -> bytes:
    from protocol import Directory, DirectoryEntry, parse_time

    entries = [DirectoryEntry.from_json(e) for e in body["entries"]]
    d = Directory(body["version"], parse_time(body["issued_at"]), parse_time(body["expires_at"]),
                  {e.node_id: e for e in entries})
    return sign_directory(d, key)


