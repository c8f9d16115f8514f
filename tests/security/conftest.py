"""Security tests: confidentiality (canaries, keys at rest) and the authorization matrix.

They record their figures into the session summary (tests/reliability_summary.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fault.harness import Network
from tests.helpers.processes import ServiceProcess
from tests.reliability_summary import register, tally  # noqa: F401 - the fixture


def pytest_configure(config: pytest.Config) -> None:
    register(config)


@pytest.fixture
def network(tmp_path: Path, spawn_service: Callable[..., ServiceProcess]) -> Iterator[Network]:
    """An empty network (no hub yet); processes stop when the test ends."""
    net = Network(tmp_path, spawn_service)
    try:
        yield net
    finally:
        net.close()
