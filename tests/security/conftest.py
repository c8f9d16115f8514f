"""Reliability tests record their figures into the session summary (tests/reliability_summary.py)."""

from __future__ import annotations

import pytest

from tests.reliability_summary import register, tally  # noqa: F401 - the fixture


def pytest_configure(config: pytest.Config) -> None:
    register(config)
