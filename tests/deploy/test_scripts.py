"""The operator scripts in deploy/scripts, run for real.

hub_db_backup.py is exercised against a real PostgreSQL database (pg_dump/pg_restore) and a
real SQLite file; node-backup.sh and compose-bootstrap.sh against stand-ins for the rssn
CLIs, because their own job is naming, checksums, retention and token hand-over.
The round trips with real services are test_hub_backup.py (a real hub's database with
waiting mail) and test_node_backup.py (node-backup.sh with the real `rssn-node backup`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.deploy.tools import DEPLOY, explain, run

BACKUP = DEPLOY / "scripts" / "hub_db_backup.py"


def _backup(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "RSSN_HUB_DB"))}
    return run([sys.executable, str(BACKUP), *args], env={**base, **(env or {})})


def _psql(url: str, sql: str) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        cur = conn.execute(sql)
        rows = cur.fetchall() if cur.description else []
        conn.commit()
        return rows


@pytest.mark.skipif(shutil.which("pg_dump") is None, reason="pg_dump not installed "
                    "(Debian package postgresql-client)")
def test_postgres_backup_restore_round_trip(
    pg_url_factory: Callable[[], str], tmp_path: Path
) -> None:
    source = pg_url_factory()
    _psql(source, "CREATE TABLE mailbox (id text PRIMARY KEY, body bytea NOT NULL)")
    _psql(source, "INSERT INTO mailbox VALUES ('m1', '\\x00ff'), ('m2', '\\x0102')")
    out = tmp_path / "backups"

    made = _backup("backup", "--out-dir", str(out), "--keep-days", "30",
                   env={"RSSN_HUB_DB": source})
    assert made.returncode == 0, explain(made)
    dump = Path(made.stdout.strip().splitlines()[-1])
    assert dump.parent == out and dump.name.startswith("rssn-hub-") and dump.suffix == ".pgdump"
    assert oct(dump.stat().st_mode & 0o777) == "0o600"
    assert (out / f"{dump.name}.sha256").read_text().split()[0] == hashlib.sha256(
        dump.read_bytes()
    ).hexdigest()

    verified = _backup("verify", "--from", str(dump))
    assert verified.returncode == 0, explain(verified)

    target = pg_url_factory()
    refused = _backup("--db", target, "restore", "--from", str(dump))
    assert refused.returncode == 1 and "--yes" in refused.stderr
    restored = _backup("--db", target, "restore", "--from", str(dump), "--yes")
    assert restored.returncode == 0, explain(restored)
    assert _psql(target, "SELECT id, body FROM mailbox ORDER BY id") == [
        ("m1", b"\x00\xff"),
        ("m2", b"\x01\x02"),
    ]
    # Restoring over a database that has moved on brings it back to the backup exactly.
    _psql(target, "INSERT INTO mailbox VALUES ('m3', '\\x03')")
    again = _backup("--db", target, "restore", "--from", str(dump), "--yes")
    assert again.returncode == 0, explain(again)
    assert [r[0] for r in _psql(target, "SELECT id FROM mailbox ORDER BY id")] == ["m1", "m2"]


def test_damaged_backup_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (x)")
    con.execute("INSERT INTO t VALUES (1)")
    con.commit()
    con.close()
    made = _backup("--data-dir", str(tmp_path), "backup", "--out-dir", str(tmp_path / "b"))
    assert made.returncode == 0, explain(made)
    copy = Path(made.stdout.strip())
    data = bytearray(copy.read_bytes())
    data[-1] ^= 0xFF
    copy.write_bytes(bytes(data))
    result = _backup("--data-dir", str(tmp_path), "restore", "--from", str(copy), "--yes")
    assert result.returncode == 1
    assert "damaged" in result.stderr


def test_sqlite_backup_of_a_live_database_and_restore(tmp_path: Path) -> None:
    data_dir = tmp_path / "hub"
    data_dir.mkdir()
    db = data_dir / "hub.db"
    writer = sqlite3.connect(db)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE t (x INTEGER)")
    writer.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
    writer.commit()  # the writer stays open (WAL not checkpointed) during the backup
    made = _backup("--data-dir", str(data_dir), "backup", "--out-dir", str(tmp_path / "b"))
    assert made.returncode == 0, explain(made)
    copy = Path(made.stdout.strip())
    assert copy.suffix == ".sqlite"
    writer.execute("DELETE FROM t")
    writer.commit()
    writer.close()

    restored = _backup("--data-dir", str(data_dir), "restore", "--from", str(copy), "--yes")
    assert restored.returncode == 0, explain(restored)
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM t").fetchone() == (100,)
    con.close()


def test_postgres_password_never_on_the_command_line(tmp_path: Path) -> None:
    """pg_dump gets the password through PGPASSWORD, not argv (where `ps` shows it)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "log"
    for tool in ("pg_dump", "pg_restore"):
        stub = bin_dir / tool
        stub.write_text(
            "#!/bin/sh\n"
            f'echo "$0 $* PGPASSWORD=$PGPASSWORD PGHOST=$PGHOST PGUSER=$PGUSER '
            f'PGDATABASE=$PGDATABASE PGSSLMODE=$PGSSLMODE" >> {log}\n'
            'for a in "$@"; do case "$a" in --file=*) : > "${a#--file=}";; esac; done\n'
        )
        stub.chmod(0o755)
    url = "postgresql+psycopg://rssn_hub:s%40cret@db.internal:5433/rssn_hub?sslmode=verify-full"
    result = _backup(
        "backup", "--out-dir", str(tmp_path / "b"),
        env={"RSSN_HUB_DB": url, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )
    assert result.returncode == 0, explain(result)
    lines = log.read_text().splitlines()
    assert len(lines) == 2  # pg_dump, then pg_restore --list to check the dump
    for line in lines:
        argv, _, env_part = line.partition(" PGPASSWORD=")
        assert "s@cret" not in argv and "cret" not in argv
        assert env_part.startswith("s@cret PGHOST=db.internal PGUSER=rssn_hub")
        assert "PGDATABASE=rssn_hub PGSSLMODE=verify-full" in env_part


def test_retention_keeps_recent_and_the_new_backup(tmp_path: Path) -> None:
    data_dir = tmp_path / "hub"
    data_dir.mkdir()
    sqlite3.connect(data_dir / "hub.db").close()
    out = tmp_path / "b"
    out.mkdir()
    old = out / "rssn-hub-20200101T000000Z.sqlite"
    old.write_bytes(b"old")
    unrelated = out / "notes.txt"
    unrelated.write_text("keep me")
    ancient = time.time() - 90 * 86400
    os.utime(old, (ancient, ancient))
    os.utime(unrelated, (ancient, ancient))
    made = _backup("--data-dir", str(data_dir), "backup", "--out-dir", str(out),
                   "--keep-days", "30")
    assert made.returncode == 0, explain(made)
    assert not old.exists()
    assert unrelated.exists()
    assert Path(made.stdout.strip()).exists()


def test_node_backup_script_names_checksums_and_prunes(tmp_path: Path) -> None:
    stub = tmp_path / "rssn-node"
    stub.write_text(
        "#!/bin/sh\n"
        "# stand-in: rssn-node backup --data-dir DIR --out FILE\n"
        'while [ $# -gt 0 ]; do case "$1" in --out) out=$2; shift;; esac; shift; done\n'
        'printf "backup-bytes" > "$out"\n'
    )
    stub.chmod(0o755)
    out = tmp_path / "backups"
    out.mkdir()
    stale = out / "rssn-node-20200101T000000Z.backup"
    stale.write_text("old")
    ancient = time.time() - 60 * 86400
    os.utime(stale, (ancient, ancient))
    result = run(
        ["/bin/sh", str(DEPLOY / "scripts" / "node-backup.sh"), str(tmp_path / "data"),
         str(out), "30"],
        env={**os.environ, "RSSN_NODE_BIN": str(stub)},
    )
    assert result.returncode == 0, explain(result)
    made = sorted(p.name for p in out.iterdir())
    assert len(made) == 2, made
    backup = out / made[0]
    assert backup.name.endswith(".backup") and made[1] == backup.name + ".sha256"
    assert backup.read_text() == "backup-bytes"
    check = run(["sha256sum", "-c", made[1]], cwd=out)
    assert check.returncode == 0, explain(check)
    assert not stale.exists()
    assert oct(out.stat().st_mode & 0o777) == "0o700"


def test_node_backup_script_stops_on_failure(tmp_path: Path) -> None:
    stub = tmp_path / "rssn-node"
    stub.write_text("#!/bin/sh\necho 'error: wrong passphrase' >&2\nexit 1\n")
    stub.chmod(0o755)
    out = tmp_path / "backups"
    out.mkdir()
    keep = out / "rssn-node-20200101T000000Z.backup"
    keep.write_text("old but the only one")
    ancient = time.time() - 60 * 86400
    os.utime(keep, (ancient, ancient))
    result = run(
        ["/bin/sh", str(DEPLOY / "scripts" / "node-backup.sh"), str(tmp_path), str(out), "30"],
        env={**os.environ, "RSSN_NODE_BIN": str(stub)},
    )
    assert result.returncode != 0
    assert keep.exists(), "a failed backup must never prune the old ones"


def test_compose_bootstrap_invites_each_node_once(tmp_path: Path) -> None:
    entry = tmp_path / "rssn-entrypoint"
    calls = tmp_path / "calls"
    entry.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        'if [ "$1" = invite ]; then echo "invite for x expires 2030-01-01T00:00:00Z"; '
        'echo "tok-$3"; fi\n'
    )
    entry.chmod(0o755)
    enroll = tmp_path / "enroll"
    enroll.mkdir()
    env = {**os.environ, "RSSN_ENTRYPOINT": str(entry), "RSSN_ENROLL_DIR": str(enroll),
           "RSSN_DEMO_COUNTRY": "UG"}
    script = str(DEPLOY / "scripts" / "compose-bootstrap.sh")
    first = run(["/bin/sh", script, "node-a", "node-b"], env=env)
    assert first.returncode == 0, explain(first)
    assert (enroll / "node-a.token").read_text() == "tok-node-a\n"
    assert (enroll / "node-b.token").read_text() == "tok-node-b\n"
    assert oct((enroll / "node-a.token").stat().st_mode & 0o777) == "0o600"
    second = run(["/bin/sh", script, "node-a", "node-b"], env=env)
    assert second.returncode == 0, explain(second)
    lines = calls.read_text().splitlines()
    assert lines.count("init") == 2
    assert [line for line in lines if line.startswith("invite")] == [
        "invite --node-id node-a --org Demo organisation node-a --country UG",
        "invite --node-id node-b --org Demo organisation node-b --country UG",
    ]
