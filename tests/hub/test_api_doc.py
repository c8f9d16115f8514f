"""docs/HUB_API.md stays true to the hub: every node-facing route is documented, every
documented route exists, and the limits it quotes are the code's defaults."""

from __future__ import annotations

import re
from pathlib import Path

from hub.app import create_app
from hub.console.api import MAX_SERVICES_BYTES
from hub.settings import HubSettings
from protocol import MAX_ENVELOPE_BYTES

DOC = Path(__file__).resolve().parents[2] / "docs" / "HUB_API.md"


def _routes(tmp_path: Path) -> set[tuple[str, str]]:
    app = create_app(HubSettings(data_dir=tmp_path, db_url=f"sqlite:///{tmp_path}/x.db"))
    found: set[tuple[str, str]] = set()

    def walk(routes: list, prefix: str = "") -> None:  # type: ignore[type-arg]
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                walk(inner.routes, prefix + route.include_context.prefix)
                continue
            path = prefix + getattr(route, "path", "")
            if path.startswith("/v1/") or path in ("/healthz", "/readyz", "/metrics"):
                for m in getattr(route, "methods", set()) or set():
                    if m != "HEAD":
                        found.add((m, path))

    walk(app.routes)
    return found


def test_every_route_documented_and_every_documented_route_exists(tmp_path: Path) -> None:
    text = DOC.read_text("utf-8")
    documented = set(re.findall(r"`(GET|POST|PUT|DELETE) (/v1/[a-z0-9/_]+|/healthz|/readyz|"
                                r"/metrics)", text))
    routes = _routes(tmp_path)
    assert routes, "no routes found"
    assert routes <= documented, routes - documented
    assert documented <= routes, documented - routes


def test_quoted_limits_are_the_defaults(tmp_path: Path) -> None:
    text = DOC.read_text("utf-8")
    s = HubSettings(data_dir=tmp_path, db_url="sqlite://")
    assert f"{MAX_ENVELOPE_BYTES:,} bytes" in text
    assert f"{s.max_batch} envelopes, {s.max_batch_bytes // 2**20} MiB body" in text
    assert f"services document | {MAX_SERVICES_BYTES // 2**20} MiB" in text
    assert f"{s.access_token_ttl} s (`RSSN_HUB_TOKEN_TTL_SECONDS`)" in text
    assert f"{s.max_skew_seconds} s (`RSSN_HUB_MAX_SKEW_SECONDS`)" in text
    assert f"{s.lease_seconds:g} s (`RSSN_HUB_LEASE_SECONDS`)" in text
    assert f"{s.sweep_seconds:g} s (`RSSN_HUB_SWEEP_SECONDS`)" in text
    assert f"`wait` at most {s.max_wait_seconds:g} s; `limit` 1 to {s.max_batch}" in text
    assert f"Notices wait {s.notice_ttl_days} days" in text
    assert f"{s.directory_ttl_seconds // 3600} h after `issued_at`" in text
    assert f"{s.ledger_retention_days} days by default" in text
