"""The signed directory, built from the database and cached per version.

Why a cache keyed by version: every submitted envelope is verified against the
directory (sender's signing key, recipient's encryption keys), so the parsed
directory must be in memory; and every membership or key change bumps the
version in the same transaction, so comparing the stored version (read with the
per-request node check) is enough to notice changes made by other processes.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from common.logging import get_logger
from protocol import (
    Directory,
    DirectoryEntry,
    KeyBinding,
    SigningKeyPair,
    build_directory,
    sign_directory,
)

from .store import queries as q

__all__ = ["DirectoryCache", "SignedDirectory"]

_log = get_logger(__name__)


def _published_services(conn: sa.Connection) -> dict[str, tuple[dict[str, Any], ...]]:
    """HSDS services members published through the console's `PUT /v1/services`.

    Publishing bumps the directory version in the same transaction, so a rebuilt directory
    always carries the current publications. Without the console (or its table) the
    directory simply has no services.
    """
    try:
        from .console.services import directory_services
    except ImportError:
        return {}
    try:
        with conn.begin_nested():
            return directory_services(conn)
    except sa.exc.SQLAlchemyError as exc:
        _log.warning("directory_services_unavailable", error=exc)
        return {}


@dataclass(frozen=True)
class SignedDirectory:
    directory: Directory
    signed: bytes
    built_at: float


class DirectoryCache:
    def __init__(self, hub_key: SigningKeyPair, *, ttl_seconds: int, resign_seconds: int) -> None:
        self._hub_key = hub_key
        self._ttl = ttl_seconds
        self._resign = resign_seconds
        self._lock = threading.Lock()
        self._current: SignedDirectory | None = None

    def _fresh(self, version: int) -> SignedDirectory | None:
        cur = self._current
        if (
            cur is not None
            and cur.directory.version == version
            and time.monotonic() - cur.built_at < self._resign
        ):
            return cur
        return None

    def peek(self) -> SignedDirectory | None:
        """The newest directory built so far (callers re-check its version in their
        transaction)."""
        return self._current

    def get(self, conn: sa.Connection, version: int | None = None) -> SignedDirectory:
        """The directory at `version` (read it from `conn` when None), rebuilt when stale."""
        if version is None:
            version = q.directory_version(conn)
        cur = self._fresh(version)
        if cur is not None:
            return cur
        with self._lock:
            cur = self._fresh(version)
            if cur is not None:
                return cur
            cur = self._build(conn, version)
            # Never go back to an older version (a slower reader in another thread).
            if self._current is None or self._current.directory.version <= version:
                self._current = cur
            return cur

    def _build(self, conn: sa.Connection, version: int) -> SignedDirectory:
        services = _published_services(conn)
        entries = []
        for node, bindings in q.directory_rows(conn):
            entries.append(
                DirectoryEntry(
                    node_id=node.node_id,
                    organization=node.organization,
                    country=node.country,
                    signing_key=bytes(node.signing_key),
                    encryption_keys=tuple(KeyBinding.from_json(json.loads(b)) for b in bindings),
                    services=services.get(node.node_id, ()),
                )
            )
        issued = datetime.now(UTC).replace(microsecond=0)
        directory = build_directory(
            entries,
            version=version,
            issued_at=issued,
            expires_at=issued + timedelta(seconds=self._ttl),
        )
        return SignedDirectory(directory, sign_directory(directory, self._hub_key), time.monotonic())
