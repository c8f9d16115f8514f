"""Liveness and readiness."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from common.problems import problem_response

from .deps import json_response, runtime

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get("/readyz", summary="Readiness: the database answers")
async def readyz(request: Request) -> Response:
    rt = runtime(request)

    def ping() -> None:
        with rt.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    try:
        await run_in_threadpool(ping)
    except sa.exc.SQLAlchemyError:
        return problem_response(503, "unavailable", "Database unavailable")
    return json_response({"status": "ready"})


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    rt = runtime(request)
    # The mailbox gauges query the database: keep that off the event loop.
    data = await run_in_threadpool(generate_latest, rt.metrics.registry)
    return Response(data, media_type=CONTENT_TYPE_LATEST)
