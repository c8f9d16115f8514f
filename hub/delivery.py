"""Mailbox pull (long-poll, leased, in submission order) and acknowledgement.

At-least-once: a pulled item is leased for `lease_seconds` (hidden from other
polls, including those of other hub processes) and comes back once the lease
runs out unless the node acknowledged it. Acknowledged items are deleted
(ciphertext gone) and never come back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from starlette.concurrency import run_in_threadpool

from common.logging import get_logger

from .auth import AccessClaims
from .runtime import HubRuntime
from .store import queries as q

__all__ = ["ack", "available", "pull", "render_items"]

_log = get_logger(__name__)

Item = tuple[int, str, str, bytes]


def _lease(rt: HubRuntime, claims: AccessClaims, limit: int, user_agent: str | None) -> list[Item]:
    now = q.now_ms()
    with rt.engine.begin() as conn:
        rt.check_node(conn, claims, user_agent)
        items = q.lease_items(
            conn,
            claims.node_id,
            limit=limit,
            now=now,
            lease_until=now + int(rt.settings.lease_seconds * 1000),
        )
        env_ids = [i[1] for i in items if i[2] == "envelope"]
        if env_ids:
            q.record_fetched(conn, env_ids, now)
    return items


async def pull(
    rt: HubRuntime,
    claims: AccessClaims,
    *,
    wait: float,
    limit: int,
    user_agent: str | None,
    disconnected: Callable[[], Awaitable[bool]] | None = None,
) -> list[Item]:
    """Lease what is there, or wait (up to `wait` s) until something arrives.

    A client that hung up while waiting gets nothing leased: items would otherwise stay
    hidden for a lease period for nobody.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, min(wait, rt.settings.max_wait_seconds))
    first = True
    while True:
        if not first and disconnected is not None and await disconnected():
            return []
        first = False
        # Register before looking, so a wake-up between the query and the wait is not lost.
        ev = rt.waiters.register(claims.node_id)
        try:
            items = await run_in_threadpool(_lease, rt, claims, limit, user_agent)
            remaining = deadline - loop.time()
            if items or remaining <= 0:
                break
            try:
                await asyncio.wait_for(ev.wait(), timeout=remaining)
            except TimeoutError:
                pass
        finally:
            rt.waiters.unregister(claims.node_id, ev)
    items.sort(key=lambda i: i[0])
    if items:
        rt.metrics.pulled.inc(len(items))
        _log.info("mailbox_pulled", node=claims.node_id, count=len(items))
    return items


def render_items(items: Sequence[Item]) -> bytes:
    """The response body, built from stored canonical bytes without re-parsing them."""
    parts = []
    for _seq, item_id, item_type, body in items:
        key = b'"envelope"' if item_type == "envelope" else b'"notice"'
        parts.append(
            b"{" + key + b":" + body + b',"id":"' + item_id.encode("ascii") + b'","type":'
            + key + b"}"
        )
    return b'{"items":[' + b",".join(parts) + b"]}"


def ack(
    rt: HubRuntime, claims: AccessClaims, ids: list[str], user_agent: str | None
) -> int:
    now = q.now_ms()
    with rt.engine.begin() as conn:
        rt.check_node(conn, claims, user_agent)
        n = q.ack_items(conn, claims.node_id, ids, now)
    if n:
        rt.metrics.delivered.inc(n)
    _log.info("mailbox_acked", node=claims.node_id, count=n)
    return n


def available(rt: HubRuntime, nodes: list[str]) -> set[str]:
    with rt.engine.begin() as conn:
        return q.recipients_with_available(conn, nodes, q.now_ms())
