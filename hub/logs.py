"""Logging setup for hub processes.

Why more than common.logging.configure_logging: SQLAlchemy's engine logger
prints every statement *with its bound parameters* at INFO, and those
parameters include envelope bytes. The hub's logs must contain ids and codes
only, so SQLAlchemy is held at WARNING whatever the hub's level is.
"""

from __future__ import annotations

import logging

from common.logging import configure_logging

__all__ = ["setup_logging"]


def setup_logging(level: str = "INFO") -> None:
    configure_logging("hub", level=level)
    for name in ("sqlalchemy", "sqlalchemy.engine", "sqlalchemy.pool"):
        logging.getLogger(name).setLevel(logging.WARNING)
