"""Initial hub schema: keys, nodes, invites, jti replay store, ledger, mailbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "hub_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("sealed_seed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "hub_state",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "nodes",
        sa.Column("node_id", sa.String(63), primary_key=True),
        sa.Column("organization", sa.String(200), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("signing_key", sa.LargeBinary(), nullable=False),
        sa.Column("signing_kid", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("enrolled_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_seen_ms", sa.BigInteger(), nullable=True),
        sa.Column("software_version", sa.String(64), nullable=True),
    )
    op.create_index("ix_nodes_status", "nodes", ["status"])
    op.create_table(
        "node_keys",
        sa.Column(
            "node_id",
            sa.String(63),
            sa.ForeignKey("nodes.node_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("binding", sa.Text(), nullable=False),
        sa.Column("not_before_ms", sa.BigInteger(), nullable=False),
        sa.Column("not_after_ms", sa.BigInteger(), nullable=False),
        sa.Column("added_at_ms", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "invites",
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column("node_id", sa.String(63), nullable=False),
        sa.Column("organization", sa.String(200), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("used_at_ms", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_invites_node_id", "invites", ["node_id"])
    op.create_table(
        "assertion_jtis",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("node_id", sa.String(63), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_assertion_jtis_expires_at_ms", "assertion_jtis", ["expires_at_ms"])
    op.create_table(
        "messages",
        sa.Column("message_id", sa.String(36), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("sender", sa.String(63), nullable=False),
        sa.Column("recipient", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("thread", sa.String(36), nullable=False),
        sa.Column("priority", sa.String(16), nullable=True),
        sa.Column("category", sa.String(32), nullable=True),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("submitted_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("fetched_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("delivered_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("expired_at_ms", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_messages_sender", "messages", ["sender"])
    op.create_index("ix_messages_recipient", "messages", ["recipient"])
    op.create_index("ix_messages_thread", "messages", ["thread"])
    op.create_index("ix_messages_submitted_at_ms", "messages", ["submitted_at_ms"])
    op.create_table(
        "mailbox",
        sa.Column("seq", _BIGINT_PK, primary_key=True, autoincrement=True),
        sa.Column("item_id", sa.String(36), nullable=False, unique=True),
        sa.Column("recipient", sa.String(63), nullable=False),
        sa.Column("item_type", sa.String(16), nullable=False),
        sa.Column("sender", sa.String(63), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("accepted_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("leased_until_ms", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_index("ix_mailbox_recipient_seq", "mailbox", ["recipient", "seq"])
    op.create_index("ix_mailbox_expires_at_ms", "mailbox", ["expires_at_ms"])


def downgrade() -> None:
    for table in (
        "mailbox", "messages", "assertion_jtis", "invites", "node_keys", "nodes",
        "hub_state", "hub_keys",
    ):
        op.drop_table(table)
