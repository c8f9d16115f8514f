"""The hub's ASGI application: routes, problem+json handlers, metrics, background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from common.logging import get_logger, install_access_log_context
from common.problems import install_problem_handlers
from protocol import SigningKeyPair

from . import __version__
from .api import auth, directory, enroll, health, mailbox, messages
from .delivery import available
from .expiry import run_sweeper
from .hubkey import load_hub_key
from .logs import setup_logging
from .runtime import HubRuntime
from .settings import PASSPHRASE_ENV, HubSettings

__all__ = ["app_from_env", "create_app"]

_log = get_logger(__name__)


def create_app(
    settings: HubSettings,
    *,
    hub_key: SigningKeyPair | None = None,
    background: bool = True,
) -> FastAPI:
    """Build the app; the runtime (engine, key) is created at startup.

    `hub_key=None` unseals the key from the database with `$RSSN_HUB_PASSPHRASE`.
    `background=False` skips the expiry sweeper and long-poll waker (unit tests).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from common.db import make_engine

        engine = make_engine(settings.db_url)
        key = hub_key
        if key is None:
            passphrase = os.environ.get(PASSPHRASE_ENV, "")
            key = await run_in_threadpool(load_hub_key, engine, passphrase)
        rt = HubRuntime.create(settings, key, engine)
        app.state.hub = rt
        tasks: list[asyncio.Task[None]] = []
        if background:
            tasks.append(asyncio.create_task(run_sweeper(rt)))

            async def avail(nodes: list[str]) -> set[str]:
                return await run_in_threadpool(available, rt, nodes)

            tasks.append(
                asyncio.create_task(rt.waiters.poll_forever(avail, settings.poll_interval_seconds))
            )
        _log.info("hub_started", kid=key.kid, dialect=engine.dialect.name, pid=os.getpid())
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            rt.close()
            _log.info("hub_stopped", pid=os.getpid())

    app = FastAPI(
        title="rssn hub",
        version=__version__,
        description="Routes end-to-end encrypted envelopes between member nodes; "
        "never reads them.",
        lifespan=lifespan,
        # FastAPI's native OpenTelemetry hooks look up the global providers (environment
        # reads) on every request; we export Prometheus metrics, not OTel, so they only cost.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    # Innermost of our middlewares (added first): inside the access-log context and the
    # unexpected-error handler, ahead of routing (issue 8, see hub.api.fastpath).
    from .api.fastpath import MessagesFastPath

    app.add_middleware(MessagesFastPath)
    install_problem_handlers(app)
    install_access_log_context(app)
    for r in (enroll, auth, directory, messages, mailbox, health):
        app.include_router(r.router)
    from .console import install_console  # coordinator console + PUT /v1/services (issue 6)

    install_console(app, settings)
    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` / multi-worker serve: settings from RSSN_HUB_* env."""
    settings = HubSettings.from_env(os.environ["RSSN_HUB_DATA_DIR"])
    setup_logging(settings.log_level)
    return create_app(settings)
