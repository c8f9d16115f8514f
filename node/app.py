"""The node's ASGI app: local API routes, plus the background workers in its lifespan.

Why workers are threads in the same process: a member organisation's IT team
runs one command (`rssn-node serve`); the sender, receiver and webhook deliverer
use blocking HTTP and the database, and threads keep them simple and light.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from common.logging import get_logger
from node.settings import SOFTWARE_VERSION, NodeSettings

if TYPE_CHECKING:
    from node.runtime import Node

__all__ = ["Workers", "create_app"]

_log = get_logger(__name__)


class Workers:
    """The sender, receiver and webhook threads, stopped together."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        from node.inbox import receiver_loop
        from node.outbox import sender_loop
        from node.webhooks import webhook_loop

        loops: list[tuple[str, Callable[[Node, threading.Event], None]]] = [
            ("rssn-sender", sender_loop), ("rssn-receiver", receiver_loop),
            ("rssn-webhooks", webhook_loop),
        ]
        for name, fn in loops:
            t = threading.Thread(target=self._guard, args=(name, fn), name=name, daemon=True)
            t.start()
            self.threads.append(t)

    def _guard(self, name: str, fn: Callable[[Node, threading.Event], None]) -> None:
        """Restart a loop that died unexpectedly: a worker must never silently stop."""
        while not self.stop.is_set():
            try:
                fn(self.node, self.stop)
            except Exception as exc:
                _log.error("worker_crashed", queue=name, error=exc, exc_info=exc)
                self.stop.wait(2.0)

    def shutdown(self, timeout: float = 3.0) -> None:
        """Prompt stop: a receiver in a long-poll is a daemon thread and is not waited for
        beyond the deadline (anything it had not acknowledged is simply redelivered)."""
        import time

        self.stop.set()
        self.node.outbox_wakeup.set()
        self.node.webhook_wakeup.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))


def create_app(
    settings: NodeSettings,
    *,
    node: Node | None = None,
    passphrase: str | None = None,
    start_workers: bool = True,
) -> FastAPI:
    """Build the app. Pass an opened `node` (the CLI does, so key errors surface before the
    port is bound) or a passphrase to open one at startup."""
    from common.logging import install_access_log_context
    from common.problems import install_problem_handlers
    from node.api import directory, health, referrals

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal node
        if node is None:
            from node.keystore import get_passphrase
            from node.runtime import open_node

            node = open_node(settings, passphrase or get_passphrase())
        app.state.node = node
        # The API's event loop shares the GIL with the sender, receiver and writer threads;
        # by default a CPU-bound thread keeps it up to 5 ms before handing over, several
        # times per request. 1 ms keeps API answers prompt while receipts are processed.
        import os
        import sys

        sys.setswitchinterval(float(os.environ.get("RSSN_NODE_SWITCH_INTERVAL_S", "0.001")))
        if not getattr(app.state, "metrics_installed", False):
            from node.api.metrics import metrics_router

            app.include_router(metrics_router(node))
            app.state.metrics_installed = True
        workers = Workers(node)
        if start_workers:
            workers.start()
        _log.info("node_started", node_id=node.node_id, port=settings.port)
        try:
            yield
        finally:
            workers.shutdown()
            node.close()
            _log.info("node_stopped", node_id=node.node_id)

    app = FastAPI(
        title="rssn-node local API",
        version=SOFTWARE_VERSION,
        description="Create, receive and answer referrals; the node delivers them through the "
        "hub, end-to-end encrypted. Authenticate with `Authorization: Bearer <API key>`.",
        lifespan=lifespan,
        # FastAPI's native OpenTelemetry hooks look up the global providers (environment
        # reads) on every request; we export Prometheus metrics, not OTel, so they only cost.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    if node is not None:
        from node.api.metrics import metrics_router

        app.state.node = node
        app.include_router(metrics_router(node))
        app.state.metrics_installed = True
    # Innermost of our middlewares (added first): inside the access-log context and the
    # unexpected-error handler, ahead of routing (issue 8, see node.api.fastpath).
    from node.api.fastpath import ReferralsFastPath

    app.add_middleware(ReferralsFastPath)
    install_problem_handlers(app)
    install_access_log_context(app)
    app.include_router(health.router)
    app.include_router(referrals.router)
    app.include_router(directory.router)
    return app
