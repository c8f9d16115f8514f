"""A small network with real traffic for console tests: a real hub, four members, referrals.

Referrals are sealed and submitted through the wire contract (tests/hub/client.py), so the
ledger the console reads was written by the real hub. Every document carries CANARY in
its free text: it must never appear anywhere a coordinator can reach.

The only thing not done through the wire is ageing: the hub stamps ledger times with its
own clock, so to have an overdue urgent referral the test moves that row's
`submitted_at_ms` two days back in the hub's database.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from protocol import SigningKeyPair
from tests.hub.client import NodeClient, referral_document, status_document
from tests.hub.conftest import run_cli

CANARY = "ZQXCANARY7f3e"
PASSWORD = "console-test-password"

USERS = {
    "regional": ("regional@rssn.test", "regional", None),
    "gt": ("gt-focal@rssn.test", "country", "GT"),
    "mx": ("mx-focal@rssn.test", "country", "MX"),
    "auditor": ("auditor@rssn.test", "auditor", None),
}

NODES = {
    "gt-casa-migrante": ("Casa del Migrante Tecún Umán", "GT", (14.68, -92.14), "Tecún Umán"),
    "mx-sin-fronteras": ("Sin Fronteras IAP", "MX", (19.43, -99.13), "Ciudad de México"),
    "cr-hias": ("HIAS Costa Rica", "CR", (9.93, -84.08), "San José"),
    "hn-cdh": ("Centro de Derechos Humanos", "HN", (15.50, -88.03), "San Pedro Sula"),
}


def hsds_document(org: str, country: str, latlon: tuple[float, float], city: str,
                  service_type: str, population: str, language: str = "es") -> dict[str, Any]:
    """A valid HSDS 3.0 publication (four-collection form) with one service at one location."""
    oid, sid, lid, salid = (str(uuid.uuid4()) for _ in range(4))

    def term(kind: str, code: str) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()), "link_type": kind, "link_entity": "service", "link_id": sid,
            "taxonomy_term": {"id": str(uuid.uuid4()), "name": code, "code": code,
                              "description": f"rssn {kind} {code}"},
        }

    return {
        "organization": {"id": oid, "name": org, "description": f"{org}: protection services",
                         "email": "info@example.org"},
        "services": [
            {
                "id": sid, "organization_id": oid, "name": f"{service_type} ({city})",
                "status": "active", "description": "Walk-in and referrals.",
                "eligibility_description": "People on the move; referral form required.",
                "email": "referrals@example.org",
                "phones": [{"id": str(uuid.uuid4()), "number": "+000 5555 0000"}],
                "languages": [{"id": str(uuid.uuid4()), "name": language, "code": language}],
                "schedules": [{"id": str(uuid.uuid4()), "freq": "WEEKLY",
                               "byday": "MO,TU,WE,TH,FR", "opens_at": "08:00",
                               "closes_at": "17:00"}],
                "attributes": [term("service_type", service_type), term("population", population)],
            }
        ],
        "locations": [
            {
                "id": lid, "location_type": "physical", "name": f"{org} office",
                "latitude": latlon[0], "longitude": latlon[1],
                "addresses": [{"id": str(uuid.uuid4()), "address_1": "Calle 1", "city": city,
                               "state_province": "", "postal_code": "", "country": country,
                               "address_type": "physical"}],
            }
        ],
        "service_at_locations": [{"id": salid, "service_id": sid, "location_id": lid}],
    }


@dataclass
class Scenario:
    hub: Any
    clients: dict[str, NodeClient]
    threads: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return str(self.hub.url)

    def db_path(self) -> Path:
        return Path(self.hub.data_dir) / "hub.db"


def _deliver(c: NodeClient) -> list[dict[str, Any]]:
    """Pull and acknowledge everything waiting for `c` (the ledger records delivery)."""
    got: list[dict[str, Any]] = []
    for _ in range(20):
        items = c.items(wait=1)
        if not items:
            break
        got.extend(items)
        r = c.ack([i["id"] for i in items])
        assert r.status_code == 200, r.text
    return got


def _send(c: NodeClient, to: str, kind: str, doc: dict[str, Any], thread: str,
          meta: dict[str, str] | None = None) -> Any:
    env = c.seal_to(to, kind=kind, document=doc, thread=thread, meta=meta,
                    message_id=str(uuid.uuid4()))
    r = c.submit(env)
    assert r.status_code == 202, r.text
    return env


def _receipt(c: NodeClient, to: str, thread: str, env: Any) -> None:
    doc = {"message_id": env.header.id, "envelope_digest": env.digest,
           "received_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    _send(c, to, "receipt", doc, thread, meta={})


def _status(c: NodeClient, to: str, thread: str, status: str) -> None:
    doc = status_document(status)
    doc["note"] = f"status note {CANARY}"
    _send(c, to, "status", doc, thread, meta={"status": status})


def build(hub: Any) -> Scenario:
    for key, (email, role, cc) in USERS.items():
        args = ["user", "add", "--email", email, "--role", role]
        if cc:
            args += ["--country", cc]
        if key == "gt":
            args += ["--language", "es"]
        run_cli([args[0], args[1], "--data-dir", str(hub.data_dir), *args[2:]],
                {**hub.env, "RSSN_CONSOLE_PASSWORD": PASSWORD})
    clients = {nid: hub.enrolled(nid, org, cc) for nid, (org, cc, _ll, _city) in NODES.items()}
    for c in clients.values():
        c.refresh_directory()
    sc = Scenario(hub, clients)
    gt, mx, cr, hn = (clients[k] for k in NODES)

    # 1. GT -> MX, high, sgbv: received and accepted.
    t1 = str(uuid.uuid4())
    doc = referral_document(CANARY)
    e1 = _send(gt, "mx-sin-fronteras", "referral", doc, t1,
               meta={"priority": "high", "category": "sgbv"})
    _deliver(mx)
    _receipt(mx, "gt-casa-migrante", t1, e1)
    _status(mx, "gt-casa-migrante", t1, "accepted")
    sc.threads["accepted"] = t1

    # 2. MX -> CR, urgent, trafficking: no answer (aged below to be overdue).
    t2 = str(uuid.uuid4())
    doc = referral_document(CANARY)
    doc["priority"] = "urgent"
    _send(mx, "cr-hias", "referral", doc, t2, meta={"priority": "urgent", "category": "trafficking"})
    sc.threads["overdue"] = t2

    # 3. CR -> HN, normal, child protection: completed.
    t3 = str(uuid.uuid4())
    doc = referral_document(CANARY)
    doc["priority"] = "normal"
    e3 = _send(cr, "hn-cdh", "referral", doc, t3,
               meta={"priority": "normal", "category": "child_protection"})
    _deliver(hn)
    _receipt(hn, "cr-hias", t3, e3)
    for s in ("accepted", "in_progress", "completed"):
        _status(hn, "cr-hias", t3, s)
    sc.threads["completed"] = t3

    # 4. HN -> CR, high, legal: just sent.
    t4 = str(uuid.uuid4())
    _send(hn, "cr-hias", "referral", referral_document(CANARY), t4,
          meta={"priority": "high", "category": "legal"})
    sc.threads["hn_cr"] = t4

    for c in clients.values():
        _deliver(c)

    # Members publish their services through the wire (PUT /v1/services).
    types = {"gt-casa-migrante": ("safe_shelter", "migrants_in_transit"),
             "mx-sin-fronteras": ("legal_aid", "refugees_asylum_seekers"),
             "cr-hias": ("mental_health_psychosocial", "sgbv_survivors")}
    for nid, (stype, pop) in types.items():
        org, cc, ll, city = NODES[nid]
        c = clients[nid]
        r = c.http.put("/v1/services", json=hsds_document(org, cc, ll, city, stype, pop),
                       headers=c.auth())
        assert r.status_code == 200, r.text

    # A former member, revoked by the operator.
    hub.enrolled("pa-former", "Former Member Panamá", "PA")
    hub.revoke("pa-former")

    age_referral(sc, t2, hours=48)
    return sc


def age_referral(sc: Scenario, thread: str, *, hours: float) -> None:
    """Move a referral's ledger times `hours` into the past (see module docstring)."""
    import sqlalchemy as sa

    from common.db import make_engine, sqlite_url

    delta = int(hours * 3600 * 1000)
    url = sc.hub.env.get("RSSN_HUB_DB") or sqlite_url(sc.db_path())
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE messages SET submitted_at_ms = submitted_at_ms - :d, "
                    "created_at_ms = created_at_ms - :d WHERE thread = :t"
                ),
                {"d": delta, "t": thread},
            )
    finally:
        engine.dispose()


def sign_in(base_url: str, email: str, password: str = PASSWORD) -> httpx.Client:
    """An httpx client with a console session (through the real sign-in form)."""
    c = httpx.Client(base_url=base_url, follow_redirects=False, timeout=60)
    r = c.get("/console/login")
    m = re.search(r'name="csrf_token" value="([^"]+)"', r.text)
    assert m, r.text
    r = c.post("/console/login", data={"email": email, "password": password,
                                       "csrf_token": m.group(1), "next": "/console/"})
    assert r.status_code == 303 and r.headers["location"] == "/console/", (r.status_code, r.text)
    return c


def csrf_of(c: httpx.Client) -> str:
    r = c.get("/console/")
    m = re.search(r'name="csrf_token" value="([^"]+)"', r.text)
    assert m
    return m.group(1)


__all__ = ["CANARY", "NODES", "PASSWORD", "USERS", "Scenario", "SigningKeyPair", "build",
           "csrf_of", "hsds_document", "sign_in"]
