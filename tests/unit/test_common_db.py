"""Engines (SQLite durability settings, psycopg 3) and programmatic alembic migrations."""

from __future__ import annotations

import io
import json
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from common.db import (
    current_revision,
    head_revision,
    is_postgres,
    is_sqlite,
    make_engine,
    normalize_url,
    run_migrations,
    sqlite_url,
)
from common.logging import configure_logging, reset_logging


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure_logging("db-test", stream=buffer)
    yield buffer
    reset_logging()


def _events(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(x) for x in buffer.getvalue().splitlines() if x.strip()]


# --- engines ---------------------------------------------------------------------


def test_sqlite_url_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert sqlite_url("node.db") == f"sqlite:///{tmp_path / 'node.db'}"


def test_normalize_url_forces_psycopg3() -> None:
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine(sqlite_url(tmp_path / "a.db"))
    try:
        assert is_sqlite(engine) and not is_postgres(engine)
        with engine.connect() as conn:
            pragma = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
        assert pragma == {
            "journal_mode": "wal",
            "synchronous": 2,  # FULL
            "busy_timeout": 30000,
            "foreign_keys": 1,
        }
    finally:
        engine.dispose()


def test_sqlite_enforces_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(sqlite_url(tmp_path / "fk.db"))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
            conn.exec_driver_sql(
                "CREATE TABLE child (id INTEGER PRIMARY KEY,"
                " parent_id INTEGER REFERENCES parent(id))"
            )
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO child (id, parent_id) VALUES (1, 42)")
    finally:
        engine.dispose()


def test_sqlite_memory_engine_shares_one_database() -> None:
    engine = make_engine("sqlite://")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0
    finally:
        engine.dispose()


def test_concurrent_read_modify_write_does_not_lock_up(tmp_path: Path) -> None:
    """Read-then-write transactions from many threads: no 'database is locked', no lost update.

    With pysqlite's deferred BEGIN, two such transactions deadlock on the lock
    upgrade and one fails immediately; BEGIN IMMEDIATE makes them queue.
    """
    url = sqlite_url(tmp_path / "counter.db")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        conn.exec_driver_sql("INSERT INTO counter VALUES (1, 0)")
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(25):
                with engine.begin() as conn:
                    n = conn.exec_driver_sql("SELECT n FROM counter WHERE id = 1").scalar_one()
                    conn.exec_driver_sql("UPDATE counter SET n = ? WHERE id = 1", (n + 1,))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    try:
        assert not errors, errors
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT n FROM counter").scalar_one() == 100
    finally:
        engine.dispose()


def test_postgres_engine_uses_psycopg3(pg_url: str) -> None:
    engine = make_engine(pg_url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        assert is_postgres(engine) and not is_sqlite(engine)
        assert engine.dialect.driver == "psycopg"
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    finally:
        engine.dispose()


# --- migrations ------------------------------------------------------------------

ENV_PY = """
from common.db import run_alembic_env

run_alembic_env(None)
"""

REV_1 = '''
"""create things"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "things",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("things")
'''

REV_2 = '''
"""add attempts"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("things") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("things") as batch:
        batch.drop_column("attempts")
'''


@pytest.fixture
def migrations_dir(tmp_path: Path) -> Path:
    """A tiny throwaway alembic environment, laid out like hub/store/migrations."""
    root = tmp_path / "migrations"
    (root / "versions").mkdir(parents=True)
    (root / "env.py").write_text(textwrap.dedent(ENV_PY))
    (root / "versions" / "0001_create.py").write_text(textwrap.dedent(REV_1))
    (root / "versions" / "0002_attempts.py").write_text(textwrap.dedent(REV_2))
    return root


def _columns(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return {c["name"] for c in sa.inspect(engine).get_columns("things")}
    finally:
        engine.dispose()


def test_head_revision(migrations_dir: Path) -> None:
    assert head_revision(migrations_dir) == "0002"


def test_migrate_step_by_step_and_idempotent(
    db_url: str, migrations_dir: Path, log_buffer: io.StringIO
) -> None:
    assert current_revision(db_url, migrations_dir) is None

    run_migrations(db_url, migrations_dir, target="0001")
    assert current_revision(db_url, migrations_dir) == "0001"
    assert _columns(db_url) == {"id", "status"}

    run_migrations(db_url, migrations_dir)
    assert current_revision(db_url, migrations_dir) == "0002"
    assert _columns(db_url) == {"id", "status", "attempts"}

    run_migrations(db_url, migrations_dir)  # nothing to do
    assert current_revision(db_url, migrations_dir) == "0002"

    events = _events(log_buffer)
    upgraded = [e for e in events if e["event"] == "database_upgraded"]
    assert [(e["from_revision"], e["to_revision"]) for e in upgraded] == [
        ("empty", "0001"),
        ("0001", "0002"),
    ]
    assert any(e["event"] == "database_up_to_date" for e in events)
    assert all(e["service"] == "db-test" for e in events)


def test_migrated_schema_is_usable(db_url: str, migrations_dir: Path) -> None:
    run_migrations(db_url, migrations_dir)
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO things (id, status) VALUES (:id, :status)"),
                {"id": "a", "status": "queued"},
            )
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT attempts FROM things")).scalar_one() == 0
    finally:
        engine.dispose()


def test_concurrent_migrations_are_serialised(db_url: str, migrations_dir: Path) -> None:
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            run_migrations(db_url, migrations_dir)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert current_revision(db_url, migrations_dir) == "0002"


def test_missing_migrations_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        current_revision(sqlite_url(tmp_path / "x.db"), tmp_path / "nope")


def test_memory_database_needs_engine(migrations_dir: Path) -> None:
    engine = make_engine("sqlite://")
    try:
        run_migrations("sqlite://", migrations_dir, engine=engine)
        with engine.connect() as conn:
            version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
            assert version == "0002"
    finally:
        engine.dispose()
