"""Prometheus series of one hub process.

Labels are node ids and stable codes only. Counters are per process (sum them
across processes in PromQL); the mailbox gauges are read from the database at
scrape time, so every process reports the same, shared truth.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from common.metrics import new_registry

from .store import queries as q

__all__ = ["HubMetrics"]


class _MailboxCollector(Collector):
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "rssn_hub_mailbox_depth", "Items waiting in a node's mailbox", labels=["node"]
        )
        age = GaugeMetricFamily(
            "rssn_hub_mailbox_oldest_age_seconds",
            "Age of the oldest undelivered item in a node's mailbox (0 when empty)",
            labels=["node"],
        )
        last_seen = GaugeMetricFamily(
            "rssn_hub_node_last_seen_timestamp_seconds",
            "Unix time of the node's last authenticated call (active nodes)",
            labels=["node"],
        )
        key_expiry = GaugeMetricFamily(
            "rssn_hub_node_key_expiry_timestamp_seconds",
            "Unix time when the node's newest encryption key binding expires (active nodes)",
            labels=["node"],
        )
        try:
            with self._engine.begin() as conn:
                stats = {s["node_id"]: s for s in q.mailbox_stats(conn)}
                nodes = [n for n in q.list_nodes(conn) if n["status"] == "active"]
                expiry = q.key_expiry(conn)
        except sa.exc.SQLAlchemyError:
            return
        now = q.now_ms()
        active = [n["node_id"] for n in nodes]
        for node in sorted(set(active) | set(stats)):
            s = stats.get(node)
            depth.add_metric([node], s["depth"] if s else 0)
            age.add_metric([node], max(0.0, (now - s["oldest_accepted_ms"]) / 1000) if s else 0.0)
        for n in nodes:
            if n["last_seen"] is not None:
                last_seen.add_metric([n["node_id"]], n["last_seen"].timestamp())
            if n["node_id"] in expiry:
                key_expiry.add_metric([n["node_id"]], expiry[n["node_id"]] / 1000)
        yield depth
        yield age
        yield last_seen
        yield key_expiry

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


class HubMetrics:
    def __init__(self, engine: sa.Engine | None = None) -> None:
        self.registry: CollectorRegistry = new_registry()
        r = self.registry
        self.accepted = Counter(
            "rssn_hub_messages_accepted", "Envelopes accepted into a mailbox", ["kind"], registry=r
        )
        self.duplicates = Counter(
            "rssn_hub_messages_duplicate",
            "Identical envelopes resubmitted (answered with the original receipt)",
            registry=r,
        )
        self.rejected = Counter(
            "rssn_hub_messages_rejected", "Envelopes refused, by stable code", ["code"], registry=r
        )
        self.delivered = Counter(
            "rssn_hub_messages_delivered", "Mailbox items acknowledged by their recipient",
            registry=r,
        )
        self.pulled = Counter(
            "rssn_hub_mailbox_items_pulled", "Mailbox items handed out (incl. re-deliveries)",
            registry=r,
        )
        self.expired = Counter(
            "rssn_hub_messages_expired", "Envelopes deleted undelivered at expiry", registry=r
        )
        self.tokens = Counter(
            "rssn_hub_tokens_issued", "Access tokens issued", registry=r
        )
        self.auth_failures = Counter(
            "rssn_hub_auth_failures", "Refused authentications", ["reason"], registry=r
        )
        self.ingest_seconds = Histogram(
            "rssn_hub_ingest_seconds", "Time to verify and store one request's envelopes",
            registry=r,
        )
        if engine is not None:
            r.register(_MailboxCollector(engine))
        self._started = time.time()
