"""Node backup and restore: one archive holding everything a node needs to carry on.

Why one archive with a manifest: a node's identity is three things that must travel
together (the sealed key file, ``node.json`` with the pinned hub key, and the database with
its outbox, inbox and referrals); a restore from a mixed set (keys from Monday, database from
Friday) is worse than none. The manifest records each member's SHA-256 and the database's
schema revision, so a restore refuses a damaged, truncated or foreign archive before it
touches anything, and refuses a backup made by a newer schema than the installed software.

What is copied, and how:

* the database: SQLite through the online-backup API (a consistent snapshot, safe while
  ``rssn-node serve`` writes), checked with ``PRAGMA integrity_check``; a PostgreSQL database
  (``RSSN_NODE_DB``) with ``pg_dump --format=custom`` (password in the environment, never on
  the command line), checked with ``pg_restore --list``;
* ``keys.sealed.json`` byte for byte: the private keys stay sealed with the passphrase, which
  is never in the archive;
* ``node.json`` (node id, hub URL(s), pinned hub key).

A restore is a return to the moment of the backup; what that means for messages is written in
docs/DEPLOY_NODE.md ("6. Restore").
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node.settings import CONFIG_FILE, KEYS_FILE, SOFTWARE_VERSION, NodeSettings

__all__ = ["FORMAT", "BackupError", "create_backup", "read_backup", "restore_backup"]

FORMAT = "rssn-node-backup/1"
MANIFEST = "manifest.json"
SQLITE_MEMBER = "node.db"
PG_MEMBER = "node.pgdump"
MIGRATIONS_DIR = Path(__file__).parent / "store" / "migrations"
_MEMBERS = frozenset({CONFIG_FILE, KEYS_FILE, SQLITE_MEMBER, PG_MEMBER})
#: Libpq query parameters handed to pg_dump/pg_restore as PG* variables.
_PG_QUERY_ENV = {"sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT",
                 "sslkey": "PGSSLKEY", "connect_timeout": "PGCONNECT_TIMEOUT",
                 "host": "PGHOST", "port": "PGPORT"}


class BackupError(Exception):
    """One clear line for the operator; nothing was changed when it is raised by a restore."""


# -- helpers ---------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_postgres(url: str) -> bool:
    from sqlalchemy.engine import make_url

    from common.db import normalize_url

    return make_url(normalize_url(url)).get_backend_name() == "postgresql"


def _sqlite_path(settings: NodeSettings) -> Path:
    from sqlalchemy.engine import make_url

    database = make_url(settings.database_url).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory database cannot be backed up or restored")
    return Path(database)


def _pg_env(url: str) -> dict[str, str]:
    """libpq environment for a SQLAlchemy PostgreSQL URL (the password never goes on argv)."""
    from sqlalchemy.engine import make_url

    from common.db import normalize_url

    u = make_url(normalize_url(url))
    env = {k: v for k, v in os.environ.items()
           if k not in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")}
    if not u.database:
        raise BackupError("the PostgreSQL URL in RSSN_NODE_DB names no database")
    env["PGDATABASE"] = u.database
    parts: tuple[tuple[str, object], ...] = (("PGHOST", u.host), ("PGPORT", u.port),
                                             ("PGUSER", u.username), ("PGPASSWORD", u.password))
    for key, part in parts:
        if part:
            env[key] = str(part)
    for key, value in u.query.items():
        if key in _PG_QUERY_ENV:
            env[_PG_QUERY_ENV[key]] = value if isinstance(value, str) else value[-1]
    return env


def _run_pg(cmd: list[str], env: dict[str, str]) -> str:
    tool = shutil.which(cmd[0])
    if tool is None:
        raise BackupError(f"{cmd[0]} is not installed (Debian/Ubuntu: apt install "
                          "postgresql-client); or leave the database backup to the DBA and "
                          "back up the data directory's key file and node.json yourself")
    result = subprocess.run([tool, *cmd[1:]], env=env, capture_output=True, text=True,  # noqa: S603
                            check=False)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise BackupError(f"{cmd[0]} failed: {lines[-1] if lines else result.returncode}")
    return result.stdout


def _sqlite_snapshot(source: Path, target: Path) -> str | None:
    """Consistent copy of a live SQLite database; returns its schema revision."""
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
            # A self-contained single file: no -wal beside it is needed to read it.
            dst.execute("PRAGMA journal_mode=DELETE")
            ok = dst.execute("PRAGMA integrity_check").fetchone()
            if not ok or ok[0] != "ok":
                raise BackupError(f"integrity check of the database copy failed: {ok}")
            return _sqlite_revision(dst)
        finally:
            dst.close()
    finally:
        src.close()


def _sqlite_revision(conn: sqlite3.Connection) -> str | None:
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:
        return None
    return str(row[0]) if row else None


def _pg_revision(url: str) -> str | None:
    from common.db import current_revision

    return current_revision(url, MIGRATIONS_DIR)


def _pg_has_tables(url: str) -> bool:
    import sqlalchemy as sa

    from common.db import make_engine

    engine = make_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return bool(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()


def _check_revision_known(revision: str | None) -> None:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    if revision is None:
        raise BackupError("the backed-up database has no schema revision (not a node database)")
    try:
        ScriptDirectory(str(MIGRATIONS_DIR)).get_revision(revision)
    except (CommandError, KeyError) as exc:
        raise BackupError(f"the backup's database schema ({revision}) is newer than this "
                          f"rssn-node {SOFTWARE_VERSION}: install that version or a newer one "
                          "first") from exc


# -- backup ------------------------------------------------------------------------------------


def create_backup(settings: NodeSettings, out: Path) -> dict[str, Any]:
    """Write the archive to ``out`` (via ``out.partial``, mode 0600); returns the manifest."""
    config = settings.load_config()
    if not settings.keys_path.is_file():
        raise BackupError(f"no key file at {settings.keys_path}")
    out = Path(out).expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".rssn-node-backup-", dir=out.parent) as tmp:
        stage = Path(tmp)
        url = settings.database_url
        if _is_postgres(url):
            kind, member = "postgresql", PG_MEMBER
            env = _pg_env(url)
            revision = _pg_revision(url)
            _run_pg(["pg_dump", "--format=custom", "--no-owner", "--no-privileges",
                     f"--file={stage / member}"], env)
            _run_pg(["pg_restore", "--list", str(stage / member)], env)
        else:
            kind, member = "sqlite", SQLITE_MEMBER
            db = _sqlite_path(settings)
            if not db.is_file():
                raise BackupError(f"no database at {db}")
            revision = _sqlite_snapshot(db, stage / member)
        # The sealed key file and node.json as they are (the keys stay encrypted).
        shutil.copyfile(settings.keys_path, stage / KEYS_FILE)
        shutil.copyfile(settings.config_path, stage / CONFIG_FILE)
        files = {name: {"sha256": _sha256(stage / name), "size": (stage / name).stat().st_size}
                 for name in (CONFIG_FILE, KEYS_FILE, member)}
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "software_version": SOFTWARE_VERSION,
            "node_id": config.node_id,
            "hub_url": config.hub_url,
            "hub_fingerprint": config.hub_fingerprint,
            "database": {"kind": kind, "file": member, "schema_revision": revision},
            "files": files,
        }
        partial = out.with_name(out.name + ".partial")
        partial.unlink(missing_ok=True)
        try:
            with open(partial, "xb", opener=_private_opener) as raw:
                with tarfile.open(fileobj=raw, mode="w:gz") as tar:
                    _add_bytes(tar, MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
                    for name in files:
                        _add_file(tar, stage / name, name)
                raw.flush()
                os.fsync(raw.fileno())
            os.replace(partial, out)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    return manifest


def _private_opener(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = int(datetime.now(UTC).timestamp())
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, path: Path, name: str) -> None:
    with path.open("rb") as fh:
        tar.addfile(_tarinfo(name, path.stat().st_size), fh)


# -- restore -----------------------------------------------------------------------------------


def read_backup(source: Path, stage: Path) -> dict[str, Any]:
    """Unpack ``source`` into ``stage`` and verify it; returns the manifest.

    Only the manifest's regular files with known names are accepted (no paths, links or
    devices), and each must match its recorded SHA-256 and size.
    """
    source = Path(source).expanduser()
    if not source.is_file():
        raise BackupError(f"no backup file at {source}")
    try:
        with tarfile.open(source, mode="r:*") as tar:
            members = tar.getmembers()
            names = [m.name for m in members]
            if len(set(names)) != len(names) or MANIFEST not in names:
                raise BackupError(f"{source.name} is not an rssn-node backup (no manifest)")
            for m in members:
                if m.name != MANIFEST and m.name not in _MEMBERS:
                    raise BackupError(f"{source.name}: unexpected member {m.name!r}")
                if not m.isfile():
                    raise BackupError(f"{source.name}: member {m.name!r} is not a regular file")
                fh = tar.extractfile(m)
                if fh is None:
                    raise BackupError(f"{source.name}: member {m.name!r} unreadable")
                target = stage / m.name
                with fh, open(target, "wb") as outf:
                    shutil.copyfileobj(fh, outf)
                os.chmod(target, 0o600)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise BackupError(f"{source.name} is damaged or not an rssn-node backup "
                          f"({type(exc).__name__})") from None
    try:
        manifest = json.loads((stage / MANIFEST).read_text("utf-8"))
    except ValueError:
        raise BackupError(f"{source.name}: the manifest is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{source.name}: unknown backup format {manifest.get('format')!r}"
                          if isinstance(manifest, dict) else f"{source.name}: bad manifest")
    files = manifest.get("files") or {}
    db = manifest.get("database") or {}
    if set(files) != {CONFIG_FILE, KEYS_FILE, db.get("file")} or db.get("file") not in _MEMBERS:
        raise BackupError(f"{source.name}: the manifest does not list the expected files")
    for name, meta in files.items():
        path = stage / name
        if not path.is_file():
            raise BackupError(f"{source.name}: {name} is missing")
        if path.stat().st_size != meta.get("size") or _sha256(path) != meta.get("sha256"):
            raise BackupError(f"{source.name}: {name} does not match its checksum "
                              "(the backup is damaged)")
    return manifest


def _holds_node(settings: NodeSettings) -> bool:
    paths = [settings.config_path, settings.keys_path]
    if not _is_postgres(settings.database_url):
        paths.append(_sqlite_path(settings))
    return any(p.exists() for p in paths)


def restore_backup(settings: NodeSettings, source: Path, *, force: bool = False,
                   passphrase: str | None = None) -> dict[str, Any]:
    """Verify the archive, then write the database, the key file and node.json (last).

    Refuses to replace a data directory (or a PostgreSQL database) that already holds a
    node unless ``force``. When ``passphrase`` is given, checks that it opens the backed-up
    key file before anything is written.
    """
    from node.keystore import KeyStoreError, load_keys
    from node.settings import NodeConfig

    target_pg = _is_postgres(settings.database_url)
    if _holds_node(settings) and not force:
        raise BackupError(f"{settings.data_dir} already holds a node; restore into a new "
                          "--data-dir, or add --force to replace it")
    settings.data_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".rssn-node-restore-",
                                     dir=settings.data_dir.parent) as tmp:
        stage = Path(tmp)
        manifest = read_backup(source, stage)
        db = manifest["database"]
        _check_revision_known(db.get("schema_revision"))
        try:
            config = NodeConfig.from_json(json.loads((stage / CONFIG_FILE).read_text("utf-8")))
        except (ValueError, TypeError, KeyError):
            raise BackupError("node.json in the backup is unreadable") from None
        if config.node_id != manifest.get("node_id"):
            raise BackupError("node.json and the manifest name different nodes")
        if passphrase is not None:
            try:
                keys = load_keys(stage / KEYS_FILE, passphrase)
            except KeyStoreError as exc:
                raise BackupError(f"the passphrase does not open the backed-up keys ({exc}); "
                                  "set RSSN_NODE_PASSPHRASE to the passphrase of the node that "
                                  "was backed up") from None
            if keys.node_id != config.node_id:
                raise BackupError("the key file in the backup belongs to another node")
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(settings.data_dir, 0o700)
        if db["kind"] == "postgresql":
            if not target_pg:
                raise BackupError("this backup holds a PostgreSQL database: set RSSN_NODE_DB "
                                  "to an empty PostgreSQL database to restore it into")
            url = settings.database_url
            if _pg_has_tables(url) and not force:
                raise BackupError("the database in RSSN_NODE_DB is not empty; use an empty "
                                  "database, or add --force to replace its contents")
            env = _pg_env(url)
            _run_pg(["pg_restore", *(["--clean", "--if-exists"] if force else []),
                     "--no-owner", "--no-privileges", "--single-transaction",
                     "--exit-on-error", f"--dbname={env['PGDATABASE']}",
                     str(stage / PG_MEMBER)], env)
        else:
            if target_pg:
                raise BackupError("this backup holds a SQLite database but RSSN_NODE_DB names "
                                  "PostgreSQL: unset RSSN_NODE_DB to restore it")
            staged = stage / SQLITE_MEMBER
            con = sqlite3.connect(staged)
            try:
                ok = con.execute("PRAGMA integrity_check").fetchone()
            finally:
                con.close()
            if not ok or ok[0] != "ok":
                raise BackupError(f"the database in the backup fails its integrity check: {ok}")
            target = _sqlite_path(settings)
            target.parent.mkdir(parents=True, exist_ok=True)
            for suffix in ("-wal", "-shm"):
                Path(f"{target}{suffix}").unlink(missing_ok=True)
            placed = target.with_name(f".{target.name}.restoring")
            shutil.copyfile(staged, placed)
            os.chmod(placed, 0o600)
            with open(placed, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(placed, target)
        from common.secretstore import write_private_file

        write_private_file(settings.keys_path, (stage / KEYS_FILE).read_bytes())
        write_private_file(settings.config_path, (stage / CONFIG_FILE).read_bytes())
    return manifest
