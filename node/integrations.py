"""What the case-system adapters (adapters/cli.py) need from the node.

Why direct database access rather than the local API: `rssn-node import` and
`rssn-node sync primero` run on the node's own machine with its data directory
and passphrase; they seal and queue referrals in the same transactional outbox
as the API (the serving node's sender picks them up), and read the node's own
history as the event feed. A stable `source_key` makes a resend after a crash
return the referral already created instead of a duplicate.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from node.runtime import Node
from node.store.queries import HISTORY, REFERRALS, get_kv, set_kv

__all__ = ["ack_inbound_factory", "poll_inbound_factory", "send_referral_factory"]

DECISIONS = ("accepted", "declined", "in_progress", "completed", "cancelled", "failed")


def send_referral_factory(node: Node, to: str) -> Callable[[dict[str, Any], dict[str, str]], str]:
    def send(document: dict[str, Any], refs: dict[str, str]) -> str:
        key = refs.get("source_key") or (
            f"{refs.get('system', 'import')}:{refs['source_id']}" if refs.get("source_id")
            else None)
        return str(node.create_referral(to, document, source_key=key)["id"])

    return send


def poll_inbound_factory(node: Node, cursor_key: str = "sync.primero.cursor",
                         limit: int = 200) -> Callable[[], list[Any]]:
    """Events after the acknowledged cursor: inbound referrals and decisions on outbound ones."""
    from adapters.primero.sync import InboundDecision, InboundReferral

    def poll() -> list[Any]:
        with node.engine.connect() as conn:
            cursor = int(get_kv(conn, cursor_key) or 0)
            rows = conn.execute(
                sa.select(HISTORY.c.id, HISTORY.c.event, HISTORY.c.actor, HISTORY.c.note,
                          REFERRALS.c.id.label("rid"), REFERRALS.c.direction,
                          REFERRALS.c.document, REFERRALS.c.restricted)
                .join(REFERRALS, REFERRALS.c.id == HISTORY.c.referral_id)
                .where(HISTORY.c.id > cursor).order_by(HISTORY.c.id).limit(limit)
            ).all()
        out: list[Any] = []
        for r in rows:
            eid = f"h{r.id}"
            if r.direction == "inbound" and r.event == "received" and not r.restricted:
                out.append(InboundReferral(eid, r.rid, json.loads(r.document)))
            elif (r.direction == "outbound" and r.event in DECISIONS
                  and r.actor != node.node_id):
                out.append(InboundDecision(eid, r.rid, r.event, r.note))
        if rows and not out:  # nothing relevant: move past it
            with node.engine.begin() as conn:
                set_kv(conn, cursor_key, str(rows[-1].id))
        return out

    return poll


def ack_inbound_factory(node: Node, cursor_key: str = "sync.primero.cursor"
                        ) -> Callable[[str], None]:
    def ack(event_id: str) -> None:
        n = int(event_id.removeprefix("h"))
        with node.engine.begin() as conn:
            if n > int(get_kv(conn, cursor_key) or 0):
                set_kv(conn, cursor_key, str(n))

    return ack
