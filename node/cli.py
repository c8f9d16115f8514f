"""rssn-node: the command a member organisation's IT team runs.

Why imports are inside commands: `rssn-node status` or `api-key create` should
answer in well under a second on a small office server; only `serve` needs the
web stack.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="rssn-node: a member organisation's node of the referral network.")
api_key_app = typer.Typer(no_args_is_help=True, help="API keys for the local API.")
webhook_app = typer.Typer(no_args_is_help=True, help="Webhooks for case systems.")
app.add_typer(api_key_app, name="api-key")
app.add_typer(webhook_app, name="webhook")
services_app = typer.Typer(no_args_is_help=True,
                           help="The organisation's services in the network directory (HSDS 3.0).")
app.add_typer(services_app, name="services")
peers_app = typer.Typer(no_args_is_help=True,
                        help="Key continuity: peers' signing keys as pinned by this node.")
app.add_typer(peers_app, name="peers")

DataDir = Annotated[Path, typer.Option("--data-dir", help="The node's data directory.")]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _settings(data_dir: Path, **kw: Any) -> Any:
    from node.settings import NodeSettings

    return NodeSettings(data_dir=data_dir, **kw)


def _logging(level: str = "WARNING") -> None:
    import os

    from common.logging import configure_logging

    configure_logging("node", level=os.environ.get("RSSN_LOG_LEVEL", level))
    import logging

    # One line per hub request is noise; the workers log what they did with ids and counts.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _migrated_engine(settings: Any) -> Any:
    from common.db import make_engine
    from node.runtime import migrate_db

    if not settings.config_path.exists():
        _fail(f"no enrolled node in {settings.data_dir} (run `rssn-node init`)")
    migrate_db(settings.database_url)
    return make_engine(settings.database_url)


@app.command()
def init(
    data_dir: DataDir,
    hub: Annotated[list[str], typer.Option(
        "--hub", help="Hub base URL, e.g. https://hub.example; repeat it (or separate with "
        "commas) for several hub processes: the node fails over between them")],
    node_id: Annotated[str, typer.Option("--node-id", help="This node's id (from the invite)")],
    token: Annotated[str, typer.Option("--token", help="One-time enrollment token")],
    expect_hub_fingerprint: Annotated[
        str | None, typer.Option(help="Refuse unless the hub key has this fingerprint")
    ] = None,
) -> None:
    """Create keys (sealed with RSSN_NODE_PASSPHRASE), enroll with the hub, pin its key."""
    _logging()
    from node.enrollment import EnrollmentError, enroll_node
    from node.keystore import KeyStoreError, get_passphrase

    settings = _settings(data_dir)
    if settings.config_path.exists() or settings.keys_path.exists():
        _fail(f"{settings.data_dir} already holds a node; use a new --data-dir")
    try:
        passphrase = get_passphrase(confirm=True)
        config = enroll_node(settings, hub_url=",".join(hub), node_id=node_id, token=token,
                             passphrase=passphrase,
                             expect_hub_fingerprint=expect_hub_fingerprint)
    except (KeyStoreError, EnrollmentError) as exc:
        _fail(str(exc))
    typer.echo(f"node {node_id} enrolled with {config.hub_url}")
    typer.echo(f"hub key pinned: {config.hub_fingerprint}")
    typer.echo(f"encryption key valid until {config.key_expires_at}")


@app.command()
def serve(
    data_dir: DataDir,
    host: Annotated[str, typer.Option(help="Listen address of the local API")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Listen port of the local API")] = 8100,
    log_level: Annotated[str, typer.Option(help="Log level")] = "INFO",
) -> None:
    """Run the local API with the background sender, receiver and webhook deliverer."""
    _logging(log_level)
    from node.keystore import KeyStoreError, get_passphrase
    from node.runtime import open_node
    from node.settings import NotInitialised

    settings = _settings(data_dir, host=host, port=port)
    try:
        node = open_node(settings, get_passphrase())
    except (KeyStoreError, NotInitialised) as exc:
        _fail(str(exc))
    import uvicorn

    from node.app import create_app

    uvicorn.run(create_app(settings, node=node), host=host, port=port, log_config=None,
                timeout_graceful_shutdown=5)


@app.command()
def status(data_dir: DataDir) -> None:
    """Hub reachable, last successful poll, outbox depth, oldest unsent message, key expiry."""
    _logging()
    from node.hub_client import HubClient
    from node.runtime import status_report
    from node.settings import NotInitialised

    settings = _settings(data_dir)
    try:
        config = settings.load_config()
    except NotInitialised as exc:
        _fail(str(exc))
    engine = _migrated_engine(settings)
    client = HubClient(config.hub_url, timeout=5.0)
    try:
        with engine.connect() as conn:
            report = status_report(conn, config, hub_ok=client.healthz())
    finally:
        client.close()
        engine.dispose()
    changed = report.pop("peer_keys_changed", [])
    width = max(len(k) for k in report)
    for key, value in report.items():
        typer.echo(f"{key.replace('_', ' '):<{width}}  {value if value is not None else '-'}")
    typer.echo(f"{'peer keys changed':<{width}}  {len(changed) or '-'}")
    for c in changed:
        typer.echo(f"  KEY CHANGED {c['node_id']}: trusted {c['trusted_fingerprint']}, directory "
                   f"now {c['new_fingerprint']} (since {c['changed_at']}); nothing is sent to "
                   "or accepted from it until confirmed: `rssn-node peers trust --data-dir DIR "
                   f"--node-id {c['node_id']} --fingerprint <FP confirmed with them>`")


# -- key continuity (node.peers) -----------------------------------------------------------


def _stored_directory(settings: Any, engine: Any) -> Any:
    """The newest directory this node verified (checked again with the pinned hub key)."""
    from node.runtime import DIRECTORY_KEY, _parse_directory
    from node.store.queries import get_kv
    from protocol import ProtocolError, b64u_decode

    config = settings.load_config()
    with engine.connect() as conn:
        raw = get_kv(conn, DIRECTORY_KEY)
    if raw is None:
        return None
    try:
        return _parse_directory(raw.encode("utf-8"), b64u_decode(config.hub_key, length=32))
    except ProtocolError as exc:
        _fail(f"the stored directory does not verify ({exc.code})")


@peers_app.command("list")
def peers_list(data_dir: DataDir) -> None:
    """Each peer's pinned signing-key fingerprint and whether the directory changed it."""
    _logging()
    from node.peers import load_pins
    from node.store.queries import iso
    from protocol import fingerprint

    settings = _settings(data_dir)
    engine = _migrated_engine(settings)
    try:
        directory = _stored_directory(settings, engine)
        with engine.connect() as conn:
            pins = load_pins(conn)
    finally:
        engine.dispose()
    entries = directory.entries if directory is not None else {}
    for nid in sorted(pins):
        p = pins[nid]
        e = entries.get(nid)
        shown = fingerprint(e.signing_key) if e is not None else "(not in directory)"
        if p.status == "changed":
            typer.echo(f"{nid}\tCHANGED\ttrusted {p.fingerprint}\tdirectory {shown}"
                       f"\tsince {iso(p.changed_at)}")
        else:
            typer.echo(f"{nid}\ttrusted\t{p.fingerprint}")


@peers_app.command("trust")
def peers_trust(
    data_dir: DataDir,
    node_id: Annotated[str, typer.Option("--node-id", help="The peer whose new key to trust")],
    fp: Annotated[str, typer.Option("--fingerprint", help="The new signing-key fingerprint, "
                                    "as confirmed with that organisation out of band")],
) -> None:
    """Trust a peer's new signing key (after confirming its fingerprint out of band)."""
    _logging()
    from node.peers import trust_peer

    settings = _settings(data_dir)
    engine = _migrated_engine(settings)
    try:
        directory = _stored_directory(settings, engine)
        with engine.begin() as conn:
            pin = trust_peer(conn, directory, node_id, fp)
    except (LookupError, ValueError) as exc:
        _fail(str(exc))
    finally:
        engine.dispose()
    typer.echo(f"{node_id}: signing key {pin.fingerprint} trusted")


# -- published services (HSDS 3.0, carried in the hub-signed directory) -------------------


def _hub_client(data_dir: Path) -> Any:
    """A hub client holding this node's signing key (for the Bearer token)."""
    from node.hub_client import HubClient
    from node.keystore import KeyStoreError, get_passphrase, load_keys
    from node.settings import NotInitialised

    settings = _settings(data_dir)
    try:
        config = settings.load_config()
        keys = load_keys(settings.keys_path, get_passphrase())
    except (KeyStoreError, NotInitialised) as exc:
        _fail(str(exc))
    return HubClient(config.hub_url, node_id=config.node_id, signing=keys.signing,
                     token_endpoint=config.token_endpoint)


def _hub_call_failed(exc: Any) -> NoReturn:
    """One clear message per way the hub can say no (codes and paths only, never values)."""
    from node.hub_client import HubRejected

    problem = exc.problem or {}
    if exc.code == "validation_error":
        lines = [f"the hub refused the services file (validation_error): "
                 f"{problem.get('detail') or 'not valid HSDS 3.0'}"]
        lines += [f"  {e}" for e in problem.get("errors", [])]
        _fail("\n".join(lines), 2)
    if exc.code == "too_large" or exc.status == 413:
        _fail("the services file is too large for the hub (limit 4 MiB)", 2)
    if exc.status in (400, 401, 403):
        _fail(f"the hub refused this node's credentials ({exc.code}); "
              "is the node revoked or its key replaced?")
    if isinstance(exc, HubRejected):
        _fail(f"the hub refused the request ({exc.code}, HTTP {exc.status})")
    _fail(f"hub unreachable ({exc.code}); nothing was changed, try again later")


@services_app.command("publish")
def services_publish(
    file: Annotated[Path, typer.Argument(help="HSDS 3.0 JSON: an organization with its "
                                              "services, or a list of services")],
    data_dir: DataDir,
) -> None:
    """Send the file to the hub (PUT /v1/services); it replaces what was published before and
    reaches every member in the next signed directory."""
    _logging()
    from node.hub_client import HubError

    try:
        raw = file.expanduser().read_bytes()
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror or exc}")
    try:
        json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        _fail(f"{file} is not UTF-8 text")
    except json.JSONDecodeError as exc:
        _fail(f"{file} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})", 2)
    client = _hub_client(data_dir)
    try:
        answer = client.put_services(raw)
    except HubError as exc:
        _hub_call_failed(exc)
    finally:
        client.close()
    typer.echo(f"published {answer.get('services')} service(s) for {answer.get('node_id')}: "
               + ("changed, directory version now " if answer.get("changed")
                  else "unchanged, directory version ")
               + str(answer.get("directory_version")))
    typer.echo(json.dumps(answer, indent=2, ensure_ascii=False))


@services_app.command("show")
def services_show(data_dir: DataDir) -> None:
    """Print what the hub holds for this node (GET /v1/services, normalised HSDS 3.0)."""
    _logging()
    from node.hub_client import HubError

    client = _hub_client(data_dir)
    try:
        answer = client.get_services()
    except HubError as exc:
        _hub_call_failed(exc)
    finally:
        client.close()
    typer.echo(json.dumps(answer, indent=2, ensure_ascii=False))


@api_key_app.command("create")
def api_key_create(
    data_dir: DataDir,
    name: Annotated[str, typer.Option("--name", help="Who uses this key (e.g. primero-sync)")],
) -> None:
    """Print a new API key as the last line of stdout (only its hash is stored)."""
    _logging()
    from node.api.deps import create_api_key

    engine = _migrated_engine(_settings(data_dir))
    try:
        key = create_api_key(engine, name)
    finally:
        engine.dispose()
    typer.echo(f"API key '{name}' created; it is shown only once:")
    typer.echo(key)


@api_key_app.command("list")
def api_key_list(data_dir: DataDir) -> None:
    """API keys by name (only a prefix of each key is stored in clear)."""
    _logging()
    import sqlalchemy as sa

    from node.store.queries import API_KEYS, iso

    engine = _migrated_engine(_settings(data_dir))
    try:
        with engine.connect() as conn:
            for r in conn.execute(sa.select(API_KEYS).order_by(API_KEYS.c.id)):
                state = "revoked" if r.revoked else "active"
                typer.echo(f"{r.name}\t{r.prefix}...\t{state}\t{iso(r.created_at)}")
    finally:
        engine.dispose()


@api_key_app.command("revoke")
def api_key_revoke(
    data_dir: DataDir,
    name: Annotated[str, typer.Option("--name", help="Revoke every key with this name")],
) -> None:
    """Revoke API keys by name (effective on the next request)."""
    _logging()
    import sqlalchemy as sa

    from node.store.queries import API_KEYS

    engine = _migrated_engine(_settings(data_dir))
    try:
        with engine.begin() as conn:
            n = conn.execute(sa.update(API_KEYS).where(API_KEYS.c.name == name)
                             .values(revoked=True)).rowcount
    finally:
        engine.dispose()
    if not n:
        _fail(f"no API key named {name!r}")
    typer.echo(f"revoked {n} key(s) named {name!r}")


@webhook_app.command("add")
def webhook_add(
    data_dir: DataDir,
    url: Annotated[str, typer.Option("--url", help="Where to POST events")],
    events: Annotated[str, typer.Option(
        "--events", help="Comma-separated: referral.received,referral.status,"
        "referral.consent_withdrawn")] = "referral.received,referral.status",
) -> None:
    """Register a webhook; prints its HMAC-SHA256 signing secret as the last line."""
    _logging()
    from node.webhooks import add_webhook

    engine = _migrated_engine(_settings(data_dir))
    try:
        wid, secret = add_webhook(engine, url, [e.strip() for e in events.split(",") if e.strip()])
    except ValueError as exc:
        _fail(str(exc))
    finally:
        engine.dispose()
    typer.echo(f"webhook {wid} added; verify X-RSSN-Signature with this secret:")
    typer.echo(secret)


@webhook_app.command("log")
def webhook_log(
    data_dir: DataDir,
    limit: Annotated[int, typer.Option(help="How many deliveries")] = 50,
) -> None:
    """The delivery log (newest first), one JSON object per line."""
    _logging()
    from node.webhooks import delivery_log

    engine = _migrated_engine(_settings(data_dir))
    try:
        for entry in delivery_log(engine, limit):
            typer.echo(json.dumps(entry))
    finally:
        engine.dispose()


# -- backup and restore (logic in node/backup.py) ----------------------------------------


@app.command()
def backup(
    data_dir: DataDir,
    out: Annotated[Path, typer.Option("--out", help="Archive to write (tar.gz)")],
) -> None:
    """One archive: a consistent online copy of the database (safe while `serve` runs), the
    sealed key file (still encrypted; the passphrase is not in it) and node.json, with a
    manifest of checksums and the schema revision."""
    _logging()
    from node.backup import BackupError, create_backup
    from node.settings import NotInitialised

    try:
        manifest = create_backup(_settings(data_dir), out)
    except (BackupError, NotInitialised) as exc:
        _fail(str(exc))
    db = manifest["database"]
    typer.echo(f"backup of node {manifest['node_id']} written to {out.expanduser().resolve()}")
    typer.echo(f"database {db['kind']} at schema revision {db['schema_revision']}; "
               "keys still sealed with the node passphrase (not in the backup)")


@app.command()
def restore(
    data_dir: DataDir,
    source: Annotated[Path, typer.Option("--from", help="Archive written by `rssn-node backup`")],
    force: Annotated[bool, typer.Option(
        "--force", help="Replace a data directory (or RSSN_NODE_DB database) holding a node")
    ] = False,
) -> None:
    """Verify an archive's checksums, then restore it into --data-dir (and RSSN_NODE_DB).

    When RSSN_NODE_PASSPHRASE is set (or a terminal can prompt) the passphrase is checked
    against the backed-up key file before anything is written."""
    _logging()
    from node.backup import BackupError, restore_backup
    from node.keystore import KeyStoreError, get_passphrase

    try:
        passphrase: str | None = get_passphrase()
    except KeyStoreError:
        passphrase = None
    try:
        manifest = restore_backup(_settings(data_dir), source, force=force, passphrase=passphrase)
    except BackupError as exc:
        _fail(str(exc))
    db = manifest["database"]
    typer.echo(f"restored node {manifest['node_id']} (backup of {manifest['created_at']}) "
               f"into {data_dir.expanduser().resolve()}")
    typer.echo(f"database {db['kind']} at schema revision {db['schema_revision']}"
               + ("" if passphrase is not None else "; passphrase not checked"))
    typer.echo("start `rssn-node serve`: it resends its outbox and fetches waiting mail; "
               "mail acknowledged after the backup time is not in the restored node")


# -- case-system adapters (logic in adapters/cli.py) -------------------------------------

sync_app = typer.Typer(no_args_is_help=True, help="Keep a case system in sync with the node.")
app.add_typer(sync_app, name="sync")
Opt = typer.Option


@app.command("adapters")
def adapters_list() -> None:
    """List the installed case-system adapters."""
    from adapters.cli import print_adapters

    raise typer.Exit(print_adapters())


@app.command("adapt")
def adapt(
    system: Annotated[str, typer.Argument(help="adapter name (see `rssn-node adapters`)")],
    input_path: Annotated[Path, Opt("--input", help="export, extract or payload file")],
    out: Annotated[Path, Opt("--out", help="referral documents, one JSON per line")],
    mapping: Annotated[Path | None, Opt("--mapping", help="instance mapping")] = None,
    report: Annotated[Path | None, Opt("--report", help="CSV of rejected records")] = None,
    legal_basis: Annotated[str | None, Opt("--legal-basis")] = None,
    attested_by: Annotated[str | None, Opt("--attested-by")] = None,
) -> None:
    """Convert case-system records to referral documents without sending them."""
    from adapters.cli import run_adapt

    raise typer.Exit(run_adapt(system, input_path, mapping, out, report, legal_basis,
                               attested_by))


def _open_for_tools(data_dir: Path) -> Any:
    from node.keystore import KeyStoreError, get_passphrase
    from node.runtime import open_node
    from node.settings import NotInitialised

    try:
        return open_node(_settings(data_dir), get_passphrase())
    except (KeyStoreError, NotInitialised) as exc:
        _fail(str(exc))


@app.command("import")
def import_records(
    system: Annotated[str, typer.Argument(help="adapter name (see `rssn-node adapters`)")],
    input_path: Annotated[Path, Opt("--input", help="export, extract or payload file")],
    to: Annotated[str, Opt("--to", help="recipient node id")],
    data_dir: DataDir,
    mapping: Annotated[Path | None, Opt("--mapping", help="instance mapping")] = None,
    report: Annotated[Path | None, Opt("--report", help="CSV of rejected records")] = None,
    legal_basis: Annotated[str | None, Opt("--legal-basis")] = None,
    attested_by: Annotated[str | None, Opt("--attested-by")] = None,
) -> None:
    """Convert records and queue them as referrals to --to (sent by `rssn-node serve`)."""
    _logging()
    from adapters.cli import run_import
    from node.integrations import send_referral_factory

    node = _open_for_tools(data_dir)
    try:
        code = run_import(system, input_path, send_referral_factory(node, to), mapping, report,
                          legal_basis, attested_by)
    finally:
        node.close()
    raise typer.Exit(code)


@sync_app.command("primero")
def sync_primero(
    data_dir: DataDir,
    url: Annotated[str, Opt("--url", help="Primero base URL")],
    to: Annotated[str, Opt("--to", help="recipient node id for outbound referrals")],
    user: Annotated[str | None, Opt("--user", help="Primero user")] = None,
    password_env: Annotated[str | None, Opt("--password-env",
                                            help="variable holding the password")] = None,
    token_env: Annotated[str | None, Opt("--token-env", help="variable holding a token")] = None,
    mapping: Annotated[Path | None, Opt("--mapping", help="instance mapping")] = None,
    interval: Annotated[float, Opt("--interval", help="seconds between rounds")] = 60.0,
    once: Annotated[bool, Opt("--once", help="one round, then exit")] = False,
) -> None:
    """Send Primero referrals through the node; write inbound referrals and decisions back."""
    _logging()
    import os
    import threading

    from adapters.cli import run_sync_primero
    from node.integrations import (
        ack_inbound_factory,
        poll_inbound_factory,
        send_referral_factory,
    )

    node = _open_for_tools(data_dir)
    stop = threading.Event()
    try:
        code = run_sync_primero(
            data_dir, url, send_referral_factory(node, to), poll_inbound_factory(node),
            ack_inbound_factory(node), mapping_path=mapping, username=user,
            password=os.environ.get(password_env) if password_env else None,
            token=os.environ.get(token_env) if token_env else None,
            interval=interval, stop=stop, once=once)
    except KeyboardInterrupt:
        stop.set()
        code = 0
    finally:
        node.close()
    raise typer.Exit(code)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
