"""Plumbing shared by hub and node: logging, problem+json, databases, keys at rest, metrics, ids.

Import the submodules directly (``from common.db import make_engine``); this
package deliberately re-exports nothing so that importing one helper does not
pull in FastAPI, SQLAlchemy and PyNaCl at once.
"""
