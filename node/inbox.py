"""The receiver: long-poll the hub's mailbox, process each message exactly once, then ack.

Why this order (store, then acknowledge): the hub keeps an item until it is acked,
so a node killed at any point loses nothing; it just sees the item again, and
the message id (the inbox table's primary key) makes the second sight a no-op.
Per batch (up to 500 items) everything is one database transaction: the opened
message, the referral and history changes, the signed receipt queued in the
outbox and any webhook events commit together or not at all.

An envelope that fails verification or validation is quarantined (kept with its
code, never lost) and answered with a `problem` message to its sender when the
sender can be identified; it is acknowledged so it does not block the mailbox.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from common.logging import get_logger
from node.store.queries import (
    HISTORY,
    INBOX,
    OUTBOX,
    QUARANTINE,
    REFERRALS,
    WEBHOOK_DELIVERIES,
    active_webhooks,
    add_history,
    enqueue_webhook_event,
    existing_ids,
    now_utc,
    set_kv,
    webhook_rows,
)
from protocol import ProtocolError, Role, canonical_bytes, next_state, parse_envelope_value
from protocol.errors import Conflict, Malformed, NotAuthorized, UnknownKey

if TYPE_CHECKING:
    from node.runtime import Node
    from protocol import Envelope, Opened

__all__ = ["InboxProcessor", "receiver_loop"]

_log = get_logger(__name__)

#: Statements of the per-message paths, built once (constructing them per message cost more
#: than executing them). Bind names differ from column names (SQLAlchemy reserves those).
_REFERRAL_BY_ID = sa.select(REFERRALS).where(REFERRALS.c.id == sa.bindparam("b_id"))
_OUTBOX_BY_ID = sa.select(OUTBOX).where(OUTBOX.c.message_id == sa.bindparam("b_id"))
_OUTBOX_DELIVERED = (sa.update(OUTBOX).where(OUTBOX.c.message_id == sa.bindparam("b_id"))
                     .values(delivered_at=sa.bindparam("b_at")))
_REFERRAL_DELIVERED = (sa.update(REFERRALS).where(REFERRALS.c.id == sa.bindparam("b_id"))
                       .values(delivered_at=sa.bindparam("b_at"),
                               updated_at=sa.bindparam("b_at")))
_REFERRAL_DELIVERED_STATUS = (
    sa.update(REFERRALS).where(REFERRALS.c.id == sa.bindparam("b_id"))
    .values(delivered_at=sa.bindparam("b_at"), updated_at=sa.bindparam("b_at"),
            status=sa.bindparam("b_status")))
_INBOX_DIGESTS = (sa.select(INBOX.c.message_id, INBOX.c.envelope_digest)
                  .where(INBOX.c.message_id.in_(sa.bindparam("b_ids", expanding=True))))


def _fmt(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class BatchResult:
    ack: list[str] = field(default_factory=list)
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    webhooks: int = 0
    outbox: int = 0


@dataclass
class _Buffer:
    """Rows of one batch, written with one executemany per table (catch-up speed).

    Only referral arrivals are buffered (they are the bulk after days offline, and every
    check on them is done before anything is buffered); any other message first flushes
    the buffer, so it reads what the batch wrote before it.
    """

    referrals: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    inbox: list[dict[str, Any]] = field(default_factory=list)
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    referral_ids: set[str] = field(default_factory=set)

    def flush(self, conn: sa.Connection) -> None:
        for table, rows in ((REFERRALS, self.referrals), (HISTORY, self.history),
                            (OUTBOX, self.outbox), (INBOX, self.inbox),
                            (WEBHOOK_DELIVERIES, self.webhooks)):
            if rows:
                conn.execute(sa.insert(table), rows)
                rows.clear()


#: What can be done for an envelope outside the transaction, in parallel: open it and seal
#: the receipt that will answer it.
_Pre = tuple["Opened | None", "ProtocolError | None", "Envelope | None"]


@dataclass(frozen=True)
class _Bulk:
    """A referral opened (and its receipt sealed) by the process pool (node.inbox_pool)."""

    value: Any  # node.inbox_pool.Opened


class InboxProcessor:
    def __init__(self, node: Node, *, workers: int = 2) -> None:
        self.node = node
        self.workers = workers
        self._buf = _Buffer()
        self._pool: Any = None
        self._opener: Any = None  # node.inbox_pool.ReferralOpener while there is a backlog
        self._current_receipt: Envelope | None = None

    def backlog(self, full_page: bool) -> None:
        """Told after each poll: a full page means more is waiting (start the process pool
        that opens referrals on every core); less than that means we caught up (stop it)."""
        import os

        if full_page and self._opener is None and (os.cpu_count() or 1) > 1:
            from node.inbox_pool import ReferralOpener

            keys = self.node.keys
            self._opener = ReferralOpener(self.node.node_id, keys.signing.seed,
                                          [k.secret for k, _ in keys.encryption])
        elif not full_page and self._opener is not None:
            self.close()

    def close(self) -> None:
        if self._opener is not None:
            self._opener.close()
            self._opener = None

    # -- entry point ------------------------------------------------------------------

    def process(self, items: list[dict[str, Any]]) -> BatchResult:
        """Process a mailbox batch; returns the hub item ids that may now be acked.

        Tries the whole batch in one transaction; if something unexpected (not a protocol
        refusal) breaks it, falls back to one transaction per item so one poison item cannot
        hold up the others (it is quarantined with code "internal").
        """
        try:
            return self._process_in_txn(items)
        except Exception as exc:
            _log.error("inbox_batch_failed", error=exc, count=len(items), exc_info=exc)
        result = BatchResult()
        for item in items:
            try:
                r = self._process_in_txn([item])
            except Exception as exc:
                _log.error("inbox_item_failed", error=exc, exc_info=exc)
                r = self._quarantine_unexpected(item)
            result.ack += r.ack
            result.stored += r.stored
            result.duplicates += r.duplicates
            result.quarantined += r.quarantined
            result.webhooks += r.webhooks
            result.outbox += r.outbox
        return result

    def _process_in_txn(self, items: list[dict[str, Any]]) -> BatchResult:
        result = BatchResult()
        parsed: list[tuple[dict[str, Any], Envelope | None, ProtocolError | None]] = []
        for item in items:
            if item.get("type") == "envelope":
                try:
                    one = _parse_item(item.get("envelope"))
                    parsed.append((item, one, None))
                except ProtocolError as exc:
                    parsed.append((item, None, exc))
            else:
                parsed.append((item, None, None))
        keys = [e.header.id for _, e, _ in parsed if e is not None]
        keys += [str((i.get("notice") or {}).get("notice_id", "")) for i, e, x in parsed
                 if e is None and x is None and isinstance(i.get("notice"), dict)]
        # One receiver per node: what is seen now is what the transaction will see.
        with self.node.reader.connect() as conn:
            digests = _digests(conn, keys)
            seen = set(digests)
            seen |= existing_ids(conn, QUARANTINE.c.item_key,
                                 keys + [_qkey(e) for _, e, _ in parsed if e is not None]
                                 + [str(i.get("id")) for i, _, _ in parsed])
        pre = self._prepare([e for _, e, _ in parsed
                             if e is not None and e.header.id not in digests
                             and _qkey(e) not in seen])

        def txn(conn: sa.Connection) -> None:
            self._buf = _Buffer()
            hooks = active_webhooks(conn)
            self._buf.referral_ids = existing_ids(
                conn, REFERRALS.c.id,
                [p.header.thread for _, p, _ in parsed if p is not None and p.header.kind
                 == "referral"])
            for item, env, err in parsed:
                item_id = str(item.get("id"))
                if env is not None:
                    known = digests.get(env.header.id)
                    if _qkey(env) in seen or known == env.digest:
                        result.duplicates += 1
                    elif known is not None:
                        # Same id, different bytes: never processed twice (SPEC 7, replays).
                        self._quarantine(conn, _qkey(env), env.header.id, env.header.sender,
                                         "replayed", json.loads(env.raw), result)
                        seen.add(_qkey(env))
                    else:
                        # Only a stored message makes its digest "the" one for its id: a
                        # tampered copy quarantined first must not shadow the genuine one
                        # that follows in the same page (only a hostile hub serves both).
                        if self._envelope(conn, env, result, hooks, pre[_qkey(env)]):
                            digests[env.header.id] = env.digest
                        seen.add(_qkey(env))
                elif err is not None:
                    if item_id not in seen:
                        self._quarantine(conn, item_id, None, None, err.code,
                                         item.get("envelope"), result)
                        seen.add(item_id)
                    else:
                        result.duplicates += 1
                elif item.get("type") == "notice":
                    notice = item.get("notice")
                    nid = str(notice.get("notice_id", "")) if isinstance(notice, dict) else ""
                    if nid and nid in seen:
                        result.duplicates += 1
                    else:
                        self._notice(conn, item_id, notice, result, hooks)
                        seen.add(nid or item_id)
                else:
                    if item_id not in seen:
                        self._quarantine(conn, item_id, None, None, "malformed", item, result)
                        seen.add(item_id)
                result.ack.append(item_id)
            self._buf.flush(conn)

        # In the node's writer: shares its commit (fsync) with concurrent writes.
        self.node.writer.run(txn)
        return result

    def _prepare(self, envelopes: list[Envelope]) -> dict[str, _Pre | _Bulk]:
        """Verify, decrypt and seal receipts outside the transaction: many referrals on the
        process pool when there is a backlog, the rest on a small thread pool (libsodium
        releases the GIL).

        Keyed by `_qkey` (id and digest), not the id alone: two different envelopes under one
        id in a page must each get their own result."""
        out: dict[str, _Pre | _Bulk] = {}
        held = self.node.held_sender_kids()
        if held:
            # Key continuity (node.peers): signed by a peer's new, unconfirmed key: refused.
            for env in envelopes:
                if held.get(env.header.sender) == env.header.sender_kid:
                    out[_qkey(env)] = (None, self.node.peer_key_refusal(env.header.sender),
                                       None)
            envelopes = [e for e in envelopes if _qkey(e) not in out]
        opener = self._opener
        if opener is not None and opener.ready:
            bulk = [e for e in envelopes if e.header.kind == "referral"]
            if len(bulk) >= opener.MIN_BULK:
                for env, value in zip(bulk, opener.open(self.node.directory,
                                                        [e.raw for e in bulk]), strict=True):
                    if value is not None:
                        out[_qkey(env)] = _Bulk(value)
                envelopes = [e for e in envelopes if _qkey(e) not in out]
        out.update(self._prepare_here(envelopes))
        return out

    def _prepare_here(self, envelopes: list[Envelope]) -> dict[str, _Pre]:
        def one(env: Envelope) -> _Pre:
            try:
                opened = self._open(env)
            except ProtocolError as exc:
                return None, exc, None
            receipt = None
            if env.header.kind in ("referral", "status", "consent_withdrawn"):
                try:
                    receipt = self._seal_receipt(env)
                except ProtocolError as exc:
                    return None, exc, None
            return opened, None, receipt

        if len(envelopes) < 8 or self.workers <= 1:
            return {_qkey(e): one(e) for e in envelopes}
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="rssn-open")
        size = -(-len(envelopes) // self.workers)  # one task per thread, not per envelope
        parts = [envelopes[i:i + size] for i in range(0, len(envelopes), size)]
        out: dict[str, _Pre] = {}
        for part, results in zip(parts, self._pool.map(lambda p: [one(e) for e in p], parts),
                                 strict=True):
            out.update((_qkey(e), r) for e, r in zip(part, results, strict=True))
        return out

    def _quarantine_unexpected(self, item: dict[str, Any]) -> BatchResult:
        result = BatchResult()
        item_id = str(item.get("id"))
        mid: str | None = None
        key = item_id
        try:
            env = _parse_item(item.get("envelope"))
            mid, key = env.header.id, _qkey(env)
        except ProtocolError:
            pass
        def txn(conn: sa.Connection) -> None:
            if not existing_ids(conn, QUARANTINE.c.item_key, [key]):
                self._quarantine(conn, key, mid, None, "internal", item, result)

        try:
            self.node.writer.run(txn)
            result.ack.append(item_id)
        except Exception as exc:  # the database itself is failing: do not ack, retry later
            _log.error("inbox_quarantine_failed", error=exc)
        return result

    # -- pieces -----------------------------------------------------------------------

    def _quarantine(
        self,
        conn: sa.Connection,
        key: str,
        message_id: str | None,
        from_node: str | None,
        code: str,
        raw: Any,
        result: BatchResult,
        *,
        thread: str | None = None,
    ) -> None:
        conn.execute(
            sa.insert(QUARANTINE).values(
                item_key=key, message_id=message_id, from_node=from_node, code=code,
                raw=json.dumps(raw, separators=(",", ":"), sort_keys=True, default=str),
                received_at=now_utc(),
            )
        )
        result.quarantined += 1
        _log.warning("message_quarantined", message_id=message_id, from_node=from_node, code=code)
        if message_id and from_node and thread:
            self._answer_problem(conn, from_node, thread, message_id, code, result)

    def _answer_problem(self, conn: sa.Connection, to: str, thread: str, message_id: str,
                        code: str, result: BatchResult) -> None:
        """Tell the sender why its message was refused (ids and codes only)."""
        try:
            envelope = self.node.seal(
                kind="problem", to=to, thread=thread,
                document={"message_id": message_id, "code": code,
                          "detail": f"message refused by {self.node.node_id}: {code}"},
            )
        except ProtocolError as exc:  # sender unknown to our directory: cannot answer
            _log.info("problem_not_sent", message_id=message_id, code=exc.code)
            return
        self.node.queue(conn, envelope, referral_id=thread)
        result.outbox += 1

    def _seal_receipt(self, env: Envelope) -> Envelope:
        h = env.header
        return self.node.seal(
            kind="receipt", to=h.sender, thread=h.thread,
            document={"message_id": h.id, "envelope_digest": env.digest,
                      "received_at": _fmt(now_utc())},
        )

    def _receipt(self, conn: sa.Connection, env: Envelope, result: BatchResult) -> None:
        envelope = self._current_receipt or self._seal_receipt(env)
        self.node.queue(conn, envelope, referral_id=env.header.thread)
        result.outbox += 1

    def _open(self, env: Envelope) -> Opened:
        from protocol import open_envelope

        def attempt() -> Opened:
            return open_envelope(
                env, recipient=self.node.node_id, encryption_keys=self.node.keys.encryption_by_kid(),
                resolver=self.node.directory, now=now_utc(),
            )

        try:
            return attempt()
        except UnknownKey:
            # A member may have joined or re-keyed since our directory: look once more.
            self.node.refresh_directory(force=True)
            return attempt()

    def _envelope(self, conn: sa.Connection, env: Envelope, result: BatchResult,
                  hooks: list[tuple[int, frozenset[str]]], pre: _Pre | _Bulk) -> bool:
        """Process one new envelope; True when it was stored, False when quarantined."""
        h = env.header
        opened: Opened | None = None
        try:
            if isinstance(pre, _Bulk):
                doc_json, priority, category, statement, inner_sig, *receipt = pre.value
                self._buffer_referral(env, doc_json, priority, category, receipt, result,
                                      hooks)
            else:
                opened, error, self._current_receipt = pre
                if error is not None:
                    raise error
                assert opened is not None
                statement = opened.statement.decode("utf-8")
                inner_sig = opened.inner_signature.hex()
                if h.kind == "referral":
                    self._apply_referral(conn, env, opened, result, hooks)
                elif h.kind == "receipt":
                    # Every refusal of a receipt happens before its first write: no SAVEPOINT.
                    self._buf.flush(conn)
                    self._apply(conn, env, opened, result, hooks)
                else:
                    self._buf.flush(conn)
                    with conn.begin_nested():
                        self._apply(conn, env, opened, result, hooks)
        except ProtocolError as exc:
            self._quarantine(conn, _qkey(env), h.id, h.sender, exc.code,
                             json.loads(env.raw), result, thread=h.thread)
            return False
        finally:
            self._current_receipt = None
        self._buf.inbox.append(dict(
            message_id=h.id, kind=h.kind, from_node=h.sender, referral_id=h.thread,
            envelope_digest=env.digest, statement=statement, inner_sig=inner_sig,
            received_at=now_utc(),
        ))
        result.stored += 1
        return True

    def _apply(self, conn: sa.Connection, env: Envelope, opened: Opened, result: BatchResult,
               hooks: list[tuple[int, frozenset[str]]]) -> None:
        h = env.header
        doc = opened.document
        now = now_utc()
        if h.kind == "referral":
            self._apply_referral(conn, env, opened, result, hooks)
            return
        row = conn.execute(_REFERRAL_BY_ID, {"b_id": h.thread}).first()
        if row is None:
            if h.kind == "problem":
                return  # about a message we no longer know: nothing to update
            raise Malformed("message refers to an unknown referral", field="header.thread")
        if h.sender not in (row.from_node, row.to_node) or h.sender == self.node.node_id:
            raise NotAuthorized("sender is not a party to this referral")
        data = {"referral_id": row.id, "direction": row.direction, "from": row.from_node,
                "to": row.to_node}
        if h.kind == "status":
            role = Role.SENDER if h.sender == row.from_node else Role.RECIPIENT
            new = next_state(row.status, doc.status, role).value
            conn.execute(sa.update(REFERRALS).where(REFERRALS.c.id == row.id)
                         .values(status=new, updated_at=now))
            add_history(conn, row.id, actor=h.sender, event=new, status=new, at=now,
                        note=doc.note, message_id=h.id)
            self._receipt(conn, env, result)
            result.webhooks += enqueue_webhook_event(conn, "referral.status",
                                                     {**data, "status": new}, hooks=hooks)
        elif h.kind == "receipt":
            self._apply_receipt(conn, h.sender, row, doc, result, hooks, data)
        elif h.kind == "consent_withdrawn":
            conn.execute(sa.update(REFERRALS).where(REFERRALS.c.id == row.id).values(
                restricted=True, consent_withdrawn_at=doc.withdrawn_at, updated_at=now))
            add_history(conn, row.id, actor=h.sender, event="consent_withdrawn", at=now,
                        note=doc.note, message_id=h.id)
            add_history(conn, row.id, actor=self.node.node_id, event="restricted", at=now,
                        message_id=h.id)
            self._receipt(conn, env, result)
            result.webhooks += enqueue_webhook_event(
                conn, "referral.consent_withdrawn", {**data, "status": row.status}, hooks=hooks)
        elif h.kind == "problem":
            self._apply_problem(conn, h.sender, row, doc, result, hooks, data)

    def _apply_referral(self, conn: sa.Connection, env: Envelope, opened: Opened,
                        result: BatchResult, hooks: list[tuple[int, frozenset[str]]]) -> None:
        """Checks first (consent, unique id), then buffered rows: nothing half-written."""
        from protocol.consent import check_consent
        from protocol.documents import monitoring_fields

        h = env.header
        doc = opened.document
        me = self.node.directory.entries.get(self.node.node_id)
        # Consent is enforced at both ends, judged as of the moment it was shared.
        check_consent(doc, recipient_node=self.node.node_id,
                      recipient_org=me.organization if me else None, now=h.created_at)
        receipt = self._current_receipt or self._seal_receipt(env)
        meta = monitoring_fields(doc)
        self._buffer_referral(env, json.dumps(opened.document_json, separators=(",", ":")),
                              meta.get("priority"), meta.get("category"),
                              [receipt.header.id, receipt.raw.decode("utf-8"), receipt.digest],
                              result, hooks)

    def _buffer_referral(self, env: Envelope, document: str, priority: str | None,
                         category: str | None, receipt: list[str], result: BatchResult,
                         hooks: list[tuple[int, frozenset[str]]]) -> None:
        """The rows of an accepted referral (checks done), written at the batch's flush."""
        h = env.header
        if h.thread in self._buf.referral_ids:
            raise Conflict("a referral with this id already exists", field="header.thread")
        receipt_id, receipt_raw, receipt_digest = receipt
        now = now_utc()
        buf = self._buf
        buf.referral_ids.add(h.thread)
        buf.referrals.append(dict(
            id=h.thread, direction="inbound", from_node=h.sender, to_node=h.recipient,
            status="received", priority=priority, category=category, document=document,
            restricted=False, created_at=h.created_at, updated_at=now, delivered_at=now,
            source_key=None, consent_withdrawn_at=None, consent_ack_at=None,
        ))
        buf.history.append(dict(referral_id=h.thread, actor=h.sender, event="requested",
                                status="requested", at=h.created_at, note=None,
                                message_id=h.id))
        buf.history.append(dict(referral_id=h.thread, actor=self.node.node_id,
                                event="received", status="received", at=now, note=None,
                                message_id=h.id))
        buf.outbox.append(dict(
            message_id=receipt_id, kind="receipt", referral_id=h.thread,
            to_node=h.sender, envelope=receipt_raw,
            envelope_digest=receipt_digest, state="pending", attempts=0, last_error=None,
            created_at=now, sent_at=None, delivered_at=None, hub_receipt=None,
        ))
        result.outbox += 1
        rows = webhook_rows("referral.received",
                            {"referral_id": h.thread, "direction": "inbound", "from": h.sender,
                             "to": h.recipient, "status": "received",
                             "priority": priority}, hooks)
        buf.webhooks.extend(rows)
        result.webhooks += len(rows)

    def _apply_receipt(self, conn: sa.Connection, sender: str, row: Any, doc: Any,
                       result: BatchResult, hooks: list[tuple[int, frozenset[str]]],
                       data: dict[str, Any]) -> None:
        out = conn.execute(_OUTBOX_BY_ID, {"b_id": doc.message_id}).first()
        if out is None or out.to_node != sender or out.referral_id != row.id:
            raise Malformed("receipt for a message this node did not send to the receipter",
                            field="message_id")
        if out.envelope_digest != doc.envelope_digest:
            raise Conflict("receipt digest does not match the envelope sent", field="envelope_digest")
        now = now_utc()
        conn.execute(_OUTBOX_DELIVERED, {"b_id": out.message_id, "b_at": doc.received_at})
        if out.kind == "referral":
            # History times are when this node learned a fact (sub-second, monotonic); the
            # peer's own signed time stays in the stored receipt statement.
            moved = row.status == "requested"
            if moved:
                conn.execute(_REFERRAL_DELIVERED_STATUS, {
                    "b_id": row.id, "b_at": now,
                    "b_status": next_state("requested", "received", Role.RECIPIENT).value})
            else:
                conn.execute(_REFERRAL_DELIVERED, {"b_id": row.id, "b_at": now})
            add_history(conn, row.id, actor=sender, event="received", at=now,
                        status="received" if moved else None,
                        message_id=doc.message_id)
            if moved:
                result.webhooks += enqueue_webhook_event(
                    conn, "referral.status", {**data, "status": "received"}, hooks=hooks)
        elif out.kind == "consent_withdrawn":
            conn.execute(sa.update(REFERRALS).where(REFERRALS.c.id == row.id)
                         .values(consent_ack_at=now, updated_at=now))
            add_history(conn, row.id, actor=sender, event="consent_withdrawal_acknowledged",
                        at=now, message_id=doc.message_id)

    def _apply_problem(self, conn: sa.Connection, sender: str, row: Any, doc: Any,
                       result: BatchResult, hooks: list[tuple[int, frozenset[str]]],
                       data: dict[str, Any]) -> None:
        now = now_utc()
        out = conn.execute(sa.select(OUTBOX).where(OUTBOX.c.message_id == doc.message_id)).first()
        add_history(conn, row.id, actor=sender, event="problem", at=now, note=doc.code,
                    message_id=doc.message_id)
        if out is not None:
            conn.execute(sa.update(OUTBOX).where(OUTBOX.c.message_id == out.message_id)
                         .values(last_error=doc.code[:64]))
        if out is not None and out.kind == "referral" and row.status == "requested":
            next_state("requested", "failed", Role.SYSTEM)
            conn.execute(sa.update(REFERRALS).where(REFERRALS.c.id == row.id)
                         .values(status="failed", updated_at=now))
            add_history(conn, row.id, actor=self.node.node_id, event="failed", status="failed",
                        at=now, note=doc.code, message_id=doc.message_id)
            result.webhooks += enqueue_webhook_event(conn, "referral.status",
                                                     {**data, "status": "failed"}, hooks=hooks)

    def _notice(self, conn: sa.Connection, item_id: str, notice: Any, result: BatchResult,
                hooks: list[tuple[int, frozenset[str]]]) -> None:
        from protocol import verify_hub_notice

        try:
            if not isinstance(notice, dict):
                raise Malformed("notice must be an object", field="notice")
            body = verify_hub_notice(notice, self.node.hub_key)
        except ProtocolError as exc:
            self._quarantine(conn, item_id, None, "hub", exc.code, notice, result)
            return
        mid = str(body["message_id"])
        code = str(body["code"])
        out = conn.execute(sa.select(OUTBOX).where(OUTBOX.c.message_id == mid)).first()
        now = now_utc()
        if out is not None:
            conn.execute(sa.update(OUTBOX).where(OUTBOX.c.message_id == mid)
                         .values(state="failed", last_error=code[:64]))
            row = conn.execute(
                sa.select(REFERRALS).where(REFERRALS.c.id == out.referral_id)).first()
            if row is not None:
                add_history(conn, row.id, actor="hub", event="problem", at=now, note=code,
                            message_id=mid)
                if out.kind == "referral" and row.status == "requested":
                    conn.execute(sa.update(REFERRALS).where(REFERRALS.c.id == row.id)
                                 .values(status="failed", updated_at=now))
                    add_history(conn, row.id, actor=self.node.node_id, event="failed",
                                status="failed", at=now, note=code, message_id=mid)
                    result.webhooks += enqueue_webhook_event(
                        conn, "referral.status",
                        {"referral_id": row.id, "direction": row.direction,
                         "from": row.from_node, "to": row.to_node, "status": "failed"},
                        hooks=hooks)
        conn.execute(
            sa.insert(INBOX).values(
                message_id=str(body["notice_id"]), kind="notice", from_node="hub",
                referral_id=out.referral_id if out is not None else "",
                envelope_digest="", statement=canonical_bytes(body).decode("utf-8"),
                inner_sig=str(notice["sig"]), received_at=now,
            )
        )
        result.stored += 1
        _log.info("hub_notice", message_id=mid, code=code)


def _parse_item(value: Any) -> Envelope:
    """An envelope from a mailbox item, parsed once: the JSON value is rebuilt into its
    canonical bytes (same digest as the bytes the sender signed) without a second parse.

    Headers are flat (meta holds strings); deeper nesting is refused before anything
    recurses into it.
    """
    header = value.get("header") if isinstance(value, dict) else None
    if isinstance(header, dict):
        for v in header.values():
            if isinstance(v, list) or (isinstance(v, dict) and any(
                    isinstance(x, dict | list) for x in v.values())):
                raise Malformed("header members must be flat", field="header")
    return parse_envelope_value(value)


def _qkey(env: Envelope) -> str:
    """Quarantine key: id and digest, so a forged envelope cannot shadow the genuine one."""
    return f"{env.header.id}:{env.digest[:22]}"


def _digests(conn: sa.Connection, ids: list[str]) -> dict[str, str]:
    """Message id -> envelope digest for the ids this node has already processed."""
    wanted = [i for i in set(ids) if i]
    out: dict[str, str] = {}
    for start in range(0, len(wanted), 400):
        chunk = wanted[start : start + 400]
        out.update((str(m), str(d)) for m, d in conn.execute(_INBOX_DIGESTS,
                                                             {"b_ids": chunk}))
    return out


def _fault_pause_before_ack(stop: threading.Event) -> None:
    """Fault injection for the crash tests: RSSN_NODE_FAULT_PAUSE_BEFORE_ACK_S holds the
    receiver between commit and ack, the window where a crash must cause redelivery and
    deduplication rather than loss or double processing. Unset in production."""
    import os

    pause = os.environ.get("RSSN_NODE_FAULT_PAUSE_BEFORE_ACK_S")
    if pause:
        _log.warning("inbox_committed_awaiting_ack")
        stop.wait(float(pause))


def _stamp_poll(conn: sa.Connection) -> None:
    set_kv(conn, "last_successful_poll", now_utc().strftime("%Y-%m-%dT%H:%M:%SZ"))


#: `last_successful_poll` is written at most this often (it is for `rssn-node status`; a
#: write per poll would cost an fsync per poll while referrals stream in).
_LAST_POLL_EVERY_S = 5.0


def receiver_loop(node: Node, stop: threading.Event) -> None:
    """Long-poll, process, ack; forever, with backoff on transient failures.

    Catching up (a full page came back): the next page is fetched while this one is
    processed, and the acknowledgement goes out while the next page is processed. Each
    page is still acknowledged only after its transaction committed; items fetched ahead
    are leased to us by the hub and come back after the lease if we die first.
    """
    import time
    from concurrent.futures import Future, ThreadPoolExecutor

    from node.hub_client import HubError, retrying

    processor = InboxProcessor(node)
    node.refresh_directory()
    io = ThreadPoolExecutor(2, thread_name_prefix="rssn-recv-io")
    ahead: Future[list[dict[str, Any]]] | None = None
    acking: Future[None] | None = None
    last_poll_write = 0.0

    def poll(wait: int) -> list[dict[str, Any]]:
        for attempt in retrying(stop):
            with attempt:
                return node.client.mailbox(wait=wait, limit=node.settings.batch_limit)
        return []

    def ack(ids: list[str]) -> None:
        try:
            for attempt in retrying(stop):
                with attempt:
                    node.client.ack(ids)
        except HubError as exc:
            _log.warning("mailbox_ack_failed", code=exc.code, count=len(ids))

    try:
        while not stop.is_set():
            try:
                if ahead is not None:
                    items, ahead = ahead.result(), None
                else:
                    if acking is not None:  # a long-poll after the last ack, not before it
                        acking.result()
                        acking = None
                    items = poll(node.settings.poll_wait)
            except HubError as exc:
                if stop.is_set():
                    return
                _log.warning("mailbox_poll_failed", code=exc.code)
                stop.wait(5)
                continue
            if stop.is_set() and not items:
                return
            now = time.monotonic()
            if now - last_poll_write >= _LAST_POLL_EVERY_S:
                node.writer.run(_stamp_poll)
                last_poll_write = now
            node.refresh_directory()
            full = len(items) >= node.settings.batch_limit
            processor.backlog(full)
            if full:
                node.inbox_backlog.set()
            else:
                node.inbox_backlog.clear()
            if not items:
                continue
            if full and not stop.is_set():
                ahead = io.submit(poll, 0)
            result = processor.process(items)
            _fault_pause_before_ack(stop)
            if result.outbox:
                node.outbox_wakeup.set()
            if result.webhooks:
                node.webhook_wakeup.set()
            if acking is not None:
                acking.result()
                acking = None
            if full:  # catching up: acknowledge while the next page is processed
                acking = io.submit(ack, result.ack)
            else:
                ack(result.ack)
            _log.info("inbox_batch", count=len(items), stored_count=result.stored,
                      duplicate_count=result.duplicates, quarantined_count=result.quarantined)
    finally:
        node.inbox_backlog.clear()
        if acking is not None and not stop.is_set():
            acking.result()
        io.shutdown(wait=False)
        processor.close()
