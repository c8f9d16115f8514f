"""Database engines and programmatic alembic migrations for hub and node.

SQLite (the default for a single organisation's node) is tuned for the
outbox/inbox guarantee, "nothing is lost, each message processed once":

* ``journal_mode=WAL``: readers do not block the writer and vice versa.
* ``synchronous=FULL``: with WAL, ``NORMAL`` is crash-safe for the *database*
  but a transaction committed just before a power loss may roll back. A node
  that has answered ``202 Accepted`` (or marked an outbox row sent) must not
  forget it afterwards, so every commit is fsynced. The cost (one fsync per
  commit) is small at referral volumes.
* ``busy_timeout=30000``: concurrent writers wait instead of failing.
* ``foreign_keys=ON``: SQLite does not enforce them otherwise.
* ``BEGIN IMMEDIATE`` for every transaction: pysqlite's default deferred
  transaction takes the write lock only at the first write, and two readers
  upgrading to writers deadlock with ``database is locked`` *without*
  honouring busy_timeout. Taking the write lock up front makes concurrent
  transactions queue cleanly. Consequence for callers: keep transactions
  short and never do network I/O inside one (the outbox pattern already
  requires that: commit, then send, then record the outcome).

PostgreSQL goes through psycopg 3 (``postgresql+psycopg://``); ``postgres://``
and ``postgresql://`` URLs are normalised to that driver.

Migrations live in each service's package (``hub/store/migrations``,
``node/store/migrations``) and run without an ``alembic.ini``::

    run_migrations(url, str(Path(hub.store.__file__).parent / "migrations"))

and the service's ``env.py`` can be three lines::

    from common.db import run_alembic_env
    from hub.store.models import metadata
    run_alembic_env(metadata)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import StaticPool

from common.logging import get_logger

__all__ = [
    "READ_ONLY",
    "current_revision",
    "head_revision",
    "is_postgres",
    "is_sqlite",
    "make_engine",
    "normalize_url",
    "read_only",
    "run_alembic_env",
    "run_migrations",
    "sqlite_url",
]

_log = get_logger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000


def sqlite_url(path: str | Path) -> str:
    """SQLAlchemy URL for a SQLite file (absolute, so the working directory does not matter)."""
    return f"sqlite:///{Path(path).expanduser().resolve()}"


def normalize_url(url: str) -> str:
    """Force the psycopg 3 driver for PostgreSQL URLs; leave others unchanged."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _is_sqlite_url(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _on_sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # Disable pysqlite's own transaction handling; we emit BEGIN ourselves.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
    finally:
        cur.close()


#: Execution option for connections that only read (see `read_only`).
READ_ONLY = "rssn_read_only"


def _on_sqlite_begin(conn: sa.Connection) -> None:
    if conn.get_execution_options().get(READ_ONLY):
        # A read in WAL mode needs no lock: a deferred BEGIN reads a consistent snapshot
        # and neither waits for nor delays a writer's commit (fsync).
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def read_only(engine: Engine) -> Engine:
    """The same engine (same pool) for connections that never write.

    Why: every SQLite transaction here starts with BEGIN IMMEDIATE, which takes the write
    lock, so without this a SELECT (an API-key check, a list) queues behind every commit.
    Writing on such a connection is a programming error (it may fail with "database is
    locked" instead of waiting). On PostgreSQL the option changes nothing.
    """
    return engine.execution_options(**{READ_ONLY: True})


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine with the durability settings described in the module docstring.

    Extra keyword arguments go to :func:`sqlalchemy.create_engine`.
    """
    url = normalize_url(url)
    if _is_sqlite_url(url):
        database = make_url(url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("check_same_thread", False)
        connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
        if not database or database == ":memory:":
            # One shared connection, or every checkout would see an empty database.
            kwargs.setdefault("poolclass", StaticPool)
        engine = sa.create_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine, "connect", _on_sqlite_connect)
        event.listen(engine, "begin", _on_sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(url, **kwargs)


def is_postgres(engine: Engine | sa.Connection) -> bool:
    return engine.dialect.name == "postgresql"


def is_sqlite(engine: Engine | sa.Connection) -> bool:
    return engine.dialect.name == "sqlite"


# --- migrations -------------------------------------------------------------------


def _alembic_config(url: str, script_location: str | Path) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def _advisory_key(script_location: str | Path) -> int:
    digest = hashlib.sha256(f"rssn-migrations:{Path(script_location).name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def head_revision(script_location: str | Path) -> str | None:
    """The single head revision of a migrations directory (``None`` if it has none)."""
    script = ScriptDirectory(str(script_location))
    heads = script.get_heads()
    if len(heads) > 1:
        raise RuntimeError(f"migrations have several heads: {sorted(heads)}")
    return heads[0] if heads else None


def _current(conn: sa.Connection) -> str | None:
    heads = MigrationContext.configure(conn).get_current_heads()
    if len(heads) > 1:
        raise RuntimeError(f"database is at several heads: {sorted(heads)}")
    return heads[0] if heads else None


def current_revision(url: str, script_location: str | Path) -> str | None:
    """The revision the database is at, or ``None`` for an unmigrated database.

    ``script_location`` is accepted for symmetry and to fail early on a wrong path.
    """
    if not Path(script_location).is_dir():
        raise FileNotFoundError(f"no migrations directory at {script_location}")
    engine = make_engine(url, poolclass=sa.pool.NullPool) if not _is_memory(url) else None
    if engine is None:
        raise ValueError("current_revision needs a file or server database, not :memory:")
    try:
        with engine.connect() as conn:
            return _current(conn)
    finally:
        engine.dispose()


def _is_memory(url: str) -> bool:
    u = make_url(normalize_url(url))
    return u.get_backend_name() == "sqlite" and (not u.database or u.database == ":memory:")


@contextlib.contextmanager
def _sqlite_migration_lock(url: str) -> Iterator[None]:
    """Serialise migrations of one SQLite file across processes with ``flock``.

    Why not the database lock alone: alembic reads the current revision before
    it opens each migration's transaction, so two processes could both decide
    to apply the same first migration.
    """
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        yield
        return
    lock_path = Path(u.database).with_name(Path(u.database).name + ".migrate.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def run_migrations(
    url: str, script_location: str | Path, *, target: str = "head", engine: Engine | None = None
) -> None:
    """Upgrade the database at ``url`` to ``target`` (default: head), logging from/to revisions.

    Safe to run from several processes at once: on PostgreSQL an advisory
    lock serialises them, on SQLite the ``BEGIN IMMEDIATE`` write lock does.
    Pass ``engine`` to migrate through an existing engine (needed for
    ``sqlite:///:memory:``).
    """
    cfg = _alembic_config(url, script_location)
    script = ScriptDirectory.from_config(cfg)
    own_engine = engine is None
    eng = engine if engine is not None else make_engine(url, poolclass=sa.pool.NullPool)
    try:
        with _sqlite_migration_lock(normalize_url(url)), eng.connect() as conn:
            lock_key = _advisory_key(script_location)
            if is_postgres(conn):
                conn.exec_driver_sql(f"SELECT pg_advisory_lock({lock_key})")
                conn.commit()
            try:
                before = _current(conn)
                conn.commit()
                wanted = [r.revision for r in script.get_revisions(target) if r is not None]
                to_rev = wanted[0] if len(wanted) == 1 else target
                if before == to_rev:
                    _log.info("database_up_to_date", revision=before, dialect=conn.dialect.name)
                    return
                _log.info(
                    "database_upgrade_started",
                    from_revision=before or "empty",
                    to_revision=to_rev,
                    dialect=conn.dialect.name,
                )
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, target)
                conn.commit()
                after = _current(conn)
                conn.commit()
                _log.info(
                    "database_upgraded",
                    from_revision=before or "empty",
                    to_revision=after or "empty",
                    dialect=conn.dialect.name,
                )
            finally:
                if is_postgres(conn):
                    conn.rollback()
                    conn.exec_driver_sql(f"SELECT pg_advisory_unlock({lock_key})")
                    conn.commit()
    finally:
        if own_engine:
            eng.dispose()


def run_alembic_env(target_metadata: sa.MetaData | None) -> None:
    """Body of a service's alembic ``env.py``.

    Uses the connection handed over by :func:`run_migrations` when present,
    otherwise builds an engine from ``sqlalchemy.url`` (so ``alembic`` on the
    command line still works with ``-x``-less configs). SQLite gets batch mode
    because it cannot ``ALTER`` most things in place.
    """
    from alembic import context

    config = context.config

    def configure(conn: sa.Connection) -> None:
        context.configure(
            connection=conn,
            target_metadata=target_metadata,
            render_as_batch=is_sqlite(conn),
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"),
            target_metadata=target_metadata,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return

    conn = config.attributes.get("connection")
    if isinstance(conn, sa.Connection):
        configure(conn)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("alembic: no connection and no sqlalchemy.url configured")
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            configure(connection)
            connection.commit()
    finally:
        engine.dispose()
