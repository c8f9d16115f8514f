"""Two `rssn-hub serve` processes on one PostgreSQL database.

Requirement: no double delivery while a lease runs when both processes serve the same
mailbox, acknowledged items never come back, a long-poll on one process wakes for mail
stored by the other, and two expiry sweepers notify a sender once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from tests.helpers.processes import wait_until
from tests.hub.client import NodeClient
from tests.hub.conftest import Hub, StartHub

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


def _twin(hub: Hub, c: NodeClient) -> NodeClient:
    """The same node talking to another hub process (same keys, its own token endpoint)."""
    t = NodeClient(hub.url, c.node_id, signing=c.signing, enc=c.enc, binding=c.binding,
                   hub_key=c.hub_key, token_endpoint=hub.url + "/v1/oauth/token",
                   directory=c.directory)
    hub.clients.append(t)
    t.login()
    return t


@pytest.fixture
def two_hubs(start_hub: StartHub, pg_url_factory: Callable[[], str]) -> tuple[Hub, Hub]:
    url = pg_url_factory()
    h1 = start_hub("hub1", db_url=url, RSSN_HUB_LEASE_SECONDS="120")
    h2 = start_hub("hub2", db_url=url, RSSN_HUB_LEASE_SECONDS="120")
    return h1, h2


def test_two_processes_never_hand_out_one_item_twice(two_hubs: tuple[Hub, Hub]) -> None:
    h1, h2 = two_hubs
    a = h1.enrolled("org-a")
    b1 = h1.enrolled("org-b")
    b2 = _twin(h2, b1)
    envs = [a.seal_to("org-b") for _ in range(240)]
    for i in range(0, 240, 80):
        res = a.submit_batch(envs[i:i + 80]).json()["results"]
        assert {r["status"] for r in res} == {"accepted"}
    got: list[list[str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def poller(c: NodeClient) -> None:
        mine: list[str] = []
        try:
            while True:
                r = c.pull(limit=9)
                assert r.status_code == 200, r.text
                items = r.json()["items"]
                if not items:
                    break
                mine.extend(i["id"] for i in items)
        except BaseException as exc:
            errors.append(exc)
        with lock:
            got.append(mine)

    threads = [threading.Thread(target=poller, args=(c,)) for c in (b1, b2, b1, b2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors
    everything = [x for g in got for x in g]
    assert len(everything) == len(set(everything)) == 240
    assert set(everything) == {e.header.id for e in envs}
    assert sum(1 for g in got if g) >= 2  # both processes served
    # Ack through both processes; nothing ever comes back.
    assert b1.ack(everything[:120]).json() == {"acked": 120}
    assert b2.ack(everything[120:]).json() == {"acked": 120}
    assert b2.ack(everything[:5]).json() == {"acked": 0}
    assert b1.items() == [] and b2.items() == []


def test_long_poll_on_one_process_wakes_for_mail_stored_by_the_other(
    two_hubs: tuple[Hub, Hub],
) -> None:
    h1, h2 = two_hubs
    a = h1.enrolled("org-a")
    b = _twin(h2, h1.enrolled("org-b"))
    env = a.seal_to("org-b")
    out: dict[str, Any] = {}
    t = threading.Thread(target=lambda: out.setdefault("items", b.items(wait=30)))
    t.start()
    time.sleep(0.5)  # let the poll start waiting (if it has not, it finds the item at once)
    assert a.submit(env).status_code == 202
    t.join(timeout=120)
    # The 30 s poll on hub2 returned the item stored through hub1 (no in-process event there).
    assert [i["id"] for i in out["items"]] == [env.header.id]


def test_two_sweepers_notify_the_sender_once(two_hubs: tuple[Hub, Hub]) -> None:
    h1, h2 = two_hubs
    a = h1.enrolled("org-a")
    h1.enrolled("org-b")
    a2 = _twin(h2, a)
    envs = [a.seal_to("org-b", ttl=timedelta(seconds=2)) for _ in range(20)]
    assert {r["status"] for r in a.submit_batch(envs).json()["results"]} == {"accepted"}

    def notices() -> list[dict[str, Any]]:
        return [i for i in a2.items(limit=500) if i["type"] == "notice"]

    collected: dict[str, dict[str, Any]] = {}

    def all_in() -> bool:
        for item in notices():
            collected.setdefault(item["id"], item)
        return len({a.verify_notice(i)["message_id"] for i in collected.values()}) == 20

    wait_until(all_in, timeout=120, message="20 expiry notices")
    ids = [a.verify_notice(i)["message_id"] for i in collected.values()]
    assert sorted(ids) == sorted(e.header.id for e in envs)  # one notice per envelope
    assert a2.ack(list(collected)).json() == {"acked": 20}


def test_serve_with_two_workers(start_hub: StartHub, pg_url_factory: Callable[[], str]) -> None:
    """`rssn-hub serve --workers 2`: uvicorn workers rebuild the app from the environment."""
    hub = start_hub(db_url=pg_url_factory(), serve_args=("--workers", "2"))
    a = hub.enrolled("org-a")
    b = hub.enrolled("org-b")
    envs = [a.seal_to("org-b") for _ in range(20)]
    for e in envs:
        assert a.submit(e).status_code == 202
    seen: list[str] = []
    while len(seen) < 20:
        items = b.items(wait=10)
        assert items, "mail went missing"
        seen += [i["id"] for i in items]
        b.ack([i["id"] for i in items])
    assert sorted(seen) == sorted(e.header.id for e in envs)
    starts = [x for x in hub.proc.json_logs() if x.get("event") == "hub_started"]
    assert len({x["pid"] for x in starts}) == 2
