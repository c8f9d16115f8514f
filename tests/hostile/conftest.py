"""Hostile-input tests: a real hub (and a real node) per module, attacked over real HTTP.

Module-scoped on purpose: hypothesis feeds thousands of inputs to one running service, and
the point is that the service stays correct through all of them (no restart in between).
They record every distinct input into the session summary (tests/reliability_summary.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fault.harness import Network, NodeProc
from tests.helpers.processes import ServiceProcess, free_port
from tests.hub.client import NodeClient
from tests.hub.conftest import RSSN_HUB, Hub, hub_env, run_cli
from tests.reliability_summary import register, tally  # noqa: F401 - the fixture


def pytest_configure(config: pytest.Config) -> None:
    register(config)


@dataclass
class HubWorld:
    """A running hub with three enrolled members (protocol-level clients) and a revoked one."""

    hub: Hub
    sender: NodeClient
    recipient: NodeClient
    third: NodeClient
    revoked: NodeClient
    revoked_token: str


def _module_hub(base: Path) -> Hub:
    env = hub_env(None)
    d = base / "hub"
    run_cli(["init", "--data-dir", str(d)], env)
    port = free_port()
    proc = ServiceProcess(
        [RSSN_HUB, "serve", "--data-dir", str(d), "--port", str(port)],
        name="hub", log_dir=base / "logs", env={**env, "RSSN_HUB_DB": None},
        health_url=f"http://127.0.0.1:{port}/readyz",
    )
    proc.start()
    return Hub(d, port, env, proc)


@pytest.fixture(scope="module")
def hub_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubWorld]:
    saved = os.environ.pop("RSSN_HUB_DB", None)
    hub = _module_hub(tmp_path_factory.mktemp("hostile-hub"))
    try:
        sender = hub.enrolled("mx-sender", "Casa Refugio", "MX")
        recipient = hub.enrolled("gt-recipient", "Asistencia Legal", "GT")
        third = hub.enrolled("cr-third", "HIAS", "CR")
        revoked = hub.enrolled("pa-revoked", "Former Member", "PA")
        for c in (sender, recipient, third, revoked):
            c.refresh_directory()
        revoked_token = revoked.login()
        hub.revoke("pa-revoked")
        yield HubWorld(hub, sender, recipient, third, revoked, revoked_token)
    except BaseException:
        print(hub.proc.log_tail())
        raise
    finally:
        for c in hub.clients:
            c.close()
        hub.proc.cleanup()
        if saved is not None:
            os.environ["RSSN_HUB_DB"] = saved


@dataclass
class NodeWorld:
    """A running hub and two running nodes (the local API is what is attacked)."""

    net: Network
    a: NodeProc
    b: NodeProc


@pytest.fixture(scope="module")
def node_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeWorld]:
    base = tmp_path_factory.mktemp("hostile-node")
    started: list[ServiceProcess] = []

    def spawn(args: Any, *, name: str, health_url: str | None = None, env: Any = None,
              start: bool = True, **_: Any) -> ServiceProcess:
        proc = ServiceProcess(args, name=name, log_dir=base / "logs", env=env,
                              health_url=health_url)
        started.append(proc)
        if start:
            proc.start()
        return proc

    saved = {k: os.environ.pop(k, None) for k in ("RSSN_HUB_DB", "RSSN_NODE_DB")}
    net = Network(base, spawn)
    try:
        net.start_hub()
        a = net.add_node("mx-shelter", "Casa Refugio", "MX")
        b = net.add_node("gt-legal", "Asistencia Legal", "GT")
        a.knows(b.node_id)
        b.knows(a.node_id)
        yield NodeWorld(net, a, b)
    except BaseException:
        for p in started:
            print(p.log_tail())
        raise
    finally:
        net.close()
        for p in reversed(started):
            p.cleanup()
        for k, v in saved.items():
            if v is not None:
                os.environ[k] = v


@pytest.fixture
def network(tmp_path: Path, spawn_service: Any) -> Iterator[Network]:
    """An empty network (no hub yet); processes stop when the test ends."""
    net = Network(tmp_path, spawn_service)
    try:
        yield net
    finally:
        net.close()
