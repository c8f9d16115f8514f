"""Key continuity: remember each peer's signing key; hold a changed one until confirmed.

Why: the directory is signed by the hub, so whoever runs the hub can re-enroll a member's
node id with keys of its own (the legitimate rotation path) and every sender would then
encrypt to the impostor. As with SSH known_hosts or Signal safety numbers, a node pins the
signing-key fingerprint it first saw for each peer; when a later verified directory shows a
different one, nothing new is sealed to that peer and nothing signed by the new key is
accepted until an operator has confirmed the new fingerprint with the peer out of band
(`rssn-node peers trust`). Messages already sealed to the old key stay as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from common.logging import get_logger
from node.store.models import PeerKey
from node.store.queries import iso, now_utc
from protocol import Directory, fingerprint
from protocol.errors import UnknownKey

__all__ = ["PEER_KEYS", "PeerKeyChanged", "Pin", "describe", "load_pins", "sync_pins",
           "trust_peer"]

_log = get_logger(__name__)

PEER_KEYS: sa.Table = PeerKey.__table__  # type: ignore[attr-defined]

TRUSTED = "trusted"
CHANGED = "changed"


class PeerKeyChanged(UnknownKey):
    """A peer's signing key is not the one this node trusts: refused until confirmed (409)."""

    http_status = 409
    title = "Peer key changed"


@dataclass(frozen=True)
class Pin:
    node_id: str
    fingerprint: str
    status: str
    new_fingerprint: str | None
    first_seen_at: datetime
    changed_at: datetime | None
    confirmed_at: datetime | None

    @property
    def current(self) -> str:
        """The fingerprint the directory showed last (what a new directory is compared to)."""
        return self.new_fingerprint if self.status == CHANGED and self.new_fingerprint \
            else self.fingerprint

    def refusal(self, field: str = "to") -> PeerKeyChanged:
        return PeerKeyChanged(
            f"the signing key of {self.node_id} changed (trusted {self.fingerprint}, directory "
            f"now shows {self.new_fingerprint}); nothing is sealed to it or accepted from it "
            "until an operator confirms the new fingerprint with that organisation out of band "
            f"and runs `rssn-node peers trust --data-dir DIR --node-id {self.node_id} "
            f"--fingerprint {self.new_fingerprint}`", field=field)


def _pin(row: Any) -> Pin:
    return Pin(node_id=row.node_id, fingerprint=row.fingerprint, status=row.status,
               new_fingerprint=row.new_fingerprint, first_seen_at=row.first_seen_at,
               changed_at=row.changed_at, confirmed_at=row.confirmed_at)


def load_pins(conn: sa.Connection, node_ids: Iterable[str] | None = None) -> dict[str, Pin]:
    q = sa.select(PEER_KEYS)
    if node_ids is not None:
        q = q.where(PEER_KEYS.c.node_id.in_(list(node_ids)))
    return {r.node_id: _pin(r) for r in conn.execute(q)}


def _directory_fingerprints(directory: Directory, self_id: str) -> dict[str, str]:
    return {nid: fingerprint(e.signing_key) for nid, e in directory.entries.items()
            if nid != self_id}


def sync_pins(conn: sa.Connection, directory: Directory, self_id: str,
              cached: dict[str, Pin]) -> dict[str, Pin] | None:
    """Pin first-seen keys and record changes (caller's transaction, verified directory).

    Returns the pins that changed (read fresh from the database, since an operator may have
    confirmed a key from the CLI meanwhile), or None when the cache already agrees.
    """
    fps = _directory_fingerprints(directory, self_id)
    todo = [nid for nid, fp in fps.items() if (p := cached.get(nid)) is None or p.current != fp]
    if not todo:
        return None
    rows = load_pins(conn, todo)
    now = now_utc()
    for nid in todo:
        fp = fps[nid]
        row = rows.get(nid)
        if row is None:
            conn.execute(sa.insert(PEER_KEYS).values(
                node_id=nid, fingerprint=fp, status=TRUSTED, new_fingerprint=None,
                first_seen_at=now, changed_at=None, confirmed_at=None))
        elif row.fingerprint == fp:
            if row.status == CHANGED:  # the directory is back to the trusted key
                conn.execute(sa.update(PEER_KEYS).where(PEER_KEYS.c.node_id == nid)
                             .values(status=TRUSTED, new_fingerprint=None))
                _log.warning("peer_key_restored", peer_node_id=nid, fingerprint=fp)
        elif row.status != CHANGED or row.new_fingerprint != fp:
            conn.execute(sa.update(PEER_KEYS).where(PEER_KEYS.c.node_id == nid)
                         .values(status=CHANGED, new_fingerprint=fp, changed_at=now))
            _log.warning("peer_key_changed", peer_node_id=nid, old_fingerprint=row.fingerprint,
                         new_fingerprint=fp, directory_version=directory.version)
    return load_pins(conn, todo)


def trust_peer(conn: sa.Connection, directory: Directory | None, node_id: str,
               fp: str) -> Pin:
    """An operator confirmed `fp` out of band: it must be the directory's current key."""
    entry = directory.entries.get(node_id) if directory is not None else None
    if entry is None:
        raise LookupError(f"{node_id} is not in this node's verified directory")
    current = fingerprint(entry.signing_key)
    if fp.strip().upper() != current.upper():
        raise ValueError(f"fingerprint does not match the key the directory shows for "
                         f"{node_id} ({current}); nothing changed")
    now = now_utc()
    row = load_pins(conn, [node_id]).get(node_id)
    if row is None:
        conn.execute(sa.insert(PEER_KEYS).values(
            node_id=node_id, fingerprint=current, status=TRUSTED, new_fingerprint=None,
            first_seen_at=now, changed_at=None, confirmed_at=now))
    else:
        conn.execute(sa.update(PEER_KEYS).where(PEER_KEYS.c.node_id == node_id)
                     .values(fingerprint=current, status=TRUSTED, new_fingerprint=None,
                             confirmed_at=now))
        if row.fingerprint != current:
            _log.warning("peer_key_confirmed", peer_node_id=node_id,
                         old_fingerprint=row.fingerprint, new_fingerprint=current)
    return load_pins(conn, [node_id])[node_id]


def describe(pin: Pin | None) -> dict[str, Any]:
    """What the API and CLI show per peer."""
    if pin is None:
        return {"key_status": None, "trusted_fingerprint": None, "new_fingerprint": None,
                "key_changed_at": None}
    return {"key_status": pin.status, "trusted_fingerprint": pin.fingerprint,
            "new_fingerprint": pin.new_fingerprint if pin.status == CHANGED else None,
            "key_changed_at": iso(pin.changed_at) if pin.status == CHANGED else None}
