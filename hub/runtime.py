"""The running hub: engine, key, directory cache, token issuer, waiters and metrics in one place.

Why one object: routes, the expiry sweeper and the long-poll waker share these,
and tests need to build several independent hubs in one process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import sqlalchemy as sa

from common.db import make_engine
from protocol import SigningKeyPair

from .auth import AccessClaims, AccessTokens, unauthorized
from .directory import DirectoryCache, SignedDirectory
from .mailbox_waiters import MailboxWaiters
from .metrics import HubMetrics
from .settings import HubSettings
from .store import queries as q
from .writer import GroupCommitWriter

__all__ = ["HubRuntime", "NodeState"]

#: last_seen is written at most this often per node and process (it is monitoring, not truth).
_TOUCH_EVERY_MS = 30_000


@dataclass(frozen=True)
class NodeState:
    node_id: str
    directory_version: int


@dataclass
class HubRuntime:
    settings: HubSettings
    engine: sa.Engine
    hub_key: SigningKeyPair
    tokens: AccessTokens
    directory: DirectoryCache
    metrics: HubMetrics
    writer: GroupCommitWriter
    waiters: MailboxWaiters = field(default_factory=MailboxWaiters)
    _touched: dict[str, int] = field(default_factory=dict)
    _touch_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(
        cls, settings: HubSettings, hub_key: SigningKeyPair, engine: sa.Engine | None = None
    ) -> HubRuntime:
        eng = engine if engine is not None else make_engine(settings.db_url)
        return cls(
            settings=settings,
            engine=eng,
            hub_key=hub_key,
            tokens=AccessTokens(
                hub_key,
                issuer=settings.public_url or "rssn-hub",
                ttl=settings.access_token_ttl,
            ),
            directory=DirectoryCache(
                hub_key,
                ttl_seconds=settings.directory_ttl_seconds,
                resign_seconds=settings.directory_resign_seconds,
            ),
            metrics=HubMetrics(eng),
            writer=GroupCommitWriter(eng),
        )

    def check_node(
        self, conn: sa.Connection, claims: AccessClaims, user_agent: str | None = None
    ) -> NodeState:
        """Deny by default: the token's node must exist, be active and hold the same key."""
        state = q.node_auth_state(conn, claims.node_id)
        if state is None or state[0] != "active" or state[1] != claims.node_kid:
            self.metrics.auth_failures.labels("inactive").inc()
            raise unauthorized("node is not active", error="invalid_token")
        self._maybe_touch(conn, claims.node_id, user_agent)
        return NodeState(claims.node_id, state[2])

    def _maybe_touch(self, conn: sa.Connection, node_id: str, user_agent: str | None) -> None:
        now = q.now_ms()
        with self._touch_lock:
            last = self._touched.get(node_id, 0)
            if now - last < _TOUCH_EVERY_MS:
                return
            self._touched[node_id] = now
        version = None
        if user_agent and user_agent.startswith("rssn-node/"):
            version = user_agent[len("rssn-node/"):].split(" ", 1)[0][:64] or None
        q.touch_node(conn, node_id, now, version)

    def signed_directory(self, conn: sa.Connection, version: int | None = None) -> SignedDirectory:
        return self.directory.get(conn, version)

    def close(self) -> None:
        self.writer.close()
        self.engine.dispose()
