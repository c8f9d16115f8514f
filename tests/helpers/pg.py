"""Throwaway PostgreSQL databases for tests.

Why fresh databases: tests must not depend on each other's leftovers, and the
machine's PostgreSQL may be shared with other test runs. Every database is
named ``rssn_test_<random>`` and dropped ``WITH (FORCE)`` afterwards, so a
service process still connected (e.g. after a SIGKILL test) cannot keep it alive.

The admin connection defaults to ``127.0.0.1:5432`` user ``postgres`` (trust
auth); ``RSSN_TEST_PG_ADMIN`` (a libpq conninfo string) overrides it.
"""

from __future__ import annotations

import os
import secrets
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

__all__ = [
    "ADMIN_CONNINFO",
    "create_database",
    "database_url",
    "drop_database",
    "pg_unreachable_reason",
]

ADMIN_CONNINFO = os.environ.get(
    "RSSN_TEST_PG_ADMIN",
    "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5",
)


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(ADMIN_CONNINFO, autocommit=True)


def pg_unreachable_reason() -> str | None:
    """``None`` when PostgreSQL answers, else a one-line reason."""
    try:
        with _admin() as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
    return None


def database_url(name: str) -> str:
    """SQLAlchemy URL (psycopg 3 driver) for database ``name`` on the admin server."""
    info = conninfo_to_dict(ADMIN_CONNINFO)
    host = str(info.get("host", "127.0.0.1"))
    port = str(info.get("port", "5432"))
    user = quote(str(info.get("user", "postgres")), safe="")
    password = info.get("password")
    auth = f"{user}:{quote(str(password), safe='')}" if password else user
    return f"postgresql+psycopg://{auth}@{host}:{port}/{name}"


def create_database(prefix: str = "rssn_test") -> tuple[str, str]:
    """Create a fresh empty database; returns ``(name, sqlalchemy_url)``."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    with _admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name, database_url(name)


def drop_database(name: str) -> None:
    """Drop a database even if sessions are still connected to it."""
    with _admin() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
