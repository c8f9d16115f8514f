"""The console in a real browser (Debian's chromium via Playwright) against a real hub.

Proves: a coordinator signs in through the form; a referral sent in the test appears
with the right status; the overdue one is flagged; a country focal point does not see
another country's referrals; the offline service map renders boundaries and one marker
per published service location. Screenshots go to test-artifacts/browser/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.console.scenario import CANARY, PASSWORD, USERS, Scenario

pytestmark = pytest.mark.browser
TIMEOUT_MS = 120_000


def _page(browser: Any, sc: Scenario) -> Any:
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=sc.url)
    ctx.set_default_timeout(TIMEOUT_MS)
    # Nothing may leave the machine: any request to another origin fails the test.
    outside: list[str] = []
    ctx.route("**/*", lambda route: (outside.append(route.request.url), route.abort())
              if not route.request.url.startswith(sc.url) else route.continue_())
    page = ctx.new_page()
    page.outside = outside  # type: ignore[attr-defined]
    return page


def _sign_in(page: Any, who: str) -> None:
    page.goto("/console/referrals")
    assert "/console/login" in page.url
    page.fill("input[name=email]", USERS[who][0])
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url("**/console/referrals")


def test_regional_sees_statuses_and_overdue(browser: Any, scenario: Scenario,
                                             artifacts: Path) -> None:
    page = _page(browser, scenario)
    _sign_in(page, "regional")
    t = scenario.threads
    row = page.locator(f'tr[data-thread="{t["accepted"]}"]')
    assert row.locator("td.status").inner_text().strip() == "accepted"
    overdue = page.locator(f'tr[data-thread="{t["overdue"]}"]')
    assert overdue.get_attribute("data-deadline") == "overdue"
    assert overdue.locator(".badge.overdue").is_visible()
    assert page.locator(f'tr[data-thread="{t["completed"]}"] td.status').inner_text() == "completed"
    assert CANARY not in page.content()
    page.screenshot(path=str(artifacts / "referrals-regional.png"), full_page=True)

    page.goto("/console/")
    assert page.locator("#overdue-total").inner_text() == "1"
    assert page.locator("svg.chart").count() >= 4
    page.screenshot(path=str(artifacts / "overview.png"), full_page=True)

    page.goto(f"/console/referrals/{t['completed']}")
    assert page.locator("#timeline tbody tr").count() >= 5
    page.screenshot(path=str(artifacts / "referral-timeline.png"), full_page=True)

    page.goto("/console/flows")
    page.wait_for_selector("#flow-map.ready")
    assert page.locator("#flow-map").get_attribute("data-error") is None
    assert int(page.locator("#flow-map").get_attribute("data-drawn") or 0) == 4
    assert page.locator('#flow-matrix td[data-from="MX"][data-to="CR"]').inner_text() == "1"
    page.screenshot(path=str(artifacts / "flows.png"), full_page=True)

    page.goto("/console/nodes")
    assert page.locator("#nodes-table tbody tr").count() == 4
    page.screenshot(path=str(artifacts / "nodes.png"), full_page=True)
    assert page.outside == []  # type: ignore[attr-defined]
    page.context.close()


def test_country_focal_point_sees_only_their_country(browser: Any, scenario: Scenario,
                                                     artifacts: Path) -> None:
    page = _page(browser, scenario)
    _sign_in(page, "gt")  # this account reads the console in Spanish
    t = scenario.threads
    assert page.locator("html").get_attribute("lang") == "es"
    assert page.locator(f'tr[data-thread="{t["accepted"]}"] td.status').inner_text() == "aceptada"
    threads = page.locator("#referrals-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.thread)")
    assert threads == [t["accepted"]]
    for other in ("overdue", "completed", "hn_cr"):
        assert t[other] not in page.content()
    page.screenshot(path=str(artifacts / "referrals-country-gt.png"), full_page=True)
    resp = page.goto(f"/console/referrals/{t['overdue']}")
    assert resp is not None and resp.status == 404
    resp = page.goto("/console/users")
    assert resp is not None and resp.status == 403
    page.context.close()


def test_service_map_renders_offline_with_markers(browser: Any, scenario: Scenario,
                                                  artifacts: Path) -> None:
    page = _page(browser, scenario)
    _sign_in(page, "auditor")
    page.goto("/console/directory")
    page.wait_for_selector("#service-map.ready")
    m = page.locator("#service-map")
    assert m.get_attribute("data-error") is None
    assert m.get_attribute("data-markers") == "3"
    assert page.locator("#service-map .leaflet-marker-icon").count() == 3
    # Natural Earth country polygons drawn as vector paths (no tiles anywhere).
    assert page.locator("#service-map path.leaflet-interactive").count() >= 20
    assert page.locator("#service-map .leaflet-tile").count() == 0
    page.locator("#service-map .leaflet-marker-icon").first.click()
    page.wait_for_selector(".leaflet-popup-content")
    page.screenshot(path=str(artifacts / "service-map.png"), full_page=True)

    page.select_option("select[name=country]", "MX")
    page.click("#directory-filters button[type=submit]")
    page.wait_for_selector("#service-map.ready")
    assert page.locator("#service-map .leaflet-marker-icon").count() == 1
    assert page.locator("#services-table tbody tr").count() == 1
    page.screenshot(path=str(artifacts / "service-map-mx.png"), full_page=True)
    assert page.outside == []  # type: ignore[attr-defined]
    page.context.close()
