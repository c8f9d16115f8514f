"""Console settings, read from `RSSN_CONSOLE_*` variables next to the hub's own settings.

Why separate from hub.settings.HubSettings: the console is an optional room of the hub
and its knobs (cookies, small-count suppression, identity provider) are nobody else's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["ConsoleSettings"]


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def _int(name: str, default: int) -> int:
    raw = _env(name)
    return int(raw) if raw else default


@dataclass(frozen=True)
class ConsoleSettings:
    #: "auto": Secure cookies unless the request came over plain http from loopback;
    #: "true"/"false" force it.
    secure_cookies: str = "auto"
    session_hours: int = 12
    #: Aggregate cells below this count are shown as "<k" in exports (0 disables).
    min_cell: int = 5
    #: A node not seen for this long is "late"; for `down_minutes`, "down".
    late_minutes: int = 15
    down_minutes: int = 24 * 60
    #: Lock an account for `lockout_minutes` after this many wrong passwords in a row.
    max_failed_logins: int = 10
    lockout_minutes: int = 15
    #: OpenID Connect (all three must be set to offer "Sign in with your organisation").
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_label: str = "Identity provider"
    #: Seconds to wait for the identity provider.
    oidc_timeout: float = 10.0

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id and self.oidc_client_secret)

    @classmethod
    def from_env(cls) -> ConsoleSettings:
        secure = _env("RSSN_CONSOLE_SECURE_COOKIES", "auto").lower() or "auto"
        if secure not in ("auto", "true", "false"):
            raise ValueError("RSSN_CONSOLE_SECURE_COOKIES must be auto, true or false")
        return cls(
            secure_cookies=secure,
            session_hours=_int("RSSN_CONSOLE_SESSION_HOURS", 12),
            min_cell=_int("RSSN_CONSOLE_MIN_CELL", 5),
            late_minutes=_int("RSSN_CONSOLE_NODE_LATE_MINUTES", 15),
            down_minutes=_int("RSSN_CONSOLE_NODE_DOWN_MINUTES", 24 * 60),
            max_failed_logins=_int("RSSN_CONSOLE_MAX_FAILED_LOGINS", 10),
            lockout_minutes=_int("RSSN_CONSOLE_LOCKOUT_MINUTES", 15),
            oidc_issuer=_env("RSSN_CONSOLE_OIDC_ISSUER").rstrip("/"),
            oidc_client_id=_env("RSSN_CONSOLE_OIDC_CLIENT_ID"),
            oidc_client_secret=_env("RSSN_CONSOLE_OIDC_CLIENT_SECRET"),
            oidc_label=_env("RSSN_CONSOLE_OIDC_LABEL") or "Identity provider",
        )
