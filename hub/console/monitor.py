"""Monitoring views folded from the hub's status ledger (content-free by construction).

The ledger (`messages`) has one row per accepted envelope: ids, node ids, kind,
thread, the whitelisted header fields (priority, category, status) and hub-clock
times (submitted, delivered, expired). A referral is a thread; its state is folded
from the thread's rows here. Nothing in this module can see referral content: the
hub never had it.

Times are the hub's own clock (submission to the hub), so a node with a wrong
clock cannot make referrals look faster or slower than they were.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from hub.store.models import MailboxItem, Message, Node, NodeKey

__all__ = [
    "DEADLINES",
    "FUNNEL",
    "NodeHealth",
    "Referral",
    "Scope",
    "load_nodes",
    "load_referrals",
    "node_health",
]

messages: sa.Table = Message.__table__  # type: ignore[assignment,attr-defined]
nodes_t: sa.Table = Node.__table__  # type: ignore[assignment,attr-defined]
node_keys_t: sa.Table = NodeKey.__table__  # type: ignore[assignment,attr-defined]
mailbox_t: sa.Table = MailboxItem.__table__  # type: ignore[assignment,attr-defined]

#: The network's response deadlines (protocol.documents.PRIORITY_DEADLINES).
DEADLINES: dict[str, timedelta] = {
    "urgent": timedelta(hours=24),
    "high": timedelta(hours=72),
    "normal": timedelta(days=14),
}
PRIORITIES = ("urgent", "high", "normal")
STATUSES = (
    "requested", "received", "accepted", "declined", "in_progress", "completed", "cancelled",
    "failed",
)
TERMINAL = frozenset({"declined", "completed", "cancelled", "failed"})
FUNNEL = ("sent", "received", "accepted", "in_progress", "completed")
DEADLINE_STATES = ("overdue", "due_soon", "on_track", "late", "met", "closed")
CATEGORIES = (
    "sgbv", "child_protection", "trafficking", "lgbti", "health", "legal", "basic_needs", "other",
)
_IN_CHUNK = 400


def ms_to_dt(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass(frozen=True)
class Scope:
    """What a coordinator may see: every country (None) or referrals touching `countries`."""

    countries: frozenset[str] | None = None

    def sees_country(self, cc: str | None) -> bool:
        return self.countries is None or (cc or "").upper() in self.countries

    def sees(self, a: str | None, b: str | None) -> bool:
        return self.sees_country(a) or self.sees_country(b)


@dataclass
class NodeInfo:
    node_id: str
    organization: str
    country: str
    status: str
    enrolled_at: datetime | None
    revoked_at: datetime | None
    last_seen: datetime | None
    software_version: str | None


@dataclass
class Event:
    message_id: str
    kind: str
    sender: str
    recipient: str
    status: str | None
    priority: str | None
    category: str | None
    size_bytes: int
    submitted_at: datetime
    delivered_at: datetime | None
    expired_at: datetime | None


@dataclass
class Referral:
    thread: str
    referral_id: str
    sender: str
    recipient: str
    sender_org: str
    recipient_org: str
    sender_country: str
    recipient_country: str
    priority: str
    category: str | None
    status: str
    sent_at: datetime
    delivered_at: datetime | None
    received_at: datetime | None
    responded_at: datetime | None
    accepted_at: datetime | None
    completed_at: datetime | None
    expired_at: datetime | None
    due_at: datetime
    deadline_state: str
    age: timedelta
    events: list[Event] = field(default_factory=list)

    def reached(self, stage: str) -> bool:
        if stage == "sent":
            return True
        if stage == "received":
            return self.received_at is not None or self.responded_at is not None
        if stage == "accepted":
            return self.accepted_at is not None
        if stage == "in_progress":
            return self.status in ("in_progress", "completed") or self.completed_at is not None
        if stage == "completed":
            return self.completed_at is not None
        raise ValueError(stage)


def load_nodes(conn: sa.Connection) -> dict[str, NodeInfo]:
    out = {}
    for r in conn.execute(sa.select(nodes_t).order_by(nodes_t.c.node_id)):
        out[r.node_id] = NodeInfo(
            node_id=r.node_id,
            organization=r.organization,
            country=(r.country or "").upper(),
            status=r.status,
            enrolled_at=ms_to_dt(r.enrolled_at_ms),
            revoked_at=ms_to_dt(r.revoked_at_ms),
            last_seen=ms_to_dt(r.last_seen_ms),
            software_version=r.software_version,
        )
    return out


def _event(r: Any) -> Event:
    return Event(
        message_id=r.message_id,
        kind=r.kind,
        sender=r.sender,
        recipient=r.recipient,
        status=r.status,
        priority=r.priority,
        category=r.category,
        size_bytes=int(r.size_bytes),
        submitted_at=ms_to_dt(r.submitted_at_ms),  # type: ignore[arg-type]
        delivered_at=ms_to_dt(r.delivered_at_ms),
        expired_at=ms_to_dt(r.expired_at_ms),
    )


def fold(
    thread: str, events: Sequence[Event], nodes: Mapping[str, NodeInfo], now: datetime
) -> Referral | None:
    """One referral's monitoring row from its thread's events (submission order)."""
    ref = next((e for e in events if e.kind == "referral"), None)
    if ref is None:
        return None
    status = "requested"
    received_at = accepted_at = completed_at = responded_at = None
    for e in events:
        if e is ref:
            continue
        from_recipient = e.sender == ref.recipient
        if e.kind == "receipt" and from_recipient and received_at is None:
            received_at = e.submitted_at
        if e.kind == "status" and e.status:
            status = e.status
            if e.status == "received" and received_at is None:
                received_at = e.submitted_at
            if e.status in ("accepted", "declined") and responded_at is None:
                responded_at = e.submitted_at
            if e.status == "accepted" and accepted_at is None:
                accepted_at = e.submitted_at
            if e.status == "completed" and completed_at is None:
                completed_at = e.submitted_at
    if status == "requested" and received_at is not None:
        status = "received"
    if status == "requested" and ref.expired_at is not None and ref.delivered_at is None:
        status = "failed"
    if received_at is None and ref.delivered_at is not None and status != "requested":
        received_at = ref.delivered_at
    priority = ref.priority if ref.priority in DEADLINES else "normal"
    deadline = DEADLINES[priority]
    due_at = ref.submitted_at + deadline
    if responded_at is not None:
        state = "met" if responded_at <= due_at else "late"
    elif status in TERMINAL:
        state = "closed"
    elif now > due_at:
        state = "overdue"
    elif now > due_at - deadline / 4:
        state = "due_soon"
    else:
        state = "on_track"
    s = nodes.get(ref.sender)
    r = nodes.get(ref.recipient)
    return Referral(
        thread=thread,
        referral_id=ref.message_id,
        sender=ref.sender,
        recipient=ref.recipient,
        sender_org=s.organization if s else ref.sender,
        recipient_org=r.organization if r else ref.recipient,
        sender_country=s.country if s else "",
        recipient_country=r.country if r else "",
        priority=priority,
        category=ref.category,
        status=status,
        sent_at=ref.submitted_at,
        delivered_at=ref.delivered_at,
        received_at=received_at,
        responded_at=responded_at,
        accepted_at=accepted_at,
        completed_at=completed_at,
        expired_at=ref.expired_at,
        due_at=due_at,
        deadline_state=state,
        age=now - ref.submitted_at,
        events=list(events),
    )


def load_referrals(
    conn: sa.Connection,
    nodes: Mapping[str, NodeInfo],
    scope: Scope,
    *,
    now: datetime,
    since: datetime | None = None,
    thread: str | None = None,
) -> list[Referral]:
    """Referrals (threads with a `referral` message) visible in `scope`, newest first."""
    q = sa.select(messages.c.thread).where(messages.c.kind == "referral")
    if since is not None:
        q = q.where(messages.c.submitted_at_ms >= int(since.timestamp() * 1000))
    if thread is not None:
        q = q.where(messages.c.thread == thread)
    if scope.countries is not None:
        visible = [n.node_id for n in nodes.values() if scope.sees_country(n.country)]
        if not visible:
            return []
        q = q.where(messages.c.sender.in_(visible) | messages.c.recipient.in_(visible))
    threads = sorted({r[0] for r in conn.execute(q)})
    by_thread: dict[str, list[Event]] = defaultdict(list)
    for i in range(0, len(threads), _IN_CHUNK):
        chunk = threads[i : i + _IN_CHUNK]
        for r in conn.execute(
            sa.select(messages)
            .where(messages.c.thread.in_(chunk))
            .order_by(messages.c.submitted_at_ms, messages.c.message_id)
        ):
            by_thread[r.thread].append(_event(r))
    out = []
    for t in threads:
        ref = fold(t, by_thread[t], nodes, now)
        if ref is not None and scope.sees(ref.sender_country, ref.recipient_country):
            out.append(ref)
    out.sort(key=lambda x: (x.sent_at, x.thread), reverse=True)
    return out


# --- aggregates --------------------------------------------------------------------------


def _hours(deltas: Iterable[timedelta]) -> float | None:
    values = [d.total_seconds() / 3600 for d in deltas]
    return statistics.median(values) if values else None


def overview(refs: Sequence[Referral], now: datetime, weeks: int = 12) -> dict[str, Any]:
    by_status = Counter(r.status for r in refs)
    overdue = Counter(r.priority for r in refs if r.deadline_state == "overdue")
    funnel = [(stage, sum(1 for r in refs if r.reached(stage))) for stage in FUNNEL]
    medians = {
        "receipt": _hours(r.received_at - r.sent_at for r in refs if r.received_at),
        "acceptance": _hours(r.accepted_at - r.sent_at for r in refs if r.accepted_at),
        "completion": _hours(r.completed_at - r.sent_at for r in refs if r.completed_at),
    }
    start = (now - timedelta(weeks=weeks - 1)).date()
    start = start - timedelta(days=start.weekday())
    week_starts = [start + timedelta(weeks=i) for i in range(weeks)]
    sent_w: Counter[int] = Counter()
    done_w: Counter[int] = Counter()
    for r in refs:
        i = (r.sent_at.date() - start).days // 7
        if 0 <= i < weeks:
            sent_w[i] += 1
        if r.completed_at is not None:
            j = (r.completed_at.date() - start).days // 7
            if 0 <= j < weeks:
                done_w[j] += 1
    trend = [
        {"week": w.isoformat(), "sent": sent_w[i], "completed": done_w[i]}
        for i, w in enumerate(week_starts)
    ]
    return {
        "total": len(refs),
        "by_status": [(s, by_status.get(s, 0)) for s in STATUSES],
        "overdue": [(p, overdue.get(p, 0)) for p in PRIORITIES],
        "overdue_total": sum(overdue.values()),
        "funnel": funnel,
        "medians": medians,
        "trend": trend,
    }


def members(
    refs: Sequence[Referral], nodes: Mapping[str, NodeInfo], scope: Scope
) -> list[dict[str, Any]]:
    """Per receiving member: referrals received, answered, overdue unanswered, median response."""
    rows: dict[str, dict[str, Any]] = {}
    for r in refs:
        n = nodes.get(r.recipient)
        if n is not None and not scope.sees_country(n.country):
            continue
        row = rows.setdefault(
            r.recipient,
            {
                "node_id": r.recipient,
                "organization": r.recipient_org,
                "country": r.recipient_country,
                "received": 0,
                "answered": 0,
                "overdue": 0,
                "_resp": [],
            },
        )
        row["received"] += 1
        if r.responded_at is not None:
            row["answered"] += 1
            row["_resp"].append(r.responded_at - r.sent_at)
        if r.deadline_state == "overdue":
            row["overdue"] += 1
    out = []
    for row in rows.values():
        row["median_response_hours"] = _hours(row.pop("_resp"))
        out.append(row)
    out.sort(key=lambda x: (-x["overdue"], -(x["received"] - x["answered"]), x["node_id"]))
    return out


def flows(refs: Sequence[Referral]) -> dict[str, Any]:
    pairs: Counter[tuple[str, str]] = Counter((r.sender_country, r.recipient_country) for r in refs)
    senders = sorted({a for a, _ in pairs})
    receivers = sorted({b for _, b in pairs})
    return {
        "pairs": sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0])),
        "senders": senders,
        "receivers": receivers,
        "matrix": {(a, b): n for (a, b), n in pairs.items()},
    }


@dataclass
class NodeHealth:
    node_id: str
    organization: str
    country: str
    status: str
    health: str
    last_seen: datetime | None
    mailbox_depth: int
    oldest_undelivered: datetime | None
    key_expiry: datetime | None
    key_state: str
    software_version: str | None
    enrolled_at: datetime | None
    revoked_at: datetime | None


def node_health(
    conn: sa.Connection,
    nodes: Mapping[str, NodeInfo],
    scope: Scope,
    *,
    now: datetime,
    late: timedelta,
    down: timedelta,
) -> list[NodeHealth]:
    depth: dict[str, tuple[int, int | None]] = {}
    for r in conn.execute(
        sa.select(
            mailbox_t.c.recipient, sa.func.count(), sa.func.min(mailbox_t.c.accepted_at_ms)
        )
        .where(mailbox_t.c.item_type == "envelope")
        .group_by(mailbox_t.c.recipient)
    ):
        depth[r[0]] = (int(r[1]), r[2])
    expiry: dict[str, int] = {}
    for r in conn.execute(
        sa.select(node_keys_t.c.node_id, sa.func.max(node_keys_t.c.not_after_ms)).group_by(
            node_keys_t.c.node_id
        )
    ):
        expiry[r[0]] = int(r[1])
    out = []
    for n in nodes.values():
        if not scope.sees_country(n.country):
            continue
        if n.status != "active":
            health = "revoked"
        elif n.last_seen is None:
            health = "never"
        elif now - n.last_seen > down:
            health = "down"
        elif now - n.last_seen > late:
            health = "late"
        else:
            health = "ok"
        d, oldest = depth.get(n.node_id, (0, None))
        exp = ms_to_dt(expiry.get(n.node_id))
        if exp is None:
            key_state = "none"
        elif exp <= now:
            key_state = "expired"
        elif exp - now < timedelta(days=30):
            key_state = "expiring"
        else:
            key_state = "ok"
        out.append(
            NodeHealth(
                node_id=n.node_id,
                organization=n.organization,
                country=n.country,
                status=n.status,
                health=health,
                last_seen=n.last_seen,
                mailbox_depth=d,
                oldest_undelivered=ms_to_dt(oldest),
                key_expiry=exp,
                key_state=key_state,
                software_version=n.software_version,
                enrolled_at=n.enrolled_at,
                revoked_at=n.revoked_at,
            )
        )
    order = {"down": 0, "never": 1, "late": 2, "ok": 3, "revoked": 4}
    out.sort(key=lambda h: (order[h.health], h.country, h.node_id))
    return out


def filter_referrals(refs: Iterable[Referral], f: Mapping[str, str]) -> list[Referral]:
    """Apply the referral list's filters (all optional, exact matches)."""
    out = []
    for r in refs:
        if f.get("country") and f["country"] not in (r.sender_country, r.recipient_country):
            continue
        if f.get("from_country") and r.sender_country != f["from_country"]:
            continue
        if f.get("to_country") and r.recipient_country != f["to_country"]:
            continue
        if f.get("org") and f["org"] not in (r.sender, r.recipient):
            continue
        if f.get("priority") and r.priority != f["priority"]:
            continue
        if f.get("category") and r.category != f["category"]:
            continue
        if f.get("status") and r.status != f["status"]:
            continue
        if f.get("deadline") and r.deadline_state != f["deadline"]:
            continue
        if f.get("q") and not (r.thread.startswith(f["q"]) or r.referral_id.startswith(f["q"])):
            continue
        out.append(r)
    return out
