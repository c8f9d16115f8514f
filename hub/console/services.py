"""Published service directories: store, read, and feed into the signed directory.

A member publishes its HSDS document through its node (`PUT /v1/services`, node
bearer token) or a regional coordinator imports one (console). Either way the hub
validates it (hub.console.hsds), stores the normalised form, and bumps the directory
version so nodes fetch a newly signed directory whose entries carry the services.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from hub.store import queries as hubq

from . import hsds
from .models import PublishedServices
from .monitor import NodeInfo

__all__ = ["directory_services", "load_directory", "publish"]

published_t: sa.Table = PublishedServices.__table__  # type: ignore[assignment,attr-defined]


def publish(
    conn: sa.Connection, node_id: str, document: Any, *, source: str, now: int
) -> tuple[bool, dict[str, Any]]:
    """Validate and store `document` for `node_id`; (changed, normalised). Raises HsdsError."""
    doc = hsds.normalize(document)
    digest = hsds.document_digest(doc)
    row = conn.execute(
        sa.select(published_t.c.digest).where(published_t.c.node_id == node_id)
    ).first()
    if row is not None and row.digest == digest:
        return False, doc
    values = {
        "document": json.dumps(doc, ensure_ascii=False, sort_keys=True),
        "digest": digest,
        "service_count": len(doc["services"]),
        "source": source,
        "updated_at_ms": now,
    }
    if row is None:
        conn.execute(sa.insert(published_t).values(node_id=node_id, **values))
    else:
        conn.execute(published_t.update().where(published_t.c.node_id == node_id).values(**values))
    hubq.bump_directory_version(conn)
    return True, doc


def directory_services(conn: sa.Connection) -> dict[str, tuple[dict[str, Any], ...]]:
    """node_id -> HSDS services (nested form) for DirectoryEntry.services.

    The hub's directory builder calls this when it signs a directory; a node without
    a publication gets no entry here (an empty `services`).
    """
    out = {}
    for r in conn.execute(sa.select(published_t.c.node_id, published_t.c.document)):
        doc = json.loads(r.document)
        out[r.node_id] = tuple(hsds.dereferenced_services(doc))
    return out


def load_directory(
    conn: sa.Connection, nodes: Mapping[str, NodeInfo]
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """(service rows for display, node_id -> normalised document) of active members."""
    rows: list[dict[str, Any]] = []
    docs: dict[str, dict[str, Any]] = {}
    for r in conn.execute(sa.select(published_t).order_by(published_t.c.node_id)):
        n = nodes.get(r.node_id)
        if n is None or n.status != "active":
            continue
        doc = json.loads(r.document)
        docs[r.node_id] = doc
        for row in hsds.summarize_services(doc, node_id=r.node_id, node_country=n.country):
            row["node_country"] = n.country
            row["updated_at_ms"] = r.updated_at_ms
            rows.append(row)
    rows.sort(key=lambda s: (s["countries"][0] if s["countries"] else "", s["organization"],
                             s["name"]))
    return rows, docs


def filter_services(rows: list[dict[str, Any]], f: Mapping[str, str]) -> list[dict[str, Any]]:
    out = []
    for s in rows:
        if f.get("country") and f["country"] not in s["countries"]:
            continue
        if f.get("service_type") and f["service_type"] not in s["service_types"]:
            continue
        if f.get("population") and f["population"] not in s["populations"]:
            continue
        out.append(s)
    return out
