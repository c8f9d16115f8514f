"""The nodes a referral can go to, from the hub-signed directory this node verified."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from node.api.deps import AuthDep, NodeDep
from node.peers import describe
from protocol import fingerprint, format_time

router = APIRouter(prefix="/api/v1", tags=["directory"])


@router.get("/directory", summary="Members of the network this node can refer to")
def directory(node: NodeDep, _key: AuthDep) -> dict[str, Any]:
    d = node.refresh_directory(force=True)
    if d is None:
        return {"version": None, "items": []}
    pins = node.peer_pins()
    # Key continuity (node.peers): `key_status` is "trusted" or "changed" (held until an
    # operator confirms the new fingerprint); null for this node itself.
    items = [
        {
            "node_id": e.node_id,
            "organization": e.organization,
            "country": e.country,
            "services": list(e.services),
            "signing_key_fingerprint": fingerprint(e.signing_key),
            "self": e.node_id == node.node_id,
            **describe(pins.get(e.node_id)),
        }
        for e in sorted(d.entries.values(), key=lambda e: (e.country, e.organization))
    ]
    return {"version": d.version, "issued_at": format_time(d.issued_at),
            "expires_at": format_time(d.expires_at), "items": items}
