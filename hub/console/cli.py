"""`rssn-hub user ...`: coordinator accounts for the console.

    rssn-hub user add --data-dir DIR --email E --role regional|country|auditor [--country CC]
                      [--language en|es] [--no-password]
    rssn-hub user list --data-dir DIR
    rssn-hub user disable --data-dir DIR --email E
    rssn-hub user password --data-dir DIR --email E

The password comes from `RSSN_CONSOLE_PASSWORD`, or a hidden prompt (twice); it is
stored as an Argon2id hash only. `--no-password` makes an account that can only sign
in through the organisation's identity provider (OpenID Connect).
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import sqlalchemy as sa
import typer

from common.db import make_engine, run_migrations
from hub.settings import HubSettings
from hub.store import MIGRATIONS_DIR

from .models import LANGUAGES, ROLES
from .passwords import MIN_PASSWORD_LENGTH, hash_password
from .web import now_ms, sessions_t, users_t

__all__ = ["user_app"]

user_app = typer.Typer(name="user", help="Coordinator accounts of the console.",
                       no_args_is_help=True, add_completion=False)
PASSWORD_ENV = "RSSN_CONSOLE_PASSWORD"  # noqa: S105 - a variable name
DataDir = typer.Option(..., "--data-dir", help="Hub data directory.")
Email = typer.Option(..., "--email", help="Sign-in email (case-insensitive).")


def _engine(data_dir: Path) -> sa.Engine:
    from hub.logs import setup_logging

    setup_logging(level=os.environ.get("RSSN_HUB_LOG_LEVEL", "WARNING"))
    s = HubSettings.from_env(data_dir)
    s.data_dir.mkdir(parents=True, exist_ok=True)
    run_migrations(s.db_url, MIGRATIONS_DIR)
    return make_engine(s.db_url)


def _password() -> str:
    value = os.environ.get(PASSWORD_ENV)
    if value is None:
        if not sys.stdin.isatty():
            typer.echo(f"error: set {PASSWORD_ENV} or run interactively", err=True)
            raise typer.Exit(2)
        value = str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    if len(value) < MIN_PASSWORD_LENGTH:
        typer.echo(f"error: password must have at least {MIN_PASSWORD_LENGTH} characters",
                   err=True)
        raise typer.Exit(2)
    return value


@user_app.command("add")
def add(
    data_dir: Path = DataDir,
    email: str = Email,
    role: str = typer.Option(..., "--role", help="regional | country | auditor"),
    country: str | None = typer.Option(None, "--country", help="ISO 3166-1 alpha-2 (country role)"),
    language: str = typer.Option("en", "--language", help="en | es"),
    no_password: bool = typer.Option(False, "--no-password",
                                     help="Sign in only through OpenID Connect."),
) -> None:
    """Create a coordinator account."""
    from protocol import vocab

    email = email.strip().lower()
    if "@" not in email or len(email) > 254:
        typer.echo("error: not an email address", err=True)
        raise typer.Exit(2)
    if role not in ROLES:
        typer.echo(f"error: --role must be one of {', '.join(ROLES)}", err=True)
        raise typer.Exit(2)
    cc = country.strip().upper() if country else None
    if role == "country" and not cc:
        typer.echo("error: a country focal point needs --country", err=True)
        raise typer.Exit(2)
    if role != "country" and cc:
        typer.echo("error: --country is only for --role country", err=True)
        raise typer.Exit(2)
    if cc and cc not in vocab.countries():
        typer.echo("error: --country must be an ISO 3166-1 alpha-2 code", err=True)
        raise typer.Exit(2)
    if language not in LANGUAGES:
        typer.echo("error: --language must be en or es", err=True)
        raise typer.Exit(2)
    pw_hash = None if no_password else hash_password(_password())
    engine = _engine(data_dir)
    try:
        with engine.begin() as conn:
            exists = conn.execute(
                sa.select(users_t.c.user_id).where(users_t.c.email == email)
            ).first()
            if exists is not None:
                typer.echo("error: an account with this email exists", err=True)
                raise typer.Exit(1)
            conn.execute(
                sa.insert(users_t).values(
                    user_id=str(uuid.uuid4()), email=email, role=role, country=cc,
                    password_hash=pw_hash, language=language, disabled=False,
                    failed_logins=0, locked_until_ms=0, created_at_ms=now_ms(),
                )
            )
    finally:
        engine.dispose()
    typer.echo(f"added {role} {email}" + (f" ({cc})" if cc else ""))


@user_app.command("list")
def list_users(data_dir: Path = DataDir) -> None:
    """Accounts with role, country and state."""
    engine = _engine(data_dir)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(users_t).order_by(users_t.c.email)).all()
    finally:
        engine.dispose()
    for r in rows:
        flags = "disabled" if r.disabled else "active"
        auth = "password" if r.password_hash else "oidc"
        typer.echo(f"{r.email}\t{r.role}\t{r.country or '-'}\t{r.language}\t{auth}\t{flags}")


@user_app.command("disable")
def disable(data_dir: Path = DataDir, email: str = Email) -> None:
    """Disable an account and end its sessions at once."""
    engine = _engine(data_dir)
    try:
        with engine.begin() as conn:
            row = conn.execute(
                sa.select(users_t.c.user_id).where(users_t.c.email == email.strip().lower())
            ).first()
            if row is None:
                typer.echo("error: no such account", err=True)
                raise typer.Exit(1)
            conn.execute(users_t.update().where(users_t.c.user_id == row.user_id)
                         .values(disabled=True))
            conn.execute(sessions_t.delete().where(sessions_t.c.user_id == row.user_id))
    finally:
        engine.dispose()
    typer.echo(f"disabled {email.strip().lower()}")


@user_app.command("password")
def password(data_dir: Path = DataDir, email: str = Email) -> None:
    """Set a new password (ends the account's sessions)."""
    pw_hash = hash_password(_password())
    engine = _engine(data_dir)
    try:
        with engine.begin() as conn:
            row = conn.execute(
                sa.select(users_t.c.user_id).where(users_t.c.email == email.strip().lower())
            ).first()
            if row is None:
                typer.echo("error: no such account", err=True)
                raise typer.Exit(1)
            conn.execute(users_t.update().where(users_t.c.user_id == row.user_id)
                         .values(password_hash=pw_hash, failed_logins=0, locked_until_ms=0))
            conn.execute(sessions_t.delete().where(sessions_t.c.user_id == row.user_id))
    finally:
        engine.dispose()
    typer.echo(f"password set for {email.strip().lower()}")
