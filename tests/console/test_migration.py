"""The console's alembic revision creates exactly the tables its models declare."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import hub.console.models  # noqa: F401 - registers the console tables on the hub's metadata
from common.db import head_revision, make_engine, run_migrations
from hub.store import MIGRATIONS_DIR
from hub.store.models import metadata


def test_models_match_migrations(db_url: str) -> None:
    run_migrations(db_url, MIGRATIONS_DIR)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": False})
            diff = [d for d in compare_metadata(ctx, metadata)
                    if "console" in repr(d) or "published_services" in repr(d)]
    finally:
        engine.dispose()
    assert diff == []
    assert head_revision(MIGRATIONS_DIR) is not None  # a single head (raises on several)
