"""After a full exchange, the hub's database and logs hold no trace of referral plaintext.

Each referral carries unique canary strings in its personal-data fields. The hub sees
only ciphertext, so the canaries must appear nowhere in the SQLite files (main, WAL,
shared memory), in a PostgreSQL hub's tables, or in the hub's logs: zero hits.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.hub.client import NodeClient, referral_document, status_document
from tests.hub.conftest import Hub, StartHub

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


def _exchange(hub: Hub) -> list[str]:
    """Referrals both ways, receipts, status changes; half delivered, half left waiting."""
    a = hub.enrolled("shelter-mx")
    b = hub.enrolled("legal-aid-gt")
    canaries: list[str] = []
    sent = []
    for sender, recipient, rname in ((a, b, "legal-aid-gt"), (b, a, "shelter-mx")) * 3:
        canary = "CANARY" + secrets.token_hex(8).upper()
        canaries.append(canary)
        doc = referral_document(canary)
        doc["safety_notes"] = f"Do not call before noon {canary}-safety"
        doc["subject"]["family_name"] = f"Fam{canary}"
        env = sender.seal_to(rname, document=doc)
        r = sender.submit(env)
        assert r.status_code == 202, r.text
        sent.append((sender, recipient, env))
    # batch route too
    batch_canary = "CANARY" + secrets.token_hex(8).upper()
    canaries.append(batch_canary)
    benv = a.seal_to("legal-aid-gt", document=referral_document(batch_canary))
    assert a.submit_batch([benv]).json()["results"][0]["status"] == "accepted"
    # The recipient reads and acknowledges; replies with receipt + status.
    for client in (a, b):
        for item in client.items(wait=10, limit=500):
            opened = client.open_item(item)
            if opened.header.kind != "referral":
                continue
            assert "CANARY" in opened.document_json["subject"]["given_name"]
            peer = opened.header.sender
            receipt = {"message_id": opened.header.id,
                       "envelope_digest": _digest(item),
                       "received_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
            client.submit(client.seal_to(peer, kind="receipt", document=receipt,
                                         thread=opened.header.thread))
            client.submit(client.seal_to(peer, kind="status", document=status_document(),
                                         thread=opened.header.thread))
            if hash(opened.header.id) % 2 == 0:
                assert client.ack([item["id"]]).json() == {"acked": 1}
    # One more referral that nobody picks up (ciphertext stays in the mailbox).
    last = "CANARY" + secrets.token_hex(8).upper()
    canaries.append(last)
    assert a.submit(a.seal_to("legal-aid-gt", document=referral_document(last))).status_code == 202
    return canaries


def _digest(item: dict[str, object]) -> str:
    from protocol import canonical_bytes, digest

    return digest(canonical_bytes(item["envelope"]))


def _needles(canaries: list[str]) -> list[bytes]:
    out: list[bytes] = []
    for c in canaries:
        out += [c.encode(), c.lower().encode(), c.encode("utf-16-le")]
    return out


def _scan_files(paths: list[Path], needles: list[bytes]) -> list[str]:
    hits = []
    for p in paths:
        data = p.read_bytes()
        hits += [f"{p.name}: {n!r}" for n in needles if n in data]
    return hits


def test_no_plaintext_in_sqlite_database_or_logs(hub: Hub) -> None:
    canaries = _exchange(hub)
    hub.proc.terminate()  # scan the files as they rest on disk (main db, WAL, shm)
    db_files = sorted(hub.data_dir.glob("hub.db*"))
    assert any(p.name == "hub.db" for p in db_files)
    log_files = [hub.proc.stdout_path, hub.proc.stderr_path]
    assert hub.proc.stderr_path.stat().st_size > 0
    needles = _needles(canaries)
    assert _scan_files(db_files + log_files, needles) == []


def test_no_plaintext_in_postgresql_hub_or_logs(
    start_hub: StartHub, pg_url_factory: Callable[[], str]
) -> None:
    url = pg_url_factory()
    hub = start_hub(db_url=url)
    canaries = _exchange(hub)
    hub.proc.terminate()
    needles = _needles(canaries)
    engine = sa.create_engine(url)
    hits = []
    try:
        with engine.connect() as conn:
            tables = [r[0] for r in conn.execute(sa.text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))]
            assert "mailbox" in tables and "messages" in tables
            for t in tables:
                for row in conn.execute(sa.text(f'SELECT * FROM "{t}"')):
                    blob = b"".join(
                        bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode()
                        for v in row
                    )
                    hits += [f"{t}: {n!r}" for n in needles if n in blob]
    finally:
        engine.dispose()
    hits += _scan_files([hub.proc.stdout_path, hub.proc.stderr_path], needles)
    assert hits == []


def test_client_sees_plaintext_so_the_scan_is_meaningful(hub: Hub) -> None:
    """Guard against a vacuous pass: the same canary *is* found where plaintext exists."""
    a: NodeClient = hub.enrolled("org-a")
    b: NodeClient = hub.enrolled("org-b")
    canary = "CANARY" + secrets.token_hex(8).upper()
    a.submit(a.seal_to("org-b", document=referral_document(canary)))
    [item] = b.items(wait=10)
    opened = b.open_item(item)
    assert canary.encode() in opened.statement
    assert canary.encode() not in hub.data_dir.joinpath("hub.db").read_bytes()
