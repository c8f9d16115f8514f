"""The hub's and a node's databases become unavailable for a while during an exchange.

SQLite: another process takes the database's write lock (``BEGIN EXCLUSIVE``, as a careless
backup job or an operator's sqlite3 shell would) and holds it for longer than the services'
30-second busy timeout, so their writes fail rather than wait. PostgreSQL: the database
refuses new connections (``ALLOW_CONNECTIONS false``) and every open session is terminated
(``pg_terminate_backend``), then it comes back.

Proves: the services recover by themselves (no restart), nothing is lost or processed twice,
and nothing is marked failed: a node's case system sees its requests refused while its own
database is down and repeats them; the node's workers retry; the hub answers 5xx while it
cannot write, which nodes treat as "try again later".
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from psycopg import sql

from tests.fault.exchange import Traffic, compare, wait_settled
from tests.fault.harness import Network, NodeProc
from tests.helpers import pg as pg_helpers
from tests.reliability_summary import Recorder, full_run

pytestmark = pytest.mark.timeout(2400)

#: SQLAlchemy's code for OperationalError ("database is locked", "connection refused"...).
OPERATIONAL_ERROR = "e3q8"
#: common.db sets busy_timeout=30000 ms; hold the lock longer so writes really fail.
SQLITE_LOCK_SECONDS = 36.0

_LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=120)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
conn.close()
print("released", flush=True)
"""


def lock_sqlite(path: Path, seconds: float) -> None:
    """Hold an exclusive lock on ``path`` from another process for ``seconds``."""
    proc = subprocess.Popen([sys.executable, "-c", _LOCKER, str(path), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "locked", line
        assert proc.wait(timeout=seconds + 120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def pg_outage(db_url: str, seconds: float) -> int:
    """Refuse and cut every connection to the database behind ``db_url`` for ``seconds``;
    returns how many sessions were terminated."""
    import psycopg

    name = db_url.rsplit("/", 1)[-1]
    with psycopg.connect(pg_helpers.ADMIN_CONNINFO, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false")
                     .format(sql.Identifier(name)))
        try:
            row = conn.execute(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()", (name,)).fetchone()
            time.sleep(seconds)
        finally:
            conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true")
                         .format(sql.Identifier(name)))
    return int(row[0]) if row else 0


def _traffic(a: NodeProc, b: NodeProc, per_direction: int, seconds: float) -> Traffic:
    t = Traffic()
    t.start(a, b, per_direction, seconds=seconds)
    t.start(b, a, per_direction, seconds=seconds, offset=3)
    return t


def _finish(network: Network, tally: Recorder, t: Traffic, a: NodeProc, b: NodeProc) -> None:
    t.join()
    assert not t.errors, t.errors[:5]
    ab, ba = t.sent[(a.node_id, b.node_id)], t.sent[(b.node_id, a.node_id)]
    wait_settled([(a, b, ab), (b, a, ba)], timeout=900)
    assert network.hub is not None
    lost = dup = 0
    for src, dst, ids in ((a, b, ab), (b, a, ba)):
        lo, du = compare(tally, network.hub, src, dst, ids, case_system_retries=t.retries)
        lost, dup = lost + lo, dup + du
    assert (lost, dup) == (0, 0)
    for n in (a, b):
        assert n.quarantined() == [], n.node_id
        assert not n.outbox_states().get("failed"), n.node_id
    assert all(s == "received" for s in a.outbound().values())
    assert all(s == "received" for s in b.outbound().values())
    # The services were never restarted: they recovered by themselves.
    assert network.hub.proc.starts == 1 and a.proc.starts == 1 and b.proc.starts == 1


def test_sqlite_databases_locked_longer_than_the_busy_timeout(network: Network,
                                                              tally: Recorder) -> None:
    hub = network.start_hub()
    a = network.add_node("shelter-mx", "Casa Refugio", "MX")
    b = network.add_node("legal-gt", "Asistencia Legal", "GT")
    rounds = 2 if full_run() else 1
    per_direction = 150 * rounds
    t = _traffic(a, b, per_direction, seconds=rounds * (1.5 * SQLITE_LOCK_SECONDS + 8))
    for _ in range(rounds):
        time.sleep(4)
        # Both at once (the hub's and the receiving node's), overlapping by half.
        hub_lock = threading.Thread(target=lock_sqlite,
                                    args=(hub.data_dir / "hub.db", SQLITE_LOCK_SECONDS))
        hub_lock.start()
        time.sleep(SQLITE_LOCK_SECONDS / 2)
        lock_sqlite(b.data_dir / "node.db", SQLITE_LOCK_SECONDS)
        hub_lock.join()
        tally.fault("hub_sqlite_locked")
        tally.fault("node_sqlite_locked")
    _finish(network, tally, t, a, b)
    # The outage was real: both services failed to write (SQLAlchemy's OperationalError,
    # logged by its code only) and carried on.
    for proc in (hub.proc, b.proc):
        assert any(d.get("error") == OPERATIONAL_ERROR for d in proc.json_logs()), proc.name


@pytest.mark.pg
def test_postgresql_unavailable_then_back(network: Network, tally: Recorder,
                                          pg_url_factory: Callable[[], str]) -> None:
    hub_db, node_db = pg_url_factory(), pg_url_factory()
    hub = network.start_hub(db_url=hub_db)
    a = network.add_node("shelter-mx", "Casa Refugio", "MX")
    b = network.add_node("legal-gt", "Asistencia Legal", "GT", db_url=node_db)
    rounds = 3 if full_run() else 1
    outage = 12.0 if full_run() else 8.0
    t = _traffic(a, b, 100 * rounds, seconds=rounds * 3 * (outage + 6))
    terminated = 0
    for _ in range(rounds):
        time.sleep(4)
        terminated += pg_outage(hub_db, outage)
        tally.fault("hub_postgresql_unavailable")
        time.sleep(4)
        terminated += pg_outage(node_db, outage)
        tally.fault("node_postgresql_unavailable")
        time.sleep(4)
        terminated += pg_outage(hub_db, outage)
        tally.fault("hub_postgresql_unavailable")
    tally.note(postgresql_sessions_terminated=terminated)
    assert terminated > 0
    _finish(network, tally, t, a, b)
    for proc in (hub.proc, b.proc):
        assert any(d.get("error") == OPERATIONAL_ERROR for d in proc.json_logs()), proc.name
