"""Open Referral HSDS 3.0 for the network's service directory: validate, normalise, export.

Why our own checks instead of the published JSON Schemas: the hub must run offline
and without new dependencies, and only the four core objects matter here
(organization, service, location, service_at_location, with the sub-objects the
directory shows: language, schedule, phone, contact, address, attribute). The checks
follow HSDS 3.0's `required` members, enums and `format: uuid`; unknown extra
properties are kept, as HSDS conformance allows.

The network's profile (documented in docs/console.md) adds two attribute link types:
`service_type` (taxonomy_term.code from protocol.vocab services.json) and
`population` (codes in POPULATIONS). Those are what the directory filters on.

Error messages name paths and rules only, never the submitted values.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from protocol import canonical_bytes, vocab

__all__ = [
    "POPULATIONS",
    "HsdsError",
    "dereferenced_services",
    "document_digest",
    "normalize",
    "summarize_services",
]

#: Populations served (code -> English label; Spanish in hub.console.i18n).
POPULATIONS: dict[str, str] = {
    "women_girls": "Women and girls",
    "children": "Children",
    "uasc": "Unaccompanied or separated children",
    "adolescents_youth": "Adolescents and youth",
    "lgbtiq": "LGBTIQ+ persons",
    "sgbv_survivors": "Survivors of SGBV",
    "trafficking_victims": "Victims of trafficking",
    "refugees_asylum_seekers": "Refugees and asylum seekers",
    "migrants_in_transit": "Migrants in transit",
    "returnees": "Returnees",
    "idps": "Internally displaced persons",
    "persons_with_disabilities": "Persons with disabilities",
    "older_persons": "Older persons",
    "indigenous_peoples": "Indigenous peoples",
    "everyone": "Everyone",
}

SERVICE_STATUSES = ("active", "inactive", "defunct", "temporarily closed")
LOCATION_TYPES = ("physical", "postal", "virtual")
MAX_SERVICES = 500
MAX_LOCATIONS = 2000
MAX_ERRORS = 50
_TIME = re.compile(r"^\d{2}:\d{2}(:\d{2})?([+-]\d{2}:\d{2}|Z)?$")


class HsdsError(ValueError):
    """The document is not valid HSDS 3.0 (or breaks the network's profile)."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("; ".join(errors[:5]))
        self.errors = list(errors[:MAX_ERRORS])


@dataclass
class _Checker:
    errors: list[str]

    def err(self, path: str, rule: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(f"{path}: {rule}")

    def obj(self, value: Any, path: str) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.err(path, "must be an object")
            return None
        return value

    def array(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.err(path, "must be an array")
            return []
        return value

    def string(self, o: Mapping[str, Any], key: str, path: str, *, required: bool) -> None:
        if key not in o or o[key] is None:
            if required:
                self.err(f"{path}.{key}", "is required")
            return
        if not isinstance(o[key], str):
            self.err(f"{path}.{key}", "must be a string")
        elif required and key in ("name",) and not o[key].strip():
            self.err(f"{path}.{key}", "must not be empty")

    def uuid(self, o: Mapping[str, Any], key: str, path: str, *, required: bool) -> None:
        v = o.get(key)
        if v is None:
            if required:
                self.err(f"{path}.{key}", "is required")
            return
        if not isinstance(v, str) or not _is_uuid(v):
            self.err(f"{path}.{key}", "must be a UUID")

    def number(
        self, o: Mapping[str, Any], key: str, path: str, lo: float, hi: float
    ) -> None:
        v = o.get(key)
        if v is None:
            return
        if (
            not isinstance(v, int | float)
            or isinstance(v, bool)
            or not math.isfinite(v)
            or not lo <= v <= hi
        ):
            self.err(f"{path}.{key}", f"must be a number between {lo:g} and {hi:g}")

    def enum(
        self, o: Mapping[str, Any], key: str, path: str, allowed: Iterable[str], *, required: bool
    ) -> None:
        v = o.get(key)
        if v is None:
            if required:
                self.err(f"{path}.{key}", "is required")
            return
        allowed = tuple(allowed)
        if v not in allowed:
            self.err(f"{path}.{key}", "must be one of " + ", ".join(allowed))


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text.lower() and len(text) == 36
    except ValueError:
        return False


def _check_org(c: _Checker, org: dict[str, Any], path: str) -> None:
    c.uuid(org, "id", path, required=True)
    c.string(org, "name", path, required=True)
    c.string(org, "description", path, required=True)
    for key in ("email", "website", "alternate_name", "uri", "legal_status"):
        c.string(org, key, path, required=False)
    _check_phones(c, org.get("phones"), f"{path}.phones")
    _check_contacts(c, org.get("contacts"), f"{path}.contacts")


def _check_phones(c: _Checker, value: Any, path: str) -> None:
    for i, p in enumerate(c.array(value, path)):
        po = c.obj(p, f"{path}[{i}]")
        if po is not None:
            c.uuid(po, "id", f"{path}[{i}]", required=True)
            c.string(po, "number", f"{path}[{i}]", required=True)


def _check_contacts(c: _Checker, value: Any, path: str) -> None:
    for i, p in enumerate(c.array(value, path)):
        po = c.obj(p, f"{path}[{i}]")
        if po is not None:
            c.uuid(po, "id", f"{path}[{i}]", required=True)
            for key in ("name", "title", "department", "email"):
                c.string(po, key, f"{path}[{i}]", required=False)
            _check_phones(c, po.get("phones"), f"{path}[{i}].phones")


def _check_schedules(c: _Checker, value: Any, path: str) -> None:
    for i, s in enumerate(c.array(value, path)):
        p = f"{path}[{i}]"
        so = c.obj(s, p)
        if so is None:
            continue
        c.uuid(so, "id", p, required=True)
        c.enum(so, "freq", p, ("WEEKLY", "MONTHLY"), required=False)
        for key in ("opens_at", "closes_at"):
            v = so.get(key)
            if v is not None and (not isinstance(v, str) or not _TIME.match(v)):
                c.err(f"{p}.{key}", "must be a time HH:MM")
        for key in ("byday", "description", "notes", "timezone"):
            if key == "timezone":
                continue
            c.string(so, key, p, required=False)


def _check_languages(c: _Checker, value: Any, path: str) -> None:
    for i, lang in enumerate(c.array(value, path)):
        p = f"{path}[{i}]"
        lo = c.obj(lang, p)
        if lo is None:
            continue
        c.uuid(lo, "id", p, required=True)
        c.string(lo, "name", p, required=False)
        c.string(lo, "code", p, required=False)


def _check_attributes(c: _Checker, value: Any, path: str) -> None:
    for i, a in enumerate(c.array(value, path)):
        p = f"{path}[{i}]"
        ao = c.obj(a, p)
        if ao is None:
            continue
        c.string(ao, "id", p, required=True)
        c.string(ao, "link_type", p, required=True)
        term = ao.get("taxonomy_term")
        if term is None:
            continue
        to = c.obj(term, f"{p}.taxonomy_term")
        if to is None:
            continue
        c.string(to, "id", f"{p}.taxonomy_term", required=True)
        c.string(to, "name", f"{p}.taxonomy_term", required=True)
        c.string(to, "description", f"{p}.taxonomy_term", required=True)
        code = to.get("code")
        lt = ao.get("link_type")
        if lt == "service_type" and code not in vocab.services():
            c.err(f"{p}.taxonomy_term.code", "must be a service type of rssn.services")
        if lt == "population" and code not in POPULATIONS:
            c.err(f"{p}.taxonomy_term.code", "must be a population code of the network's profile")


def _check_location(c: _Checker, loc: dict[str, Any], path: str) -> None:
    c.uuid(loc, "id", path, required=True)
    c.enum(loc, "location_type", path, LOCATION_TYPES, required=True)
    c.string(loc, "name", path, required=False)
    c.number(loc, "latitude", path, -90, 90)
    c.number(loc, "longitude", path, -180, 180)
    if (loc.get("latitude") is None) != (loc.get("longitude") is None):
        c.err(path, "latitude and longitude go together")
    for i, a in enumerate(c.array(loc.get("addresses"), f"{path}.addresses")):
        p = f"{path}.addresses[{i}]"
        ao = c.obj(a, p)
        if ao is None:
            continue
        c.uuid(ao, "id", p, required=True)
        for key in ("address_1", "city", "state_province", "postal_code"):
            c.string(ao, key, p, required=True)
        c.enum(ao, "address_type", p, LOCATION_TYPES, required=True)
        country = ao.get("country")
        if not isinstance(country, str) or country.upper() not in vocab.countries():
            c.err(f"{p}.country", "must be an ISO 3166-1 alpha-2 code")
    _check_languages(c, loc.get("languages"), f"{path}.languages")
    _check_schedules(c, loc.get("schedules"), f"{path}.schedules")


def _check_service(c: _Checker, svc: dict[str, Any], path: str) -> None:
    c.uuid(svc, "id", path, required=True)
    c.string(svc, "name", path, required=True)
    c.enum(svc, "status", path, SERVICE_STATUSES, required=True)
    c.uuid(svc, "organization_id", path, required=False)
    for key in ("description", "eligibility_description", "email", "url", "alternate_name"):
        c.string(svc, key, path, required=False)
    _check_languages(c, svc.get("languages"), f"{path}.languages")
    _check_schedules(c, svc.get("schedules"), f"{path}.schedules")
    _check_phones(c, svc.get("phones"), f"{path}.phones")
    _check_contacts(c, svc.get("contacts"), f"{path}.contacts")
    _check_attributes(c, svc.get("attributes"), f"{path}.attributes")


def _split_forms(doc: Any, c: _Checker) -> tuple[Any, list[Any], list[Any], list[Any]]:
    """Accept the four-collection form, a nested organization, or a list of nested services."""
    if isinstance(doc, list):
        orgs = [s.get("organization") for s in doc if isinstance(s, dict)]
        org = next((o for o in orgs if o is not None), None)
        if org is None:
            c.err("$", "a list of services must embed their organization")
        return org, doc, [], []
    if not isinstance(doc, dict):
        c.err("$", "must be an object or an array")
        return None, [], [], []
    if "organization" in doc:
        return (
            doc.get("organization"),
            c.array(doc.get("services"), "$.services"),
            c.array(doc.get("locations"), "$.locations"),
            c.array(doc.get("service_at_locations"), "$.service_at_locations"),
        )
    # An organization object with nested services (and locations).
    org = {k: v for k, v in doc.items() if k not in ("services",)}
    return org, c.array(doc.get("services"), "$.services"), [], []


def normalize(doc: Any) -> dict[str, Any]:
    """Validate `doc` and return {"organization", "services", "locations", "service_at_locations"}.

    Nested objects (service.service_at_locations[].location, organization.locations,
    service.organization) are flattened into the four collections, linked by id.
    Raises HsdsError listing what is wrong.
    """
    c = _Checker([])
    org_raw, services_raw, locations_raw, sal_raw = _split_forms(doc, c)
    org = c.obj(org_raw, "$.organization") if org_raw is not None else None
    if org is None:
        if not c.errors:
            c.err("$.organization", "is required")
        raise HsdsError(c.errors)
    org = dict(org)
    nested_locs = c.array(org.pop("locations", None), "$.organization.locations")
    org.pop("services", None)
    _check_org(c, org, "$.organization")
    org_id = org.get("id")

    locations: dict[str, dict[str, Any]] = {}
    sals: dict[str, dict[str, Any]] = {}
    services: dict[str, dict[str, Any]] = {}

    def add_location(raw: Any, path: str) -> str | None:
        lo = c.obj(raw, path)
        if lo is None:
            return None
        lo = dict(lo)
        _check_location(c, lo, path)
        lid = lo.get("id")
        if isinstance(lid, str):
            prev = locations.get(lid)
            if prev is not None and prev != lo:
                c.err(path, "another location has the same id")
            locations[lid] = lo
            return lid
        return None

    for i, raw in enumerate(list(locations_raw) + list(nested_locs)):
        add_location(raw, f"$.locations[{i}]")

    if len(services_raw) > MAX_SERVICES:
        c.err("$.services", f"at most {MAX_SERVICES} services")
        raise HsdsError(c.errors)
    for i, raw in enumerate(services_raw):
        path = f"$.services[{i}]"
        so = c.obj(raw, path)
        if so is None:
            continue
        so = dict(so)
        embedded_org = so.pop("organization", None)
        if isinstance(embedded_org, dict) and embedded_org.get("id") != org_id:
            c.err(f"{path}.organization", "all services must belong to one organization")
        nested_sals = c.array(so.pop("service_at_locations", None), f"{path}.service_at_locations")
        _check_service(c, so, path)
        if so.get("organization_id") not in (None, org_id):
            c.err(f"{path}.organization_id", "must be the organization's id")
        so["organization_id"] = org_id
        sid = so.get("id")
        if isinstance(sid, str):
            if sid in services:
                c.err(f"{path}.id", "duplicate service id")
            services[sid] = so
        for j, sal in enumerate(nested_sals):
            sp = f"{path}.service_at_locations[{j}]"
            sa_o = c.obj(sal, sp)
            if sa_o is None:
                continue
            sa_o = dict(sa_o)
            loc = sa_o.pop("location", None)
            if loc is not None:
                lid = add_location(loc, f"{sp}.location")
                if lid is not None:
                    if sa_o.get("location_id") not in (None, lid):
                        c.err(f"{sp}.location_id", "must be the embedded location's id")
                    sa_o["location_id"] = lid
            if sa_o.get("service_id") not in (None, sid):
                c.err(f"{sp}.service_id", "must be the enclosing service's id")
            sa_o["service_id"] = sid
            sal_raw = [*sal_raw, sa_o]
    if len(locations) > MAX_LOCATIONS:
        c.err("$.locations", f"at most {MAX_LOCATIONS} locations")
    for i, raw in enumerate(sal_raw):
        path = f"$.service_at_locations[{i}]"
        so = c.obj(raw, path)
        if so is None:
            continue
        c.uuid(so, "id", path, required=True)
        c.uuid(so, "service_id", path, required=True)
        c.uuid(so, "location_id", path, required=True)
        _check_schedules(c, so.get("schedules"), f"{path}.schedules")
        _check_phones(c, so.get("phones"), f"{path}.phones")
        if so.get("service_id") not in services:
            c.err(f"{path}.service_id", "must name a service of this document")
        if so.get("location_id") not in locations:
            c.err(f"{path}.location_id", "must name a location of this document")
        sid = so.get("id")
        if isinstance(sid, str):
            if sid in sals and sals[sid] != so:
                c.err(f"{path}.id", "duplicate service_at_location id")
            sals[sid] = dict(so)
    if c.errors:
        raise HsdsError(c.errors)
    return {
        "organization": org,
        "services": [services[k] for k in sorted(services)],
        "locations": [locations[k] for k in sorted(locations)],
        "service_at_locations": [sals[k] for k in sorted(sals)],
    }


def document_digest(doc: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(dict(doc))).hexdigest()


def dereferenced_services(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """HSDS's nested JSON: each service with its service_at_locations and their location.

    This is what the signed directory carries (DirectoryEntry.services) and what the
    HSDS export produces (with `organization` embedded, see export_services).
    """
    locs = {lo["id"]: lo for lo in doc.get("locations", [])}
    by_service: dict[str, list[dict[str, Any]]] = {}
    for sal in doc.get("service_at_locations", []):
        item = dict(sal)
        loc = locs.get(sal["location_id"])
        if loc is not None:
            item["location"] = loc
        by_service.setdefault(sal["service_id"], []).append(item)
    out = []
    for svc in doc.get("services", []):
        s = dict(svc)
        s["service_at_locations"] = by_service.get(svc["id"], [])
        out.append(s)
    return out


def export_services(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Dereferenced services with their organization embedded (HSDS service JSON)."""
    org = dict(doc["organization"])
    return [dict(s, organization=org) for s in dereferenced_services(doc)]


def _codes(svc: Mapping[str, Any], link_type: str) -> list[str]:
    out = []
    for a in svc.get("attributes") or []:
        if isinstance(a, dict) and a.get("link_type") == link_type:
            term = a.get("taxonomy_term")
            if isinstance(term, dict) and isinstance(term.get("code"), str):
                out.append(term["code"])
    return out


def _hours(schedules: Iterable[Any]) -> list[str]:
    out = []
    for s in schedules:
        if not isinstance(s, dict):
            continue
        if isinstance(s.get("description"), str) and s["description"].strip():
            out.append(s["description"].strip())
            continue
        days = s.get("byday") or ""
        o, c = s.get("opens_at"), s.get("closes_at")
        if o or c:
            out.append(f"{days} {str(o or '')[:5]}-{str(c or '')[:5]}".strip())
    return out


def summarize_services(
    doc: Mapping[str, Any], *, node_id: str, node_country: str
) -> list[dict[str, Any]]:
    """Flat rows the directory page, the map and the exports show (one per service)."""
    org = doc["organization"]
    rows = []
    for svc in dereferenced_services(doc):
        locs = []
        hours = _hours(svc.get("schedules") or [])
        for sal in svc["service_at_locations"]:
            loc = sal.get("location") or {}
            addr: dict[str, Any] = next(iter(loc.get("addresses") or []), {}) or {}
            country = str(addr.get("country") or node_country).upper()
            locs.append(
                {
                    "name": loc.get("name") or "",
                    "latitude": loc.get("latitude"),
                    "longitude": loc.get("longitude"),
                    "city": addr.get("city") or "",
                    "address": addr.get("address_1") or "",
                    "country": country,
                    "location_type": loc.get("location_type"),
                }
            )
            hours += _hours(sal.get("schedules") or []) + _hours(loc.get("schedules") or [])
        phones = [p.get("number") for p in svc.get("phones") or [] if isinstance(p, dict)]
        langs = [
            (lang.get("code") or lang.get("name") or "")
            for lang in svc.get("languages") or []
            if isinstance(lang, dict)
        ]
        rows.append(
            {
                "node_id": node_id,
                "organization_id": org["id"],
                "organization": org.get("name") or "",
                "service_id": svc["id"],
                "name": svc.get("name") or "",
                "status": svc.get("status"),
                "description": svc.get("description") or "",
                "service_types": _codes(svc, "service_type"),
                "populations": _codes(svc, "population"),
                "languages": [x for x in langs if x],
                "hours": list(dict.fromkeys(hours)),
                "email": svc.get("email") or org.get("email") or "",
                "phones": [p for p in phones if isinstance(p, str)],
                "criteria": svc.get("eligibility_description") or "",
                "locations": locs,
                "countries": sorted({str(lo["country"]) for lo in locs} or {node_country.upper()}),
            }
        )
    return rows
