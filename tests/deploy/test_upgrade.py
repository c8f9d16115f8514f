"""Schema upgrades: a hub and a node whose databases are at the previous schema revision are
started by the current software, which migrates them, says so, and carries on.

How the "previous version" databases are made: a real network runs at the current schema
(enrolled nodes, referrals both ways, mail waiting at the hub), then fresh databases are
migrated to the previous revision (``run_migrations(..., target=<previous>)``) and every row
of that revision's tables is copied in. The processes are then started on those databases as
after a package upgrade: `rssn-hub init` and `rssn-hub serve` (and `rssn-node serve`) must log
``database_upgrade_started`` / ``database_upgraded`` with the from and to revisions, keep
every row, and work (waiting mail delivered once, new referrals both ways). SQLite and
PostgreSQL.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from common.db import head_revision, run_migrations, sqlite_url
from hub.store import MIGRATIONS_DIR as HUB_MIGRATIONS
from node.backup import MIGRATIONS_DIR as NODE_MIGRATIONS
from tests.deploy.cluster import (
    Hubs,
    NodeProc,
    enroll,
    node_env,
    send_many,
    start_node,
    wait_outbox_sent,
    wait_received,
)
from tests.helpers.processes import ServiceProcess

pytestmark = pytest.mark.timeout(600)


def previous_revision(migrations: Path) -> str:
    """The revision just before head (what the last release shipped)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(migrations))
    head = script.get_revision(head_revision(migrations))
    assert head is not None and isinstance(head.down_revision, str), "no previous revision"
    return head.down_revision


def copy_rows(src_url: str, dst_url: str) -> dict[str, int]:
    """Copy every row of the destination's tables (its columns only) from the source.

    The destination is at an older revision, so it may lack tables and columns the source
    has; those are left behind, as they would not exist in an older installation. On
    PostgreSQL, sequences are moved past the copied keys, as they would be after real inserts.
    """
    src = sa.create_engine(src_url, poolclass=sa.pool.NullPool)
    dst = sa.create_engine(dst_url, poolclass=sa.pool.NullPool)
    counts: dict[str, int] = {}
    try:
        meta = sa.MetaData()
        meta.reflect(dst)
        src_meta = sa.MetaData()
        src_meta.reflect(src)
        with src.connect() as s, dst.begin() as d:
            for table in meta.sorted_tables:
                if table.name == "alembic_version":
                    continue
                cols = [c.name for c in table.columns]
                rows = [dict(r._mapping) for r in
                        s.execute(sa.select(*[src_meta.tables[table.name].c[c] for c in cols]))]
                if rows:
                    d.execute(table.insert(), rows)
                counts[table.name] = len(rows)
                if d.dialect.name == "postgresql":
                    for col in table.primary_key.columns:
                        seq = d.execute(sa.text("SELECT pg_get_serial_sequence(:t, :c)"),
                                        {"t": table.name, "c": col.name}).scalar()
                        if seq:
                            d.execute(sa.text(
                                f'SELECT setval(:s, COALESCE((SELECT MAX("{col.name}") FROM '
                                f'"{table.name}"), 0) + 1, false)'), {"s": seq})
    finally:
        src.dispose()
        dst.dispose()
    return counts


def rows(url: str, query: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return sorted(tuple(r) for r in conn.execute(sa.text(query)))
    finally:
        engine.dispose()


def _upgrade_events(proc: ServiceProcess) -> list[dict[str, Any]]:
    return [d for d in proc.json_logs()
            if d.get("event") in ("database_upgrade_started", "database_upgraded",
                                  "database_up_to_date")]


class NewDb:
    """Fresh databases: SQLite files at the given paths, or new PostgreSQL databases."""

    def __init__(self, factory: Callable[[], str] | None) -> None:
        self.factory = factory
        self.pg = factory is not None

    def __call__(self, path: Path) -> str:
        if self.factory is not None:
            return self.factory()
        path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite_url(path)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def new_db(request: pytest.FixtureRequest) -> NewDb:
    if request.param == "sqlite":
        return NewDb(None)
    return NewDb(request.getfixturevalue("pg_url_factory"))


def test_previous_schema_upgraded_by_init_and_serve(
    tmp_path: Path, spawn_service: Callable[..., ServiceProcess], new_db: NewDb,
) -> None:
    hub_prev, node_prev = previous_revision(HUB_MIGRATIONS), previous_revision(NODE_MIGRATIONS)
    hub_head, node_head = head_revision(HUB_MIGRATIONS), head_revision(NODE_MIGRATIONS)
    pg = new_db.pg

    # -- a network at the current schema, with history and mail waiting ---------------------
    hubs = Hubs(tmp_path / "current", spawn_service,
                db_url=new_db(tmp_path / "x.db") if pg else None)
    hubs.init()
    hub = hubs.start("hub")
    kid = hub.wait_for_log(lambda d: d.get("event") == "hub_started")["kid"]
    a_url = new_db(tmp_path / "ngo-a" / "node.db") if pg else None
    env_a, env_b = node_env(a_url), node_env()
    key_a = enroll(hubs, "ngo-a", [hubs.url()], env_a, tmp_path / "ngo-a")
    key_b = enroll(hubs, "ngo-b", [hubs.url()], env_b, tmp_path / "ngo-b")
    a = start_node(spawn_service, "ngo-a", tmp_path / "ngo-a", key_a, env_a, db_url=a_url)
    b = start_node(spawn_service, "ngo-b", tmp_path / "ngo-b", key_b, env_b)
    nodes: list[NodeProc] = [a, b]
    try:
        ab, ba = send_many(a, b, 3), send_many(b, a, 3, offset=10)
        wait_received(a, b, ab)
        wait_received(b, a, ba)
        b.proc.terminate()
        waiting = send_many(a, b, 3, offset=20)
        wait_outbox_sent(a)
        a.proc.terminate()
        a.close()
        hub.terminate()
        hub_src = hubs.store_url
        a_src = a_url or sqlite_url(tmp_path / "ngo-a" / "node.db")
        a_before = rows(a_src, "SELECT id, direction, status FROM referrals")
        hub_before = rows(hub_src, "SELECT message_id, recipient, delivered_at_ms FROM messages")

        # -- the same data in databases at the previous revision ---------------------------
        old_hubs = Hubs(tmp_path / "previous", spawn_service)
        hub_old_url = new_db(old_hubs.data_dir / "hub.db")
        old_hubs.db_url = hub_old_url if pg else None
        run_migrations(hub_old_url, HUB_MIGRATIONS, target=hub_prev)
        copied = copy_rows(hub_src, hub_old_url)
        assert copied["mailbox"] == len(waiting) and copied["nodes"] == 2, copied
        a2_dir = tmp_path / "ngo-a-previous"
        a2_dir.mkdir(mode=0o700)
        for name in ("node.json", "keys.sealed.json"):
            shutil.copy2(tmp_path / "ngo-a" / name, a2_dir / name)
        a2_url = new_db(a2_dir / "node.db")
        run_migrations(a2_url, NODE_MIGRATIONS, target=node_prev)
        assert copy_rows(a_src, a2_url)["referrals"] == len(ab | ba | waiting)

        # `rssn-hub init` on a copy says what it does on stderr and keeps the key.
        init_hubs = Hubs(tmp_path / "previous-init", spawn_service)
        init_url = new_db(init_hubs.data_dir / "hub.db")
        init_hubs.db_url = init_url if pg else None
        run_migrations(init_url, HUB_MIGRATIONS, target=hub_prev)
        copy_rows(hub_src, init_url)
        init = init_hubs.cli("init")
        assert f"upgrading database schema from {hub_prev} to {hub_head}" in init.stderr
        assert f"database schema upgraded from {hub_prev} to {hub_head}" in init.stderr
        assert init.stdout.startswith(f"existing hub key {kid}"), init.stdout

        # -- the current software on the previous schema -----------------------------------
        hub2 = old_hubs.start("hub-upgraded", port=hubs.ports["hub"])
        events = _upgrade_events(hub2)
        assert [e["event"] for e in events] == ["database_upgrade_started", "database_upgraded"]
        assert events[1]["from_revision"] == hub_prev and events[1]["to_revision"] == hub_head
        assert hub2.wait_for_log(lambda d: d.get("event") == "hub_started")["kid"] == kid
        a2 = start_node(spawn_service, "ngo-a", a2_dir, key_a, node_env(a2_url if pg else None),
                        name="ngo-a-upgraded", db_url=a2_url if pg else None)
        nodes.append(a2)
        events = _upgrade_events(a2.proc)
        assert [e["event"] for e in events] == ["database_upgrade_started", "database_upgraded"]
        assert events[1]["from_revision"] == node_prev and events[1]["to_revision"] == node_head
        # Nothing lost (checked before ngo-b comes back and the statuses move on) ...
        assert rows(a2_url, "SELECT id, direction, status FROM referrals") == a_before
        b.proc.start()
        assert [e["event"] for e in _upgrade_events(b.proc)][-1] == "database_up_to_date"

        # ... nothing twice, and the network works both ways.
        hub_after = set(rows(old_hubs.store_url,
                             "SELECT message_id, recipient, delivered_at_ms FROM messages"))
        assert {r for r in hub_before if r[2] is not None} <= hub_after
        wait_received(a2, b, waiting)
        more_ab, more_ba = send_many(a2, b, 2, offset=30), send_many(b, a2, 2, offset=40)
        wait_received(a2, b, more_ab)
        wait_received(b, a2, more_ba)
        processed = b.processed_referrals("ngo-a")
        assert set(processed) == ab | waiting | more_ab and set(processed.values()) == {1}
        processed = a2.processed_referrals("ngo-b")
        assert set(processed) == ba | more_ba and set(processed.values()) == {1}
        assert a2.quarantined() == [] and b.quarantined() == []
        # The new revision's schema is really there (node: referrals.source_key; hub: console).
        assert rows(a2_url, "SELECT COUNT(*) FROM referrals WHERE source_key IS NULL") == [
            (len(ab | ba | waiting | more_ab | more_ba),)]
        assert rows(old_hubs.store_url, "SELECT COUNT(*) FROM console_users") == [(0,)]
    finally:
        for n in nodes:
            n.close()
