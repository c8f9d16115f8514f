"""The node's tables.

Why these tables: the node is the system of record for its organisation, and the
exchange must survive days offline. Everything that must happen later (send an
envelope, tell a case system) is a row written in the same transaction as the
fact that caused it (transactional outbox), and everything received is
remembered by message id before it is acknowledged (idempotent inbox).

Times are timezone-aware UTC (SQLModel's ``UTCDateTime``; microseconds kept, so
journeys can be timed); the API renders them as RFC 3339 with a ``Z``.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

__all__ = [
    "ApiKey",
    "History",
    "InboxEntry",
    "KeyValue",
    "OutboxMessage",
    "PeerKey",
    "Quarantine",
    "Referral",
    "Webhook",
    "WebhookDelivery",
    "metadata",
]

metadata = SQLModel.metadata


class Referral(SQLModel, table=True):
    """One referral thread as this node sees it (its id is the envelope thread)."""

    __tablename__ = "referrals"

    id: str = Field(primary_key=True, max_length=36)
    direction: str = Field(max_length=8, index=True)  # inbound | outbound
    from_node: str = Field(max_length=63, index=True)
    to_node: str = Field(max_length=63, index=True)
    status: str = Field(max_length=16, index=True)
    priority: str | None = Field(default=None, max_length=16)
    category: str | None = Field(default=None, max_length=32)
    document: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    restricted: bool = Field(default=False)
    #: The case system's stable key for this referral (import/sync), so a resend is recognised.
    source_key: str | None = Field(default=None, max_length=200, unique=True, index=True)
    consent_withdrawn_at: datetime | None = None
    consent_ack_at: datetime | None = None
    delivered_at: datetime | None = None
    created_at: datetime
    updated_at: datetime = Field(index=True)


class History(SQLModel, table=True):
    """Who did what, when: the referral's journey on this node."""

    __tablename__ = "history"

    id: int | None = Field(default=None, primary_key=True)
    referral_id: str = Field(max_length=36, index=True)
    at: datetime
    actor: str = Field(max_length=63)
    event: str = Field(max_length=32)  # status name, or receipt/consent_withdrawn/problem/...
    status: str | None = Field(default=None, max_length=16)
    note: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    message_id: str | None = Field(default=None, max_length=36)


class OutboxMessage(SQLModel, table=True):
    """A sealed envelope waiting to be (or already) handed to the hub.

    The message id and the envelope bytes are fixed when the row is written, so
    every retry sends exactly the same bytes. Rows are sent in message-id order
    (UUIDv7 sorts by creation time), so a recipient sees a thread's messages in order.
    """

    __tablename__ = "outbox"

    message_id: str = Field(primary_key=True, max_length=36)
    kind: str = Field(max_length=20)
    referral_id: str = Field(max_length=36, index=True)
    to_node: str = Field(max_length=63)
    envelope: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    envelope_digest: str = Field(max_length=64)
    state: str = Field(default="pending", max_length=12, index=True)  # pending|sent|failed
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=64)
    created_at: datetime
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    hub_receipt: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))


class InboxEntry(SQLModel, table=True):
    """Every message this node has processed, by message id (deduplication and proof)."""

    __tablename__ = "inbox"

    message_id: str = Field(primary_key=True, max_length=36)
    kind: str = Field(max_length=20)
    from_node: str = Field(max_length=63)
    referral_id: str = Field(max_length=36, index=True)
    envelope_digest: str = Field(max_length=64)
    statement: str = Field(sa_column=sa.Column(sa.Text, nullable=False))  # signed inner JSON
    inner_sig: str = Field(max_length=128)
    received_at: datetime


class Quarantine(SQLModel, table=True):
    """Envelopes or notices that failed verification or validation: kept, never lost."""

    __tablename__ = "quarantine"

    id: int | None = Field(default=None, primary_key=True)
    item_key: str = Field(max_length=100, unique=True)  # message id, or hub item id if unparsable
    message_id: str | None = Field(default=None, max_length=36)
    from_node: str | None = Field(default=None, max_length=63)
    code: str = Field(max_length=40)
    raw: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    received_at: datetime


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    key_hash: str = Field(max_length=64, unique=True)
    prefix: str = Field(max_length=20)
    created_at: datetime
    revoked: bool = False


class Webhook(SQLModel, table=True):
    __tablename__ = "webhooks"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=2000)
    events: str = Field(max_length=500)  # comma-separated event names
    secret: str = Field(max_length=100)
    active: bool = True
    created_at: datetime


class WebhookDelivery(SQLModel, table=True):
    """The delivery log: one row per (webhook, event), retried with backoff until delivered."""

    __tablename__ = "webhook_deliveries"

    id: int | None = Field(default=None, primary_key=True)
    webhook_id: int = Field(index=True)
    event_id: str = Field(max_length=36)
    event: str = Field(max_length=40)
    payload: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    state: str = Field(default="pending", max_length=12, index=True)  # pending|delivered|failed
    attempts: int = 0
    next_attempt_at: datetime
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=64)
    created_at: datetime
    delivered_at: datetime | None = None


class KeyValue(SQLModel, table=True):
    """Small node state: the newest verified directory, last successful poll, ..."""

    __tablename__ = "kv"

    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    updated_at: datetime


class PeerKey(SQLModel, table=True):
    """Key continuity: each peer's signing key as first seen in a verified directory.

    Why: the hub signs the directory, so whoever runs it could re-enroll a member's node id
    with keys of its own. Like SSH known_hosts, a node remembers the key it first saw; a
    different key later is held (`status` "changed") until an operator confirms it out of band.
    """

    __tablename__ = "peer_keys"

    node_id: str = Field(primary_key=True, max_length=63)
    #: The trusted signing-key fingerprint (first seen, or confirmed by an operator).
    fingerprint: str = Field(max_length=80)
    status: str = Field(default="trusted", max_length=12)  # trusted | changed
    #: The directory's current, not yet confirmed fingerprint while status is "changed".
    new_fingerprint: str | None = Field(default=None, max_length=80)
    first_seen_at: datetime
    changed_at: datetime | None = None
    confirmed_at: datetime | None = None
