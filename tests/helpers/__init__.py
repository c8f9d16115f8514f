"""Test helpers shared by every test directory (see tests/conftest.py for the fixtures)."""

from tests.helpers.processes import (
    ServiceProcess,
    base_env,
    free_port,
    python_cmd,
    wait_until,
)

__all__ = ["ServiceProcess", "base_env", "free_port", "python_cmd", "wait_until"]
