"""The node's local store: tables, queries and Alembic migrations."""
