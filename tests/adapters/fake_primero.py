"""A small Primero v2 API for tests, run in its own process with uvicorn.

Implements the request and response shapes documented in ../shared/reference/primero-api.md:
`{"data": ...}` envelopes, `metadata: {total, per, page}`, `per` capped at 1000, the
`last_updated_at=a..` range filter, field filters, subform deep-merge by `unique_id` on PATCH,
referrals with Primero's consent gate and status machine (in_progress -> accepted | rejected,
accepted -> done), lookups, HTTP Basic for a service account. Test-only routes start with /__.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

app = FastAPI()
USER = os.environ.get("FAKE_PRIMERO_USER", "rssn_sync")
PASSWORD = os.environ.get("FAKE_PRIMERO_PASSWORD", "s3cret-pass")
CASES: dict[str, dict[str, Any]] = {}
REFERRALS: dict[str, list[dict[str, Any]]] = {}
_T0 = dt.datetime(2026, 11, 20, 10, 0, 0, tzinfo=dt.UTC)
_tick = itertools.count(1)
LOOKUPS = [
    {"unique_id": "lookup-gender", "values": [{"id": "male"}, {"id": "female"}]},
    {"unique_id": "lookup-risk-level", "values": [{"id": "high"}, {"id": "medium"}, {"id": "low"}]},
    {"unique_id": "lookup-service-type", "values": [{"id": i} for i in (
        "safehouse_service", "health_medical_service", "psychosocial_service",
        "police_other_service", "legal_assistance_service", "livelihoods_service",
        "child_protection_service", "family_mediation_service", "family_seunification_service",
        "education_service", "nfi_clothes_shoes_service", "water_sanitation_service",
        "registration_service", "food_service", "other_service")]},
    {"unique_id": "lookup-protection-concerns", "values": [{"id": i} for i in (
        "sexually_exploited", "gbv_survivor", "trafficked_smuggled", "statelessness",
        "arrested_detained", "migrant", "disabled", "serious_health_issue", "refugee", "caafag",
        "street_child", "child_mother", "physically_or_mentally_abused",
        "living_with_vulnerable_person", "worst_forms_of_child_labor", "child_headed_household",
        "mentally_distressed", "other")]},
]


def _now() -> str:
    t = _T0 + dt.timedelta(milliseconds=next(_tick))
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _error(status: int, path: str, message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"code": status, "resource": path, "message": message}]},
                        status_code=status)


@app.middleware("http")
async def _auth(request: Request, call_next: Any) -> Any:
    if request.url.path.startswith("/api/"):
        import base64

        h = request.headers.get("authorization", "")
        ok = h == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode() or \
            h == "Bearer test-idp-token"
        if not ok:
            return _error(401, request.url.path, "Unauthorized")
    return await call_next(request)


def _merge(case: dict[str, Any], data: dict[str, Any]) -> None:
    for k, v in data.items():
        if isinstance(v, list) and k.endswith("_section") and isinstance(case.get(k), list):
            by = {e.get("unique_id"): e for e in case[k] if isinstance(e, dict)}
            for e in v:
                uid = e.get("unique_id") or str(uuid.uuid4())
                if e.get("_delete"):
                    case[k] = [x for x in case[k] if x.get("unique_id") != uid]
                elif uid in by:
                    by[uid].update(e)
                else:
                    case[k].append({**e, "unique_id": uid})
        else:
            case[k] = v


def _new_case(data: dict[str, Any]) -> dict[str, Any]:
    cid = str(data.get("id") or uuid.uuid4())
    uniq = str(uuid.uuid4())
    case = {"id": cid, "enabled": True, "record_state": True, "unique_identifier": uniq,
            "case_id": uniq, "short_id": uniq[-7:], "case_id_display": uniq[-7:],
            "created_at": _now(), "owned_by": USER, "owned_by_agency_id": "agency-ngo-a"}
    for k, v in data.items():
        if k.endswith("_section") and isinstance(v, list):
            case[k] = [{**e, "unique_id": e.get("unique_id") or str(uuid.uuid4())} for e in v]
        else:
            case[k] = v
    case["last_updated_at"] = _now()
    CASES[cid] = case
    REFERRALS.setdefault(cid, [])
    return case


def _matches(case: dict[str, Any], key: str, value: str) -> bool:
    if key == "last_updated_at":
        lo, _, hi = value.partition("..")
        lu = case.get("last_updated_at", "")
        return (not lo or lu >= lo) and (not hi or lu <= hi)
    v = case.get(key)
    if isinstance(v, list):
        return value in v
    return str(v) == value if v is not None else False


@app.get("/api/v2/cases")
def list_cases(request: Request) -> Any:
    q = dict(request.query_params)
    page = int(q.pop("page", 1))
    per = min(int(q.pop("per", 20)), 1000)
    order_by = q.pop("order_by", "created_at")
    order = q.pop("order", "desc")
    rows = [c for c in CASES.values() if all(_matches(c, k, v) for k, v in q.items())]
    rows.sort(key=lambda c: c.get(order_by) or "", reverse=order == "desc")
    return {"data": rows[(page - 1) * per: page * per],
            "metadata": {"total": len(rows), "per": per, "page": page}}


@app.post("/api/v2/cases")
async def create_case(request: Request) -> Any:
    body = await request.json()
    data = body.get("data") or {}
    if data.get("id") and data["id"] in CASES:
        return _error(409, "/api/v2/cases", "Conflict")
    case = _new_case(data)
    if data.get("id"):
        return Response(status_code=204)
    return {"data": case}


@app.get("/api/v2/cases/{cid}")
def get_case(cid: str) -> Any:
    if cid not in CASES:
        return _error(404, f"/api/v2/cases/{cid}", "Not Found")
    return {"data": CASES[cid]}


@app.patch("/api/v2/cases/{cid}")
async def patch_case(cid: str, request: Request) -> Any:
    if cid not in CASES:
        return _error(404, f"/api/v2/cases/{cid}", "Not Found")
    body = await request.json()
    _merge(CASES[cid], body.get("data") or {})
    CASES[cid]["last_updated_at"] = _now()
    return {"data": CASES[cid]}


@app.get("/api/v2/cases/{cid}/referrals")
def get_referrals(cid: str) -> Any:
    if cid not in CASES:
        return _error(404, f"/api/v2/cases/{cid}/referrals", "Not Found")
    return {"data": REFERRALS[cid]}


def _consent_ok(case: dict[str, Any]) -> bool:
    if case.get("module_id") == "primeromodule-gbv":
        return case.get("consent_for_services") is True
    return case.get("consent_for_services") is True and case.get("disclosure_other_orgs") is True


@app.post("/api/v2/cases/{cid}/referrals")
async def post_referral(cid: str, request: Request) -> Any:
    path = f"/api/v2/cases/{cid}/referrals"
    if cid not in CASES:
        return _error(404, path, "Not Found")
    data = (await request.json()).get("data") or {}
    case = CASES[cid]
    if not _consent_ok(case) and not data.get("consent_overridden"):
        return _error(422, path, "transition.errors.consent")
    if not data.get("remote") and not data.get("transitioned_to"):
        return _error(422, path, "transition.errors.to_user_can_receive")
    allowed = {"transitioned_to", "transitioned_to_remote", "transitioned_to_agency", "service",
               "service_record_id", "remote", "type_of_export", "notes", "consent_overridden",
               "authorized_role_unique_id", "allow_case_creation"}
    t = {k: v for k, v in data.items() if k in allowed}
    t.update({"id": str(uuid.uuid4()), "type": "Referral", "status": "in_progress",
              "record_id": cid, "record_type": "case", "transitioned_by": USER,
              "created_at": _now(), "record_access_denied": False,
              "user_can_accept_or_reject": False})
    REFERRALS[cid].append(t)
    for s in case.get("services_section") or []:
        if s.get("unique_id") == t.get("service_record_id"):
            s["service_status_referred"] = True
    case["last_updated_at"] = _now()
    return {"data": t}


@app.patch("/api/v2/cases/{cid}/referrals/{rid}")
async def patch_referral(cid: str, rid: str, request: Request) -> Any:
    path = f"/api/v2/cases/{cid}/referrals/{rid}"
    t = next((x for x in REFERRALS.get(cid, []) if x["id"] == rid), None)
    if t is None:
        return _error(404, path, "Not Found")
    data = (await request.json()).get("data") or {}
    target = data.get("status")
    moves = {("in_progress", "accepted"), ("in_progress", "rejected"), ("accepted", "done")}
    if (t["status"], target) not in moves:
        return _error(422, path, "transition.errors.status")
    t["status"] = target
    t["responded_at"] = _now()
    for k in ("rejected_reason", "rejection_note"):
        if data.get(k):
            t[k] = data[k]
    if target == "done":
        for s in CASES[cid].get("services_section") or []:
            if s.get("unique_id") == t.get("service_record_id"):
                s["service_implemented"] = "implemented"
                s["note_on_referral_from_provider"] = data.get("rejection_note")
    CASES[cid]["last_updated_at"] = _now()
    return {"data": t}


@app.get("/api/v2/lookups")
def lookups(page: int = 1, per: int = 20) -> Any:
    per = min(per, 1000)
    return {"data": LOOKUPS[(page - 1) * per: page * per],
            "metadata": {"total": len(LOOKUPS), "per": per, "page": page}}


@app.post("/__seed")
async def seed(request: Request) -> Any:
    case = _new_case((await request.json())["data"])
    return {"data": case}


@app.get("/__health")
def health() -> Any:
    return {"ok": True}

