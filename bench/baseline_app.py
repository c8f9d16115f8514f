"""The practical ceiling of this machine for an ingest endpoint (issue 8: baseline_ingest_per_s).

A raw ASGI app (no framework) that verifies one Ed25519 signature over the request body
and inserts the body into SQLite (WAL, synchronous=NORMAL like a typical service), one
transaction per request. Run: python -m bench.baseline_app DB_PATH PORT PUBLIC_KEY_HEX
"""

from __future__ import annotations

import sqlite3
import sys
from typing import Any

import nacl.exceptions
import nacl.signing
import uvicorn


def make_app(db_path: str, public_key: bytes) -> Any:
    db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS msg (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
    vk = nacl.signing.VerifyKey(public_key)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                m = await receive()
                if m["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif m["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        status = 202
        try:
            if len(body) < 64:
                raise nacl.exceptions.BadSignatureError("short body")
            vk.verify(body[64:], body[:64])
            db.execute("BEGIN")
            db.execute("INSERT INTO msg (body) VALUES (?)", (body,))
            db.execute("COMMIT")
        except nacl.exceptions.BadSignatureError:
            status = 401
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"ok":true}'})

    return app


if __name__ == "__main__":
    db_path, port, pk = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
    uvicorn.run(make_app(db_path, pk), host="127.0.0.1", port=port, log_level="warning",
                access_log=False)
