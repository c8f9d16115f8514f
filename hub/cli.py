"""rssn-hub: init, serve, invite, revoke, nodes.

Every command takes `--data-dir`; the database is `DIR/hub.db` (SQLite) unless
`RSSN_HUB_DB` holds a SQLAlchemy URL (PostgreSQL). The hub key's passphrase
comes from `RSSN_HUB_PASSPHRASE` or an interactive prompt.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from common.db import make_engine, run_migrations
from common.secretstore import SecretStoreError
from protocol import ProtocolError, fingerprint, signing_kid

from .console.cli import user_app
from .logs import setup_logging
from .settings import PASSPHRASE_ENV, HubSettings
from .store import MIGRATIONS_DIR
from .store import queries as q

app = typer.Typer(
    name="rssn-hub",
    help="The rssn hub: routes encrypted envelopes between member nodes.",
    no_args_is_help=True,
    add_completion=False,
)

DataDir = typer.Option(..., "--data-dir", help="Hub data directory (SQLite database lives here).")


def _settings(data_dir: Path, **overrides: object) -> HubSettings:
    s = HubSettings.from_env(data_dir, **overrides)
    s.data_dir.mkdir(parents=True, exist_ok=True)
    return s


def _passphrase(confirm: bool) -> str:
    value = os.environ.get(PASSPHRASE_ENV)
    if value:
        return value
    if not sys.stdin.isatty():
        typer.echo(f"error: set {PASSPHRASE_ENV} or run interactively", err=True)
        raise typer.Exit(2)
    value = typer.prompt("Hub key passphrase", hide_input=True, confirmation_prompt=confirm)
    if not value:
        typer.echo("error: empty passphrase", err=True)
        raise typer.Exit(2)
    return str(value)


def _migrate(s: HubSettings) -> None:
    run_migrations(s.db_url, MIGRATIONS_DIR)
    engine = make_engine(s.db_url)
    try:
        with engine.begin() as conn:
            q.ensure_state(conn)
    finally:
        engine.dispose()


def _migrate_and_say(s: HubSettings) -> None:
    """Migrate, and tell the operator in one line what happened to the schema (init runs at
    WARNING, so the JSON `database_upgraded` event alone would not be seen). On stderr, so
    stdout stays the key id and fingerprint that scripts read."""
    from common.db import current_revision, head_revision

    before, head = current_revision(s.db_url, MIGRATIONS_DIR), head_revision(MIGRATIONS_DIR)
    if before is not None and before != head:
        typer.echo(f"upgrading database schema from {before} to {head}", err=True)
    _migrate(s)
    after = current_revision(s.db_url, MIGRATIONS_DIR)
    if before is None:
        typer.echo(f"database schema created (revision {after})", err=True)
    elif before != after:
        typer.echo(f"database schema upgraded from {before} to {after}", err=True)
    else:
        typer.echo(f"database schema up to date (revision {after})", err=True)


@app.command()
def init(data_dir: Path = DataDir) -> None:
    """Create (or upgrade) the database and the hub key; print the key's fingerprint."""
    from .hubkey import create_or_get_public

    s = _settings(data_dir)
    setup_logging(level=os.environ.get("RSSN_HUB_LOG_LEVEL", "WARNING"))
    _migrate_and_say(s)
    engine = make_engine(s.db_url)
    try:
        public, created = create_or_get_public(engine, lambda: _passphrase(confirm=True))
    finally:
        engine.dispose()
    typer.echo(("created" if created else "existing") + f" hub key {signing_kid(public)}")
    typer.echo(f"fingerprint {fingerprint(public)}")


@app.command()
def serve(
    data_dir: Path = DataDir,
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8000, help="TCP port."),
    workers: int = typer.Option(1, min=1, help="uvicorn worker processes (share the database)."),
    access_log: bool = typer.Option(
        True, "--access-log/--no-access-log",
        help="One JSON line per request (method, route template, status; no query strings).",
    ),
) -> None:
    """Serve the API (uvicorn) with the expiry sweeper running in the background."""
    import uvicorn

    from .app import create_app
    from .hubkey import HubKeyMissing, load_hub_key

    s = _settings(data_dir)
    setup_logging(level=s.log_level)
    _migrate(s)
    passphrase = _passphrase(confirm=False)
    engine = make_engine(s.db_url)
    try:
        key = load_hub_key(engine, passphrase)
    except (HubKeyMissing, SecretStoreError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()
    if workers > 1:
        if s.db_url.startswith("sqlite"):
            typer.echo(
                "warning: several workers on one SQLite file contend for its write lock; "
                "use RSSN_HUB_DB=postgresql://... for more than one process", err=True,
            )
        # Workers re-create the app from the environment (they unseal the key themselves).
        os.environ["RSSN_HUB_DATA_DIR"] = str(s.data_dir)
        os.environ[PASSPHRASE_ENV] = passphrase
        uvicorn.run(
            "hub.app:app_from_env", factory=True, host=host, port=port, workers=workers,
            log_config=None, access_log=access_log,
        )
        return
    uvicorn.run(
        create_app(s, hub_key=key), host=host, port=port, log_config=None,
        access_log=access_log,
    )


@app.command()
def invite(
    data_dir: Path = DataDir,
    node_id: str = typer.Option(..., "--node-id", help="The node id the token is bound to."),
    org: str = typer.Option(..., "--org", help="Organisation name."),
    country: str = typer.Option(..., "--country", help="ISO 3166-1 alpha-2 country code."),
    days: int = typer.Option(7, "--days", min=1, max=30, help="Token lifetime in days."),
) -> None:
    """Print a one-time enrollment token (last line of output)."""
    from .enrollment import create_invite

    s = _settings(data_dir)
    setup_logging(level=os.environ.get("RSSN_HUB_LOG_LEVEL", "WARNING"))
    engine = make_engine(s.db_url)
    try:
        token, expires = create_invite(
            engine, node_id=node_id, organization=org, country=country, ttl_days=days
        )
    except (ValueError, ProtocolError) as exc:
        typer.echo(f"error: {getattr(exc, 'detail', exc)}", err=True)
        raise typer.Exit(2) from exc
    finally:
        engine.dispose()
    typer.echo(f"invite for {node_id} expires {expires.strftime('%Y-%m-%dT%H:%M:%SZ')}")
    typer.echo(token)


@app.command()
def revoke(
    data_dir: Path = DataDir,
    node_id: str = typer.Option(..., "--node-id", help="The node to revoke."),
) -> None:
    """Revoke a node immediately (its tokens stop working; it leaves the directory)."""
    from .enrollment import revoke as do_revoke

    s = _settings(data_dir)
    setup_logging(level=os.environ.get("RSSN_HUB_LOG_LEVEL", "WARNING"))
    engine = make_engine(s.db_url)
    try:
        with engine.begin() as conn:
            known = q.get_node(conn, node_id) is not None
        if not known:
            typer.echo(f"error: unknown node {node_id}", err=True)
            raise typer.Exit(1)
        changed = do_revoke(engine, node_id)
    finally:
        engine.dispose()
    typer.echo(f"revoked {node_id}" if changed else f"{node_id} was already revoked")


@app.command()
def backup(
    out: Annotated[Path, typer.Option("--out", help="Backup file to write (a .sha256 goes "
                                      "beside it).")],
    data_dir: Path = DataDir,
) -> None:
    """Back up the hub database while the hub runs: pg_dump (custom format) of RSSN_HUB_DB, or
    SQLite's online backup. The hub key inside stays sealed with the passphrase."""
    from common.db import current_revision

    from .backup import BackupError, dump_database

    s = _settings(data_dir)
    setup_logging(level=os.environ.get("RSSN_HUB_LOG_LEVEL", "WARNING"))
    try:
        revision = current_revision(s.db_url, MIGRATIONS_DIR)
        kind = dump_database(s.db_url, out)
    except BackupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"hub database ({kind}, schema revision {revision}) written to "
               f"{out.expanduser().resolve()} (+ .sha256)")


def _database_holds_data(url: str) -> bool:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from common.db import normalize_url

    u = make_url(normalize_url(url))
    if u.get_backend_name() == "sqlite":
        return bool(u.database) and Path(str(u.database)).exists()
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return bool(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()


@app.command()
def restore(
    source: Annotated[Path, typer.Option("--from", help="File written by `rssn-hub backup` (or "
                                         "deploy/scripts/hub_db_backup.py).")],
    data_dir: Path = DataDir,
    force: bool = typer.Option(False, "--force",
                               help="Replace a database that already holds a hub."),
) -> None:
    """Restore a backup into --data-dir's SQLite file or RSSN_HUB_DB (stop every hub process
    first). Refuses a database that is not empty unless --force."""
    from common.db import current_revision

    from .backup import BackupError, restore_database

    s = _settings(data_dir)
    setup_logging(level=os.environ.get("RSSN_HUB_LOG_LEVEL", "WARNING"))
    try:
        if _database_holds_data(s.db_url) and not force:
            raise BackupError("the hub database already holds data; restore into an empty "
                              "database (or a new --data-dir), or stop every hub process and "
                              "add --force to replace it")
        _kind, checked = restore_database(s.db_url, source, clean=force)
        revision = current_revision(s.db_url, MIGRATIONS_DIR)
    except BackupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if not checked:
        typer.echo(f"note: no {source.name}.sha256 beside the file; checksum not verified",
                   err=True)
    typer.echo(f"restored {source.name} (schema revision {revision}); start `rssn-hub serve`: "
               "it upgrades the schema if needed and logs hub_started with the key id")


def _fmt(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t else "-"


@app.command()
def nodes(
    data_dir: Path = DataDir,
    json_out: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """List nodes with status, last contact, software version and mailbox health."""
    import orjson

    s = _settings(data_dir)
    setup_logging(level=os.environ.get("RSSN_HUB_LOG_LEVEL", "WARNING"))
    engine = make_engine(s.db_url)
    try:
        with engine.begin() as conn:
            rows = q.list_nodes(conn)
    finally:
        engine.dispose()
    now = datetime.now(UTC)
    for r in rows:
        if r["status"] != "active":
            health = "revoked"
        elif r["last_seen"] is None:
            health = "never-seen"
        elif (now - r["last_seen"]).total_seconds() > 3600:
            health = "offline"
        else:
            health = "ok"
        if r["oldest_waiting"] is not None and (now - r["oldest_waiting"]).days >= 1:
            health += ",backlog"
        r["health"] = health
    if json_out:
        for r in rows:
            typer.echo(orjson.dumps(r, default=str).decode())
        return
    header = f"{'NODE':<24} {'COUNTRY':<7} {'STATUS':<8} {'HEALTH':<18} {'LAST SEEN':<20} " \
             f"{'VERSION':<10} {'MAILBOX':>7} {'OLDEST':<20} ORGANISATION"
    typer.echo(header)
    for r in rows:
        typer.echo(
            f"{r['node_id']:<24} {r['country']:<7} {r['status']:<8} {r['health']:<18} "
            f"{_fmt(r['last_seen']):<20} {(r['software_version'] or '-'):<10} "
            f"{r['mailbox_depth']:>7} {_fmt(r['oldest_waiting']):<20} {r['organization']}"
        )


app.add_typer(user_app, name="user")  # `rssn-hub user add ...` (console accounts, issue 6)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
