"""The hub's storage layer and ingest/delivery/expiry logic on SQLite and PostgreSQL (db_url).

In-process (no HTTP): these pin down the SQL semantics the HTTP tests rely on, on both
dialects: leases never hand one item to two concurrent pollers, acked items never come back,
duplicates and conflicts, expiry notices, replayed jtis, ledger folding and retention.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from common.db import current_revision, head_revision, make_engine, run_migrations
from hub import enrollment, expiry, ingest
from hub.auth import AccessClaims
from hub.delivery import _lease
from hub.hubkey import create_or_get_public, load_hub_key
from hub.runtime import HubRuntime
from hub.settings import HubSettings
from hub.store import MIGRATIONS_DIR
from hub.store import queries as q
from protocol import (
    EncryptionKeyPair,
    Envelope,
    KeyBinding,
    SigningKeyPair,
    enrollment_proof,
    seal,
    verify_hub_notice,
    verify_transport_receipt,
)
from tests.hub.client import referral_document, status_document

PASS = "store-test-passphrase"


class Member:
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.sig = SigningKeyPair.generate()
        self.enc = EncryptionKeyPair.generate()
        t = datetime.now(UTC).replace(microsecond=0)
        self.binding = KeyBinding.create(
            self.sig, node_id, self.enc, t - timedelta(hours=1), t + timedelta(days=30)
        )

    @property
    def claims(self) -> AccessClaims:
        return AccessClaims(self.node_id, self.sig.kid, time.time() + 300, "test")

    def seal_to(self, other: Member, kind: str = "referral", **kw: Any) -> Envelope:
        created = kw.pop("created_at", datetime.now(UTC).replace(microsecond=0))
        doc = kw.pop("document", referral_document() if kind == "referral" else None)
        return seal(
            sender=self.node_id, signing_key=self.sig, recipient=other.node_id,
            recipient_key=other.binding, kind=kind, document=doc,
            message_id=kw.pop("message_id", str(uuid.uuid4())),
            thread=kw.pop("thread", str(uuid.uuid4())), created_at=created, **kw,
        )


@pytest.fixture
def rt(db_url: str, tmp_path: Any) -> Iterator[HubRuntime]:
    run_migrations(db_url, MIGRATIONS_DIR)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        q.ensure_state(conn)
    create_or_get_public(engine, lambda: PASS)
    key = load_hub_key(engine, PASS)
    settings = HubSettings(data_dir=tmp_path, db_url=db_url, lease_seconds=30)
    runtime = HubRuntime.create(settings, key, engine)
    yield runtime
    runtime.close()


def enroll(rt: HubRuntime, m: Member) -> None:
    token, _ = enrollment.create_invite(
        rt.engine, node_id=m.node_id, organization=m.node_id.upper(), country="GT"
    )
    enrollment.enroll(
        rt.engine,
        enrollment.EnrollRequest(
            m.node_id, token, m.sig.public, m.binding,
            enrollment_proof(m.sig, m.node_id, token, m.binding), "test",
        ),
    )


@pytest.fixture
def pair(rt: HubRuntime) -> tuple[Member, Member]:
    a, b = Member("org-a"), Member("org-b")
    enroll(rt, a)
    enroll(rt, b)
    return a, b


def test_migrations_are_idempotent(db_url: str) -> None:
    run_migrations(db_url, MIGRATIONS_DIR)
    run_migrations(db_url, MIGRATIONS_DIR)
    assert current_revision(db_url, MIGRATIONS_DIR) == head_revision(MIGRATIONS_DIR)


def test_hub_key_is_sealed_and_created_once(rt: HubRuntime) -> None:
    public, created = create_or_get_public(rt.engine, lambda: pytest.fail("not asked"))
    assert not created and public == rt.hub_key.public
    with rt.engine.begin() as conn:
        row = q.active_hub_key(conn)
    assert row is not None and rt.hub_key.seed not in bytes(row.sealed_seed)


def test_ingest_accepts_dedups_and_conflicts(rt: HubRuntime, pair: tuple[Member, Member]) -> None:
    a, b = pair
    env = a.seal_to(b)
    [first] = ingest.ingest(rt, a.claims, [env.raw])
    assert first.status == "accepted" and first.http_status == 202
    assert first.receipt is not None
    verify_transport_receipt(first.receipt, rt.hub_key.public, message_id=env.header.id,
                             envelope_digest=env.digest)
    [again] = ingest.ingest(rt, a.claims, [env.raw])
    assert again.status == "duplicate" and again.receipt == first.receipt
    other = a.seal_to(b, message_id=env.header.id)
    [conflict] = ingest.ingest(rt, a.claims, [other.raw])
    assert conflict.status == "rejected" and conflict.problem
    assert conflict.problem["code"] == "conflict" and conflict.http_status == 409
    with rt.engine.begin() as conn:
        assert q.mailbox_stats(conn) == [
            {"node_id": "org-b", "depth": 1, "oldest_accepted_ms": pytest.approx(
                q.now_ms(), abs=120_000)}
        ]


def test_batch_keeps_order_and_dedups_inside_the_batch(
    rt: HubRuntime, pair: tuple[Member, Member]
) -> None:
    a, b = pair
    e1, e2 = a.seal_to(b), a.seal_to(b)
    forged = b.seal_to(a)  # from b, submitted by a
    outs = ingest.ingest(rt, a.claims, [e1.raw, e2.raw, e1.raw, forged.raw, b"{"])
    assert [o.status for o in outs] == ["accepted", "accepted", "duplicate", "rejected",
                                        "rejected"]
    assert outs[3].problem and outs[3].problem["code"] == "not_authorized"
    assert outs[4].problem and outs[4].problem["code"] == "malformed"
    assert outs[2].receipt == outs[0].receipt


def test_identical_resubmission_after_expiry_gets_original_receipt(
    rt: HubRuntime, pair: tuple[Member, Member]
) -> None:
    a, b = pair
    env = a.seal_to(b, ttl=timedelta(seconds=2))
    [first] = ingest.ingest(rt, a.claims, [env.raw])
    assert first.status == "accepted"
    time.sleep(2.2)
    [again] = ingest.ingest(rt, a.claims, [env.raw])
    assert again.status == "duplicate" and again.receipt == first.receipt
    [fresh] = ingest.ingest(rt, a.claims, [a.seal_to(b, created_at=env.header.created_at,
                                                      ttl=timedelta(seconds=2)).raw])
    assert fresh.problem and fresh.problem["code"] == "expired"


def test_wrong_recipient_and_unknown_key(rt: HubRuntime, pair: tuple[Member, Member]) -> None:
    a, b = pair
    stranger = Member("org-zz")
    [out] = ingest.ingest(rt, a.claims, [a.seal_to(stranger).raw])
    assert out.problem and out.problem["code"] == "wrong_recipient"
    impostor = Member("org-a")  # same id, other key: not the directory's signing key
    [out] = ingest.ingest(rt, a.claims, [impostor.seal_to(b).raw])
    assert out.problem and out.problem["code"] == "unknown_key"


def test_lease_never_hands_an_item_to_two_pollers(
    rt: HubRuntime, pair: tuple[Member, Member]
) -> None:
    a, b = pair
    envs = [a.seal_to(b) for _ in range(120)]
    outs = ingest.ingest(rt, a.claims, [e.raw for e in envs])
    assert all(o.status == "accepted" for o in outs)
    got: list[list[str]] = [[], [], [], []]
    errors: list[BaseException] = []

    def poller(i: int) -> None:
        try:
            while True:
                items = _lease(rt, b.claims, 7, None)
                if not items:
                    return
                got[i].extend(item[1] for item in items)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=poller, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors
    everything = [x for g in got for x in g]
    assert len(everything) == len(set(everything)) == 120
    assert set(everything) == {e.header.id for e in envs}
    # Leased items stay hidden until the lease ends; acked items never come back.
    assert _lease(rt, b.claims, 500, None) == []
    with rt.engine.begin() as conn:
        assert q.ack_items(conn, "org-b", everything, q.now_ms()) == 120
        assert q.lease_items(conn, "org-b", limit=500, now=q.now_ms() + 10**9,
                             lease_until=0) == []


def test_unacked_item_returns_after_lease_in_submission_order(
    rt: HubRuntime, pair: tuple[Member, Member]
) -> None:
    a, b = pair
    envs = [a.seal_to(b) for _ in range(5)]
    for e in envs:
        ingest.ingest(rt, a.claims, [e.raw])
    now = q.now_ms()
    with rt.engine.begin() as conn:
        first = q.lease_items(conn, "org-b", limit=2, now=now, lease_until=now + 1000)
        assert [i[1] for i in first] == [e.header.id for e in envs[:2]]
        rest = q.lease_items(conn, "org-b", limit=10, now=now, lease_until=now + 1000)
        assert [i[1] for i in rest] == [e.header.id for e in envs[2:]]
        # after the lease: everything again, oldest first
        again = q.lease_items(conn, "org-b", limit=10, now=now + 1001, lease_until=now + 2000)
        assert [i[1] for i in again] == [e.header.id for e in envs]


def test_ack_only_touches_own_items_and_records_delivery(
    rt: HubRuntime, pair: tuple[Member, Member]
) -> None:
    a, b = pair
    env = a.seal_to(b)
    ingest.ingest(rt, a.claims, [env.raw])
    with rt.engine.begin() as conn:
        assert q.ack_items(conn, "org-a", [env.header.id], q.now_ms()) == 0
        assert q.ack_items(conn, "org-b", [env.header.id, env.header.id], q.now_ms()) == 1
        assert q.ack_items(conn, "org-b", [env.header.id], q.now_ms()) == 0
        rec = q.message_record(conn, env.header.id)
    assert rec is not None and rec["delivered_at"] is not None


def test_expiry_deletes_and_notifies_sender(rt: HubRuntime, pair: tuple[Member, Member]) -> None:
    a, b = pair
    env = a.seal_to(b, ttl=timedelta(seconds=60))
    keep = a.seal_to(b)
    ingest.ingest(rt, a.claims, [env.raw, keep.raw])
    later = q.dt_to_ms(env.header.expires_at) + 1
    result = expiry.sweep_once(rt, later)
    assert result.expired == 1 and result.notified == {"org-a"}
    with rt.engine.begin() as conn:
        b_items = q.lease_items(conn, "org-b", limit=10, now=later, lease_until=later + 1)
        a_items = q.lease_items(conn, "org-a", limit=10, now=later, lease_until=later + 1)
        rec = q.message_record(conn, env.header.id)
    assert [i[1] for i in b_items] == [keep.header.id]
    assert len(a_items) == 1 and a_items[0][2] == "notice"
    import json

    notice = verify_hub_notice(json.loads(a_items[0][3]), rt.hub_key.public)
    assert notice["code"] == "expired" and notice["message_id"] == env.header.id
    assert notice["to"] == "org-a"
    assert rec is not None and rec["expired_at"] is not None
    # A second sweeper finds nothing more.
    assert expiry.sweep_once(rt, later).expired == 0


def test_replayed_jti_is_refused(rt: HubRuntime) -> None:
    exp = q.now_ms() + 60_000
    with rt.engine.begin() as conn:
        assert q.remember_jti(conn, "org-a", "j1", exp)
        assert not q.remember_jti(conn, "org-a", "j1", exp)
        assert q.remember_jti(conn, "org-b", "j1", exp)
        assert q.purge_jtis(conn, exp + 1) == 2


def test_revocation_bumps_directory_and_removes_node(
    rt: HubRuntime, pair: tuple[Member, Member]
) -> None:
    a, b = pair
    with rt.engine.begin() as conn:
        v1 = q.directory_version(conn)
        d1 = rt.signed_directory(conn, v1).directory
    assert set(d1.entries) == {"org-a", "org-b"}
    assert enrollment.revoke(rt.engine, "org-b")
    assert not enrollment.revoke(rt.engine, "org-b")
    with rt.engine.begin() as conn:
        v2 = q.directory_version(conn)
        d2 = rt.signed_directory(conn, v2).directory
        assert q.node_auth_state(conn, "org-b") == ("revoked", b.sig.kid, v2)
    assert v2 == v1 + 1 and set(d2.entries) == {"org-a"}
    [out] = ingest.ingest(rt, a.claims, [a.seal_to(b).raw])
    assert out.problem and out.problem["code"] == "wrong_recipient"


def test_ledger_folds_a_thread(rt: HubRuntime, pair: tuple[Member, Member]) -> None:
    a, b = pair
    thread = str(uuid.uuid4())
    ref = a.seal_to(b, thread=thread, meta={"priority": "urgent", "category": "trafficking"})
    ingest.ingest(rt, a.claims, [ref.raw])
    receipt_doc = {"message_id": ref.header.id, "envelope_digest": ref.digest,
                   "received_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    ingest.ingest(rt, b.claims, [b.seal_to(a, kind="receipt", document=receipt_doc,
                                           thread=thread).raw])
    ingest.ingest(rt, b.claims, [b.seal_to(a, kind="status", document=status_document(),
                                           thread=thread, meta={"status": "accepted"}).raw])
    with rt.engine.begin() as conn:
        summary = q.thread_summary(conn, thread)
        listed = q.list_threads(conn, node_id="org-a")
        counts = q.ledger_counts(conn)
    assert summary is not None
    assert summary["from"] == "org-a" and summary["to"] == "org-b"
    assert summary["priority"] == "urgent" and summary["category"] == "trafficking"
    assert summary["status"] == "accepted" and summary["first_receipt_at"] is not None
    assert summary["message_count"] == 3
    assert [t["thread"] for t in listed] == [thread]
    assert sum(c["total"] for c in counts) == 3


def test_ledger_retention_never_drops_replayable_rows(
    rt: HubRuntime, pair: tuple[Member, Member]
) -> None:
    a, b = pair
    env = a.seal_to(b)
    ingest.ingest(rt, a.claims, [env.raw])
    now = q.now_ms()
    with rt.engine.begin() as conn:
        # Past retention but not expired: kept (it is the de-duplication record).
        assert q.purge_ledger(conn, submitted_before=now + 1, now=now) == 0
        later = q.dt_to_ms(env.header.expires_at) + 1
        assert q.purge_ledger(conn, submitted_before=later, now=later) == 1


def test_node_auth_state_for_unknown_node(rt: HubRuntime) -> None:
    with rt.engine.begin() as conn:
        assert q.node_auth_state(conn, "nobody") is None
        assert q.recipients_with_available(conn, ["nobody"], q.now_ms()) == set()
        assert isinstance(conn.execute(sa.text("SELECT 1")).scalar(), int)


def test_group_commit_isolates_failures_and_answers_after_commit(rt: HubRuntime) -> None:
    """Concurrent work shares transactions; one failing piece does not undo the others."""
    from concurrent.futures import ThreadPoolExecutor

    def work(i: int) -> int:
        def w(conn: sa.Connection) -> int:
            q.insert_invite(conn, token_sha256=f"{i:064x}", node_id=f"node-{i:03d}",
                            organization="X", country="MX", now=1, expires_at=2)
            if i % 5 == 0:
                raise ValueError("refused")
            return i
        return rt.writer.run(w)

    with ThreadPoolExecutor(8) as ex:
        futures = [ex.submit(work, i) for i in range(60)]
        results = []
        for f in futures:
            try:
                results.append(f.result())
            except ValueError:
                results.append(-1)
    assert results == [-1 if i % 5 == 0 else i for i in range(60)]
    with rt.engine.begin() as conn:
        stored = {r[0] for r in conn.execute(sa.select(q.invites.c.node_id))}
    assert stored == {f"node-{i:03d}" for i in range(60) if i % 5}
