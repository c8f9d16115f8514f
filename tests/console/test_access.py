"""Access to the console against a real hub with real traffic.

Proves: every console and monitoring route refuses anonymous users and wrong roles;
a country focal point sees only referrals touching their country; nothing a
coordinator can reach (pages, JSON, CSV, XLSX, HSDS) contains referral content,
checked with a canary string sealed into every referral and status note.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import httpx
import pytest

from hub.app import create_app
from hub.settings import HubSettings
from tests.console.scenario import CANARY, USERS, Scenario, csrf_of, hsds_document, sign_in

EXPORTS = [f"/console/export/{v}.{f}" for v in
           ("referrals", "status", "overdue", "flows", "members", "nodes", "directory")
           for f in ("csv", "xlsx")]
READ_ROUTES = [
    "/console/", "/console/referrals", "/console/referrals/{thread}", "/console/flows",
    "/console/flows.json", "/console/api/referrals", "/console/nodes", "/console/directory",
    "/console/directory/services.geojson", "/console/directory/hsds.json", *EXPORTS,
]
REGIONAL_ONLY_GET = ["/console/users"]
#: Every route under /console with who may use it ("public" = the sign-in machinery).
ROUTE_TABLE: dict[tuple[str, str], str] = {
    ("GET", "/console"): "public",
    ("GET", "/console/login"): "public",
    ("POST", "/console/login"): "public",
    ("GET", "/console/oidc/login"): "public",
    ("GET", "/console/oidc/callback"): "public",
    ("POST", "/console/logout"): "all",
    ("POST", "/console/language"): "all",
    ("GET", "/console/"): "all",
    ("GET", "/console/referrals"): "all",
    ("GET", "/console/referrals/{thread}"): "all",
    ("GET", "/console/flows"): "all",
    ("GET", "/console/flows.json"): "all",
    ("GET", "/console/api/referrals"): "all",
    ("GET", "/console/nodes"): "all",
    ("GET", "/console/directory"): "all",
    ("GET", "/console/directory/services.geojson"): "all",
    ("GET", "/console/directory/hsds.json"): "all",
    ("POST", "/console/directory/import"): "regional",
    ("GET", "/console/users"): "regional",
    ("GET", "/console/export/{name}"): "all",
}


def _path(p: str, sc: Scenario) -> str:
    return p.replace("{thread}", sc.threads["accepted"])


def _text(r: httpx.Response) -> str:
    """Everything in a response a person could read, XLSX unzipped."""
    if r.content[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(r.content)) as z:
            return "".join(z.read(n).decode("utf-8", "replace") for n in z.namelist())
    return r.content.decode("utf-8", "replace")


def test_route_table_covers_every_console_route(tmp_path: Path) -> None:
    app = create_app(HubSettings(data_dir=tmp_path, db_url=f"sqlite:///{tmp_path}/x.db"))
    found: set[tuple[str, str]] = set()

    def walk(routes: list, prefix: str = "") -> None:  # type: ignore[type-arg]
        for route in routes:
            inner = getattr(route, "original_router", None)  # FastAPI's included routers
            if inner is not None:
                walk(inner.routes, prefix + route.include_context.prefix)
                continue
            path = prefix + getattr(route, "path", "")
            if path.startswith("/console") and not path.startswith("/console/static"):
                for m in getattr(route, "methods", set()) or set():
                    if m != "HEAD":
                        found.add((m, path))

    walk(app.routes)
    assert found == set(ROUTE_TABLE), found ^ set(ROUTE_TABLE)


def test_anonymous_is_refused_everywhere(scenario: Scenario) -> None:
    c = httpx.Client(base_url=scenario.url, follow_redirects=False, timeout=60)
    for p in [*READ_ROUTES, *REGIONAL_ONLY_GET]:
        r = c.get(_path(p, scenario))
        assert r.status_code == 303, (p, r.status_code)
        assert r.headers["location"].startswith("/console/login?next="), p
        assert CANARY not in r.text and "mx-sin-fronteras" not in r.text, p
    for p, data in (("/console/logout", {}), ("/console/language", {"language": "es"})):
        r = c.post(p, data={"csrf_token": "x", **data})
        assert r.status_code == 401, (p, r.status_code)
    r = c.post("/console/directory/import", data={"csrf_token": "x", "node_id": "cr-hias"},
               files={"file": ("a.json", b"{}", "application/json")})
    assert r.status_code == 401
    # A forged or expired cookie is no better than none.
    c.cookies.set("rssn_console", "forged-session-token", path="/console")
    assert c.get("/console/referrals").status_code == 303
    # The monitoring API for nodes needs a node's bearer token.
    assert c.put("/v1/services", json={}).status_code == 401
    assert c.get("/v1/services").status_code == 401


@pytest.mark.parametrize("who", ["gt", "mx", "auditor"])
def test_wrong_roles_are_refused(scenario: Scenario, who: str) -> None:
    c = sign_in(scenario.url, USERS[who][0])
    for p in REGIONAL_ONLY_GET:
        r = c.get(p)
        assert r.status_code == 403, (who, p)
        assert "regional@rssn.test" not in r.text
    token = csrf_of(c)
    doc = hsds_document("Org", "CR", (9.9, -84.0), "San José", "legal_aid", "everyone")
    import json

    r = c.post("/console/directory/import", data={"csrf_token": token, "node_id": "cr-hias"},
               files={"file": ("a.json", json.dumps(doc).encode(), "application/json")})
    assert r.status_code == 403, (who, r.status_code)
    # Every role may read the monitoring views.
    for p in READ_ROUTES:
        if who == "gt" and "{thread}" in p:
            continue
        assert c.get(_path(p, scenario)).status_code == 200, (who, p)


def test_regional_reaches_everything(scenario: Scenario) -> None:
    c = sign_in(scenario.url, USERS["regional"][0])
    for p in [*READ_ROUTES, *REGIONAL_ONLY_GET]:
        r = c.get(_path(p, scenario))
        assert r.status_code == 200, (p, r.status_code)
        assert r.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


def test_country_focal_point_sees_only_their_country(scenario: Scenario) -> None:
    t = scenario.threads
    gt = sign_in(scenario.url, USERS["gt"][0])
    page = gt.get("/console/referrals").text
    assert t["accepted"] in page  # GT -> MX
    for other in ("overdue", "completed", "hn_cr"):  # MX->CR, CR->HN, HN->CR
        assert t[other] not in page
        r = gt.get(f"/console/referrals/{t[other]}")
        assert r.status_code == 404 and t[other] not in r.text.replace(f"/{t[other]}", "")
    csv_text = gt.get("/console/export/referrals.csv").text
    assert t["accepted"] in csv_text and t["overdue"] not in csv_text
    flows = gt.get("/console/flows.json").json()["flows"]
    assert flows and all("GT" in (f["from"], f["to"]) for f in flows)
    nodes = gt.get("/console/nodes").text
    assert "gt-casa-migrante" in nodes and "cr-hias" not in nodes

    mx = sign_in(scenario.url, USERS["mx"][0])
    page = mx.get("/console/referrals").text
    assert t["accepted"] in page and t["overdue"] in page
    assert t["completed"] not in page and t["hn_cr"] not in page


def test_referrals_json_matches_the_export_and_the_scope(scenario: Scenario) -> None:
    t = scenario.threads
    c = sign_in(scenario.url, USERS["regional"][0])
    body = c.get("/console/api/referrals").json()
    assert body["columns"][:2] == ["referral_id", "thread"] and body["hxl"][0] == "#x_referral+id"
    assert body["total"] == len(body["items"]) and body["period_days"] == 365
    threads = {i["thread"] for i in body["items"]}
    assert set(t.values()) <= threads
    csv_lines = c.get("/console/export/referrals.csv").text.lstrip("\ufeff").splitlines()
    assert csv_lines[0].split(",") == body["columns"]
    assert len(csv_lines) - 2 == body["total"]
    accepted = next(i for i in body["items"] if i["thread"] == t["accepted"])
    assert accepted["status"] == "accepted" and accepted["from_node"] == "gt-casa-migrante"
    assert set(accepted) == set(body["columns"])
    only = c.get("/console/api/referrals", params={"status": "accepted"}).json()["items"]
    assert only and {i["status"] for i in only} == {"accepted"}
    # A country focal point gets only referrals touching their country, as in the CSV.
    gt = sign_in(scenario.url, USERS["gt"][0])
    mine = {i["thread"] for i in gt.get("/console/api/referrals").json()["items"]}
    assert t["accepted"] in mine and t["overdue"] not in mine and t["hn_cr"] not in mine
    anon = httpx.get(f"{scenario.url}/console/api/referrals", timeout=60)
    assert anon.status_code == 303 and "accepted" not in anon.text


def test_statuses_and_deadlines(scenario: Scenario) -> None:
    c = sign_in(scenario.url, USERS["regional"][0])
    page = c.get("/console/referrals").text
    t = scenario.threads
    assert f'data-thread="{t["accepted"]}" data-status="accepted" data-deadline="met"' in page
    assert f'data-thread="{t["overdue"]}" data-status="requested" data-deadline="overdue"' in page
    assert f'data-thread="{t["completed"]}" data-status="completed" data-deadline="met"' in page
    # Delivered to its node but not yet acknowledged by the member: still requested.
    assert f'data-thread="{t["hn_cr"]}" data-status="requested" data-deadline="on_track"' in page
    overdue = c.get("/console/referrals?deadline=overdue").text
    assert t["overdue"] in overdue and t["accepted"] not in overdue
    detail = c.get(f"/console/referrals/{t['completed']}").text
    for kind in ('data-kind="referral"', 'data-kind="receipt"', 'data-kind="status"'):
        assert kind in detail
    home = c.get("/console/").text
    assert '<div class="num" id="overdue-total">1</div>' in home
    assert '<tr data-priority="urgent"><th>urgent</th><td><a' in home


def test_nodes_health_and_revoked(scenario: Scenario) -> None:
    c = sign_in(scenario.url, USERS["regional"][0])
    page = c.get("/console/nodes").text
    active, _, revoked = page.partition('id="revoked-table"')
    for nid in ("gt-casa-migrante", "mx-sin-fronteras", "cr-hias", "hn-cdh"):
        assert f'data-node="{nid}" data-health="ok"' in active
    assert "pa-former" in revoked and "pa-former" not in active
    rows = c.get("/console/export/nodes.csv").text.splitlines()
    assert rows[1].startswith("#org+code,#org+name,#country+code,#status")
    assert any(r.startswith("pa-former,") and ",revoked," in r for r in rows)
    assert any("0.1.0-test" in r for r in rows)  # software version from the User-Agent


def test_no_referral_content_anywhere(scenario: Scenario) -> None:
    """The canary sealed into every referral and status note is nowhere a coordinator looks."""
    seen = 0
    for who in USERS:
        c = sign_in(scenario.url, USERS[who][0])
        paths = [_path(p, scenario) for p in READ_ROUTES + REGIONAL_ONLY_GET]
        paths += [f"/console/referrals/{t}" for t in scenario.threads.values()]
        paths += [p + "?period=30" for p in EXPORTS]
        for p in paths:
            r = c.get(p)
            body = _text(r)
            assert CANARY not in body, (who, p)
            assert "Ana" + CANARY not in body
            seen += len(body)
    assert seen > 50_000  # the pages really had content
    logs = scenario.hub.proc.log_text()
    assert CANARY not in logs


def test_exports_carry_hxl_and_suppress_small_cells(scenario: Scenario) -> None:
    c = sign_in(scenario.url, USERS["regional"][0])
    lines = c.get("/console/export/flows.csv").text.lstrip("\ufeff").splitlines()
    assert lines[0] == "from_country,to_country,referrals"
    assert lines[1] == "#country+sender+code,#country+receiver+code,#indicator+num+referrals"
    assert all(line.endswith(",<3") for line in lines[2:])  # one referral per pair, k=3
    status = c.get("/console/export/status.csv").text.splitlines()
    assert "#status" in status[1]
    ref = c.get("/console/export/referrals.csv").text.splitlines()
    assert ref[1].startswith("#x_referral+id,")
    x = c.get("/console/export/members.xlsx")
    assert x.headers["content-type"].startswith("application/vnd.openxmlformats")
    from openpyxl import load_workbook

    ws = load_workbook(io.BytesIO(x.content)).active
    rows = list(ws.iter_rows(values_only=True))
    assert rows[1][0] == "#org+name" and rows[2][3] == "<3"


def test_csrf_and_session_lifecycle(scenario: Scenario) -> None:
    c = sign_in(scenario.url, USERS["auditor"][0])
    assert c.post("/console/language", data={"language": "es"}).status_code == 403
    token = csrf_of(c)
    r = c.post("/console/language", data={"language": "es", "csrf_token": token},
               headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    r = c.post("/console/language", data={"language": "es", "csrf_token": token,
                                           "next": "/console/nodes"})
    assert r.status_code == 303 and r.headers["location"] == "/console/nodes"
    assert "Nodos" in c.get("/console/nodes").text
    c.post("/console/language", data={"language": "en", "csrf_token": token})
    old = c.cookies.get("rssn_console")
    assert c.post("/console/logout", data={"csrf_token": token}).status_code == 303
    again = httpx.Client(base_url=scenario.url, follow_redirects=False)
    again.cookies.set("rssn_console", old or "", path="/console")
    assert again.get("/console/").status_code == 303  # the session is gone server-side


def test_sign_in_failures_and_cookie_flags(scenario: Scenario) -> None:
    c = httpx.Client(base_url=scenario.url, follow_redirects=False)
    page = c.get("/console/login")
    import re

    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = c.post("/console/login", data={"email": USERS["regional"][0], "password": "wrong-pass",
                                       "csrf_token": token})
    assert r.status_code == 401 and "rssn_console=" not in r.headers.get("set-cookie", "")
    # Without the signed double-submit cookie the form is refused.
    bare = httpx.Client(base_url=scenario.url, follow_redirects=False)
    r = bare.post("/console/login", data={"email": USERS["regional"][0], "password": "x" * 20,
                                          "csrf_token": token})
    assert r.status_code == 303 and "error=expired" in r.headers["location"]
    ok = sign_in(scenario.url, USERS["regional"][0])
    del ok
    r = c.get("/console/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)  # type: ignore[union-attr]
    from tests.console.scenario import PASSWORD

    r = c.post("/console/login", data={"email": USERS["regional"][0].upper(),
                                       "password": PASSWORD, "csrf_token": token,
                                       "next": "https://evil.example/"})
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and
              v.startswith("rssn_console="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie


def test_services_api_validates_and_serves(scenario: Scenario) -> None:
    c = scenario.clients["hn-cdh"]
    bad = {"organization": {"id": "not-a-uuid", "name": "X"}, "services": [{"name": "s"}]}
    r = c.http.put("/v1/services", json=bad, headers=c.auth())
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "validation_error"
    assert "$.organization.id: must be a UUID" in body["errors"]
    assert "not-a-uuid" not in r.text
    mine = c.http.get("/v1/services", headers=c.auth()).json()
    assert mine["services"] == []
    gt = scenario.clients["gt-casa-migrante"]
    mine = gt.http.get("/v1/services", headers=gt.auth()).json()
    assert mine["services"][0]["name"].startswith("safe_shelter")
    c2 = sign_in(scenario.url, USERS["regional"][0])
    geo = c2.get("/console/directory/services.geojson").json()
    assert len(geo["features"]) == 3
    only_mx = c2.get("/console/directory/services.geojson?country=MX").json()
    assert [f["properties"]["country"] for f in only_mx["features"]] == ["MX"]
    hsds = c2.get("/console/directory/hsds.json").json()
    assert {s["organization"]["name"] for s in hsds} >= {"Sin Fronteras IAP", "HIAS Costa Rica"}
    assert all(s["service_at_locations"][0]["location"]["latitude"] for s in hsds)


def test_signed_directory_carries_published_services(scenario: Scenario) -> None:
    """Members' HSDS services travel in the hub-signed directory (DirectoryEntry.services)."""
    c = scenario.clients["hn-cdh"]
    d = c.refresh_directory()
    entry = d.entry("mx-sin-fronteras")
    assert entry.services
    svc = entry.services[0]
    assert svc["status"] == "active"
    assert svc["service_at_locations"][0]["location"]["longitude"] == -99.13
    assert d.entry("hn-cdh").services == ()
