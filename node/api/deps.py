"""Shared dependencies: the running Node and API-key authentication.

Why API keys are stored hashed (SHA-256): they are 256-bit random secrets, so a plain
hash is enough to make a stolen database useless for calling the API, and lookups
stay a single indexed query.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from common.problems import ProblemHTTPException
from node.runtime import Node
from node.store.queries import API_KEYS, now_utc

__all__ = ["authenticated", "create_api_key", "get_node", "hash_key", "key_name"]

_bearer = HTTPBearer(auto_error=False, description="API key from `rssn-node api-key create`")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_api_key(engine: sa.Engine, name: str) -> str:
    key = "rssn_" + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(sa.insert(API_KEYS).values(
            name=name, key_hash=hash_key(key), prefix=key[:12], created_at=now_utc(),
            revoked=False))
    return key


#: Built once: this runs on every API request.
_KEY_NAME = sa.select(API_KEYS.c.name).where(API_KEYS.c.key_hash == sa.bindparam("b_hash"),
                                             API_KEYS.c.revoked.is_(False))


def get_node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """Returns the API key's name (for the audit trail); 401 problem+json otherwise.

    On the event loop: one indexed read on a lock-free (read-only) connection, cheaper than
    the hand-off to a worker thread a sync dependency costs on every request."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ProblemHTTPException(401, "unauthorized", "Bearer API key required",
                                   headers={"WWW-Authenticate": "Bearer"})
    name = key_name(get_node(request), credentials.credentials)
    if name is None:
        raise ProblemHTTPException(401, "unauthorized", "Unknown or revoked API key",
                                   headers={"WWW-Authenticate": "Bearer"})
    return name


def key_name(node: Node, key: str) -> str | None:
    """The name of an active API key, None for an unknown or revoked one."""
    with node.reader.connect() as conn:
        row = conn.execute(_KEY_NAME, {"b_hash": hash_key(key)}).first()
    return None if row is None else str(row[0])


NodeDep = Annotated[Node, Depends(get_node)]
AuthDep = Annotated[str, Depends(authenticated)]
