"""Prometheus metrics for the node: queue depths read from the database at scrape time.

Why read at scrape time: the numbers that matter to an operator (how much waits to be
sent, how much is quarantined, how many webhook deliveries are pending) are facts in
the database; counting there is exact across restarts and costs nothing between scrapes.
Labels are content-free (states and kinds only).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import sqlalchemy as sa
from fastapi import APIRouter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from node.store.queries import OUTBOX, QUARANTINE, REFERRALS, WEBHOOK_DELIVERIES

if TYPE_CHECKING:
    from node.runtime import Node

__all__ = ["metrics_router"]


class _NodeCollector(Collector):
    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self) -> Iterator[GaugeMetricFamily]:
        outbox = GaugeMetricFamily("rssn_node_outbox_messages", "Outbox rows by state",
                                   labels=["state", "kind"])
        referrals = GaugeMetricFamily("rssn_node_referrals", "Referrals by direction/status",
                                      labels=["direction", "status"])
        webhooks = GaugeMetricFamily("rssn_node_webhook_deliveries", "Webhook deliveries",
                                     labels=["state"])
        quarantine = GaugeMetricFamily("rssn_node_quarantined_messages",
                                       "Messages kept in quarantine", labels=["code"])
        with self.node.engine.connect() as conn:
            for state, kind, n in conn.execute(
                    sa.select(OUTBOX.c.state, OUTBOX.c.kind, sa.func.count())
                    .group_by(OUTBOX.c.state, OUTBOX.c.kind)):
                outbox.add_metric([state, kind], n)
            for d, s, n in conn.execute(
                    sa.select(REFERRALS.c.direction, REFERRALS.c.status, sa.func.count())
                    .group_by(REFERRALS.c.direction, REFERRALS.c.status)):
                referrals.add_metric([d, s], n)
            for state, n in conn.execute(
                    sa.select(WEBHOOK_DELIVERIES.c.state, sa.func.count())
                    .group_by(WEBHOOK_DELIVERIES.c.state)):
                webhooks.add_metric([state], n)
            for code, n in conn.execute(
                    sa.select(QUARANTINE.c.code, sa.func.count()).group_by(QUARANTINE.c.code)):
                quarantine.add_metric([code], n)
        yield from (outbox, referrals, webhooks, quarantine)


def metrics_router(node: Node) -> APIRouter:
    from common.metrics import metrics_route, new_registry

    registry = new_registry()
    registry.register(_NodeCollector(node))
    return metrics_route(registry)
