"""Small, explicit SQL helpers over the node's tables (SQLAlchemy Core).

Why Core rather than ORM sessions: the inbox and outbox process hundreds of rows per
transaction when a node catches up after days offline, and each helper here is one
statement on an explicit connection, so a caller can see exactly what one
transaction contains.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from node.store.models import (
    ApiKey,
    History,
    InboxEntry,
    KeyValue,
    OutboxMessage,
    Quarantine,
    Referral,
    Webhook,
    WebhookDelivery,
)

__all__ = [
    "API_KEYS",
    "HISTORY",
    "INBOX",
    "KV",
    "OUTBOX",
    "QUARANTINE",
    "REFERRALS",
    "WEBHOOKS",
    "WEBHOOK_DELIVERIES",
    "add_history",
    "enqueue_webhook_event",
    "get_kv",
    "iso",
    "now_utc",
    "set_kv",
]

REFERRALS: sa.Table = Referral.__table__  # type: ignore[attr-defined]
HISTORY: sa.Table = History.__table__  # type: ignore[attr-defined]
OUTBOX: sa.Table = OutboxMessage.__table__  # type: ignore[attr-defined]
INBOX: sa.Table = InboxEntry.__table__  # type: ignore[attr-defined]
QUARANTINE: sa.Table = Quarantine.__table__  # type: ignore[attr-defined]
API_KEYS: sa.Table = ApiKey.__table__  # type: ignore[attr-defined]
WEBHOOKS: sa.Table = Webhook.__table__  # type: ignore[attr-defined]
WEBHOOK_DELIVERIES: sa.Table = WebhookDelivery.__table__  # type: ignore[attr-defined]
KV: sa.Table = KeyValue.__table__  # type: ignore[attr-defined]


#: Built once: a `.values(...)` per call costs more than the insert itself.
_INSERT_HISTORY = sa.insert(HISTORY)


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso(t: datetime | None) -> str | None:
    """RFC 3339 UTC with milliseconds: local API and CLI output (journeys are timed)."""
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def get_kv(conn: sa.Connection, key: str) -> str | None:
    row = conn.execute(sa.select(KV.c.value).where(KV.c.key == key)).first()
    return None if row is None else str(row[0])


def set_kv(conn: sa.Connection, key: str, value: str) -> None:
    now = now_utc()
    updated = conn.execute(
        sa.update(KV).where(KV.c.key == key).values(value=value, updated_at=now)
    ).rowcount
    if not updated:
        conn.execute(sa.insert(KV).values(key=key, value=value, updated_at=now))


def add_history(
    conn: sa.Connection,
    referral_id: str,
    *,
    actor: str,
    event: str,
    at: datetime,
    status: str | None = None,
    note: str | None = None,
    message_id: str | None = None,
) -> None:
    conn.execute(_INSERT_HISTORY, dict(referral_id=referral_id, at=at, actor=actor,
                                       event=event, status=status, note=note,
                                       message_id=message_id))


def active_webhooks(conn: sa.Connection) -> list[tuple[int, frozenset[str]]]:
    rows = conn.execute(
        sa.select(WEBHOOKS.c.id, WEBHOOKS.c.events).where(WEBHOOKS.c.active.is_(True))
    ).all()
    return [(int(r[0]), frozenset(e.strip() for e in str(r[1]).split(",") if e.strip()))
            for r in rows]


def webhook_rows(event: str, data: dict[str, Any],
                 hooks: Sequence[tuple[int, frozenset[str]]]) -> list[dict[str, Any]]:
    """Delivery rows for every webhook subscribed to `event` (for bulk insert)."""
    from common.ids import new_message_id

    subscribed = [h for h, events in hooks if event in events or "*" in events]
    if not subscribed:
        return []
    now = now_utc()
    event_id = new_message_id()
    payload = json.dumps(
        {"id": event_id, "type": event, "created_at": iso(now), "data": data},
        separators=(",", ":"), sort_keys=True,
    )
    return [{"webhook_id": h, "event_id": event_id, "event": event, "payload": payload,
             "state": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now,
             "last_status_code": None, "last_error": None, "delivered_at": None}
            for h in subscribed]


def enqueue_webhook_event(
    conn: sa.Connection,
    event: str,
    data: dict[str, Any],
    *,
    hooks: Sequence[tuple[int, frozenset[str]]] | None = None,
) -> int:
    """Queue one delivery per subscribed webhook, in the caller's transaction (never lost)."""
    rows = webhook_rows(event, data, hooks if hooks is not None else active_webhooks(conn))
    if rows:
        conn.execute(sa.insert(WEBHOOK_DELIVERIES), rows)
    return len(rows)


def existing_ids(conn: sa.Connection, column: sa.Column[Any], ids: Iterable[str]) -> set[str]:
    wanted = list({i for i in ids if i})
    found: set[str] = set()
    for start in range(0, len(wanted), 400):
        chunk = wanted[start : start + 400]
        found.update(str(r[0]) for r in conn.execute(sa.select(column).where(column.in_(chunk))))
    return found
