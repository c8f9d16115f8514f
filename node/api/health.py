"""Liveness, readiness and the operator's status view."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter

from common.problems import ProblemHTTPException
from node.api.deps import AuthDep, NodeDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the database answers")
def readyz(node: NodeDep) -> dict[str, str]:
    try:
        with node.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError:
        raise ProblemHTTPException(503, "unavailable", "database unreachable") from None
    return {"status": "ready"}


@router.get("/api/v1/status", summary="Hub reachability, outbox depth, last poll, key expiry")
def status(node: NodeDep, _key: AuthDep) -> dict[str, Any]:
    return node.status_report()
