"""In-process nodes against a real `rssn-hub` process (one per session, fresh node ids per test).

The node runs in the test process so a test can drive its sender and receiver step by
step (`pump`) and look into its database; everything between node and hub is real HTTP
to a real hub on a loopback port, with the hub's real SQLite ledger.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from node.enrollment import enroll_node
from node.inbox import InboxProcessor
from node.outbox import OutboxSender
from node.runtime import Node, open_node
from node.settings import NodeSettings
from tests.hub.client import NodeClient
from tests.node.realhub import RealHub, TcpProxy

PASS = "correct horse battery staple"

_ids = itertools.count(1)


def unique_id(base: str) -> str:
    """A node id no other test of this session uses (the hub is shared)."""
    return f"{base}-{next(_ids)}"


@pytest.fixture(scope="session")
def real_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealHub]:
    hub = RealHub.start(tmp_path_factory.mktemp("node-tests-hub"))
    try:
        yield hub
    finally:
        hub.close()


@pytest.fixture
def hub(real_hub: RealHub, request: pytest.FixtureRequest) -> Iterator[RealHub]:
    """The session's hub; restarted if a test stopped it; its log tail shown on failure."""
    if not real_hub.proc.running:
        real_hub.proc.start()
    yield real_hub
    if not real_hub.proc.running:
        real_hub.proc.start()
    if any(getattr(getattr(request.node, f"rep_{w}", None), "failed", False)
           for w in ("setup", "call")):
        sys.stderr.write(real_hub.proc.log_tail() + "\n")


@pytest.fixture(scope="session")
def _session_proxy(real_hub: RealHub) -> Iterator[TcpProxy]:
    p = TcpProxy(real_hub.port)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def proxy(_session_proxy: TcpProxy, hub: RealHub) -> Iterator[TcpProxy]:
    """A real TCP proxy in front of the hub (enrol a node with `via_proxy=True` to use it)."""
    _session_proxy.up()
    yield _session_proxy
    _session_proxy.up()


@pytest.fixture
def make_node(hub: RealHub, tmp_path: Path, request: pytest.FixtureRequest
              ) -> Iterator[Callable[..., Node]]:
    """make_node(base, org, country, db_url=None, via_proxy=False, transport=None) -> Node.

    The node id is `base` plus a session-unique suffix (see `Node.node_id`).
    """
    nodes: list[Node] = []

    def make(base: str, org: str = "Org", country: str = "MX", db_url: str | None = None,
             *, via_proxy: bool = False, transport: httpx.BaseTransport | None = None) -> Node:
        node_id = unique_id(base)
        hub_url = request.getfixturevalue("proxy").url if via_proxy else hub.url
        settings = NodeSettings(data_dir=tmp_path / node_id, db_url=db_url)
        enroll_node(settings, hub_url=hub_url, node_id=node_id,
                    token=hub.invite(node_id, org, country), passphrase=PASS)
        node = open_node(settings, PASS, transport=transport)
        nodes.append(node)
        return node

    yield make
    for n in nodes:
        n.close()


@pytest.fixture
def make_member(hub: RealHub) -> Iterator[Callable[..., NodeClient]]:
    """A bare enrolled member built from protocol/ only (tests/hub/client.py): it seals
    whatever a test needs and submits it to the hub like any node."""
    clients: list[NodeClient] = []

    def make(base: str, org: str = "Other Org", country: str = "HN") -> NodeClient:
        node_id = unique_id(base)
        c = NodeClient(hub.url, node_id)
        clients.append(c)
        r = c.enroll(hub.invite(node_id, org, country))
        assert r.status_code == 201, r.text
        c.login()
        return c

    yield make
    for c in clients:
        c.close()


def pump(*nodes: Node, rounds: int = 6) -> None:
    """Deliver everything: each node sends its outbox and processes its mailbox, repeatedly."""
    for _ in range(rounds):
        for n in nodes:
            s = OutboxSender(n)
            rows = s.pending()
            if rows:
                s.send_once(rows)
        for n in nodes:
            items = n.client.mailbox(wait=0, limit=500)
            if items:
                result = InboxProcessor(n).process(items)
                n.client.ack(result.ack)


def fetch(node: Node, wait: int = 0) -> list[dict[str, Any]]:
    return node.client.mailbox(wait=wait, limit=500)
