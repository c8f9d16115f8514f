"""Webhooks for case systems: signed JSON events, retried with backoff, with a delivery log.

Why events are rows: an event is queued in the same transaction as the change it
reports (a referral received, a status moved), so a crash cannot lose it; the
delivery worker then POSTs it until the receiver answers 2xx, backing off
exponentially with jitter, and records every outcome in `webhook_deliveries`.

Payloads carry ids and statuses only (no referral content): the case system
fetches details through the authenticated local API. Each request is signed:

    X-RSSN-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>

so the receiver can check origin and freshness (the same scheme as Stripe's).
"""

from __future__ import annotations

import hashlib
import hmac
import random
import secrets
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from common.logging import get_logger
from node.store.queries import WEBHOOK_DELIVERIES, WEBHOOKS, iso, now_utc

if TYPE_CHECKING:
    from node.runtime import Node

__all__ = [
    "EVENTS",
    "WebhookDeliverer",
    "add_webhook",
    "delivery_log",
    "sign_payload",
    "verify_signature",
    "webhook_loop",
]

_log = get_logger(__name__)

EVENTS = ("referral.received", "referral.status", "referral.consent_withdrawn")
MAX_ATTEMPTS = 12
MAX_BACKOFF_S = 3600.0


def sign_payload(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(secret: str, body: bytes, header: str, *, tolerance_s: int = 300,
                     now: float | None = None) -> bool:
    """For receivers (and tests): constant-time check of an X-RSSN-Signature header."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        ts = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((now if now is not None else time.time()) - ts) > tolerance_s:
        return False
    expected = sign_payload(secret, body, ts)
    return hmac.compare_digest(expected, header)


def backoff_seconds(attempts: int) -> float:
    """Exponential (2, 4, 8, ... s, capped at an hour) with +-50 % jitter."""
    base = min(MAX_BACKOFF_S, 2.0 ** max(1, attempts))
    return base * random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not security


def add_webhook(engine: sa.Engine, url: str, events: list[str]) -> tuple[int, str]:
    unknown = [e for e in events if e not in EVENTS and e != "*"]
    if unknown:
        raise ValueError(f"unknown event(s): {', '.join(unknown)}; choose from {', '.join(EVENTS)}")
    if not url.startswith(("http://", "https://")):
        raise ValueError("webhook URL must be http:// or https://")
    secret = "whsec_" + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        wid = conn.execute(
            sa.insert(WEBHOOKS).values(url=url, events=",".join(events), secret=secret,
                                       active=True, created_at=now_utc())
        ).inserted_primary_key
    return int(wid[0]) if wid else 0, secret


def delivery_log(engine: sa.Engine, limit: int = 50) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(WEBHOOK_DELIVERIES).order_by(WEBHOOK_DELIVERIES.c.id.desc()).limit(limit)
        ).all()
    return [
        {"id": r.id, "webhook_id": r.webhook_id, "event_id": r.event_id, "event": r.event,
         "state": r.state, "attempts": r.attempts, "last_status_code": r.last_status_code,
         "last_error": r.last_error, "created_at": iso(r.created_at),
         "delivered_at": iso(r.delivered_at), "next_attempt_at": iso(r.next_attempt_at)}
        for r in rows
    ]


class WebhookDeliverer:
    def __init__(self, node: Node, *, timeout: float = 10.0) -> None:
        import httpx

        self.node = node
        self.http = httpx.Client(timeout=timeout, headers={"User-Agent": "rssn-node-webhooks"})

    def due(self, limit: int = 50) -> list[Any]:
        with self.node.engine.connect() as conn:
            return list(conn.execute(
                sa.select(WEBHOOK_DELIVERIES, WEBHOOKS.c.url, WEBHOOKS.c.secret)
                .join(WEBHOOKS, WEBHOOKS.c.id == WEBHOOK_DELIVERIES.c.webhook_id)
                .where(WEBHOOK_DELIVERIES.c.state == "pending",
                       WEBHOOK_DELIVERIES.c.next_attempt_at <= now_utc())
                .order_by(WEBHOOK_DELIVERIES.c.id).limit(limit)
            ))

    def deliver(self, row: Any) -> bool:
        import httpx

        body = row.payload.encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "X-RSSN-Event": row.event,
            "X-RSSN-Delivery": row.event_id,
            "X-RSSN-Signature": sign_payload(row.secret, body, int(time.time())),
        }
        status: int | None = None
        error: str | None = None
        try:
            response = self.http.post(row.url, content=body, headers=headers)
            status = response.status_code
            ok = 200 <= status < 300
            if not ok:
                error = f"http_{status}"
        except httpx.HTTPError as exc:
            ok = False
            error = type(exc).__name__
        attempts = row.attempts + 1
        now = now_utc()
        values: dict[str, Any] = {"attempts": attempts, "last_status_code": status,
                                  "last_error": error}
        if ok:
            values.update(state="delivered", delivered_at=now)
        elif attempts >= MAX_ATTEMPTS:
            values.update(state="failed")
        else:
            values.update(next_attempt_at=now + timedelta(seconds=backoff_seconds(attempts)))
        with self.node.engine.begin() as conn:
            conn.execute(sa.update(WEBHOOK_DELIVERIES)
                         .where(WEBHOOK_DELIVERIES.c.id == row.id).values(**values))
        _log.info("webhook_delivery", delivery_id=row.event_id, webhook_id=row.webhook_id,
                  outcome=values.get("state", "retry"), status_code=status, attempt=attempts)
        return ok

    def close(self) -> None:
        self.http.close()


def webhook_loop(node: Node, stop: threading.Event) -> None:
    deliverer = WebhookDeliverer(node)
    try:
        while not stop.is_set():
            node.webhook_wakeup.clear()
            try:
                rows = deliverer.due()
                for row in rows:
                    if stop.is_set():
                        return
                    deliverer.deliver(row)
            except Exception as exc:
                _log.error("webhook_error", error=exc, exc_info=exc)
                rows = []
            if not rows:
                node.webhook_wakeup.wait(1.0)
    finally:
        deliverer.close()
