"""Search stores, logs and metrics for secrets in every encoding they could be written in.

Why several encodings: a leak rarely looks like the original string. A canary may land in
a SQLite page as UTF-8, in a PostgreSQL ``bytea`` dump as hex, in a log as a JSON escape,
in an attachment as base64; a private key would be written as raw bytes, base64url,
base64 or hex. Each needle is searched in all of them, case-insensitively where the
encoding allows it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from pathlib import Path

__all__ = ["encodings", "files_under", "hits", "pg_dump_text"]


def encodings(secret: bytes | str) -> list[bytes]:
    raw = secret.encode("utf-8") if isinstance(secret, str) else secret
    out = {raw, raw.hex().encode(), raw.hex().upper().encode(),
           base64.b64encode(raw).rstrip(b"="), base64.urlsafe_b64encode(raw).rstrip(b"=")}
    if isinstance(secret, str):
        out.add(json.dumps(secret).strip('"').encode())  # JSON escapes (non-ASCII)
        out.add(secret.encode("utf-16-le"))
    # base64 of a string embedded at an offset: the three alignments of its middle part
    if len(raw) >= 12:
        for shift in range(3):
            chunk = raw[shift: shift + ((len(raw) - shift) // 3) * 3]
            out.add(base64.b64encode(chunk)[1:-1])
    return sorted(o for o in out if len(o) >= 8)


def hits(data: bytes, needles: Iterable[bytes]) -> int:
    low = data.lower()
    return sum(low.count(n.lower()) if n.isascii() else data.count(n) for n in needles)


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def pg_dump_text(url: str) -> bytes:
    """Every row of every table of the database at ``url`` as text (bytea as hex)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    parts: list[str] = []
    try:
        with engine.connect() as conn:
            tables = [r[0] for r in conn.execute(sa.text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))]
            for t in tables:
                for (row,) in conn.execute(sa.text(f'SELECT t::text FROM "{t}" t')):
                    parts.append(row)
    finally:
        engine.dispose()
    return "\n".join(parts).encode("utf-8")
