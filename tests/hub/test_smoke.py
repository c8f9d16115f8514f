from __future__ import annotations

import pytest

from tests.hub.conftest import Hub

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


def test_smoke(hub: Hub) -> None:
    a = hub.enrolled("org-a")
    b = hub.enrolled("org-b")
    env = a.seal_to("org-b")
    r = a.submit(env)
    assert r.status_code == 202, r.text
    a.verify_receipt(env, r.json()["receipt"])
    items = b.items(wait=5)
    assert [i["id"] for i in items] == [env.header.id]
    opened = b.open_item(items[0])
    assert opened.header.id == env.header.id
    assert b.ack([env.header.id]).json() == {"acked": 1}
    assert b.items() == []
