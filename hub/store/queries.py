"""Every SQL statement the hub runs, as small functions over a SQLAlchemy Connection.

Why functions over a Connection (not sessions/ORM objects): the caller decides
the transaction boundaries (one transaction per batch), and the hot paths stay
SQLAlchemy Core (no ORM object churn). The same functions run on SQLite and
PostgreSQL; where they differ (row locks) the difference is confined here:

- PostgreSQL: `SELECT ... FOR UPDATE SKIP LOCKED` so two hub processes never
  lease the same mailbox row, and the lease column hides it from later polls.
- SQLite: every transaction is `BEGIN IMMEDIATE` (common.db), which serialises
  writers, and the same lease column does the rest.

The ledger queries at the bottom are meant to be reused by the coordinator
console: they return plain dicts with datetimes, never envelope bytes.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from .models import (
    AssertionJti,
    HubKey,
    HubState,
    Invite,
    MailboxItem,
    Message,
    Node,
    NodeKey,
)

__all__ = [
    "DIRECTORY_VERSION",
    "dt_to_ms",
    "ms_to_dt",
    "now_ms",
]

hub_keys: sa.Table = HubKey.__table__  # type: ignore[attr-defined]
hub_state: sa.Table = HubState.__table__  # type: ignore[attr-defined]
nodes: sa.Table = Node.__table__  # type: ignore[attr-defined]
node_keys: sa.Table = NodeKey.__table__  # type: ignore[attr-defined]
invites: sa.Table = Invite.__table__  # type: ignore[attr-defined]
jtis: sa.Table = AssertionJti.__table__  # type: ignore[attr-defined]
messages: sa.Table = Message.__table__  # type: ignore[attr-defined]
mailbox: sa.Table = MailboxItem.__table__  # type: ignore[attr-defined]

DIRECTORY_VERSION = "directory_version"

#: A result row of any width (SQLAlchemy 2.1 types rows by their column tuple).
Row = sa.Row[*tuple[Any, ...]]

#: SQLite's default limit on bound parameters is 32766 (3.32+); stay far below.
_IN_CHUNK = 500


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def dt_to_ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def ms_to_dt(ms: int | None) -> datetime | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _is_pg(conn: sa.Connection) -> bool:
    return conn.dialect.name == "postgresql"


def insert_ignore(conn: sa.Connection, table: sa.Table, row: Mapping[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when the row was inserted."""
    pk = next(iter(table.primary_key.columns))
    if _is_pg(conn):
        stmt: Any = pg_dialect.insert(table).values(**row).on_conflict_do_nothing()
    else:
        stmt = sqlite_dialect.insert(table).values(**row).on_conflict_do_nothing()
    # RETURNING, not rowcount: drivers disagree on rowcount for ON CONFLICT DO NOTHING.
    return conn.execute(stmt.returning(pk)).first() is not None


# --- hub key and state --------------------------------------------------------------------


def active_hub_key(conn: sa.Connection) -> Row | None:
    return conn.execute(
        sa.select(hub_keys.c.kid, hub_keys.c.public_key, hub_keys.c.sealed_seed)
        .where(hub_keys.c.active.is_(True))
        .order_by(hub_keys.c.created_at_ms.desc())
        .limit(1)
    ).first()


def insert_hub_key(
    conn: sa.Connection, kid: str, public_key: bytes, sealed_seed: bytes, now: int
) -> None:
    conn.execute(
        hub_keys.insert().values(
            kid=kid, public_key=public_key, sealed_seed=sealed_seed, created_at_ms=now, active=True
        )
    )


def ensure_state(conn: sa.Connection) -> None:
    insert_ignore(conn, hub_state, {"name": DIRECTORY_VERSION, "value": 0})


def directory_version(conn: sa.Connection) -> int:
    v = conn.execute(
        sa.select(hub_state.c.value).where(hub_state.c.name == DIRECTORY_VERSION)
    ).scalar()
    return int(v or 0)


def bump_directory_version(conn: sa.Connection) -> int:
    """Increment in the caller's transaction, so the new version commits with the change."""
    res = conn.execute(
        hub_state.update()
        .where(hub_state.c.name == DIRECTORY_VERSION)
        .values(value=hub_state.c.value + 1)
    )
    if res.rowcount == 0:
        ensure_state(conn)
        conn.execute(
            hub_state.update()
            .where(hub_state.c.name == DIRECTORY_VERSION)
            .values(value=hub_state.c.value + 1)
        )
    return directory_version(conn)


# --- nodes --------------------------------------------------------------------------------


#: Statements of the per-request paths, built once: constructing one (and its cache key)
#: cost more than running it. Bind names differ from column names (SQLAlchemy reserves those).
_NODE_AUTH_STATE = sa.select(
    nodes.c.status, nodes.c.signing_kid,
    sa.select(hub_state.c.value).where(hub_state.c.name == DIRECTORY_VERSION).scalar_subquery(),
).where(nodes.c.node_id == sa.bindparam("b_node"))
_EXISTING_MESSAGES = sa.select(
    messages.c.message_id, messages.c.digest, messages.c.submitted_at_ms
).where(messages.c.message_id.in_(sa.bindparam("b_ids", expanding=True)))


_LEASE_SELECT = (
    sa.select(mailbox.c.seq, mailbox.c.item_id, mailbox.c.item_type, mailbox.c.body)
    .where(
        (mailbox.c.recipient == sa.bindparam("b_recipient"))
        & (mailbox.c.leased_until_ms <= sa.bindparam("b_now"))
        & (mailbox.c.expires_at_ms > sa.bindparam("b_now"))
    )
    .order_by(mailbox.c.seq)
    .limit(sa.bindparam("b_limit"))
)
_LEASE_SELECT_PG = _LEASE_SELECT.with_for_update(skip_locked=True)
_LEASE_UPDATE = (mailbox.update()
                 .where(mailbox.c.seq.in_(sa.bindparam("b_seqs", expanding=True)))
                 .values(leased_until_ms=sa.bindparam("b_until")))
_FETCHED_UPDATE = (messages.update()
                   .where(messages.c.message_id.in_(sa.bindparam("b_ids", expanding=True))
                          & messages.c.fetched_at_ms.is_(None))
                   .values(fetched_at_ms=sa.bindparam("b_now")))
_ACK_SELECT = sa.select(mailbox.c.seq, mailbox.c.item_id, mailbox.c.item_type).where(
    (mailbox.c.recipient == sa.bindparam("b_recipient"))
    & mailbox.c.item_id.in_(sa.bindparam("b_ids", expanding=True)))
_ACK_DELETE = mailbox.delete().where(mailbox.c.seq.in_(sa.bindparam("b_seqs", expanding=True)))
_DELIVERED_UPDATE = (messages.update()
                     .where(messages.c.message_id.in_(sa.bindparam("b_ids", expanding=True))
                            & messages.c.delivered_at_ms.is_(None))
                     .values(delivered_at_ms=sa.bindparam("b_now")))


def node_auth_state(conn: sa.Connection, node_id: str) -> tuple[str, str, int] | None:
    """(status, signing_kid, directory_version) in one round trip: the per-request check."""
    row = conn.execute(_NODE_AUTH_STATE, {"b_node": node_id}).first()
    if row is None:
        return None
    return str(row[0]), str(row[1]), int(row[2] or 0)


def get_node(conn: sa.Connection, node_id: str) -> Row | None:
    return conn.execute(sa.select(nodes).where(nodes.c.node_id == node_id)).first()


def upsert_node(
    conn: sa.Connection,
    *,
    node_id: str,
    organization: str,
    country: str,
    signing_key: bytes,
    signing_kid: str,
    now: int,
    software_version: str | None,
) -> bool:
    """Register or re-register a node as active; True when its signing key changed."""
    existing = get_node(conn, node_id)
    values = {
        "organization": organization,
        "country": country,
        "signing_key": signing_key,
        "signing_kid": signing_kid,
        "status": "active",
        "enrolled_at_ms": now,
        "revoked_at_ms": None,
        "last_seen_ms": now,
        "software_version": software_version,
    }
    if existing is None:
        conn.execute(nodes.insert().values(node_id=node_id, **values))
        return True
    conn.execute(nodes.update().where(nodes.c.node_id == node_id).values(**values))
    return bytes(existing.signing_key) != signing_key


def replace_node_keys(
    conn: sa.Connection,
    node_id: str,
    *,
    kid: str,
    binding_json: str,
    not_before: int,
    not_after: int,
    now: int,
    keep_old: bool,
) -> None:
    """Add a binding; drop old ones when the signing key changed (they no longer verify)
    or when they have expired."""
    if keep_old:
        conn.execute(
            node_keys.delete().where(
                (node_keys.c.node_id == node_id)
                & ((node_keys.c.not_after_ms <= now) | (node_keys.c.kid == kid))
            )
        )
    else:
        conn.execute(node_keys.delete().where(node_keys.c.node_id == node_id))
    conn.execute(
        node_keys.insert().values(
            node_id=node_id,
            kid=kid,
            binding=binding_json,
            not_before_ms=not_before,
            not_after_ms=not_after,
            added_at_ms=now,
        )
    )


def revoke_node(conn: sa.Connection, node_id: str, now: int) -> bool:
    res = conn.execute(
        nodes.update()
        .where((nodes.c.node_id == node_id) & (nodes.c.status != "revoked"))
        .values(status="revoked", revoked_at_ms=now)
    )
    return bool(res.rowcount)


def touch_node(conn: sa.Connection, node_id: str, now: int, version: str | None) -> None:
    values: dict[str, Any] = {"last_seen_ms": now}
    if version:
        values["software_version"] = version[:64]
    conn.execute(nodes.update().where(nodes.c.node_id == node_id).values(**values))


def directory_rows(conn: sa.Connection) -> list[tuple[Row, list[str]]]:
    """Active nodes with their stored bindings (JSON text), sorted by node id."""
    active = conn.execute(
        sa.select(nodes).where(nodes.c.status == "active").order_by(nodes.c.node_id)
    ).all()
    keys: dict[str, list[str]] = {}
    for r in conn.execute(
        sa.select(node_keys.c.node_id, node_keys.c.binding)
        .select_from(node_keys.join(nodes, nodes.c.node_id == node_keys.c.node_id))
        .where(nodes.c.status == "active")
        .order_by(node_keys.c.node_id, node_keys.c.not_before_ms, node_keys.c.kid)
    ):
        keys.setdefault(r.node_id, []).append(r.binding)
    return [(n, keys.get(n.node_id, [])) for n in active]


def list_nodes(conn: sa.Connection) -> list[dict[str, Any]]:
    """Every node with mailbox depth and oldest waiting item (for `rssn-hub nodes`, console)."""
    stats = {s["node_id"]: s for s in mailbox_stats(conn)}
    out = []
    for n in conn.execute(sa.select(nodes).order_by(nodes.c.node_id)):
        s = stats.get(n.node_id, {})
        out.append(
            {
                "node_id": n.node_id,
                "organization": n.organization,
                "country": n.country,
                "status": n.status,
                "signing_kid": n.signing_kid,
                "enrolled_at": ms_to_dt(n.enrolled_at_ms),
                "revoked_at": ms_to_dt(n.revoked_at_ms),
                "last_seen": ms_to_dt(n.last_seen_ms),
                "software_version": n.software_version,
                "mailbox_depth": int(s.get("depth", 0)),
                "oldest_waiting": ms_to_dt(s.get("oldest_accepted_ms")),
            }
        )
    return out


def key_expiry(conn: sa.Connection) -> dict[str, int]:
    """Latest not_after (ms) of each active node's encryption key bindings (key-expiry alerts)."""
    return {
        r[0]: int(r[1])
        for r in conn.execute(
            sa.select(node_keys.c.node_id, sa.func.max(node_keys.c.not_after_ms))
            .select_from(node_keys.join(nodes, nodes.c.node_id == node_keys.c.node_id))
            .where(nodes.c.status == "active")
            .group_by(node_keys.c.node_id)
        )
    }


# --- invites and assertion jtis -----------------------------------------------------------


def insert_invite(
    conn: sa.Connection,
    *,
    token_sha256: str,
    node_id: str,
    organization: str,
    country: str,
    now: int,
    expires_at: int,
) -> None:
    conn.execute(
        invites.insert().values(
            token_sha256=token_sha256,
            node_id=node_id,
            organization=organization,
            country=country,
            created_at_ms=now,
            expires_at_ms=expires_at,
        )
    )


def get_invite_for_update(conn: sa.Connection, token_sha256: str) -> Row | None:
    stmt = sa.select(invites).where(invites.c.token_sha256 == token_sha256)
    if _is_pg(conn):
        stmt = stmt.with_for_update()
    return conn.execute(stmt).first()


def mark_invite_used(conn: sa.Connection, token_sha256: str, now: int) -> bool:
    res = conn.execute(
        invites.update()
        .where((invites.c.token_sha256 == token_sha256) & invites.c.used_at_ms.is_(None))
        .values(used_at_ms=now)
    )
    return bool(res.rowcount == 1)


def remember_jti(conn: sa.Connection, node_id: str, jti: str, expires_at: int) -> bool:
    """False when this node already used this jti (a replayed client assertion)."""
    key = hashlib.sha256(f"{node_id}\x00{jti}".encode()).hexdigest()
    return insert_ignore(
        conn, jtis, {"key": key, "node_id": node_id, "expires_at_ms": expires_at}
    )


def purge_jtis(conn: sa.Connection, now: int) -> int:
    return int(conn.execute(jtis.delete().where(jtis.c.expires_at_ms < now)).rowcount or 0)


def purge_invites(conn: sa.Connection, older_than: int) -> int:
    return int(
        conn.execute(invites.delete().where(invites.c.expires_at_ms < older_than)).rowcount or 0
    )


# --- ingest -------------------------------------------------------------------------------


def existing_messages(conn: sa.Connection, ids: Sequence[str]) -> dict[str, tuple[str, int]]:
    """message_id -> (digest, submitted_at_ms) for ids already accepted."""
    out: dict[str, tuple[str, int]] = {}
    for chunk in _chunks(list(ids)):
        for r in conn.execute(_EXISTING_MESSAGES, {"b_ids": list(chunk)}):
            out[r[0]] = (r[1], int(r[2]))
    return out


_LEDGER_INSERT = (
    "message_id", "digest", "sender", "recipient", "kind", "thread", "priority", "category",
    "status", "size_bytes", "created_at_ms", "expires_at_ms", "submitted_at_ms",
)
_MAILBOX_INSERT = (
    "item_id", "recipient", "item_type", "sender", "body", "accepted_at_ms", "expires_at_ms",
    "leased_until_ms",
)


def _insert_many(conn: sa.Connection, table: str, columns: Sequence[str],
                 rows: Sequence[Mapping[str, Any]]) -> None:
    """A plain DB-API executemany with positional rows.

    Why not `conn.execute(table.insert(), rows)`: for hundreds of rows per request,
    SQLAlchemy's per-row parameter processing cost more than the inserts themselves.
    The statement is a fixed string over fixed column names (no input reaches it).
    """
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608 - fixed identifiers
           f"VALUES ({', '.join([mark] * len(columns))})")
    conn.exec_driver_sql(sql, [tuple(r[c] for c in columns) for r in rows])


def insert_accepted(
    conn: sa.Connection,
    ledger_rows: Sequence[Mapping[str, Any]],
    mailbox_rows: Sequence[Mapping[str, Any]],
) -> None:
    """One executemany per table: the whole batch commits (or fails) together."""
    if ledger_rows:
        _insert_many(conn, messages.name, _LEDGER_INSERT, ledger_rows)
    if mailbox_rows:
        _insert_many(conn, mailbox.name, _MAILBOX_INSERT, mailbox_rows)


# --- delivery -----------------------------------------------------------------------------


def lease_items(
    conn: sa.Connection, recipient: str, *, limit: int, now: int, lease_until: int
) -> list[tuple[int, str, str, bytes]]:
    """Take up to `limit` available items of one mailbox in submission order and lease them.

    An item leased by a concurrent poll (another process) is skipped, never handed out twice
    while its lease runs; an item whose lease ran out without an ack is available again.
    """
    stmt = _LEASE_SELECT_PG if _is_pg(conn) else _LEASE_SELECT
    params = {"b_recipient": recipient, "b_now": now, "b_limit": limit}
    rows = [(int(r[0]), str(r[1]), str(r[2]), bytes(r[3])) for r in conn.execute(stmt, params)]
    if rows:
        for chunk in _chunks([r[0] for r in rows]):
            conn.execute(_LEASE_UPDATE, {"b_seqs": list(chunk), "b_until": lease_until})
    return rows


def record_fetched(conn: sa.Connection, message_ids: Sequence[str], now: int) -> None:
    for chunk in _chunks(list(message_ids)):
        conn.execute(_FETCHED_UPDATE, {"b_ids": list(chunk), "b_now": now})


def ack_items(conn: sa.Connection, recipient: str, item_ids: Sequence[str], now: int) -> int:
    """Delete acknowledged items of `recipient` (others' ids match nothing) and record delivery."""
    acked = 0
    for chunk in _chunks(list(dict.fromkeys(item_ids))):
        rows = conn.execute(_ACK_SELECT, {"b_recipient": recipient, "b_ids": list(chunk)}).all()
        if not rows:
            continue
        res = conn.execute(_ACK_DELETE, {"b_seqs": [r[0] for r in rows]})
        acked += int(res.rowcount or 0)
        env_ids = [r[1] for r in rows if r[2] == "envelope"]
        if env_ids:
            conn.execute(_DELIVERED_UPDATE, {"b_ids": env_ids, "b_now": now})
    return acked


def recipients_with_available(
    conn: sa.Connection, recipients: Sequence[str], now: int
) -> set[str]:
    """Which of the waiting nodes have something to pull (one query for all long-polls)."""
    if not recipients:
        return set()
    out: set[str] = set()
    for chunk in _chunks(list(recipients)):
        out.update(
            r[0]
            for r in conn.execute(
                sa.select(mailbox.c.recipient)
                .where(
                    mailbox.c.recipient.in_(chunk)
                    & (mailbox.c.leased_until_ms <= now)
                    & (mailbox.c.expires_at_ms > now)
                )
                .distinct()
            )
        )
    return out


def mailbox_stats(conn: sa.Connection) -> list[dict[str, Any]]:
    """Depth and oldest waiting item per recipient (metrics, CLI, console)."""
    return [
        {"node_id": r[0], "depth": int(r[1]), "oldest_accepted_ms": int(r[2])}
        for r in conn.execute(
            sa.select(
                mailbox.c.recipient,
                sa.func.count(),
                sa.func.min(mailbox.c.accepted_at_ms),
            ).group_by(mailbox.c.recipient)
        )
    ]


# --- expiry -------------------------------------------------------------------------------


def take_expired(conn: sa.Connection, now: int, limit: int) -> list[Row]:
    """Expired mailbox rows, locked for this sweeper (others skip them), then deleted."""
    stmt = (
        sa.select(
            mailbox.c.seq, mailbox.c.item_id, mailbox.c.item_type, mailbox.c.recipient,
            mailbox.c.sender,
        )
        .where(mailbox.c.expires_at_ms <= now)
        .order_by(mailbox.c.expires_at_ms)
        .limit(limit)
    )
    if _is_pg(conn):
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list(conn.execute(stmt).all())
    for chunk in _chunks([r.seq for r in rows]):
        conn.execute(mailbox.delete().where(mailbox.c.seq.in_(chunk)))
    return rows


def mark_expired(conn: sa.Connection, message_ids: Sequence[str], now: int) -> None:
    for chunk in _chunks(list(message_ids)):
        conn.execute(
            messages.update()
            .where(messages.c.message_id.in_(chunk) & messages.c.expired_at_ms.is_(None))
            .values(expired_at_ms=now)
        )


def insert_notices(conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        conn.execute(mailbox.insert(), list(rows))


def purge_ledger(conn: sa.Connection, *, submitted_before: int, now: int) -> int:
    """Drop ledger rows past retention, but never while the envelope could still be replayed
    (before its expiry the row is the de-duplication record)."""
    res = conn.execute(
        messages.delete().where(
            (messages.c.submitted_at_ms < submitted_before) & (messages.c.expires_at_ms < now)
        )
    )
    return int(res.rowcount or 0)


# --- status ledger (reusable by the coordinator console) ----------------------------------

_LEDGER_COLUMNS = (
    "message_id", "thread", "kind", "sender", "recipient", "priority", "category", "status",
    "size_bytes",
)
_LEDGER_TIMES = (
    "created_at", "expires_at", "submitted_at", "fetched_at", "delivered_at", "expired_at",
)


def _ledger_dict(r: Row) -> dict[str, Any]:
    m = r._mapping
    out: dict[str, Any] = {k: m[k] for k in _LEDGER_COLUMNS}
    for t in _LEDGER_TIMES:
        out[t] = ms_to_dt(m[f"{t}_ms"])
    return out


def message_record(conn: sa.Connection, message_id: str) -> dict[str, Any] | None:
    r = conn.execute(sa.select(messages).where(messages.c.message_id == message_id)).first()
    return _ledger_dict(r) if r is not None else None


def thread_events(conn: sa.Connection, thread: str) -> list[dict[str, Any]]:
    """Everything the hub knows about one referral thread, in submission order."""
    return [
        _ledger_dict(r)
        for r in conn.execute(
            sa.select(messages)
            .where(messages.c.thread == thread)
            .order_by(messages.c.submitted_at_ms, messages.c.message_id)
        )
    ]


def summarize_thread(events: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Fold a thread's events into one monitoring row (referral, receipt, latest status)."""
    if not events:
        return None
    referral = next((e for e in events if e["kind"] == "referral"), None)
    first = referral or events[0]
    statuses = [e for e in events if e["kind"] == "status" and e["status"]]
    receipts = [e for e in events if e["kind"] == "receipt"]
    withdrawn = [e for e in events if e["kind"] == "consent_withdrawn"]
    last_status = statuses[-1] if statuses else None
    return {
        "thread": first["thread"],
        "referral_id": referral["message_id"] if referral else None,
        "from": first["sender"],
        "to": first["recipient"],
        "priority": first["priority"],
        "category": first["category"],
        "submitted_at": first["submitted_at"],
        "delivered_at": first["delivered_at"],
        "expired_at": first["expired_at"],
        "first_receipt_at": receipts[0]["submitted_at"] if receipts else None,
        "status": last_status["status"] if last_status else ("requested" if referral else None),
        "status_changed_at": last_status["submitted_at"] if last_status else None,
        "status_history": [
            {"status": e["status"], "by": e["sender"], "at": e["submitted_at"],
             "delivered_at": e["delivered_at"]}
            for e in statuses
        ],
        "consent_withdrawn_at": withdrawn[0]["submitted_at"] if withdrawn else None,
        "last_activity_at": events[-1]["submitted_at"],
        "message_count": len(events),
    }


def thread_summary(conn: sa.Connection, thread: str) -> dict[str, Any] | None:
    return summarize_thread(thread_events(conn, thread))


def list_threads(
    conn: sa.Connection,
    *,
    since: datetime | None = None,
    node_id: str | None = None,
    limit: int = 200,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Monitoring rows for threads with activity since `since` (newest activity first).

    `node_id` keeps threads where that node is sender or recipient of any message.
    """
    last = sa.func.max(messages.c.submitted_at_ms).label("last")
    q = sa.select(messages.c.thread, last).group_by(messages.c.thread)
    if since is not None:
        q = q.having(last >= dt_to_ms(since))
    if node_id is not None:
        q = q.where((messages.c.sender == node_id) | (messages.c.recipient == node_id))
    q = q.order_by(last.desc(), messages.c.thread).limit(limit).offset(offset)
    threads = [r[0] for r in conn.execute(q)]
    if not threads:
        return []
    by_thread: dict[str, list[dict[str, Any]]] = {t: [] for t in threads}
    for chunk in _chunks(threads):
        for r in conn.execute(
            sa.select(messages)
            .where(messages.c.thread.in_(chunk))
            .order_by(messages.c.submitted_at_ms, messages.c.message_id)
        ):
            by_thread[r.thread].append(_ledger_dict(r))
    return [s for t in threads if (s := summarize_thread(by_thread[t])) is not None]


def ledger_counts(conn: sa.Connection, *, since: datetime | None = None) -> list[dict[str, Any]]:
    """Message counts per (sender, recipient, kind) with delivery/expiry tallies."""
    q = sa.select(
        messages.c.sender,
        messages.c.recipient,
        messages.c.kind,
        sa.func.count().label("total"),
        sa.func.count(messages.c.delivered_at_ms).label("delivered"),
        sa.func.count(messages.c.expired_at_ms).label("expired"),
    ).group_by(messages.c.sender, messages.c.recipient, messages.c.kind)
    if since is not None:
        q = q.where(messages.c.submitted_at_ms >= dt_to_ms(since))
    return [dict(r._mapping) for r in conn.execute(q)]
