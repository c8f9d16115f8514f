"""Sign-in through an organisation's identity provider (OpenID Connect, code + PKCE).

A fake provider runs as its own process; the hub runs for real. Only an existing console
account (created with --no-password) can sign in; an unknown person is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.console.fake_idp import CLIENT_ID, CLIENT_SECRET
from tests.helpers.processes import python_cmd
from tests.hub.conftest import run_cli


def _flow(hub_url: str) -> tuple[httpx.Client, httpx.Response]:
    c = httpx.Client(base_url=hub_url, follow_redirects=False, timeout=60)
    r = c.get("/console/oidc/login", params={"next": "/console/nodes"})
    assert r.status_code == 303, r.text
    idp = httpx.get(r.headers["location"], follow_redirects=False, timeout=60)
    assert idp.status_code == 302
    callback = idp.headers["location"]
    assert callback.startswith(hub_url + "/console/oidc/callback?")
    return c, c.get(callback.removeprefix(hub_url))


def test_oidc_sign_in(start_hub: Callable[..., Any], spawn_service: Callable[..., Any],
                      free_port: Callable[[], int]) -> None:
    idp_port = free_port()
    issuer = f"http://127.0.0.1:{idp_port}"
    spawn_service(python_cmd("-m", "tests.console.fake_idp", str(idp_port), "ana@org.test"),
                  name="idp", health_url=issuer + "/.well-known/openid-configuration")
    hub = start_hub(RSSN_CONSOLE_OIDC_ISSUER=issuer, RSSN_CONSOLE_OIDC_CLIENT_ID=CLIENT_ID,
                    RSSN_CONSOLE_OIDC_CLIENT_SECRET=CLIENT_SECRET,
                    RSSN_CONSOLE_OIDC_LABEL="Org IdP")
    page = httpx.get(hub.url + "/console/login").text
    assert "/console/oidc/login" in page and "Org IdP" in page

    # Nobody has an account for ana@org.test yet: refused.
    c, r = _flow(hub.url)
    assert r.status_code == 303 and "error=credentials" in r.headers["location"]

    run_cli(["user", "add", "--data-dir", str(hub.data_dir), "--email", "ana@org.test",
             "--role", "auditor", "--no-password"], hub.env)
    c, r = _flow(hub.url)
    assert r.status_code == 303 and r.headers["location"] == "/console/nodes", r.headers
    assert c.get("/console/nodes").status_code == 200
    assert c.get("/console/users").status_code == 403  # the hub decides the role

    # A tampered state is refused.
    c2 = httpx.Client(base_url=hub.url, follow_redirects=False, timeout=60)
    r = c2.get("/console/oidc/login")
    idp = httpx.get(r.headers["location"], follow_redirects=False, timeout=60)
    bad = idp.headers["location"].removeprefix(hub.url).replace("state=", "state=x")
    r = c2.get(bad)
    assert r.status_code == 303 and "error=expired" in r.headers["location"]
    assert "rssn_console=" not in r.headers.get("set-cookie", "")
