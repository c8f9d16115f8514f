"""The hub's tables (SQLModel classes on a private registry).

Why a private registry: node/ also uses SQLModel, and tests import both in one
process; SQLModel's global metadata would refuse two tables of the same name.

Why integer milliseconds for times: the hot paths (ingest, pull, ack, sweep)
compare and sort times in SQL on SQLite and PostgreSQL alike, and integers are
exact, cheap and dialect-neutral. `hub.store.queries` converts them for
readers (CLI, console).

What is stored, and why it is content-free:
- `mailbox.body` holds envelope bytes the hub cannot decrypt (or a hub notice),
  and is deleted on acknowledgement or expiry.
- `messages` is the status ledger and the de-duplication record: ids, node ids,
  kind, thread, whitelisted monitoring fields, digest, sizes and timestamps.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

__all__ = [
    "AssertionJti",
    "HubBase",
    "HubKey",
    "HubState",
    "Invite",
    "MailboxItem",
    "Message",
    "Node",
    "NodeKey",
    "metadata",
]

#: INTEGER PRIMARY KEY is SQLite's rowid alias (auto-assigned); BIGINT is not.
BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class HubBase(SQLModel, registry=registry()):
    pass


metadata = HubBase.metadata


class HubKey(HubBase, table=True):
    """The hub's Ed25519 key; the seed is sealed with the operator passphrase (common.secretstore).

    Kept in the database (not a file) so several hub processes on one PostgreSQL share it.
    """

    __tablename__ = "hub_keys"
    kid: str = Field(primary_key=True, max_length=64)
    public_key: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    sealed_seed: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    created_at_ms: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    active: bool = Field(default=True, nullable=False)


class HubState(HubBase, table=True):
    """Small named counters, e.g. `directory_version` (bumped on every membership/key change)."""

    __tablename__ = "hub_state"
    name: str = Field(primary_key=True, max_length=64)
    value: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


class Node(HubBase, table=True):
    __tablename__ = "nodes"
    node_id: str = Field(primary_key=True, max_length=63)
    organization: str = Field(max_length=200)
    country: str = Field(max_length=2)
    signing_key: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    signing_kid: str = Field(max_length=64)
    #: "active" or "revoked".
    status: str = Field(max_length=16, index=True)
    enrolled_at_ms: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    revoked_at_ms: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    last_seen_ms: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    software_version: str | None = Field(default=None, max_length=64)


class NodeKey(HubBase, table=True):
    """A node's X25519 key binding (the node's own signed statement, stored verbatim)."""

    __tablename__ = "node_keys"
    node_id: str = Field(
        sa_column=sa.Column(
            sa.String(63), sa.ForeignKey("nodes.node_id", ondelete="CASCADE"), primary_key=True
        )
    )
    kid: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    binding: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    not_before_ms: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    not_after_ms: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    added_at_ms: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


class Invite(HubBase, table=True):
    """One-time enrollment token, stored as SHA-256 only."""

    __tablename__ = "invites"
    token_sha256: str = Field(primary_key=True, max_length=64)
    node_id: str = Field(max_length=63, index=True)
    organization: str = Field(max_length=200)
    country: str = Field(max_length=2)
    created_at_ms: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    expires_at_ms: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    used_at_ms: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))


class AssertionJti(HubBase, table=True):
    """jti of client assertions, remembered until the assertion's exp (replay protection)."""

    __tablename__ = "assertion_jtis"
    #: SHA-256 hex of node_id NUL jti (bounded length whatever the client sends).
    key: str = Field(primary_key=True, max_length=64)
    node_id: str = Field(max_length=63)
    expires_at_ms: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False, index=True))


class Message(HubBase, table=True):
    """Status ledger + de-duplication record: one row per accepted envelope, no content."""

    __tablename__ = "messages"
    message_id: str = Field(primary_key=True, max_length=36)
    digest: str = Field(max_length=64)
    sender: str = Field(max_length=63, index=True)
    recipient: str = Field(max_length=63, index=True)
    kind: str = Field(max_length=32)
    thread: str = Field(max_length=36, index=True)
    priority: str | None = Field(default=None, max_length=16)
    category: str | None = Field(default=None, max_length=32)
    status: str | None = Field(default=None, max_length=16)
    size_bytes: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    created_at_ms: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    expires_at_ms: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    submitted_at_ms: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False, index=True))
    fetched_at_ms: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    delivered_at_ms: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))
    expired_at_ms: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))


class MailboxItem(HubBase, table=True):
    """What waits for a node: an envelope (ciphertext) or a hub notice, until acknowledged."""

    __tablename__ = "mailbox"
    __table_args__ = (sa.Index("ix_mailbox_recipient_seq", "recipient", "seq"),)
    #: Submission order.
    seq: int | None = Field(default=None, sa_column=sa.Column(BigIntPK, primary_key=True))
    item_id: str = Field(sa_column=sa.Column(sa.String(36), nullable=False, unique=True))
    recipient: str = Field(max_length=63)
    #: "envelope" or "notice".
    item_type: str = Field(max_length=16)
    #: For envelopes: the sender (to notify on expiry). For notices: None.
    sender: str | None = Field(default=None, max_length=63)
    body: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    accepted_at_ms: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    expires_at_ms: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False, index=True))
    #: 0 = available; otherwise hidden from polls until this time (a lease, not a delivery).
    leased_until_ms: int = Field(
        default=0, sa_column=sa.Column(sa.BigInteger, nullable=False, server_default="0")
    )
