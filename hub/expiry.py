"""The background sweeper: expire undelivered envelopes, tell their senders, trim old records.

An envelope whose `expires_at` passes before its recipient acknowledged it is
deleted (the ciphertext must not outlive its purpose) and the sender gets a
hub-signed notice `{"kind": "problem", "code": "expired", "message_id"}` in its
own mailbox, so its node can mark the referral failed. Several sweepers (one
per hub process) are safe: rows are taken with SKIP LOCKED on PostgreSQL and
under the write lock on SQLite, and deleted in the same transaction.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from starlette.concurrency import run_in_threadpool

from common.ids import new_message_id
from common.logging import get_logger
from protocol import canonical_bytes, make_hub_notice

from . import ledger
from .runtime import HubRuntime
from .store import queries as q

__all__ = ["SweepResult", "run_sweeper", "sweep_once"]

_log = get_logger(__name__)

BATCH = 500
_HOUSEKEEPING_EVERY = 60.0


class SweepResult:
    def __init__(self) -> None:
        self.expired = 0
        self.notified: set[str] = set()


def expire_batch(rt: HubRuntime, now_ms: int) -> tuple[int, set[str], bool]:
    """One transaction: take up to BATCH expired items; returns (expired envelopes,
    senders notified, more may remain)."""
    at = q.ms_to_dt(now_ms)
    assert at is not None
    notice_ttl = rt.settings.notice_ttl_days * 86_400_000
    with rt.engine.begin() as conn:
        rows = q.take_expired(conn, now_ms, BATCH)
        envelopes = [r for r in rows if r.item_type == "envelope"]
        notices = []
        for r in envelopes:
            if r.sender is None:
                continue
            notice_id = new_message_id()
            notice = make_hub_notice(
                rt.hub_key, notice_id=notice_id, to=r.sender, message_id=r.item_id,
                code="expired", at=at,
            )
            notices.append(
                {
                    "item_id": notice_id,
                    "recipient": r.sender,
                    "item_type": "notice",
                    "sender": None,
                    "body": canonical_bytes(notice),
                    "accepted_at_ms": now_ms,
                    "expires_at_ms": now_ms + notice_ttl,
                    "leased_until_ms": 0,
                }
            )
        q.mark_expired(conn, [r.item_id for r in envelopes], now_ms)
        q.insert_notices(conn, notices)
    for r in envelopes:
        _log.info("envelope_expired", message_id=r.item_id, from_node=r.sender,
                  to_node=r.recipient, code="expired")
    if envelopes:
        rt.metrics.expired.inc(len(envelopes))
    return len(envelopes), {n["recipient"] for n in notices}, len(rows) == BATCH


def housekeeping(rt: HubRuntime, now_ms: int) -> None:
    with rt.engine.begin() as conn:
        jtis = q.purge_jtis(conn, now_ms)
        invites = q.purge_invites(conn, now_ms - 30 * 86_400_000)
        purged = ledger.purge(
            conn, retention=timedelta(days=rt.settings.ledger_retention_days), now_ms=now_ms
        )
    if jtis or invites or purged:
        _log.info("housekeeping", jti_count=jtis, invite_count=invites, ledger_count=purged)


def sweep_once(rt: HubRuntime, now_ms: int | None = None) -> SweepResult:
    now = q.now_ms() if now_ms is None else now_ms
    result = SweepResult()
    while True:
        n, notified, more = expire_batch(rt, now)
        result.expired += n
        result.notified |= notified
        if not more:
            break
    return result


async def run_sweeper(rt: HubRuntime) -> None:
    """Forever: sweep every `sweep_seconds`, housekeeping every minute."""
    loop = asyncio.get_running_loop()
    last_housekeeping = 0.0
    while True:
        try:
            result = await run_in_threadpool(sweep_once, rt)
            rt.waiters.notify(result.notified)
            if loop.time() - last_housekeeping >= _HOUSEKEEPING_EVERY:
                await run_in_threadpool(housekeeping, rt, q.now_ms())
                last_housekeeping = loop.time()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # keep sweeping after a transient database error
            _log.warning("sweep_failed", error=exc)
        await asyncio.sleep(rt.settings.sweep_seconds)
