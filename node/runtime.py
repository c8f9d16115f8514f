"""The running node: keys, database, verified directory, and the local actions.

Why one object: the API routes, the three workers (sender, receiver, webhooks) and
the CLI all need the same facts (who we are, the pinned hub key, the newest
verified directory) and must change referrals by the same rules. Every local action
writes its effects (referral row, history, sealed envelope in the outbox, webhook
events) in one database transaction, so a crash leaves either all or nothing.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from common.logging import get_logger
from node.keystore import NodeKeys, load_keys
from node.peers import PEER_KEYS, Pin, load_pins, sync_pins
from node.settings import NodeConfig, NodeSettings
from node.store.queries import (
    HISTORY,
    OUTBOX,
    REFERRALS,
    add_history,
    enqueue_webhook_event,
    get_kv,
    iso,
    now_utc,
    set_kv,
)
from protocol import Directory, Envelope, ProtocolError, Role, b64u_decode, next_state
from protocol.errors import Conflict, InvalidTransition, UnknownKey, WrongRecipient

__all__ = ["Node", "NotFound", "open_node"]

_log = get_logger(__name__)

DIRECTORY_KEY = "directory"
LAST_POLL_KEY = "last_successful_poll"
#: Refresh the directory at least this often while the hub is reachable.
DIRECTORY_MAX_AGE_S = 60.0
#: ... and never more often than this when forced by an unknown node or key.
DIRECTORY_MIN_INTERVAL_S = 1.0


#: Hot-path statements built once (a `.values(...)` per call costs more than the insert).
_INSERT_REFERRAL = sa.insert(REFERRALS)
_INSERT_HISTORY = sa.insert(HISTORY)
_INSERT_OUTBOX = sa.insert(OUTBOX)


def _outbox_row(envelope: Envelope, referral_id: str) -> dict[str, Any]:
    h = envelope.header
    return dict(message_id=h.id, kind=h.kind, referral_id=referral_id, to_node=h.recipient,
                envelope=envelope.raw.decode("utf-8"), envelope_digest=envelope.digest,
                state="pending", attempts=0, last_error=None, created_at=now_utc(),
                sent_at=None, delivered_at=None, hub_receipt=None)


@dataclass
class _NewReferral:
    """A referral ready to be written: its rows and its sealed envelope."""

    row: dict[str, Any]
    history: dict[str, Any]
    outbox: dict[str, Any]
    envelope: Envelope

    def write(self, conn: sa.Connection) -> None:
        conn.execute(_INSERT_REFERRAL, self.row)
        conn.execute(_INSERT_HISTORY, self.history)
        conn.execute(_INSERT_OUTBOX, self.outbox)


class NotFound(Exception):
    """No such referral on this node (404)."""


def _parse_directory(data: bytes, hub_key: bytes, *, min_version: int = 0) -> Directory:
    """Verify a signed directory; a stored one is checked as of its own issue time.

    Why: an offline node keeps routing with the last directory it verified while online
    (its keys do not stop being the members' keys at midnight); freshness is enforced when a
    directory is fetched, rollback by min_version.
    """
    from protocol import parse_canonical, parse_time, verify_directory

    body = parse_canonical(data)
    issued = parse_time(body["directory"]["issued_at"]) if isinstance(body, dict) else None
    return verify_directory(data, hub_key, now=issued or now_utc(), min_version=min_version)


class Node:
    def __init__(
        self,
        settings: NodeSettings,
        config: NodeConfig,
        keys: NodeKeys,
        engine: sa.Engine,
        *,
        transport: Any = None,
    ) -> None:
        from node.hub_client import HubClient

        self.settings = settings
        self.config = config
        self.keys = keys
        from common.db import read_only
        from node.writer import Writer

        self.node_id = config.node_id
        self.engine = engine
        #: Same pool, for connections that only read (no write lock on SQLite).
        self.reader = read_only(engine)
        #: Busy write paths (API creations, inbox, outbox) share transactions here.
        self.writer = Writer(engine)
        self.hub_key = b64u_decode(config.hub_key, length=32)
        self.client = HubClient(
            config.hub_url, node_id=config.node_id, signing=keys.signing,
            token_endpoint=config.token_endpoint, transport=transport,
        )
        self.outbox_wakeup = threading.Event()
        #: Set by the receiver while the hub holds more for us than one page (catching up).
        self.inbox_backlog = threading.Event()
        self.webhook_wakeup = threading.Event()
        self._dir_lock = threading.Lock()
        self._fetch_lock = threading.Lock()
        self._directory: Directory | None = None
        self._directory_fetched = 0.0
        self._directory_tried = 0.0
        #: Key continuity (node.peers): pinned peer keys, and the peers whose key changed.
        self._pins: dict[str, Pin] = {}
        self._changed: dict[str, Pin] = {}
        self._load_stored_directory()

    # -- directory -------------------------------------------------------------------

    def _load_stored_directory(self) -> None:
        with self.engine.connect() as conn:
            raw = get_kv(conn, DIRECTORY_KEY)
            self._set_pins(load_pins(conn))
        if raw is None:
            return
        try:
            self._directory = _parse_directory(raw.encode("utf-8"), self.hub_key)
        except ProtocolError as exc:
            _log.warning("stored_directory_invalid", code=exc.code)
            return
        # First sight of the directory stored at enrollment (or before this control existed).
        with self.engine.begin() as conn:
            self._set_pins(sync_pins(conn, self._directory, self.node_id, self._pins))

    def _set_pins(self, pins: dict[str, Pin] | None) -> None:
        if not pins:
            return
        merged = {**self._pins, **pins}
        self._pins = merged
        self._changed = {nid: p for nid, p in merged.items() if p.status == "changed"}

    def _still_changed(self) -> dict[str, Pin]:
        """Peers whose key changed, re-read: an operator may have confirmed one from the CLI
        (another process) since. Only reads when something is held."""
        if self._changed:
            with self.reader.connect() as conn:
                self._set_pins(load_pins(conn, list(self._changed)))
        return self._changed

    def check_peer_key(self, node_id: str) -> None:
        """Refuse (409 unknown_key) to seal anything new to a peer whose key changed."""
        if node_id in self._changed and node_id in self._still_changed():
            raise self._changed[node_id].refusal()

    def peer_key_refusal(self, node_id: str) -> ProtocolError:
        pin = self._changed.get(node_id) or self._pins.get(node_id)
        if pin is None:  # confirmed meanwhile; still refuse this one, it was judged held
            return UnknownKey("sender key is not trusted yet", field="header.sender_kid")
        return pin.refusal(field="header.sender_kid")

    def held_sender_kids(self) -> dict[str, str]:
        """Peer -> signing kid the directory now shows for it, for peers whose key changed
        and is not confirmed: the inbox refuses envelopes signed with those keys."""
        changed = self._still_changed()
        if not changed or self._directory is None:
            return {}
        return {nid: e.signing_kid for nid in changed
                if (e := self._directory.entries.get(nid)) is not None}

    def peer_pins(self) -> dict[str, Pin]:
        """Every pinned peer key, fresh from the database (API and status views)."""
        with self.reader.connect() as conn:
            pins = load_pins(conn)
        self._set_pins(pins)
        return pins

    def store_directory(self, data: bytes, *, fetched: bool = True) -> Directory:
        """Verify (pinned hub key, not expired, not older) and persist a signed directory."""
        from protocol import verify_directory

        with self._dir_lock:
            current = self._directory.version if self._directory else 0
            directory = verify_directory(data, self.hub_key, now=now_utc(), min_version=current)
            if self._directory is None or directory.version >= self._directory.version:
                with self.engine.begin() as conn:
                    set_kv(conn, DIRECTORY_KEY, data.decode("utf-8"))
                    pins = sync_pins(conn, directory, self.node_id, self._pins)
                self._set_pins(pins)
                self._directory = directory
            if fetched:
                self._directory_fetched = time.monotonic()
            return self._directory

    def refresh_directory(self, *, force: bool = False) -> Directory | None:
        """Fetch from the hub when stale (or forced); on failure keep the one we have.

        Concurrent callers share one fetch: whoever waited for the lock while another
        fetched gets that result instead of asking the hub again.
        """
        asked = time.monotonic()
        if (self._directory is not None and not force
                and asked - self._directory_fetched < DIRECTORY_MAX_AGE_S):
            return self._directory
        with self._fetch_lock:
            now = time.monotonic()
            if self._directory is not None and self._directory_fetched >= asked:
                return self._directory
            if (self._directory is not None and not force
                    and now - self._directory_fetched < DIRECTORY_MAX_AGE_S):
                return self._directory
            if now - self._directory_tried < DIRECTORY_MIN_INTERVAL_S and self._directory:
                return self._directory
            self._directory_tried = now
            from node.hub_client import HubError

            try:
                return self.store_directory(self.client.directory())
            except HubError as exc:
                _log.info("directory_refresh_failed", code=exc.code)
            except ProtocolError as exc:
                _log.warning("directory_refused", code=exc.code)
            return self._directory

    @property
    def directory(self) -> Directory:
        d = self._directory or self.refresh_directory()
        if d is None:
            raise WrongRecipient("no verified directory yet (hub unreachable since enrollment)")
        return d

    def peer_entry(self, node_id: str) -> Any:
        try:
            return self.directory.entry(node_id)
        except ProtocolError:
            d = self.refresh_directory(force=True)
            if d is None or node_id not in d.entries:
                raise WrongRecipient("recipient is not in the directory", field="to") from None
            return d.entry(node_id)

    # -- sealing ---------------------------------------------------------------------

    def seal(
        self,
        *,
        kind: str,
        to: str,
        thread: str,
        document: Mapping[str, Any],
        meta: Mapping[str, str] | None = None,
        message_id: str | None = None,
        now: datetime | None = None,
    ) -> Envelope:
        from common.ids import new_message_id
        from protocol import seal

        created = (now or now_utc()).replace(microsecond=0)
        entry = self.peer_entry(to)
        if to in self._changed:  # key continuity: never seal silently to a changed key
            self.check_peer_key(to)
        try:
            binding = entry.current_encryption_key(created)
        except ProtocolError:
            self.refresh_directory(force=True)
            binding = self.directory.entry(to).current_encryption_key(created)
        return seal(
            sender=self.node_id,
            signing_key=self.keys.signing,
            recipient=to,
            recipient_key=binding,
            kind=kind,
            document=document,
            message_id=message_id or new_message_id(),
            thread=thread,
            created_at=created,
            meta=meta,
        )

    def queue(self, conn: sa.Connection, envelope: Envelope, *, referral_id: str) -> None:
        """Put a sealed envelope in the outbox (caller's transaction)."""
        conn.execute(_INSERT_OUTBOX, _outbox_row(envelope, referral_id))

    # -- local actions ---------------------------------------------------------------

    def create_referral(self, to: str, referral: Any, *, source_key: str | None = None
                        ) -> dict[str, Any]:
        prepared = self._prepare_referral(to, referral, source_key)
        if isinstance(prepared, dict):
            return prepared
        self.writer.run(prepared.write)  # durable (fsync shared with concurrent writes)
        return self._created(prepared)

    async def create_referral_async(self, to: str, referral: Any) -> dict[str, Any]:
        """`create_referral` for the API's event loop: validating and sealing take well
        under a millisecond here, and the commit is awaited, not waited for in a thread.
        A recipient not in our verified directory goes the thread way (it may ask the hub)."""
        import asyncio

        from starlette.concurrency import run_in_threadpool

        if self._directory is None or to not in self._directory.entries:
            return await run_in_threadpool(self.create_referral, to, referral)
        prepared = self._prepare_referral(to, referral, None)
        if isinstance(prepared, dict):
            return prepared
        await asyncio.wrap_future(self.writer.submit(prepared.write))
        return self._created(prepared)

    def _prepare_referral(self, to: str, referral: Any, source_key: str | None
                          ) -> _NewReferral | dict[str, Any]:
        """Everything but the write: checks, sealing, rows (or the known referral's summary)."""
        from common.ids import new_message_id
        from protocol.consent import check_consent
        from protocol.documents import (
            ReferralDocument,
            document_to_json,
            monitoring_fields,
            parse_document,
        )

        if to == self.node_id:
            raise WrongRecipient("a node cannot refer to itself", field="to")
        if source_key:
            with self.reader.connect() as conn:
                known = conn.execute(sa.select(REFERRALS.c.id)
                                     .where(REFERRALS.c.source_key == source_key)).scalar()
            if known:
                return self.referral_summary(str(known))
        doc = parse_document("referral", referral)
        assert isinstance(doc, ReferralDocument)
        entry = self.peer_entry(to)
        now = now_utc()
        check_consent(doc, recipient_node=to, recipient_org=entry.organization, now=now)
        doc_json = document_to_json(doc)
        referral_id = new_message_id()
        meta = monitoring_fields(doc)
        envelope = self.seal(kind="referral", to=to, thread=referral_id, document=doc_json,
                             meta=meta, now=now)
        row = dict(
            id=referral_id, direction="outbound", from_node=self.node_id, to_node=to,
            status="requested", priority=meta.get("priority"), category=meta.get("category"),
            document=json.dumps(doc_json, separators=(",", ":")), restricted=False,
            created_at=now, updated_at=now, source_key=source_key, delivered_at=None,
            consent_withdrawn_at=None, consent_ack_at=None,
        )
        history = dict(referral_id=referral_id, actor=self.node_id, event="requested",
                       status="requested", at=now, note=None, message_id=envelope.header.id)
        return _NewReferral(row, history, _outbox_row(envelope, referral_id), envelope)

    def _created(self, new: _NewReferral) -> dict[str, Any]:
        self.outbox_wakeup.set()
        _log.info("referral_created", referral_id=new.row["id"],
                  message_id=new.envelope.header.id, to_node=new.row["to_node"])
        return self._summary(SimpleNamespace(**new.row))

    def _load_for_update(self, conn: sa.Connection, referral_id: str) -> sa.Row[Any]:
        row = conn.execute(
            sa.select(REFERRALS).where(REFERRALS.c.id == referral_id).with_for_update()
        ).first()
        if row is None:
            raise NotFound(referral_id)
        return row

    def change_status(self, referral_id: str, target: str, note: str | None = None,
                      reason_code: str | None = None) -> dict[str, Any]:
        from protocol.documents import document_to_json, parse_document

        now = now_utc()
        with self.engine.begin() as conn:
            row = self._load_for_update(conn, referral_id)
            role = Role.SENDER if row.direction == "outbound" else Role.RECIPIENT
            new = next_state(row.status, target, role).value
            if new == "failed":
                raise InvalidTransition("failed is set by the node, not by people")
            peer = row.to_node if row.direction == "outbound" else row.from_node
            body: dict[str, Any] = {"status": new, "at": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
            if note:
                body["note"] = note
            if reason_code:
                body["reason_code"] = reason_code
            doc_json = document_to_json(parse_document("status", body))
            envelope = self.seal(kind="status", to=peer, thread=referral_id, document=doc_json,
                                 meta={"status": new}, now=now)
            conn.execute(sa.update(REFERRALS).where(REFERRALS.c.id == referral_id)
                         .values(status=new, updated_at=now))
            add_history(conn, referral_id, actor=self.node_id, event=new, status=new, at=now,
                        note=note, message_id=envelope.header.id)
            self.queue(conn, envelope, referral_id=referral_id)
            enqueue_webhook_event(conn, "referral.status", self._event_data(row, new))
        self.outbox_wakeup.set()
        self.webhook_wakeup.set()
        _log.info("referral_status_changed", referral_id=referral_id, to_state=new,
                  message_id=envelope.header.id)
        return self.referral_summary(referral_id)

    def withdraw_consent(self, referral_id: str, note: str | None = None) -> dict[str, Any]:
        from protocol.documents import document_to_json, parse_document

        now = now_utc()
        with self.engine.begin() as conn:
            row = self._load_for_update(conn, referral_id)
            if row.consent_withdrawn_at is not None:
                raise Conflict("consent withdrawal was already recorded for this referral")
            peer = row.to_node if row.direction == "outbound" else row.from_node
            body: dict[str, Any] = {"withdrawn_at": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
            if note:
                body["note"] = note
            doc_json = document_to_json(parse_document("consent_withdrawn", body))
            envelope = self.seal(kind="consent_withdrawn", to=peer, thread=referral_id,
                                 document=doc_json, now=now)
            conn.execute(sa.update(REFERRALS).where(REFERRALS.c.id == referral_id)
                         .values(restricted=True, consent_withdrawn_at=now, updated_at=now))
            add_history(conn, referral_id, actor=self.node_id, event="consent_withdrawn",
                        at=now, note=note, message_id=envelope.header.id)
            self.queue(conn, envelope, referral_id=referral_id)
            enqueue_webhook_event(conn, "referral.consent_withdrawn",
                                  self._event_data(row, row.status))
        self.outbox_wakeup.set()
        self.webhook_wakeup.set()
        _log.info("consent_withdrawn_sent", referral_id=referral_id,
                  message_id=envelope.header.id)
        return self.referral_summary(referral_id)

    # -- reading ---------------------------------------------------------------------

    @staticmethod
    def _event_data(row: Any, status: str) -> dict[str, Any]:
        return {"referral_id": row.id, "direction": row.direction, "from": row.from_node,
                "to": row.to_node, "status": status}

    @staticmethod
    def _summary(row: Any) -> dict[str, Any]:
        return {
            "id": row.id,
            "direction": row.direction,
            "from": row.from_node,
            "to": row.to_node,
            "status": row.status,
            "priority": row.priority,
            "category": row.category,
            "restricted": bool(row.restricted),
            "created_at": iso(row.created_at),
            "updated_at": iso(row.updated_at),
            "delivered_at": iso(row.delivered_at),
            "consent_withdrawn_at": iso(row.consent_withdrawn_at),
            "consent_withdrawal_acknowledged_at": iso(row.consent_ack_at),
        }

    def referral_summary(self, referral_id: str) -> dict[str, Any]:
        with self.reader.connect() as conn:
            row = conn.execute(sa.select(REFERRALS).where(REFERRALS.c.id == referral_id)).first()
        if row is None:
            raise NotFound(referral_id)
        return self._summary(row)

    def list_referrals(self, *, direction: str | None = None, status: str | None = None,
                       limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        q = sa.select(REFERRALS)
        if direction:
            q = q.where(REFERRALS.c.direction == direction)
        if status:
            q = q.where(REFERRALS.c.status.in_([s for s in status.split(",") if s]))
        q = q.order_by(REFERRALS.c.updated_at.desc(), REFERRALS.c.id).limit(limit).offset(offset)
        with self.reader.connect() as conn:
            return [self._summary(r) for r in conn.execute(q)]

    def referral_detail(self, referral_id: str) -> dict[str, Any]:
        with self.reader.connect() as conn:
            row = conn.execute(sa.select(REFERRALS).where(REFERRALS.c.id == referral_id)).first()
            if row is None:
                raise NotFound(referral_id)
            hist = conn.execute(
                sa.select(HISTORY).where(HISTORY.c.referral_id == referral_id)
                .order_by(HISTORY.c.id)
            ).all()
        out = self._summary(row)
        # Restricted (consent withdrawn): the content is withheld from the API; the
        # journey stays visible so both organisations can show what happened.
        out["referral"] = None if row.restricted else json.loads(row.document)
        out["history"] = [
            {"at": iso(h.at), "actor": h.actor, "event": h.event, "status": h.status,
             "note": h.note, "message_id": h.message_id}
            for h in hist
        ]
        return out

    def status_report(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return status_report(conn, self.config, hub_ok=self.client.healthz())

    def close(self) -> None:
        self.client.close()
        self.writer.close()
        self.engine.dispose()


def status_report(conn: sa.Connection, config: NodeConfig, *, hub_ok: bool) -> dict[str, Any]:
    """What an operator asks first: can we reach the hub, are we keeping up, keys OK?"""
    pending = OUTBOX.c.state == "pending"
    depth = conn.execute(sa.select(sa.func.count()).select_from(OUTBOX).where(pending)).scalar()
    oldest = conn.execute(sa.select(sa.func.min(OUTBOX.c.created_at)).where(pending)).scalar()
    failed = conn.execute(
        sa.select(sa.func.count()).select_from(OUTBOX).where(OUTBOX.c.state == "failed")
    ).scalar()
    last_poll = get_kv(conn, LAST_POLL_KEY)
    dir_version = None
    raw = get_kv(conn, DIRECTORY_KEY)
    if raw:
        try:
            dir_version = json.loads(raw)["directory"]["version"]
        except (ValueError, KeyError, TypeError):
            dir_version = None
    if isinstance(oldest, datetime) and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    changed = [
        {"node_id": r.node_id, "trusted_fingerprint": r.fingerprint,
         "new_fingerprint": r.new_fingerprint, "changed_at": iso(r.changed_at)}
        for r in conn.execute(sa.select(PEER_KEYS).where(PEER_KEYS.c.status == "changed")
                              .order_by(PEER_KEYS.c.node_id))]
    return {
        "node_id": config.node_id,
        "hub_url": config.hub_url,
        "hub_reachable": hub_ok,
        "last_successful_poll": last_poll,
        "outbox_depth": int(depth or 0),
        "oldest_unsent_message": iso(oldest) if isinstance(oldest, datetime) else None,
        "outbox_failed": int(failed or 0),
        "key_expires_at": config.key_expires_at or None,
        "directory_version": dir_version,
        # Key continuity: peers held until an operator confirms (`rssn-node peers trust`).
        "peer_keys_changed": changed,
    }


def open_node(
    settings: NodeSettings, passphrase: str, *, migrate: bool = True, transport: Any = None
) -> Node:
    """Load config and keys, migrate the database, and build the Node."""
    from common.db import make_engine

    config = settings.load_config()
    keys = load_keys(settings.keys_path, passphrase)
    if migrate:
        migrate_db(settings.database_url)
    engine = make_engine(settings.database_url)
    return Node(settings, config, keys, engine, transport=transport)


def migrate_db(url: str) -> None:
    from pathlib import Path

    from common.db import run_migrations

    run_migrations(url, Path(__file__).parent / "store" / "migrations")


