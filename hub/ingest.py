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

Why three steps (`_prepare`, `_store_many`, `_finish`): concurrent requests meet in the
group-commit writer (hub.writer), where `_store_many` decides and inserts for all of them
at once (one node check per node, one duplicate lookup, one multi-row insert per table);
parsing, signature checks and receipt signing stay outside the write lock. A single
envelope is handled on the event loop without a worker thread (`ingest_async`); a batch
runs in a worker thread and spreads its signature work over the cores (libsodium releases
the GIL).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

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
from .runtime import HubRuntime, NodeState
from .store import queries as q

__all__ = ["Outcome", "ingest", "ingest_async"]

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


T = TypeVar("T")
U = TypeVar("U")

#: Below this many items the thread hand-off costs more than the parallel signatures save.
_PARALLEL_MIN = 64
_WORKERS = max(2, os.cpu_count() or 2)
_pool: ThreadPoolExecutor | None = None


def _map(fn: Callable[[T], U], items: Sequence[T]) -> list[U]:
    """`fn` over `items`, in chunks on a small pool when there are many (crypto-bound work)."""
    global _pool
    n = len(items)
    if n < _PARALLEL_MIN:
        return [fn(x) for x in items]
    if _pool is None:
        _pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="hub-crypto")
    size = -(-n // _WORKERS)
    parts = [items[i:i + size] for i in range(0, n, size)]
    out: list[U] = []
    for part in _pool.map(lambda chunk: [fn(x) for x in chunk], parts):
        out.extend(part)
    return out


Item = bytes | Envelope | ProtocolError

#: (request index, envelope, verification error, digest, ledger row, mailbox row): the rows
#: are built before the write lock is taken; the writer only stamps the acceptance time.
_Pending = tuple[int, Envelope, ProtocolError | None, str, dict[str, Any], dict[str, Any]]


def _rows(env: Envelope) -> tuple[str, dict[str, Any], dict[str, Any]]:
    h = env.header
    digest = env.digest
    return digest, ledger_row(env, digest, 0), {
        "item_id": h.id,
        "recipient": h.recipient,
        "item_type": "envelope",
        "sender": h.sender,
        "body": env.raw,
        "accepted_at_ms": 0,
        "expires_at_ms": q.dt_to_ms(h.expires_at),
        "leased_until_ms": 0,
    }


def _check(env: Envelope, directory: Directory, now: datetime, skew: timedelta
           ) -> tuple[ProtocolError | None, str, dict[str, Any], dict[str, Any]]:
    return (_verify(env, directory, now, skew), *_rows(env))


@dataclass
class _Job:
    """One request's part of a group commit: what `_store_many` needs to decide and insert."""

    rt: HubRuntime
    claims: AccessClaims
    user_agent: str | None
    pending: list[_Pending]
    directory: Directory
    now: datetime


def _prepare(
    rt: HubRuntime,
    claims: AccessClaims,
    raws: Sequence[Item],
    ids_hint: Sequence[str | None] | None,
    user_agent: str | None,
) -> tuple[list[Outcome | None], _Job]:
    """Parse and verify outside the write lock (against the cached directory)."""
    signed = rt.directory.peek()
    if signed is None:
        with rt.engine.begin() as conn:
            signed = rt.signed_directory(conn)
    directory = signed.directory
    now = datetime.now(UTC)
    skew = timedelta(seconds=rt.settings.max_skew_seconds)

    outcomes: list[Outcome | None] = [None] * len(raws)
    parsed: list[tuple[int, Envelope]] = []
    for i, raw in enumerate(raws):
        hint = ids_hint[i] if ids_hint else None
        if isinstance(raw, ProtocolError):
            outcomes[i] = _rejected(hint, raw)
            continue
        if isinstance(raw, Envelope):
            env = raw
        else:
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
        parsed.append((i, env))
    checked = _map(lambda p: _check(p[1], directory, now, skew), parsed)
    pending = [(i, env, *c) for (i, env), c in zip(parsed, checked, strict=True)]
    return outcomes, _Job(rt, claims, user_agent, pending, directory, now)


def ingest(
    rt: HubRuntime,
    claims: AccessClaims,
    raws: Sequence[Item],
    *,
    user_agent: str | None = None,
    ids_hint: Sequence[str | None] | None = None,
) -> list[Outcome]:
    """Verify and store envelopes of one request; blocking (call it from a worker thread).

    `raws` items that are already errors (e.g. a batch member that is not JSON) are reported
    as rejected in place, keeping the caller's order; items that are already `Envelope`s
    (parsed by the caller) are not parsed again.

    One database transaction per request (shared with concurrent requests by the
    group-commit writer): the node check (revocation), the directory version, the
    de-duplication lookup and the inserts. Signatures are verified beforehand against the
    cached directory; if the transaction sees a newer directory version, they are verified
    again against it before anything is stored.
    """
    outcomes, job = _prepare(rt, claims, raws, ids_hint, user_agent)
    for attempt in range(3):
        try:
            result = rt.writer.run_merged(_store_many, job)
            break
        except sa.exc.IntegrityError:
            # Another process accepted one of these ids between our lookup and insert:
            # the retry sees it and answers duplicate/conflict.
            if attempt == 2:
                raise
    return _finish(rt, claims, outcomes, result)


async def ingest_async(
    rt: HubRuntime,
    claims: AccessClaims,
    raws: Sequence[Item],
    *,
    user_agent: str | None = None,
) -> list[Outcome]:
    """`ingest` for a few envelopes, on the event loop: parsing and one signature check take
    well under a millisecond, and the write waits in the writer's queue, not in a thread."""
    outcomes, job = _prepare(rt, claims, raws, None, user_agent)
    for attempt in range(3):
        try:
            result = await asyncio.wrap_future(rt.writer.submit_merged(_store_many, job))
            break
        except sa.exc.IntegrityError:
            if attempt == 2:
                raise
    return _finish(rt, claims, outcomes, result)


@dataclass
class _Decision:
    index: int
    status: str  # accepted | duplicate | rejected
    message_id: str
    digest: str = ""
    accepted_ms: int = 0
    error: ProtocolError | None = None
    recipient: str | None = None


_Stored = tuple[list[_Decision], list[dict[str, Any]]]


def _store_many(conn: sa.Connection, jobs: Sequence[_Job]) -> list[_Stored | Exception]:
    """Decide and insert for every waiting request in the writer's transaction.

    Requests are decided in queue order, so of two concurrent submissions of one id the
    first is accepted and the second is a duplicate (or a conflict), as if sequential.
    A request whose node is no longer active gets its exception back; nothing of it is
    written.
    """
    rt = jobs[0].rt
    now_ms = q.now_ms()
    states: dict[tuple[str, str], NodeState | Exception] = {}
    out: list[_Stored | Exception] = []
    live: list[tuple[int, list[_Pending]]] = []
    for j, job in enumerate(jobs):
        key = (job.claims.node_id, job.claims.node_kid)
        if key not in states:
            try:
                states[key] = rt.check_node(conn, job.claims, job.user_agent)
            except Exception as exc:
                states[key] = exc
        state = states[key]
        out.append(state if isinstance(state, Exception) else ([], []))
        if isinstance(state, Exception):
            continue
        items = job.pending
        if items and state.directory_version != job.directory.version:
            fresh = rt.signed_directory(conn, state.directory_version).directory
            skew = timedelta(seconds=rt.settings.max_skew_seconds)
            items = [(i, env, _verify(env, fresh, job.now, skew), d, lr, mr)
                     for i, env, _, d, lr, mr in items]
        live.append((j, items))
    if not live:
        return out
    existing = q.existing_messages(conn, [p[1].header.id for _, items in live for p in items])
    in_batch: dict[str, tuple[str, int]] = {}
    ledger_all: list[dict[str, Any]] = []
    mailbox_rows: list[dict[str, Any]] = []
    for j, items in live:
        decisions: list[_Decision] = []
        ledger_rows: list[dict[str, Any]] = []
        for i, env, err, digest, ledger, mbox in items:
            h = env.header
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
            ledger["submitted_at_ms"] = now_ms
            mbox["accepted_at_ms"] = now_ms
            ledger_rows.append(ledger)
            mailbox_rows.append(mbox)
            decisions.append(_Decision(i, "accepted", h.id, digest, now_ms,
                                       recipient=h.recipient))
        out[j] = (decisions, ledger_rows)
        ledger_all.extend(ledger_rows)
    q.insert_accepted(conn, ledger_all, mailbox_rows)
    return out


def _finish(
    rt: HubRuntime, claims: AccessClaims, outcomes: list[Outcome | None], stored: _Stored
) -> list[Outcome]:
    """Durable now: sign the receipts (identical bytes for a duplicate: same id, digest,
    time), count and log."""
    decisions, ledger_rows = stored
    hub_key = rt.hub_key
    times: dict[int, datetime] = {}

    def receipt(d: _Decision) -> dict[str, Any] | None:
        if d.status == "rejected":
            return None
        t = times.get(d.accepted_ms)
        if t is None:
            t = times[d.accepted_ms] = _ms_floor_dt(d.accepted_ms)
        return make_transport_receipt(hub_key, d.message_id, d.digest, t)

    for d in decisions:  # the common accepted time, computed once outside the pool
        if d.status != "rejected" and d.accepted_ms not in times:
            times[d.accepted_ms] = _ms_floor_dt(d.accepted_ms)
    receipts = _map(receipt, decisions)
    for d, r in zip(decisions, receipts, strict=True):
        if d.status == "rejected":
            assert d.error is not None
            outcomes[d.index] = _rejected(d.message_id, d.error)
            continue
        outcomes[d.index] = Outcome(
            d.message_id, d.status, receipt=r,
            http_status=202 if d.status == "accepted" else 200, recipient=d.recipient,
        )
    m = rt.metrics
    for kind, n in Counter(row["kind"] for row in ledger_rows).items():
        m.accepted.labels(kind).inc(n)
    if len(ledger_rows) == 1:
        row = ledger_rows[0]
        _log.info("envelope_accepted", message_id=row["message_id"], kind=row["kind"],
                  from_node=row["sender"], to_node=row["recipient"], size_bytes=row["size_bytes"])
    elif ledger_rows:
        _log.info("envelopes_accepted", count=len(ledger_rows), from_node=ledger_rows[0]["sender"])

    result = [o for o in outcomes if o is not None]
    for o in result:
        if o.status == "duplicate":
            m.duplicates.inc()
        elif o.status == "rejected" and o.problem is not None:
            code = str(o.problem.get("code"))
            m.rejected.labels(code).inc()
            _log.info("envelope_rejected", message_id=o.message_id, code=code,
                      from_node=claims.node_id)
    return result
