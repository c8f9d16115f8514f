from common.db import run_alembic_env
from node.store.models import metadata

run_alembic_env(metadata)
