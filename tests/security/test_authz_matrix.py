"""Authorization matrix: every route of the hub and of the node against every kind of caller.

Callers of the hub: anonymous, a garbage bearer token, a node's local API key (a credential
of the wrong kind), the member that owns the resource, another member, a revoked member
(with a token issued before its revocation), an invited organisation (one-time token), and
the three coordinator roles of the console (regional, country focal point, auditor), signed
in through the real sign-in form. Callers of the node: anonymous, a garbage key, another
node's API key, a revoked API key of this node, the node's own hub access token, and the
valid API key.

Each (route, caller) pair has an expected verdict: ``allow`` (the request gets past
authentication and authorization *to the resource it names*) or ``deny`` (401/403, or the
console's redirect to its sign-in page). For routes that are open by design (health,
OpenAPI, sign-in) every caller is allowed. A member's resources are its mailbox items, its
envelopes and its published services: another member reaching the same route is allowed
to the route but must not reach the resource (its mailbox does not show the owner's items,
its ack removes nothing, it cannot submit the owner's envelopes).

Proves: only the intended callers pass, for every route that exists (the test fails when a
route is added without being classified here).
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.app import create_app as create_hub_app
from hub.settings import HubSettings
from node.app import create_app as create_node_app
from node.settings import NodeSettings
from tests.console.scenario import csrf_of, hsds_document, sign_in
from tests.fault.harness import Network, NodeProc
from tests.hub.client import NodeClient
from tests.reliability_summary import Recorder

pytestmark = [pytest.mark.timeout(1200), pytest.mark.filterwarnings("ignore:EdDSA is deprecated")]

PASSWORD = "console-matrix-password"
OWNER_ORG = f"Owner Org {uuid.uuid4().hex[:8]}"
ROLES = {"regional": ("regional@matrix.test", "regional", None),
         "country": ("gt@matrix.test", "country", "GT"),
         "auditor": ("auditor@matrix.test", "auditor", None)}
HUB_CALLERS = ["anonymous", "garbage", "node_api_key", "member", "other_member",
               "revoked_member", "invited", *ROLES]
NODE_CALLERS = ["anonymous", "garbage", "other_node_key", "revoked_key", "hub_token", "valid_key"]

PUBLIC = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect",
          "/redoc"}
CONSOLE_PUBLIC = {("GET", "/console"), ("GET", "/console/login"), ("POST", "/console/login"),
                  ("GET", "/console/oidc/login"), ("GET", "/console/oidc/callback")}
CONSOLE_REGIONAL = {("POST", "/console/directory/import"), ("GET", "/console/users")}
#: Node routes of the hub and who may reach the *member's* resource behind them.
HUB_NODE_ROUTES = {
    ("POST", "/v1/enroll"): {"invited"},
    ("POST", "/v1/oauth/token"): {"member", "other_member"},  # each for itself
    ("GET", "/v1/directory"): {"member", "other_member"},
    ("POST", "/v1/messages"): {"member"},
    ("POST", "/v1/messages/batch"): {"member"},
    ("GET", "/v1/mailbox"): {"member"},
    ("POST", "/v1/mailbox/ack"): {"member"},
    # Each member reads and replaces its own publication (the token names the member);
    # the judge checks another member never sees the owner's.
    ("GET", "/v1/services"): {"member", "other_member"},
    ("PUT", "/v1/services"): {"member", "other_member"},
}


def expected_hub(method: str, path: str) -> set[str]:
    """The callers allowed on a hub route (raises for a route nobody classified)."""
    if path in PUBLIC:
        return set(HUB_CALLERS)
    if (method, path) in HUB_NODE_ROUTES:
        return HUB_NODE_ROUTES[(method, path)]
    if (method, path) in CONSOLE_PUBLIC:
        return set(HUB_CALLERS)
    if (method, path) in CONSOLE_REGIONAL:
        return {"regional"}
    if path.startswith("/console/"):
        return set(ROLES)
    raise AssertionError(f"unclassified hub route {method} {path}: add it to the matrix")


def expected_node(method: str, path: str) -> set[str]:
    if path in PUBLIC:
        return set(NODE_CALLERS)
    if path.startswith("/api/v1/"):
        return {"valid_key"}
    raise AssertionError(f"unclassified node route {method} {path}: add it to the matrix")


def _routes(app: Any) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()

    def walk(routes: list[Any], prefix: str = "") -> None:
        for r in routes:
            inner = getattr(r, "original_router", None)
            if inner is not None:
                walk(inner.routes, prefix + r.include_context.prefix)
                continue
            path = prefix + getattr(r, "path", "")
            for m in getattr(r, "methods", None) or ():
                if m != "HEAD":
                    found.add((m, path))

    walk(app.routes)
    return found


def hub_routes(tmp: Path) -> set[tuple[str, str]]:
    return _routes(create_hub_app(HubSettings(data_dir=tmp, db_url=f"sqlite:///{tmp}/m.db")))


def node_routes(tmp: Path) -> set[tuple[str, str]]:
    return _routes(create_node_app(NodeSettings(data_dir=tmp / "n"), start_workers=False))


def test_every_route_is_classified(tmp_path: Path) -> None:
    for m, p in hub_routes(tmp_path):
        expected_hub(m, p)
    for m, p in node_routes(tmp_path):
        expected_node(m, p)


# --- the world ---------------------------------------------------------------------------


@dataclass
class World:
    net: Network
    node: NodeProc
    other_node: NodeProc
    member: NodeClient
    other_member: NodeClient
    revoked_member: NodeClient
    revoked_token: str
    revoked_api_key: str
    sessions: dict[str, httpx.Client] = field(default_factory=dict)
    thread: str = ""

    @property
    def hub_url(self) -> str:
        assert self.net.hub is not None
        return self.net.hub.url


@pytest.fixture
def world(network: Network) -> Iterator[World]:
    from tests.fault.harness import _cli

    hub = network.start_hub(extra_env={"RSSN_CONSOLE_PASSWORD": PASSWORD})
    node = network.add_node("mx-node", "Casa Refugio", "MX")
    other_node = network.add_node("gt-node", "Asistencia Legal", "GT")
    revoked_api_key = node.cli("api-key", "create", "--data-dir", str(node.data_dir), "--name",
                               "old").strip().splitlines()[-1]
    node.cli("api-key", "revoke", "--data-dir", str(node.data_dir), "--name", "old")
    clients: dict[str, NodeClient] = {}
    for nid in ("mx-member", "gt-member", "pa-revoked"):
        c = NodeClient(hub.url, nid)
        r = c.enroll(hub.invite(nid, f"Org {nid}", nid[:2].upper()))
        assert r.status_code == 201, r.text
        c.login()
        clients[nid] = c
    revoked_token = clients["pa-revoked"].login()
    hub.revoke("pa-revoked")
    for email, role, country in ROLES.values():
        args = ["user", "add", "--data-dir", str(hub.data_dir), "--email", email, "--role", role]
        if country:
            args += ["--country", country]
        _cli("hub", args, {**hub.env, "RSSN_CONSOLE_PASSWORD": PASSWORD})
    w = World(network, node, other_node, clients["mx-member"], clients["gt-member"],
              clients["pa-revoked"], revoked_token, revoked_api_key)
    r = w.member.http.put("/v1/services", headers=w.member.auth(), json=hsds_document(
        OWNER_ORG, "MX", (19.4, -99.1), "CDMX", "legal_aid", "everyone"))
    assert r.status_code == 200, r.text
    # One real referral so the console has a thread to show.
    rid = node.send(other_node.node_id, _referral())
    w.thread = rid
    try:
        yield w
    finally:
        for c in clients.values():
            c.close()
        for s in w.sessions.values():
            s.close()


def _referral() -> dict[str, Any]:
    from node.samples import sample_referral

    return sample_referral(1)


# --- requests ----------------------------------------------------------------------------


def _session(w: World, role: str) -> httpx.Client:
    if role not in w.sessions:
        w.sessions[role] = sign_in(w.hub_url, ROLES[role][0], PASSWORD)
    return w.sessions[role]


def _hub_request(w: World, method: str, path: str, caller: str) -> tuple[httpx.Response, Any]:
    """Send the route's request as ``caller``; returns (response, context for the judge)."""
    owner = w.member
    ctx: Any = None
    headers: dict[str, str] = {}
    client: httpx.Client
    if caller in ROLES:
        client = _session(w, caller)
    else:
        client = httpx.Client(base_url=w.hub_url, timeout=60, follow_redirects=False)
    acting = {"member": w.member, "other_member": w.other_member,
              "revoked_member": w.revoked_member}.get(caller)
    if caller == "garbage":
        headers["Authorization"] = "Bearer not-a-token"
    elif caller == "node_api_key":
        headers["Authorization"] = f"Bearer {w.node.key}"
    elif caller == "revoked_member":
        headers["Authorization"] = f"Bearer {w.revoked_token}"
    elif acting is not None:
        headers["Authorization"] = f"Bearer {acting.login()}"
    url = path.replace("{thread}", w.thread).replace("{name}", "referrals.csv")
    kw: dict[str, Any] = {}
    if (method, path) == ("POST", "/v1/enroll"):
        fresh = NodeClient(w.hub_url, f"zz-{uuid.uuid4().hex[:8]}")
        assert w.net.hub is not None
        token = w.net.hub.invite(fresh.node_id, "New Org", "HN") if caller == "invited" \
            else "not-an-invite-token"
        kw["json"] = fresh.enroll_request(token)
        fresh.close()
    elif (method, path) == ("POST", "/v1/oauth/token"):
        if acting is not None:
            assert acting.token_endpoint
            kw["data"] = {"grant_type": "client_credentials",
                          "client_assertion_type":
                              "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                          "client_assertion": acting.assertion(), "client_id": acting.node_id}
        else:
            kw["data"] = {"grant_type": "client_credentials"}
    elif path in ("/v1/messages", "/v1/messages/batch"):
        env = owner.seal_to(w.other_member.node_id)
        if path == "/v1/messages":
            kw["content"] = env.raw
            headers["Content-Type"] = "application/json"
        else:
            kw["json"] = {"envelopes": [json.loads(env.raw)]}
    elif path in ("/v1/mailbox", "/v1/mailbox/ack"):
        # A fresh item waiting for the owner: what a caller must not see or remove.
        env = w.other_member.seal_to(owner.node_id)
        assert w.other_member.submit(env).status_code == 202
        ctx = env.header.id
        if path == "/v1/mailbox":
            kw["params"] = {"wait": 0, "limit": 500}
        else:
            kw["json"] = {"ids": [ctx]}
    elif (method, path) == ("GET", "/v1/services"):
        ctx = caller
    elif (method, path) == ("PUT", "/v1/services"):
        kw["json"] = hsds_document("Org", "MX", (19.4, -99.1), "CDMX", "legal_aid", "everyone")
    elif (method, path) == ("POST", "/console/login"):
        kw["data"] = {"email": "nobody@matrix.test", "password": "wrong", "csrf_token": "x"}
    elif method == "POST" and path.startswith("/console/"):
        token = csrf_of(client) if caller in ROLES else "x"
        data = {"csrf_token": token}
        if path == "/console/language":
            data["language"] = "es"
        if path == "/console/directory/import":
            data["node_id"] = w.member.node_id
            kw["files"] = {"file": ("s.json", json.dumps(hsds_document(
                "Org", "MX", (19.4, -99.1), "CDMX", "legal_aid", "everyone")).encode(),
                "application/json")}
        kw["data"] = data
    if caller in ROLES and path == "/console/logout":
        client = sign_in(w.hub_url, ROLES[caller][0], PASSWORD)  # a session of its own
        kw["data"] = {"csrf_token": csrf_of(client)}
    resp = client.request(method, url, headers=headers, **kw)
    if caller not in ROLES:
        client.close()
    return resp, ctx


def _hub_reached(method: str, path: str, resp: httpx.Response, ctx: Any) -> bool:
    """Did the caller get to the resource (True) or was it turned away (False)?"""
    s = resp.status_code
    # The console turns a signed-out person away with a redirect that remembers the page;
    # its public pages (sign-in, OIDC, sign-out) redirect to the plain sign-in page instead.
    if s in (401, 403) or (s in (302, 303, 307) and
                           resp.headers.get("location", "").startswith("/console/login?next=")):
        return False
    if path == "/v1/mailbox":
        return s == 200 and any(i["id"] == ctx for i in resp.json()["items"])
    if path == "/v1/mailbox/ack":
        return s == 200 and resp.json()["acked"] > 0
    if path == "/v1/messages/batch":
        return s == 200 and any(r["status"] != "rejected" for r in resp.json()["results"])
    if (method, path) == ("GET", "/v1/services") and s == 200 and ctx == "other_member":
        assert OWNER_ORG not in resp.text, "another member read the owner's publication"
    if path in ("/v1/enroll", "/v1/oauth/token", "/v1/messages", "/v1/services",
                "/v1/directory"):
        return s < 400
    return s < 500


def test_hub_authorization_matrix(world: World, tally: Recorder, tmp_path: Path) -> None:
    w = world
    wrong: list[str] = []
    checked = 0
    for method, path in sorted(hub_routes(tmp_path)):
        allowed = expected_hub(method, path)
        for caller in HUB_CALLERS:
            resp, ctx = _hub_request(w, method, path, caller)
            assert resp.status_code < 500, (method, path, caller, resp.status_code, resp.text[:300])
            reached = _hub_reached(method, path, resp, ctx)
            bad = reached != (caller in allowed)
            if caller not in allowed:
                tally.hostile("authz:hub", f"{method} {path} as {caller}", accepted_wrongly=bad,
                              detail=f"{caller} reached {method} {path}: {resp.status_code}")
            if bad:
                wrong.append(f"{method} {path} {caller}: {resp.status_code} "
                             f"(expected {'allow' if caller in allowed else 'deny'})")
            checked += 1
    tally.note(hub_pairs_checked=checked)
    assert wrong == [], "\n".join(wrong)


def _node_headers(w: World, caller: str) -> dict[str, str]:
    return {"anonymous": {}, "garbage": {"Authorization": "Bearer rssn_garbage"},
            "other_node_key": {"Authorization": f"Bearer {w.other_node.key}"},
            "revoked_key": {"Authorization": f"Bearer {w.revoked_api_key}"},
            "hub_token": {"Authorization": f"Bearer {w.member.login()}"},
            "valid_key": {"Authorization": f"Bearer {w.node.key}"}}[caller]


def test_node_authorization_matrix(world: World, tally: Recorder, tmp_path: Path) -> None:
    w = world
    wrong: list[str] = []
    bodies: dict[str, Any] = {
        "/api/v1/referrals": {"to": w.other_node.node_id, "referral": _referral()},
        "/api/v1/referrals/{referral_id}/status": {"status": "cancelled"},
        "/api/v1/referrals/{referral_id}/withdraw-consent": {"note": "x"},
    }
    for method, path in sorted(node_routes(tmp_path)):
        allowed = expected_node(method, path)
        for caller in NODE_CALLERS:
            # A fresh referral per call, so an allowed change never collides with an earlier one.
            rid = w.node.send(w.other_node.node_id, _referral()) if "{referral_id}" in path else ""
            url = path.replace("{referral_id}", rid)
            with httpx.Client(base_url=w.node.url, timeout=60) as c:
                resp = c.request(method, url, headers=_node_headers(w, caller),
                                 json=bodies.get(path) if method == "POST" else None)
            assert resp.status_code < 500, (method, path, caller, resp.status_code)
            reached = resp.status_code not in (401, 403)
            bad = reached != (caller in allowed)
            if caller not in allowed:
                tally.hostile("authz:node", f"{method} {path} as {caller}", accepted_wrongly=bad,
                              detail=f"{caller} reached {method} {path}: {resp.status_code}")
            if bad:
                wrong.append(f"{method} {path} {caller}: {resp.status_code}")
    assert wrong == [], "\n".join(wrong)
    assert sys.version_info >= (3, 11)


def test_callers_are_what_they_claim(world: World) -> None:
    """The matrix's callers are real: the member and the valid key do pass somewhere."""
    w = world
    assert w.member.items(wait=0) is not None
    with httpx.Client(base_url=w.node.url, timeout=60) as c:
        assert c.get("/api/v1/status", headers=_node_headers(w, "valid_key")).status_code == 200
    assert _session(w, "regional").get("/console/users").status_code == 200


Caller = Callable[..., Any]
