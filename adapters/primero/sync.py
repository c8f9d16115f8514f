"""`rssn-node sync primero`: a long-running connector between one Primero instance and the node.

Each round: (1) read cases changed since the cursor and record every new outbound
unit (case record id + service unique_id) as pending work, advancing the cursor in
the same SQLite transaction; (2) convert and send the pending units through the
node; (3) write inbound referrals (create or update the case, matched by the
external-id field) and decisions (`PATCH .../referrals/:id`) back into Primero.

Why work is stored as keys, not documents: the state file then holds no personal
data; a pending unit is re-read from Primero when it is sent. Why the cursor and
the pending rows commit together: a crash between them would either lose a
referral (cursor ahead of work) or only repeat a read (work ahead of cursor); we
allow only the second. `send_referral` receives a stable `source_key` in its refs
so the node can refuse a duplicate if a crash falls between sending and recording.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base import Converted, ConvertOptions, MappingError, RecordRejected, Rejection, SourceRecord
from .client import PrimeroClient, PrimeroError, check_mapping_against_lookups
from .mapping import PrimeroMapping, case_payload, case_referrals, decision_patch

__all__ = ["InboundDecision", "InboundReferral", "PrimeroSync", "SyncStats"]


@dataclass(frozen=True)
class InboundReferral:
    """A referral the node received for this organisation."""

    event_id: str
    referral_id: str
    document: dict[str, Any]


@dataclass(frozen=True)
class InboundDecision:
    """A recipient's status change on a referral this organisation sent."""

    event_id: str
    referral_id: str
    status: str
    note: str | None = None


@dataclass
class SyncStats:
    scanned: int = 0
    queued: int = 0
    sent: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    cases_written: int = 0
    decisions_written: int = 0
    errors: list[str] = field(default_factory=list)


#: send_referral(document, refs) -> network referral id (refs include a stable "source_key")
SendReferral = Callable[[dict[str, Any], dict[str, str]], str]
PollInbound = Callable[[], Iterable[InboundReferral | InboundDecision]]
AckInbound = Callable[[str], None]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbound (
  source_key TEXT PRIMARY KEY, record_id TEXT NOT NULL, service_uid TEXT NOT NULL,
  state TEXT NOT NULL, network_referral_id TEXT, primero_referral_id TEXT,
  primero_status TEXT, code TEXT, reason TEXT, attempts INTEGER NOT NULL DEFAULT 0,
  updated_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS outbound_net ON outbound(network_referral_id);
CREATE TABLE IF NOT EXISTS inbound (referral_id TEXT PRIMARY KEY, record_id TEXT NOT NULL,
  updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, processed_at TEXT NOT NULL);
"""


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PrimeroSync:
    def __init__(self, data_dir: Path, client: PrimeroClient, mapping: PrimeroMapping,
                 send_referral: SendReferral, poll_inbound: PollInbound,
                 ack_inbound: AckInbound = lambda _e: None, *,
                 remote_agency: str = "RSSN", check_lookups: bool = True) -> None:
        self.client = client
        self.mapping = mapping
        self.send_referral = send_referral
        self.poll_inbound = poll_inbound
        self.ack_inbound = ack_inbound
        self.remote_agency = remote_agency
        self.warnings: list[str] = []
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        self.db_path = Path(data_dir) / "primero-sync.sqlite"
        self.db = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)
        if check_lookups:
            errors, self.warnings = check_mapping_against_lookups(mapping, client.lookups())
            if errors:
                raise MappingError("primero mapping vs instance lookups", errors)

    def close(self) -> None:
        self.db.close()

    # state ------------------------------------------------------------------------------------
    @property
    def cursor(self) -> str | None:
        row = self.db.execute("SELECT value FROM kv WHERE key='cursor'").fetchone()
        return row[0] if row else None

    def outbound_rows(self) -> list[dict[str, Any]]:
        cur = self.db.execute("SELECT * FROM outbound ORDER BY source_key")
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    # one round ----------------------------------------------------------------------------------
    def poll_once(self) -> SyncStats:
        stats = SyncStats()
        for step in (self._scan, self._send_pending, self._inbound):
            try:
                step(stats)
            except (PrimeroError, OSError, sqlite3.Error) as exc:
                stats.errors.append(f"{step.__name__}: {exc}")
            except Exception as exc:  # the node side (send/poll) may fail in many ways
                stats.errors.append(f"{step.__name__}: {type(exc).__name__}")
        return stats

    def _units(self, case: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Any]]:
        rid = str(case.get(self.mapping.fields.record_id) or "")
        refs = self.client.referrals(rid) if rid else []
        record = SourceRecord(str(case.get(self.mapping.fields.case_id_display) or rid), case)
        outs = case_referrals(self.mapping, record, ConvertOptions(), refs)
        return refs, outs

    def _scan(self, stats: SyncStats) -> None:
        f = self.mapping.fields
        newest = self.cursor
        pending: list[tuple[str, str, str]] = []
        from .mapping import outbound_units

        for case in self.client.iter_cases(self.cursor):
            stats.scanned += 1
            rid = str(case.get(f.record_id) or "")
            lu = case.get(f.last_updated)
            if isinstance(lu, str) and (newest is None or lu > newest):
                newest = lu
            if not rid:
                continue
            try:
                units = outbound_units(self.mapping, case, self.client.referrals(rid))
            except RecordRejected:
                units = []
            for svc, _t in units:
                uid = str(svc.get(self.mapping.service_fields.unique_id) or "")
                pending.append((f"primero:{rid}:{uid}", rid, uid))
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for key, rid, uid in pending:
                cur = self.db.execute(
                    "INSERT OR IGNORE INTO outbound(source_key, record_id, service_uid, state, "
                    "updated_at) VALUES (?,?,?,'pending',?)", (key, rid, uid, _now()))
                stats.queued += cur.rowcount
            if newest is not None:
                self.db.execute("INSERT INTO kv(key, value) VALUES('cursor', ?) ON CONFLICT(key) "
                                "DO UPDATE SET value=excluded.value", (newest,))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def _send_pending(self, stats: SyncStats) -> None:
        rows = self.db.execute("SELECT source_key, record_id, service_uid FROM outbound "
                               "WHERE state='pending' ORDER BY updated_at").fetchall()
        for key, rid, uid in rows:
            case = self.client.get_case(rid)
            _refs, outs = self._units(case)
            unit: Any = None
            for o in outs:
                if isinstance(o, Converted) and o.refs.get("service_unique_id") == uid:
                    unit = o
                elif isinstance(o, Rejection) and (o.source_id.endswith("/" + uid)
                                                   or "/" not in o.source_id):
                    unit = o
            if unit is None:
                self._mark(key, "rejected", code="no_referral",
                           reason="service no longer marked for the network")
                continue
            if isinstance(unit, Rejection):
                stats.rejected.append(unit)
                # left pending: a caseworker may fix the case; it is re-read every round
                self.db.execute("UPDATE outbound SET code=?, reason=?, attempts=attempts+1, "
                                "updated_at=? WHERE source_key=?",
                                (unit.code, f"{unit.field}: {unit.reason}", _now(), key))
                continue
            assert isinstance(unit, Converted)
            net_id = self.send_referral(unit.document, {**unit.refs, "source_key": key})
            prid = unit.refs.get("primero_referral_id") or ""
            if not prid:
                # record the hand-over in Primero so the decision has a referral to land on
                svc = {"remote": True, "transitioned_to_remote": self.remote_agency,
                       "transitioned_to_agency": self.remote_agency,
                       "service_record_id": uid, "notes": f"RSSN referral {net_id}"}
                created = self.client.create_referral(rid, svc)
                prid = str(created.get("id") or "")
            self.db.execute("UPDATE outbound SET state='sent', network_referral_id=?, "
                            "primero_referral_id=?, primero_status='in_progress', code=NULL, "
                            "reason=NULL, updated_at=? WHERE source_key=?",
                            (net_id, prid, _now(), key))
            stats.sent += 1

    def _mark(self, key: str, state: str, *, code: str, reason: str) -> None:
        self.db.execute("UPDATE outbound SET state=?, code=?, reason=?, updated_at=? "
                        "WHERE source_key=?", (state, code, reason, _now(), key))

    def _inbound(self, stats: SyncStats) -> None:
        for ev in self.poll_inbound():
            seen = self.db.execute("SELECT 1 FROM events WHERE event_id=?",
                                   (ev.event_id,)).fetchone()
            if seen is None:
                if isinstance(ev, InboundReferral):
                    self._write_case(ev)
                    stats.cases_written += 1
                else:
                    if self._write_decision(ev):
                        stats.decisions_written += 1
                self.db.execute("INSERT OR IGNORE INTO events VALUES (?,?)", (ev.event_id, _now()))
            self.ack_inbound(ev.event_id)

    def _write_case(self, ev: InboundReferral) -> None:
        m = self.mapping
        data = case_payload(m, ev.document, ev.referral_id)
        known = self.db.execute("SELECT record_id FROM inbound WHERE referral_id=?",
                                (ev.referral_id,)).fetchone()
        rid = known[0] if known else None
        if rid is None:
            found = self.client.find_cases(m.fields.external_id, ev.referral_id)
            rid = str(found[0]["id"]) if found else None
        if rid is None:
            created = self.client.create_case(data)
            rid = str(created.get("id") or "")
        else:
            self.client.update_case(rid, data)
        self.db.execute("INSERT INTO inbound VALUES (?,?,?) ON CONFLICT(referral_id) DO UPDATE "
                        "SET record_id=excluded.record_id, updated_at=excluded.updated_at",
                        (ev.referral_id, rid, _now()))

    def _write_decision(self, ev: InboundDecision) -> bool:
        row = self.db.execute("SELECT source_key, record_id, primero_referral_id, primero_status "
                              "FROM outbound WHERE network_referral_id=?",
                              (ev.referral_id,)).fetchone()
        if row is None:
            return False  # not one of ours: nothing to write (the node keeps the message)
        key, rid, prid, pstatus = row
        try:
            body = decision_patch(self.mapping, ev.status, ev.note)
        except RecordRejected as exc:
            self.db.execute("UPDATE outbound SET code=?, reason=? WHERE source_key=?",
                            (exc.code, exc.reason, key))
            return False
        if body is None or not prid:
            return False
        target = body["data"]["status"]
        if target == "done" and pstatus == "in_progress":
            # Primero allows done only after accepted
            self.client.update_referral(rid, prid, {"data": {"status": "accepted"}})
        self.client.update_referral(rid, prid, body)
        self.db.execute("UPDATE outbound SET primero_status=?, updated_at=? WHERE source_key=?",
                        (target, _now(), key))
        return True

    def run_forever(self, interval: float = 60.0, stop: threading.Event | None = None,
                    on_round: Callable[[SyncStats], None] | None = None) -> None:
        stop = stop or threading.Event()
        while not stop.is_set():
            stats = self.poll_once()
            if on_round is not None:
                on_round(stats)
            stop.wait(interval)
