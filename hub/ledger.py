"""The status ledger: content-free metadata per referral thread.

What the hub can know without reading anything: who sent what kind of message
to whom in which thread, the whitelisted monitoring fields of the header
(`meta.priority`, `meta.category`, `meta.status`), the envelope size, and
when it was submitted, handed out, acknowledged or expired. Receipts and
status changes are envelopes like any other, so their header's kind and
`meta.status` mark when a referral was received or changed state.

Queries for monitoring live in `hub.store.queries` (`thread_events`,
`thread_summary`, `list_threads`, `ledger_counts`) so the coordinator console
can reuse them; this module holds the recording and retention rules.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from protocol import Envelope

from .store import queries as q

__all__ = ["ledger_row", "purge"]


def ledger_row(env: Envelope, digest: str, submitted_at_ms: int) -> dict[str, Any]:
    h = env.header
    meta = h.meta
    return {
        "message_id": h.id,
        "digest": digest,
        "sender": h.sender,
        "recipient": h.recipient,
        "kind": h.kind,
        "thread": h.thread,
        "priority": meta.get("priority"),
        "category": meta.get("category"),
        "status": meta.get("status"),
        "size_bytes": len(env.raw),
        "created_at_ms": q.dt_to_ms(h.created_at),
        "expires_at_ms": q.dt_to_ms(h.expires_at),
        "submitted_at_ms": submitted_at_ms,
    }


def purge(conn: sa.Connection, *, retention: timedelta, now_ms: int) -> int:
    """Delete ledger rows older than the retention (never before their envelope expired)."""
    cutoff = now_ms - int(retention.total_seconds() * 1000)
    return q.purge_ledger(conn, submitted_before=cutoff, now=now_ms)
