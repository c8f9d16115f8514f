"""Accepting envelopes: verify what the hub can verify, store, sign a transport receipt.

Order of checks (SPEC 7, the hub's part): structure (`parse_envelope`), then
the caller may only submit its own envelopes (`not_authorized`), then time,
sender key and outer signature (`verify_outer`), then the recipient must be an
active member and `recipient_kid` one of its keys valid at `created_at`
(`wrong_recipient`). De-duplication by message id comes last but wins over
time checks: an identical envelope (same digest) always gets its original
receipt back, even after it expired; a different envelope under a used id is a
`conflict`.

Why the crypto runs before the write transaction: on SQLite every transaction
holds the database write lock, so the lock is held only for the indexed
lookups and inserts, once per request (one transaction per batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from common.logging import get_logger
from protocol import (
    Directory,
    Envelope,
    ProtocolError,
    make_transport_receipt,
    parse_envelope,
    verify_outer,
)
from protocol.errors import Conflict, NotAuthorized, UnknownKey, WrongRecipient

from .auth import AccessClaims
from .ledger import ledger_row
from .runtime import HubRuntime
from .store import queries as q

__all__ = ["Outcome", "ingest"]

_log = get_logger(__name__)


@dataclass
class Outcome:
    message_id: str | None
    status: str  # accepted | duplicate | rejected
    receipt: dict[str, Any] | None = None
    problem: dict[str, Any] | None = None
    http_status: int = 202
    recipient: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message_id": self.message_id, "status": self.status}
        if self.receipt is not None:
            out["receipt"] = self.receipt
        if self.problem is not None:
            out["problem"] = self.problem
        return out


def _rejected(message_id: str | None, err: ProtocolError) -> Outcome:
    return Outcome(message_id, "rejected", problem=err.to_problem(), http_status=err.http_status)


def check_recipient(env: Envelope, directory: Directory) -> None:
    h = env.header
    entry = directory.entries.get(h.recipient)
    if entry is None:
        raise WrongRecipient("recipient is not an active member", field="header.to")
    try:
        directory.encryption_key(h.recipient, h.recipient_kid, h.created_at)
    except UnknownKey as exc:
        raise WrongRecipient(
            "recipient_kid is not a key of the recipient valid at created_at",
            field="header.recipient_kid",
        ) from exc


def _ms_floor_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms // 1000, tz=UTC)


def _verify(
    env: Envelope, directory: Directory, now: datetime, skew: timedelta
) -> ProtocolError | None:
    try:
        verify_outer(env, directory, now=now, max_skew=skew)
        check_recipient(env, directory)
    except ProtocolError as exc:
        return exc
    return None


def ingest(
    rt: HubRuntime,
    claims: AccessClaims,
    raws: list[bytes | ProtocolError],
    *,
    user_agent: str | None = None,
    ids_hint: list[str | None] | None = None,
) -> list[Outcome]:
    """Verify and store envelopes of one request; runs in a worker thread (blocking I/O).

    `raws` items that are already errors (e.g. a batch member that is not JSON) are reported
    as rejected in place, keeping the caller's order.

    One database transaction per request: the node check (revocation), the directory version,
    the de-duplication lookup and the inserts. Signatures are verified beforehand against the
    cached directory; if the transaction sees a newer directory version, they are verified
    again against it before anything is stored.
    """
    s = rt.settings
    signed = rt.directory.peek()
    if signed is None:
        with rt.engine.begin() as conn:
            signed = rt.signed_directory(conn)
    directory = signed.directory
    now = datetime.now(UTC)
    skew = timedelta(seconds=s.max_skew_seconds)

    outcomes: list[Outcome | None] = [None] * len(raws)
    pending: list[tuple[int, Envelope, ProtocolError | None]] = []
    for i, raw in enumerate(raws):
        hint = ids_hint[i] if ids_hint else None
        if isinstance(raw, ProtocolError):
            outcomes[i] = _rejected(hint, raw)
            continue
        try:
            env = parse_envelope(raw)
        except ProtocolError as exc:
            outcomes[i] = _rejected(hint, exc)
            continue
        if env.header.sender != claims.node_id:
            outcomes[i] = _rejected(
                env.header.id,
                NotAuthorized("a node may only submit its own envelopes", field="header.from"),
            )
            continue
        pending.append((i, env, _verify(env, directory, now, skew)))

    for attempt in range(3):
        try:
            _store(rt, claims, user_agent, pending, outcomes, now, directory)
            break
        except sa.exc.IntegrityError:
            # Another process accepted one of these ids between our lookup and insert:
            # the retry sees it and answers duplicate/conflict.
            if attempt == 2:
                raise

    result = [o for o in outcomes if o is not None]
    m = rt.metrics
    for o in result:
        if o.status == "accepted":
            pass
        elif o.status == "duplicate":
            m.duplicates.inc()
        elif o.problem is not None:
            code = str(o.problem.get("code"))
            m.rejected.labels(code).inc()
            _log.info("envelope_rejected", message_id=o.message_id, code=code,
                      from_node=claims.node_id)
    return result


@dataclass
class _Decision:
    index: int
    status: str  # accepted | duplicate | rejected
    message_id: str
    digest: str = ""
    accepted_ms: int = 0
    error: ProtocolError | None = None
    recipient: str | None = None


def _store(
    rt: HubRuntime,
    claims: AccessClaims,
    user_agent: str | None,
    pending: list[tuple[int, Envelope, ProtocolError | None]],
    outcomes: list[Outcome | None],
    now: datetime,
    directory: Directory,
) -> None:
    """Decide and insert in the (group-committed) transaction; sign receipts after commit,
    so the write lock is not held for signatures."""
    now_ms = q.dt_to_ms(now)

    def work(conn: sa.Connection) -> tuple[list[_Decision], list[dict[str, Any]]]:
        state = rt.check_node(conn, claims, user_agent)
        items = pending
        if not items:
            return [], []
        if state.directory_version != directory.version:
            fresh = rt.signed_directory(conn, state.directory_version).directory
            skew = timedelta(seconds=rt.settings.max_skew_seconds)
            items = [(i, env, _verify(env, fresh, now, skew)) for i, env, _ in items]
        existing = q.existing_messages(conn, [env.header.id for _, env, _ in items])
        in_batch: dict[str, tuple[str, int]] = {}
        decisions: list[_Decision] = []
        ledger_rows: list[dict[str, Any]] = []
        mailbox_rows: list[dict[str, Any]] = []
        for i, env, err in items:
            h = env.header
            digest = env.digest
            prior = existing.get(h.id) or in_batch.get(h.id)
            if prior is not None:
                if prior[0] == digest:
                    decisions.append(_Decision(i, "duplicate", h.id, digest, prior[1]))
                else:
                    decisions.append(_Decision(i, "rejected", h.id, error=err or Conflict(
                        "a different envelope was already accepted under this id",
                        field="header.id",
                    )))
                continue
            if err is not None:
                decisions.append(_Decision(i, "rejected", h.id, error=err))
                continue
            in_batch[h.id] = (digest, now_ms)
            ledger_rows.append(ledger_row(env, digest, now_ms))
            mailbox_rows.append(
                {
                    "item_id": h.id,
                    "recipient": h.recipient,
                    "item_type": "envelope",
                    "sender": h.sender,
                    "body": env.raw,
                    "accepted_at_ms": now_ms,
                    "expires_at_ms": q.dt_to_ms(h.expires_at),
                    "leased_until_ms": 0,
                }
            )
            decisions.append(_Decision(i, "accepted", h.id, digest, now_ms,
                                       recipient=h.recipient))
        q.insert_accepted(conn, ledger_rows, mailbox_rows)
        return decisions, ledger_rows

    decisions, ledger_rows = rt.writer.run(work)
    # Durable now: sign the receipts (identical bytes for a duplicate: same id, digest, time).
    hub_key = rt.hub_key
    for d in decisions:
        if d.status == "rejected":
            assert d.error is not None
            outcomes[d.index] = _rejected(d.message_id, d.error)
            continue
        receipt = make_transport_receipt(hub_key, d.message_id, d.digest,
                                         _ms_floor_dt(d.accepted_ms))
        outcomes[d.index] = Outcome(
            d.message_id, d.status, receipt=receipt,
            http_status=202 if d.status == "accepted" else 200, recipient=d.recipient,
        )
    for row in ledger_rows:
        rt.metrics.accepted.labels(row["kind"]).inc()
    if len(ledger_rows) == 1:
        row = ledger_rows[0]
        _log.info("envelope_accepted", message_id=row["message_id"], kind=row["kind"],
                  from_node=row["sender"], to_node=row["recipient"], size_bytes=row["size_bytes"])
    elif ledger_rows:
        _log.info("envelopes_accepted", count=len(ledger_rows), from_node=ledger_rows[0]["sender"])
