"""Alembic environment for the hub (run programmatically by common.db.run_migrations)."""

from common.db import run_alembic_env
from hub.store.models import metadata

run_alembic_env(metadata)
