"""peer_keys: key continuity (each peer's signing-key fingerprint as first seen; changes held)

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString, UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "peer_keys",
        sa.Column("node_id", AutoString(length=63), nullable=False),
        sa.Column("fingerprint", AutoString(length=80), nullable=False),
        sa.Column("status", AutoString(length=12), nullable=False),
        sa.Column("new_fingerprint", AutoString(length=80), nullable=True),
        sa.Column("first_seen_at", UTCDateTime(), nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=True),
        sa.Column("confirmed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("node_id"),
    )


def downgrade() -> None:
    op.drop_table("peer_keys")
