"""In-process nodes against the in-memory FakeHub (unit level; no processes, no timing)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from node.enrollment import enroll_node
from node.inbox import InboxProcessor
from node.outbox import OutboxSender
from node.runtime import Node, open_node
from node.settings import NodeSettings
from tests.node.fakehub import BASE, FakeHub

PASS = "correct horse battery staple"


@pytest.fixture
def hub() -> FakeHub:
    return FakeHub()


@pytest.fixture
def make_node(hub: FakeHub, tmp_path: Path) -> Iterator[Callable[..., Node]]:
    nodes: list[Node] = []

    def make(node_id: str, org: str = "Org", country: str = "MX", db_url: str | None = None
             ) -> Node:
        settings = NodeSettings(data_dir=tmp_path / node_id, db_url=db_url)
        token = hub.invite(node_id, org, country)
        enroll_node(settings, hub_url=BASE, node_id=node_id, token=token, passphrase=PASS,
                    transport=hub.transport())
        node = open_node(settings, PASS, transport=hub.transport())
        nodes.append(node)
        return node

    yield make
    for n in nodes:
        n.close()


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
