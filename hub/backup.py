#!/usr/bin/env python3
"""Back up and restore the hub's database: pg_dump/pg_restore for PostgreSQL, the SQLite
online-backup API for a single-machine hub.

Why standard library only: this one file is also the operator's backup tool on a database or
backup host where rssn is not installed. deploy/scripts/hub_db_backup.py (the systemd timer's
``rssn-hub-db-backup``) is a byte-for-byte copy of it, not a wrapper, because pipx installs rssn
into its own virtual environment where the system python3 cannot import it; a test keeps the
two identical. `rssn-hub backup` / `rssn-hub restore` call the same functions.

What it copies is already safe to keep off-site: the hub stores only ciphertext and
content-free metadata, and its signing key is sealed with the hub passphrase (which is NOT in
the dump; keep it separately, see docs/OPERATE_HUB.md "Key ceremony").

    hub_db_backup.py backup  --out-dir /var/backups/rssn-hub [--keep-days 30]
    hub_db_backup.py restore --from /var/backups/rssn-hub/rssn-hub-....pgdump --yes
    hub_db_backup.py verify  --from FILE

The database comes from --db, else $RSSN_HUB_DB (the SQLAlchemy URL the hub uses, e.g.
postgresql+psycopg://rssn@db.internal/rssn_hub), else sqlite under --data-dir (hub.db).
The PostgreSQL password is handed to pg_dump/pg_restore in the environment (PGPASSWORD),
never on the command line where `ps` would show it. Each backup file gets a ``.sha256``
beside it; verify and restore check it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = [
    "BackupError",
    "backup_kind",
    "database_url",
    "dump_database",
    "is_postgres",
    "main",
    "restore_database",
    "verify_file",
]

PREFIX = "rssn-hub-"
PG_SUFFIX = ".pgdump"
SQLITE_SUFFIX = ".sqlite"
_PG_MAGIC = b"PGDMP"
_SQLITE_MAGIC = b"SQLite format 3\x00"

# libpq query parameters we pass on as PG* environment variables.
_PG_QUERY_ENV = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "host": "PGHOST",
    "port": "PGPORT",
}


class BackupError(Exception):
    """One clear line for the operator."""


def database_url(db: str | None, data_dir: str | Path) -> str:
    """--db, else $RSSN_HUB_DB, else the SQLite file the hub uses in ``data_dir``."""
    if db:
        return str(db)
    env = os.environ.get("RSSN_HUB_DB", "").strip()
    if env:
        return env
    return f"sqlite:///{(Path(data_dir).expanduser().resolve() / 'hub.db')}"


def is_postgres(url: str) -> bool:
    scheme = urlsplit(url).scheme
    return scheme.split("+", 1)[0] in {"postgresql", "postgres"}


def sqlite_path(url: str) -> Path:
    parts = urlsplit(url)
    if parts.scheme.split("+", 1)[0] != "sqlite":
        raise BackupError(f"unsupported database URL scheme {parts.scheme!r}")
    # sqlite:////abs/path -> netloc '' and path '//abs/path'; sqlite:///rel -> '/rel'
    raw = url.split(":///", 1)[1] if ":///" in url else ""
    raw = raw.split("?", 1)[0]
    if not raw or raw == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(unquote(raw)).expanduser()


def pg_environment(url: str) -> dict[str, str]:
    """libpq environment for a SQLAlchemy/libpq PostgreSQL URL (password never on argv)."""
    parts = urlsplit(url)
    env = dict(os.environ)
    for key in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"):
        env.pop(key, None)
    if parts.hostname:
        env["PGHOST"] = parts.hostname
    if parts.port:
        env["PGPORT"] = str(parts.port)
    if parts.username:
        env["PGUSER"] = unquote(parts.username)
    if parts.password:
        env["PGPASSWORD"] = unquote(parts.password)
    database = unquote(parts.path.lstrip("/"))
    if not database:
        raise BackupError("the PostgreSQL URL names no database")
    env["PGDATABASE"] = database
    for key, value in parse_qsl(parts.query):
        if key in _PG_QUERY_ENV:
            env[_PG_QUERY_ENV[key]] = value
    return env


def _run(cmd: list[str], env: dict[str, str]) -> None:
    tool = shutil.which(cmd[0])
    if tool is None:
        raise BackupError(f"{cmd[0]} is not installed (Debian/Ubuntu: apt install postgresql-client)")
    result = subprocess.run([tool, *cmd[1:]], env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise BackupError(f"{cmd[0]} failed: {detail[-1] if detail else result.returncode}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_checksum(path: Path) -> None:
    Path(f"{path}.sha256").write_text(f"{_sha256(path)}  {path.name}\n", encoding="utf-8")


def _check_checksum(path: Path) -> bool:
    """False when there is no ``.sha256`` beside ``path``; raises when it does not match."""
    side = Path(f"{path}.sha256")
    if not side.exists():
        return False
    expected = side.read_text(encoding="utf-8").split()[0]
    if expected != _sha256(path):
        raise BackupError(f"{path.name} does not match {side.name}: the file is damaged")
    return True


def backup_kind(path: Path) -> str:
    """"postgresql" (a pg_dump custom-format file) or "sqlite", from the file's first bytes."""
    with path.open("rb") as fh:
        head = fh.read(len(_SQLITE_MAGIC))
    if head.startswith(_PG_MAGIC):
        return "postgresql"
    if head == _SQLITE_MAGIC:
        return "sqlite"
    raise BackupError(f"{path.name} is neither a pg_dump custom-format file nor a SQLite database")


def _sqlite_copy(source: Path, target: Path) -> None:
    """Consistent copy of a live database (online backup API), checked afterwards."""
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            # One self-contained file: nothing beside it is needed to read it.
            dst.execute("PRAGMA journal_mode=DELETE")
            ok = dst.execute("PRAGMA integrity_check").fetchone()
            if not ok or ok[0] != "ok":
                raise BackupError(f"integrity check of the copy failed: {ok}")
        finally:
            dst.close()
    finally:
        src.close()


def dump_database(url: str, out: Path) -> str:
    """Write a backup of the database at ``url`` to ``out`` (via ``out.partial``, mode 0600)
    and ``out.sha256``; returns the kind ("postgresql" or "sqlite")."""
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.unlink(missing_ok=True)
    old_umask = os.umask(0o077)
    try:
        if is_postgres(url):
            kind = "postgresql"
            env = pg_environment(url)
            _run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges",
                  f"--file={partial}"], env)
            # A dump that pg_restore cannot list is not a backup.
            _run(["pg_restore", "--list", str(partial)], env)
        else:
            kind = "sqlite"
            source = sqlite_path(url)
            if not source.exists():
                raise BackupError(f"no SQLite database at {source}")
            _sqlite_copy(source, partial)
        os.chmod(partial, 0o600)
        partial.replace(out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        os.umask(old_umask)
    _write_checksum(out)
    return kind


def verify_file(path: Path) -> tuple[str, bool]:
    """Check a backup file; returns (kind, whether a .sha256 was there and matched)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BackupError(f"no backup file at {path}")
    checked = _check_checksum(path)
    kind = backup_kind(path)
    if kind == "postgresql":
        _run(["pg_restore", "--list", str(path)], dict(os.environ))
    else:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            ok = con.execute("PRAGMA integrity_check").fetchone()
        finally:
            con.close()
        if not ok or ok[0] != "ok":
            raise BackupError(f"{path.name}: integrity check failed: {ok}")
    return kind, checked


def restore_database(url: str, source: Path, *, clean: bool) -> tuple[str, bool]:
    """Restore ``source`` into the database at ``url``; ``clean`` drops what is there first
    (PostgreSQL) or replaces the file (SQLite). Every hub process must be stopped.
    Returns (kind, whether a .sha256 was checked)."""
    path = Path(source).expanduser()
    kind, checked = verify_file(path)
    if is_postgres(url):
        if kind != "postgresql":
            raise BackupError(f"{path.name} is a SQLite backup; the hub database is PostgreSQL")
        env = pg_environment(url)
        _run(
            [
                "pg_restore",
                *(["--clean", "--if-exists"] if clean else []),
                "--no-owner",
                "--no-privileges",
                "--single-transaction",
                "--exit-on-error",
                f"--dbname={env['PGDATABASE']}",
                str(path),
            ],
            env,
        )
    else:
        if kind != "sqlite":
            raise BackupError(f"{path.name} is a PostgreSQL dump; set RSSN_HUB_DB to restore it")
        target = sqlite_path(url)
        if target.exists() and not clean:
            raise BackupError(f"{target} exists; refusing to replace it")
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(target.name + ".restoring")
        _sqlite_copy(path, staged)
        for suffix in ("-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        os.chmod(staged, 0o600)
        staged.replace(target)
    return kind, checked


# -- the operator's script (dated files, retention) ------------------------------------------


def prune(out_dir: Path, keep_days: int, *, keep: Path) -> None:
    cutoff = time.time() - keep_days * 86400
    for path in out_dir.glob(f"{PREFIX}*"):
        if path == keep or path.name == f"{keep.name}.sha256":
            continue
        if path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink()


def _cmd_backup(args: argparse.Namespace) -> None:
    url = database_url(args.db, args.data_dir)
    out_dir = Path(args.out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(out_dir, 0o700)
    # timezone.utc, not datetime.UTC: backup hosts may run Python 3.10.
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")  # noqa: UP017
    final = out_dir / f"{PREFIX}{stamp}{PG_SUFFIX if is_postgres(url) else SQLITE_SUFFIX}"
    dump_database(url, final)
    if args.keep_days is not None:
        prune(out_dir, args.keep_days, keep=final)
    print(final)


def _cmd_verify(args: argparse.Namespace) -> None:
    path = Path(args.source).expanduser()
    _kind, checked = verify_file(path)
    if not checked:
        print(f"note: no {path.name}.sha256; checksum not verified", file=sys.stderr)
    print(f"{path.name}: ok")


def _cmd_restore(args: argparse.Namespace) -> None:
    if not args.yes:
        raise BackupError("restore replaces the hub database; stop every hub process, then add --yes")
    url = database_url(args.db, args.data_dir)
    path = Path(args.source).expanduser()
    _kind, checked = restore_database(url, path, clean=True)
    if not checked:
        print(f"note: no {path.name}.sha256; checksum not verified", file=sys.stderr)
    print(f"restored {path.name}; start the hub: its migrations bring the schema up to date")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--db", help="database URL (default: $RSSN_HUB_DB, else SQLite in --data-dir)")
    parser.add_argument(
        "--data-dir",
        default="/var/lib/rssn-hub",
        help="hub data directory, for the SQLite default (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("backup", help="write a dated backup file and its .sha256")
    b.add_argument("--out-dir", required=True)
    b.add_argument(
        "--keep-days",
        type=int,
        default=None,
        help="delete this script's backups older than N days after a good backup",
    )
    r = sub.add_parser("restore", help="replace the database with a backup")
    r.add_argument("--from", dest="source", required=True)
    r.add_argument("--yes", action="store_true", help="confirm that every hub process is stopped")
    v = sub.add_parser("verify", help="check a backup file is complete and readable")
    v.add_argument("--from", dest="source", required=True)
    args = parser.parse_args(argv)
    try:
        {"backup": _cmd_backup, "restore": _cmd_restore, "verify": _cmd_verify}[args.command](args)
    except BackupError as exc:
        print(f"hub_db_backup: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
