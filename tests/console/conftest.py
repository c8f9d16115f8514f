"""Console fixtures: one real hub (`rssn-hub init/serve` subprocess) with real traffic.

Module-scoped: building the network (four enrolled members, referrals, statuses,
published services) takes a while on a loaded 2-core machine, and the tests only read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.console.scenario import Scenario, build
from tests.helpers.processes import ServiceProcess, free_port
from tests.hub.conftest import (
    RSSN_HUB,
    Hub,
    hub_env,
    run_cli,
    start_hub,  # noqa: F401 - fixture for function-scoped hubs
)


def start_module_hub(base: Path, name: str = "hub", **extra: str) -> Hub:
    env = hub_env(None, **extra)
    d = base / name
    run_cli(["init", "--data-dir", str(d)], env)
    port = free_port()
    proc = ServiceProcess(
        [RSSN_HUB, "serve", "--data-dir", str(d), "--port", str(port)],
        name=name,
        log_dir=base / "logs",
        env={**env, "RSSN_HUB_DB": None},
        health_url=f"http://127.0.0.1:{port}/readyz",
    )
    proc.start()
    return Hub(d, port, env, proc)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    saved = os.environ.pop("RSSN_HUB_DB", None)
    hub = start_module_hub(tmp_path_factory.mktemp("console"), RSSN_CONSOLE_MIN_CELL="3")
    try:
        yield build(hub)
    except BaseException:
        print(hub.proc.log_tail())
        raise
    finally:
        for c in hub.clients:
            c.close()
        hub.proc.cleanup()
        if saved is not None:
            os.environ["RSSN_HUB_DB"] = saved
