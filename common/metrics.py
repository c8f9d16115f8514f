"""Prometheus metrics, one registry per app.

Why per-app registries: tests run hubs and nodes side by side in one process
(and the default global registry refuses duplicate metric names), and each
service must expose only its own series. Labels must be content-free: node
ids, codes, route templates -- never anything derived from a referral.

Usage::

    registry = new_registry()
    accepted = Counter("rssn_hub_messages_accepted_total", "...", ["to_node"], registry=registry)
    app.include_router(metrics_route(registry))
"""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.responses import Response

__all__ = ["metrics_route", "new_registry"]


def new_registry(*, process_metrics: bool = True) -> CollectorRegistry:
    """A fresh registry, with process/GC/platform collectors unless disabled."""
    registry = CollectorRegistry(auto_describe=True)
    if process_metrics:
        ProcessCollector(registry=registry)
        GCCollector(registry=registry)
        PlatformCollector(registry=registry)
    return registry


def metrics_route(registry: CollectorRegistry, path: str = "/metrics") -> APIRouter:
    """A router serving ``registry`` in the Prometheus text format at ``path``."""
    router = APIRouter()

    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    router.add_api_route(path, metrics, methods=["GET"], include_in_schema=False)
    return router
