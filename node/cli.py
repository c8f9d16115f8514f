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
    hub: Annotated[str, typer.Option("--hub", help="Hub base URL, e.g. https://hub.example")],
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
        config = enroll_node(settings, hub_url=hub, node_id=node_id, token=token,
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
    width = max(len(k) for k in report)
    for key, value in report.items():
        typer.echo(f"{key.replace('_', ' '):<{width}}  {value if value is not None else '-'}")


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


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
