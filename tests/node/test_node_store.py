"""Migrations match the models, on SQLite and PostgreSQL; the lifecycle runs on PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from common.db import make_engine
from node.runtime import migrate_db
from node.samples import sample_referral
from node.store.models import metadata
from tests.node.conftest import pump


def test_migrations_match_models(db_url: str):
    migrate_db(db_url)
    migrate_db(db_url)  # idempotent
    engine = make_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    finally:
        engine.dispose()


def test_lifecycle_with_postgresql_recipient(make_node, pg_url_factory):
    a = make_node("shelter-mx")
    b = make_node("legal-gt", db_url=pg_url_factory())
    assert b.engine.dialect.name == "postgresql"
    rid = a.create_referral(b.node_id, sample_referral(0))["id"]
    pump(a, b)
    b.change_status(rid, "declined", note="out of area", reason_code="out_of_area")
    pump(a, b)
    assert a.referral_summary(rid)["status"] == "declined"
    assert [h["event"] for h in b.referral_detail(rid)["history"]] == [
        "requested", "received", "declined"]
