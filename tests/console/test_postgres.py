"""The console on PostgreSQL: same network, same answers (skips with a reason without PG)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.console.scenario import CANARY, USERS, build, sign_in


def test_console_on_postgresql(start_hub: Callable[..., Any],
                               pg_url_factory: Callable[[], str]) -> None:
    sc = build(start_hub(db_url=pg_url_factory()))
    t = sc.threads
    c = sign_in(sc.url, USERS["regional"][0])
    page = c.get("/console/referrals").text
    assert f'data-thread="{t["accepted"]}" data-status="accepted"' in page
    assert f'data-thread="{t["overdue"]}" data-status="requested" data-deadline="overdue"' in page
    for p in ("/console/", "/console/flows", "/console/nodes", "/console/directory",
              "/console/export/members.xlsx", f"/console/referrals/{t['completed']}"):
        r = c.get(p)
        assert r.status_code == 200, p
        assert CANARY.encode() not in r.content
    gt = sign_in(sc.url, USERS["gt"][0])
    page = gt.get("/console/referrals").text
    assert t["accepted"] in page and t["overdue"] not in page
    assert len(c.get("/console/directory/services.geojson").json()["features"]) == 3
