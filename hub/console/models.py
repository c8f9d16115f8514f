"""Tables of the coordinator console: people, their sessions, published service directories.

Why on the hub's registry (HubBase): one metadata, one alembic history; the console's
revision is chained after the hub's own (hub/store/migrations/versions/*_console.py).

Why nothing here can hold referral content: users and sessions are about coordinators,
and `published_services` holds what members deliberately publish (HSDS organisation,
services, locations), which is public within the network by design.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Field

from hub.store.models import HubBase

__all__ = ["ConsoleSecret", "ConsoleSession", "ConsoleUser", "PublishedServices"]

ROLES = ("regional", "country", "auditor")
LANGUAGES = ("en", "es")


class ConsoleUser(HubBase, table=True):
    """A coordinator. `country` is set for country focal points only."""

    __tablename__ = "console_users"
    user_id: str = Field(primary_key=True, max_length=36)
    #: Lower-cased; the sign-in name.
    email: str = Field(sa_column=sa.Column(sa.String(254), nullable=False, unique=True))
    role: str = Field(max_length=16)
    country: str | None = Field(default=None, max_length=2)
    #: Argon2id (libsodium string format); None for OpenID Connect-only accounts.
    password_hash: str | None = Field(default=None, max_length=255)
    #: "issuer|sub" once the person has signed in through the identity provider.
    oidc_subject: str | None = Field(default=None, max_length=400)
    language: str = Field(default="en", max_length=5)
    disabled: bool = Field(default=False, nullable=False)
    failed_logins: int = Field(default=0, nullable=False)
    locked_until_ms: int = Field(
        default=0, sa_column=sa.Column(sa.BigInteger, nullable=False, server_default="0")
    )
    created_at_ms: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    last_login_ms: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger))


class ConsoleSession(HubBase, table=True):
    """A signed-in browser. Only the SHA-256 of the cookie value is stored."""

    __tablename__ = "console_sessions"
    token_sha256: str = Field(primary_key=True, max_length=64)
    user_id: str = Field(
        sa_column=sa.Column(
            sa.String(36),
            sa.ForeignKey("console_users.user_id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    #: Per-session CSRF token (sent back in forms and the X-CSRF-Token header).
    csrf_token: str = Field(max_length=64)
    created_at_ms: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    expires_at_ms: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False, index=True))
    last_seen_ms: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))


class ConsoleSecret(HubBase, table=True):
    """Random keys the console signs short-lived cookies with (shared by all hub processes)."""

    __tablename__ = "console_secrets"
    name: str = Field(primary_key=True, max_length=64)
    value: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))


class PublishedServices(HubBase, table=True):
    """One member's HSDS 3.0 publication (organization, services, locations, links).

    `document` is the normalised JSON (see hub.console.hsds.normalize) that the hub
    includes in the signed directory as DirectoryEntry.services.
    """

    __tablename__ = "published_services"
    node_id: str = Field(primary_key=True, max_length=63)
    document: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    #: SHA-256 hex of the canonical document: an identical re-publication changes nothing.
    digest: str = Field(max_length=64)
    service_count: int = Field(default=0, nullable=False)
    #: "node" (PUT /v1/services) or "import" (a coordinator's HSDS import).
    source: str = Field(max_length=16)
    updated_at_ms: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
