"""Hub settings: one frozen object built from the CLI and the environment.

Why one object: routes, the sweeper and the CLI must agree on the database,
the lease and the clock. Tests build it directly; `rssn-hub` builds it from
`--data-dir` plus `RSSN_HUB_*` variables (see `HubSettings.from_env`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from common.db import sqlite_url

__all__ = ["HubSettings"]

DB_ENV = "RSSN_HUB_DB"
PASSPHRASE_ENV = "RSSN_HUB_PASSPHRASE"  # noqa: S105 - a variable name


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return float(raw)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return int(raw)


@dataclass(frozen=True)
class HubSettings:
    data_dir: Path
    db_url: str
    #: Absolute base URL nodes use (e.g. https://hub.example.org). Empty: derived per request.
    public_url: str = ""
    log_level: str = "INFO"
    #: How long a pulled, un-acked mailbox item is hidden from other polls (at-least-once).
    lease_seconds: float = 10.0
    #: How often the expiry sweeper runs in `serve`.
    sweep_seconds: float = 5.0
    #: Ledger rows older than this are purged (only once their envelope can no longer be replayed).
    ledger_retention_days: int = 365
    max_skew_seconds: int = 300
    access_token_ttl: int = 300
    directory_ttl_seconds: int = 24 * 3600
    #: A signed directory is re-signed when older than this (so it never nears its expiry).
    directory_resign_seconds: int = 3600
    invite_ttl_days: int = 7
    max_batch: int = 500
    max_batch_bytes: int = 64 * 1024 * 1024
    max_wait_seconds: float = 30.0
    #: Interval of the DB poll that wakes long-polls for items stored by other processes.
    poll_interval_seconds: float = 0.2
    #: Lifetime of hub notices (e.g. `expired`) waiting in a sender's mailbox.
    notice_ttl_days: int = 30

    @classmethod
    def from_env(cls, data_dir: str | Path, **overrides: object) -> HubSettings:
        """Settings for `data_dir`; `RSSN_HUB_DB` (a SQLAlchemy URL) selects PostgreSQL."""
        d = Path(data_dir).expanduser().resolve()
        db = os.environ.get(DB_ENV, "").strip() or sqlite_url(d / "hub.db")
        s = cls(
            data_dir=d,
            db_url=db,
            public_url=os.environ.get("RSSN_HUB_PUBLIC_URL", "").strip().rstrip("/"),
            log_level=os.environ.get("RSSN_HUB_LOG_LEVEL", "INFO").strip() or "INFO",
            lease_seconds=_env_float("RSSN_HUB_LEASE_SECONDS", 10.0),
            sweep_seconds=_env_float("RSSN_HUB_SWEEP_SECONDS", 5.0),
            ledger_retention_days=_env_int("RSSN_HUB_LEDGER_RETENTION_DAYS", 365),
            max_skew_seconds=_env_int("RSSN_HUB_MAX_SKEW_SECONDS", 300),
            access_token_ttl=_env_int("RSSN_HUB_TOKEN_TTL_SECONDS", 300),
            poll_interval_seconds=_env_float("RSSN_HUB_POLL_SECONDS", 0.2),
        )
        return replace(s, **overrides)  # type: ignore[arg-type]
