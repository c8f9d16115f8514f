"""Where a node keeps things, and how it is configured.

Why files plus a database: private keys live in the data directory sealed with the
operator's passphrase (never in the database, which may be a shared PostgreSQL);
the enrollment facts (hub URL, pinned hub key) are a small JSON file beside them;
everything else is in the database (SQLite file in the data directory by default,
PostgreSQL when ``RSSN_NODE_DB`` is a SQLAlchemy URL).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DB_ENV",
    "PASSPHRASE_ENV",
    "SOFTWARE_VERSION",
    "NodeConfig",
    "NodeSettings",
    "NotInitialised",
]

SOFTWARE_VERSION = "0.1.0"
PASSPHRASE_ENV = "RSSN_NODE_PASSPHRASE"  # noqa: S105 - the variable name
DB_ENV = "RSSN_NODE_DB"
CONFIG_FILE = "node.json"
KEYS_FILE = "keys.sealed.json"
DB_FILE = "node.db"


class NotInitialised(Exception):
    """The data directory has no enrolled node (run `rssn-node init`)."""


@dataclass(frozen=True)
class NodeConfig:
    """Facts fixed at enrollment: who we are and which hub key we trust."""

    node_id: str
    hub_url: str
    hub_key: str  # b64u Ed25519 public key, pinned
    hub_kid: str
    hub_fingerprint: str
    token_endpoint: str
    enrolled_at: str
    key_expires_at: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodeConfig:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class NodeSettings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8100
    db_url: str | None = None
    #: Long-poll wait (seconds) the receiver asks the hub for.
    poll_wait: int = 20
    batch_limit: int = 500
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser().resolve()
        if self.db_url is None:
            self.db_url = os.environ.get(DB_ENV) or None
        # Operators rarely need these; tests use them to make batches small and polls short.
        self.poll_wait = int(os.environ.get("RSSN_NODE_POLL_WAIT", self.poll_wait))
        self.batch_limit = max(1, min(500, int(os.environ.get("RSSN_NODE_BATCH_LIMIT",
                                                              self.batch_limit))))

    @property
    def database_url(self) -> str:
        from common.db import sqlite_url

        return self.db_url or sqlite_url(self.data_dir / DB_FILE)

    @property
    def config_path(self) -> Path:
        return self.data_dir / CONFIG_FILE

    @property
    def keys_path(self) -> Path:
        return self.data_dir / KEYS_FILE

    def load_config(self) -> NodeConfig:
        try:
            data = json.loads(self.config_path.read_text("utf-8"))
        except FileNotFoundError:
            raise NotInitialised(f"no enrolled node in {self.data_dir}") from None
        return NodeConfig.from_json(data)

    def save_config(self, config: NodeConfig) -> None:
        from common.secretstore import write_private_file

        write_private_file(
            self.config_path, (json.dumps(config.to_json(), indent=2) + "\n").encode()
        )
