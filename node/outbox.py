"""The sender: hand queued envelopes to the hub, in order, until each is accepted or refused.

Why it looks like this: envelopes are sealed and stored when the referral (or
status, receipt, ...) is created, in the same transaction, so the bytes and the
message id never change across retries; the hub answers an identical resend with
200 and its original receipt, so resending after a crash is harmless. Transient
failures (network, 5xx, 429) are retried by tenacity with exponential backoff and
jitter; a refusal with a protocol code is final (the row is marked failed and an
outbound referral that never left moves to `failed`). More than one pending
envelope goes as one /v1/messages/batch call (up to 500).
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from common.logging import get_logger
from node.store.queries import OUTBOX, REFERRALS, add_history, enqueue_webhook_event, now_utc

if TYPE_CHECKING:
    from node.runtime import Node

__all__ = ["OutboxSender", "sender_loop"]

_log = get_logger(__name__)

#: Per-item batch refusals that mean "try again later", not "this envelope is bad".
_TRANSIENT_CODES = frozenset({"rate_limited", "internal", "unavailable", "bad_gateway",
                              "gateway_timeout"})


class OutboxSender:
    def __init__(self, node: Node, *, batch_limit: int = 500) -> None:
        self.node = node
        self.batch_limit = batch_limit

    def pending(self) -> list[Any]:
        with self.node.reader.connect() as conn:
            return list(conn.execute(
                sa.select(OUTBOX.c.message_id, OUTBOX.c.envelope, OUTBOX.c.envelope_digest)
                .where(OUTBOX.c.state == "pending")
                .order_by(OUTBOX.c.message_id).limit(self.batch_limit)
            ))

    def send_once(self, rows: list[Any]) -> tuple[int, int]:
        """One attempt at sending `rows` (raises HubUnavailable for tenacity to retry).

        Returns (sent, failed) counts; rows refused transiently stay pending.
        """
        from node.hub_client import HubRejected

        if len(rows) == 1:
            row = rows[0]
            try:
                result = self.node.client.post_message(row.envelope.encode("utf-8"))
            except HubRejected as exc:
                self._failed(row.message_id, exc.code)
                return 0, 1
            self._sent([(row, result.get("receipt"))])
            return 1, 0
        try:
            results = self.node.client.post_batch([r.envelope.encode("utf-8") for r in rows])
        except HubRejected as exc:
            # The batch as a whole was refused (too large, ...): fall back to one by one.
            _log.warning("batch_refused", code=exc.code, count=len(rows))
            sent = failed = 0
            for row in rows:
                s, f = self.send_once([row])
                sent, failed = sent + s, failed + f
            return sent, failed
        ok: list[tuple[Any, Any]] = []
        failed = 0
        for row, res in zip(rows, results, strict=True):
            status = res.get("status")
            if status in ("accepted", "duplicate"):
                ok.append((row, res.get("receipt")))
            else:
                code = str((res.get("problem") or {}).get("code") or "rejected")
                if code in _TRANSIENT_CODES:
                    continue
                self._failed(row.message_id, code)
                failed += 1
        self._sent(ok)
        if not ok and not failed:
            from node.hub_client import HubUnavailable

            raise HubUnavailable("rate_limited")
        return len(ok), failed

    def _sent(self, rows: list[tuple[Any, Any]]) -> None:
        from protocol import ProtocolError, verify_transport_receipt

        if not rows:
            return
        now = now_utc()
        updates = []
        for row, receipt in rows:
            if isinstance(receipt, dict):
                try:
                    verify_transport_receipt(receipt, self.node.hub_key,
                                             message_id=row.message_id,
                                             envelope_digest=row.envelope_digest)
                except ProtocolError as exc:
                    _log.warning("transport_receipt_invalid", message_id=row.message_id,
                                 code=exc.code)
            updates.append({"mid": row.message_id, "receipt": json.dumps(receipt)
                            if receipt is not None else None})
        self.node.writer.run(lambda conn: conn.execute(
            sa.update(OUTBOX).where(OUTBOX.c.message_id == sa.bindparam("mid"))
            .values(state="sent", sent_at=now, attempts=OUTBOX.c.attempts + 1,
                    hub_receipt=sa.bindparam("receipt")),
            updates,
        ))

    def _failed(self, message_id: str, code: str) -> None:
        now = now_utc()
        with self.node.engine.begin() as conn:
            row = conn.execute(sa.select(OUTBOX).where(OUTBOX.c.message_id == message_id)).first()
            if row is None:
                return
            conn.execute(sa.update(OUTBOX).where(OUTBOX.c.message_id == message_id)
                         .values(state="failed", last_error=code[:64],
                                 attempts=OUTBOX.c.attempts + 1))
            ref = conn.execute(sa.select(REFERRALS).where(REFERRALS.c.id == row.referral_id)
                               ).first()
            if ref is None:
                return
            add_history(conn, ref.id, actor="hub", event="problem", at=now, note=code,
                        message_id=message_id)
            if row.kind == "referral" and ref.status == "requested":
                conn.execute(sa.update(REFERRALS).where(REFERRALS.c.id == ref.id)
                             .values(status="failed", updated_at=now))
                add_history(conn, ref.id, actor=self.node.node_id, event="failed",
                            status="failed", at=now, note=code, message_id=message_id)
                enqueue_webhook_event(conn, "referral.status",
                                      {"referral_id": ref.id, "direction": ref.direction,
                                       "from": ref.from_node, "to": ref.to_node,
                                       "status": "failed"})
                self.node.webhook_wakeup.set()
        _log.warning("message_refused_by_hub", message_id=message_id, code=code)


#: After a send, if the previous one was less than STREAM_WINDOW_S ago, wait LINGER_S before
#: reading the queue: a sporadic envelope leaves at once, a stream goes out in batches.
STREAM_WINDOW_S = 0.1
LINGER_S = 0.01

#: While the inbox is catching up, the outbox yields to it for at most this long at a time.
INBOX_FIRST_MAX_S = 30.0


def _yield_to_inbox(node: Node, stop: threading.Event, since: float) -> None:
    """Intake first: after days offline, what others sent us (referrals people wait for) is
    drained before our own queue (mostly receipts for what we are receiving) competes with it
    for the CPU. Everything stays queued in the outbox; this only orders the work, and never
    for more than INBOX_FIRST_MAX_S."""
    import time

    while (node.inbox_backlog.is_set() and not stop.is_set()
           and time.monotonic() - since < INBOX_FIRST_MAX_S):
        stop.wait(0.2)


def sender_loop(node: Node, stop: threading.Event) -> None:
    import time

    from node.hub_client import HubError, retrying

    sender = OutboxSender(node, batch_limit=node.settings.batch_limit)
    last_send = time.monotonic()
    sent_at = 0.0
    while not stop.is_set():
        if node.inbox_backlog.is_set():
            _yield_to_inbox(node, stop, last_send)
        last_send = time.monotonic()
        if last_send - sent_at < STREAM_WINDOW_S:
            # Envelopes are streaming in: let a few more join this request (one batch to the
            # hub costs far less per envelope than single submissions, on both sides).
            stop.wait(LINGER_S)
        node.outbox_wakeup.clear()
        rows = sender.pending()
        if not rows:
            node.outbox_wakeup.wait(5.0)
            continue
        try:
            for attempt in retrying(stop):
                with attempt:
                    sent, failed = sender.send_once(rows)
            sent_at = time.monotonic()
            _log.info("outbox_sent", count=sent, failed_count=failed)
        except HubError as exc:
            _log.warning("outbox_send_stopped", code=exc.code)
        except Exception as exc:  # a database hiccup: log and try again shortly
            _log.error("outbox_error", error=exc, exc_info=exc)
            stop.wait(2.0)
