"""Primero v2 <-> referral document: the mapping model and the pure conversions.

Outbound: a case with a referral (transition) to the network, or a service entry
marked for an external network referral, becomes one referral document per
service. Primero's own consent rule is applied first (GBV module: consent_for_services;
other modules: consent_for_services and disclosure_other_orgs).

Inbound: a referral document becomes a case payload (create or update, matched by
an external-id field) with one service entry; a decision becomes the body of
`PATCH /api/v2/cases/:id/referrals/:referral_id`.

Every option id goes through the mapping; an id that is not there refuses the
record with the field and the id. Nothing is defaulted.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..base import (
    CONSENT,
    MALFORMED,
    MISSING,
    UNKNOWN_OPTION,
    Converted,
    ConvertOptions,
    Outcome,
    RecordRejected,
    Rejection,
    Skipped,
    SourceRecord,
)
from ..document import finalize, parse_age, parse_date, parse_instant
from ..mapping import check_values, concern_ids, country_ids, language_ids, service_ids
from ..names import country_by_name, language_by_name, norm

__all__ = [
    "DEFAULT_MAPPING",
    "PrimeroMapping",
    "case_payload",
    "case_referrals",
    "decision_patch",
    "outbound_units",
]

DEFAULT_MAPPING = Path(__file__).with_name("default_mapping.json")
PRIORITY_ORDER = {"urgent": 3, "high": 2, "normal": 1}
_NS = uuid.UUID("6f0b7c52-4f5e-4d7c-9a57-5e7d1c3b9a10")


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CaseFields(_M):
    record_id: str = "id"
    case_id: str = "case_id"
    case_id_display: str = "case_id_display"
    given_name: str = "name_first"
    middle_name: str | None = "name_middle"
    family_name: str = "name_last"
    nickname: str | None = "name_nickname"
    sex: str = "sex"
    age: str = "age"
    date_of_birth: str = "date_of_birth"
    age_estimated: str | None = "estimated"
    nationality: str | None = "nationality"
    language: str | None = "language"
    protection_concerns: str = "protection_concerns"
    protection_status: str | None = "protection_status"
    risk_level: str = "risk_level"
    urgent: str | None = "urgent_protection_concern"
    module: str = "module_id"
    consent_for_services: str = "consent_for_services"
    disclosure_other_orgs: str = "disclosure_other_orgs"
    interview_subject: str = "interview_subject"
    #: first field present gives consent.obtained_at (Primero's seed has no consent date; the
    #: Data Confidentiality form is completed at registration)
    consent_obtained_at: list[str] = ["registration_date"]
    referrer_name: list[str] = ["owned_by_full_name", "owned_by"]
    referrer_organization: str = "owned_by_agency_id"
    referrer_position: str | None = "owned_by_position"
    referrer_contact: list[str] = ["owned_by_email", "owned_by_phone"]
    services: str = "services_section"
    caregivers: str | None = "care_arrangements_section"
    unhcr_individual_no: str | None = "unhcr_individual_no"
    unhcr_id_no: str | None = "unhcr_id_no"
    #: case field that stores the network referral id of an inbound referral (the upsert key)
    external_id: str = "rssn_referral_id"
    last_updated: str = "last_updated_at"
    enabled: str = "record_state"


class ServiceFields(_M):
    unique_id: str = "unique_id"
    service_type: str = "service_type"
    notes: str = "service_referral_notes"
    timeframe: str | None = "service_response_timeframe"
    implementing_agency: str = "service_implementing_agency"
    implementing_user: str = "service_implementing_agency_individual"
    #: service-level copy of the network referral id (marks inbound entries; never sent out)
    external_id: str = "rssn_referral_id"
    #: where the network's status of an inbound referral is written
    status: str = "rssn_referral_status"


class CaregiverFields(_M):
    given_name: str = "name_caregiver"
    relationship: str = "relationship_caregiver"


class Rule(_M):
    field: str
    values: list[str] = Field(min_length=1)


class Outbound(_M):
    #: Primero users standing for the network (the placeholder-user pattern); a referral to
    #: one of them, or a service assigned to one, goes out.
    network_users: list[str] = []
    network_agencies: list[str] = []
    #: a referral with `remote: true` to one of these agencies goes out (empty: any remote)
    remote_agencies: list[str] = []
    #: service entries matching any rule go out
    service_rules: list[Rule] = []


class Inbound(_M):
    module_id: str = "primeromodule-cp"
    owned_by: str | None = None
    case_constants: dict[str, Any] = {}
    service_constants: dict[str, Any] = {}
    #: protocol priority -> Primero risk_level option id for inbound cases
    priority_to_risk_level: dict[str, str] = {}


class Options(_M):
    sex: dict[str, str]
    service_type: dict[str, str]
    protection_concerns: dict[str, list[str]]
    protection_status: dict[str, list[str]] = {}
    risk_level: dict[str, str]
    timeframe: dict[str, str] = {}
    #: priority given when the urgent_protection_concern field is true (null: field ignored)
    urgent_priority: str | None = None
    interview_subject: dict[str, str]
    caregiver_relationship: dict[str, str] = {}
    nationality: dict[str, str] = {}
    #: unmatched nationality ids are matched against ISO country names ("el_salvador" -> SV)
    match_country_names: bool = True
    language: dict[str, str] = {}
    match_language_names: bool = True
    #: agency id -> organisation name shown to the recipient (absent: the agency id itself)
    agencies: dict[str, str] = {}

    @field_validator("service_type")
    @classmethod
    def _services(cls, v: dict[str, str]) -> dict[str, str]:
        return check_values(v, service_ids(), "service id")

    @field_validator("protection_concerns", "protection_status")
    @classmethod
    def _concerns(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        return check_values(v, concern_ids(), "concern id")

    @field_validator("sex")
    @classmethod
    def _sex(cls, v: dict[str, str]) -> dict[str, str]:
        return check_values(v, frozenset({"female", "male", "intersex", "unknown"}), "sex")

    @field_validator("risk_level", "timeframe")
    @classmethod
    def _prio(cls, v: dict[str, str]) -> dict[str, str]:
        return check_values(v, frozenset(PRIORITY_ORDER), "priority")

    @field_validator("interview_subject")
    @classmethod
    def _given_by(cls, v: dict[str, str]) -> dict[str, str]:
        return check_values(v, frozenset({"subject", "caregiver", "guardian",
                                          "legal_representative"}), "consent given_by")

    @field_validator("caregiver_relationship")
    @classmethod
    def _rel(cls, v: dict[str, str]) -> dict[str, str]:
        return check_values(v, frozenset({"mother", "father", "grandparent", "sibling",
                                          "other_relative", "foster_carer", "legal_guardian",
                                          "institution", "other"}), "caregiver relationship")

    @field_validator("nationality")
    @classmethod
    def _countries(cls, v: dict[str, str]) -> dict[str, str]:
        return check_values(v, country_ids(), "ISO 3166-1 code")

    @field_validator("language")
    @classmethod
    def _languages(cls, v: dict[str, str]) -> dict[str, str]:
        return check_values(v, language_ids(), "language code")


class PrimeroMapping(_M):
    system: Literal["primero"]
    description: str = ""
    fields: CaseFields = CaseFields()
    service_fields: ServiceFields = ServiceFields()
    caregiver_fields: CaregiverFields = CaregiverFields()
    options: Options
    gbv_modules: list[str] = ["primeromodule-gbv"]
    outbound: Outbound
    inbound: Inbound = Inbound()
    #: protocol status -> Primero referral status written back by PATCH
    decisions: dict[str, Literal["accepted", "rejected", "done"]] = {
        "accepted": "accepted", "declined": "rejected", "completed": "done"}

    @model_validator(mode="after")
    def _outbound_not_empty(self) -> PrimeroMapping:
        o = self.outbound
        if not (o.network_users or o.network_agencies or o.service_rules or o.remote_agencies):
            raise ValueError("outbound: name at least one network user, agency or service rule")
        for k in self.decisions:
            if k not in ("accepted", "declined", "completed", "in_progress", "received"):
                raise ValueError(f"decisions: {k!r} is not a protocol status a recipient sends")
        return self


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def _present(v: Any) -> bool:
    return v is not None and v != "" and v != []


def _truthy(v: Any) -> bool:
    return v is True or (isinstance(v, str) and v.strip().lower() == "true")


def _opt(table: dict[str, Any], value: Any, field: str) -> Any:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise RecordRejected(field, MALFORMED, f"{field} is not an option id")
    key = str(value)
    if key not in table:
        raise RecordRejected(field, UNKNOWN_OPTION, f"unknown option id {key[:80]} for {field}")
    return table[key]


def _as_list(v: Any, field: str) -> list[Any]:
    if v is None or v == "":
        return []
    if isinstance(v, list):
        return v
    if isinstance(v, str):
        return [v]
    raise RecordRejected(field, MALFORMED, f"{field} is not a list of option ids")


def _text(v: Any) -> str | None:
    if isinstance(v, str) and v.strip():
        return v.strip()
    if isinstance(v, int | float) and not isinstance(v, bool):
        return str(v)
    return None


def _nationality(m: PrimeroMapping, case: dict[str, Any]) -> list[str]:
    f = m.fields.nationality
    if f is None:
        return []
    out: list[str] = []
    for v in _as_list(case.get(f), f):
        if not isinstance(v, str):
            raise RecordRejected(f, MALFORMED, f"{f} is not a list of option ids")
        code = m.options.nationality.get(v)
        if code is None and m.options.match_country_names:
            code = country_by_name(v)
        if code is None:
            raise RecordRejected(f, UNKNOWN_OPTION, f"unknown option id {v[:80]} for {f}")
        if code not in out:
            out.append(code)
    return out


def _languages(m: PrimeroMapping, case: dict[str, Any]) -> list[str]:
    f = m.fields.language
    if f is None:
        return []
    out: list[str] = []
    for v in _as_list(case.get(f), f):
        if not isinstance(v, str):
            raise RecordRejected(f, MALFORMED, f"{f} is not a list of option ids")
        code = m.options.language.get(v)
        if code is None and m.options.match_language_names:
            code = language_by_name(v.lstrip("_"))
        if code is None:
            raise RecordRejected(f, UNKNOWN_OPTION, f"unknown option id {v[:80]} for {f}")
        if code not in out:
            out.append(code)
    return out


def _concerns(m: PrimeroMapping, case: dict[str, Any]) -> list[str]:
    out: list[str] = []
    f = m.fields.protection_concerns
    for v in _as_list(case.get(f), f):
        for c in _opt(m.options.protection_concerns, v, f):
            if c not in out:
                out.append(c)
    ps = m.fields.protection_status
    if ps is not None and _present(case.get(ps)):
        for v in _as_list(case.get(ps), ps):
            for c in _opt(m.options.protection_status, v, ps):
                if c not in out:
                    out.append(c)
    return out[:20]


def _priority(m: PrimeroMapping, case: dict[str, Any], service: dict[str, Any]) -> str:
    found: list[str] = []
    tf = m.service_fields.timeframe
    if tf is not None and _present(service.get(tf)):
        found.append(_opt(m.options.timeframe, service[tf], tf))
    if m.fields.urgent and m.options.urgent_priority and _truthy(case.get(m.fields.urgent)):
        found.append(m.options.urgent_priority)
    rl = m.fields.risk_level
    if _present(case.get(rl)):
        found.append(_opt(m.options.risk_level, case[rl], rl))
    if not found:
        raise RecordRejected(rl, MISSING, f"no priority: {rl} is empty and no response timeframe")
    return max(found, key=PRIORITY_ORDER.__getitem__)


def _consent(m: PrimeroMapping, case: dict[str, Any]) -> dict[str, Any]:
    f = m.fields
    module = case.get(f.module)
    if not _truthy(case.get(f.consent_for_services)):
        raise RecordRejected(f.consent_for_services, CONSENT,
                             f"{f.consent_for_services} is not true (Primero consent rule)")
    if module not in m.gbv_modules and not _truthy(case.get(f.disclosure_other_orgs)):
        raise RecordRejected(f.disclosure_other_orgs, CONSENT,
                             f"{f.disclosure_other_orgs} is not true (Primero consent rule for "
                             "non-GBV cases)")
    subject = case.get(f.interview_subject)
    if not _present(subject):
        raise RecordRejected(f.interview_subject, MISSING,
                             f"{f.interview_subject} is empty: who gave consent is unknown")
    given_by = _opt(m.options.interview_subject, subject, f.interview_subject)
    obtained = None
    for name in f.consent_obtained_at:
        if _present(case.get(name)):
            obtained = parse_instant(case[name], name)
            break
    if obtained is None:
        raise RecordRejected(f.consent_obtained_at[0], MISSING,
                             "no consent date: " + ", ".join(f.consent_obtained_at) + " empty")
    return {"status": "granted", "given_by": given_by, "obtained_at": obtained,
            "legal_basis": "consent"}


def _first(case: dict[str, Any], names: list[str]) -> tuple[str, str] | None:
    for n in names:
        t = _text(case.get(n))
        if t:
            return n, t
    return None


def _subject(m: PrimeroMapping, case: dict[str, Any]) -> dict[str, Any]:
    f = m.fields
    given = _text(case.get(f.given_name))
    if not given:
        raise RecordRejected(f.given_name, MISSING, f"{f.given_name} is empty")
    subj: dict[str, Any] = {"given_name": given}
    fam = _text(case.get(f.family_name))
    if fam:
        subj["family_name"] = fam
    others = [t for n in (f.middle_name, f.nickname) if n and (t := _text(case.get(n)))]
    if others:
        subj["other_names"] = others
    sex = case.get(f.sex)
    if not _present(sex):
        raise RecordRejected(f.sex, MISSING, f"{f.sex} is empty")
    subj["sex"] = _opt(m.options.sex, sex, f.sex)
    if _present(case.get(f.date_of_birth)):
        subj["date_of_birth"] = parse_date(case[f.date_of_birth], f.date_of_birth)
    if _present(case.get(f.age)):
        subj["age"] = parse_age(case[f.age], f.age)
    if "date_of_birth" not in subj and "age" not in subj:
        raise RecordRejected(f.age, MISSING, f"{f.age} and {f.date_of_birth} are both empty")
    if f.age_estimated and _truthy(case.get(f.age_estimated)):
        subj["age_estimated"] = True
    subj["nationality"] = _nationality(m, case)
    subj["languages"] = _languages(m, case)
    ids = [{"system": "primero", "value": str(case[f.case_id_display])}]
    if _present(case.get(f.record_id)):
        ids.append({"system": "primero_record", "value": str(case[f.record_id])})
    for name, system in ((f.unhcr_individual_no, "unhcr_individual"),
                         (f.unhcr_id_no, "unhcr_registration_group")):
        if name and (t := _text(case.get(name))):
            ids.append({"system": system, "value": t})
    subj["identifiers"] = ids
    return subj


def _is_minor(subj: dict[str, Any], on: str) -> bool:
    if subj.get("age") is not None and subj["age"] < 18:
        return True
    dob = subj.get("date_of_birth")
    if dob:
        y, mo, d = (int(x) for x in dob.split("-"))
        oy, omo, od = (int(x) for x in on[:10].split("-"))
        return oy - y - ((omo, od) < (mo, d)) < 18
    return False


def _caregiver(m: PrimeroMapping, case: dict[str, Any]) -> dict[str, Any] | None:
    f = m.fields.caregivers
    if f is None or not _present(case.get(f)):
        return None
    entries = case[f]
    if not isinstance(entries, list):
        raise RecordRejected(f, MALFORMED, f"{f} is not a subform list")
    cf = m.caregiver_fields
    for e in entries:
        if isinstance(e, dict) and _text(e.get(cf.given_name)):
            rel = e.get(cf.relationship)
            if not _present(rel):
                raise RecordRejected(f"{f}.{cf.relationship}", MISSING,
                                     f"{cf.relationship} is empty")
            return {"given_name": _text(e[cf.given_name]),
                    "relationship": _opt(m.options.caregiver_relationship, rel,
                                         f"{f}.{cf.relationship}")}
    return None


def _referrer(m: PrimeroMapping, case: dict[str, Any],
              transition: dict[str, Any] | None) -> dict[str, Any]:
    f = m.fields
    name = _text(transition.get("transitioned_by")) if transition else None
    if name is None:
        hit = _first(case, f.referrer_name)
        name = hit[1] if hit else None
    if not name:
        raise RecordRejected(f.referrer_name[-1], MISSING,
                             "no caseworker: " + ", ".join(f.referrer_name) + " empty")
    org = (_text(transition.get("transitioned_by_user_agency")) if transition else None) \
        or _text(case.get(f.referrer_organization))
    if not org:
        raise RecordRejected(f.referrer_organization, MISSING,
                             f"{f.referrer_organization} is empty")
    ref: dict[str, Any] = {"name": name, "organization": m.options.agencies.get(org, org)}
    if f.referrer_position and (pos := _text(case.get(f.referrer_position))):
        ref["position"] = pos
    hit = _first(case, f.referrer_contact)
    if hit:
        ref["contact"] = hit[1]
    return ref


# ---------------------------------------------------------------------------------------------
# outbound
# ---------------------------------------------------------------------------------------------

def _matches(m: PrimeroMapping, service: dict[str, Any]) -> bool:
    sf = m.service_fields
    if _present(service.get(sf.external_id)):
        return False  # an inbound referral written by us: never echo it back out
    o = m.outbound
    if o.network_users and service.get(sf.implementing_user) in o.network_users:
        return True
    if o.network_agencies and service.get(sf.implementing_agency) in o.network_agencies:
        return True
    return any(service.get(r.field) in r.values for r in o.service_rules)


def _transition_matches(m: PrimeroMapping, t: dict[str, Any]) -> bool:
    if t.get("type", "Referral") != "Referral" or t.get("status") not in (None, "in_progress"):
        return False
    o = m.outbound
    if t.get("remote") is True and (not o.remote_agencies
                                    or t.get("transitioned_to_agency") in o.remote_agencies):
        return True
    return (t.get("transitioned_to") in o.network_users
            or t.get("transitioned_to_agency") in o.network_agencies)


def outbound_units(m: PrimeroMapping, case: dict[str, Any],
                   referrals: list[dict[str, Any]] | None = None
                   ) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """(service entry, transition or None) pairs that should become referral documents."""
    sf = m.service_fields
    raw = case.get(m.fields.services)
    if raw is None:
        services: list[Any] = []
    elif isinstance(raw, list):
        services = raw
    else:
        raise RecordRejected(m.fields.services, MALFORMED,
                             f"{m.fields.services} is not a subform list")
    by_uid = {s.get(sf.unique_id): s for s in services if isinstance(s, dict)}
    units: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    seen: set[str] = set()
    for t in referrals if referrals is not None else (case.get("referrals") or []):
        if not isinstance(t, dict) or not _transition_matches(m, t):
            continue
        uid = t.get("service_record_id") or ""
        svc = by_uid.get(uid)
        if svc is None:
            # a referral without a linked service entry: the transition names the service
            svc = {sf.unique_id: uid or f"transition-{t.get('id')}",
                   sf.service_type: t.get("service"), sf.notes: t.get("notes")}
        key = str(svc.get(sf.unique_id))
        if key not in seen:
            seen.add(key)
            units.append((svc, t))
    for s in services:
        if isinstance(s, dict) and _matches(m, s):
            key = str(s.get(sf.unique_id))
            if key not in seen:
                seen.add(key)
                units.append((s, None))
    return units


def case_referrals(m: PrimeroMapping, record: SourceRecord, options: ConvertOptions,
                   referrals: list[dict[str, Any]] | None = None) -> list[Outcome]:
    case = record.data
    sid = record.source_id
    if case.get("__not_object__"):
        return [Rejection(sid, "", MALFORMED, f"{record.position}: record is not a JSON object")]
    f = m.fields
    if case.get(f.enabled) is False or case.get("enabled") is False:
        return [Skipped(sid, "case is disabled")]
    try:
        units = outbound_units(m, case, referrals)
    except RecordRejected as exc:
        return [Rejection(sid, exc.field, exc.code, exc.reason)]
    if not units:
        why = "no service or referral marked for the network"
        if m.fields.services not in case and record.position.startswith("row"):
            why += f" ({m.fields.services} absent: CSV exports omit subforms)"
        return [Skipped(sid, why)]
    if not _present(case.get(f.case_id_display)):
        return [Rejection(sid, f.case_id_display, MISSING, f"{f.case_id_display} is empty")]
    try:
        consent = _consent(m, case)
        subject = _subject(m, case)
        concerns = _concerns(m, case)
        caregiver = _caregiver(m, case)
    except RecordRejected as exc:
        return [Rejection(sid, exc.field, exc.code, exc.reason)]
    out: list[Outcome] = []
    sf = m.service_fields
    for service, transition in units:
        uid = str(service.get(sf.unique_id) or "")
        usid = f"{sid}/{uid}" if uid else sid
        try:
            stype = service.get(sf.service_type)
            if not _present(stype):
                raise RecordRejected(sf.service_type, MISSING, f"{sf.service_type} is empty")
            reason = _text(service.get(sf.notes)) or (
                _text(transition.get("notes")) if transition else None)
            if not reason:
                raise RecordRejected(sf.notes, MISSING, f"no reason for referral: {sf.notes} "
                                     "is empty")
            draft: dict[str, Any] = {
                "priority": _priority(m, case, service),
                "services": [_opt(m.options.service_type, stype, sf.service_type)],
                "concerns": concerns,
                "subject": subject,
                "consent": consent,
                "reason": reason,
                "referrer": _referrer(m, case, transition),
            }
            if caregiver is not None and _is_minor(subject, consent["obtained_at"]):
                draft["caregiver"] = caregiver
            doc = finalize(draft)
        except RecordRejected as exc:
            out.append(Rejection(usid, exc.field, exc.code, exc.reason))
            continue
        refs = {"system": "primero", "primero_record_id": str(case.get(f.record_id) or ""),
                "primero_case_id": str(case.get(f.case_id) or ""),
                "case_id_display": str(case[f.case_id_display]), "service_unique_id": uid,
                "primero_referral_id": str(transition.get("id") or "") if transition else ""}
        out.append(Converted(usid, doc, refs))
    return out


# ---------------------------------------------------------------------------------------------
# inbound
# ---------------------------------------------------------------------------------------------

def _reverse(table: dict[str, Any], value: str, field: str, what: str) -> str:
    for k, v in table.items():
        if v == value or (isinstance(v, list) and value in v):
            return k
    raise RecordRejected(field, UNKNOWN_OPTION, f"no Primero {what} option for {value}")


def external_service_id(referral_id: str, service: str) -> str:
    """Deterministic service unique_id, so a retried create updates the same entry."""
    return str(uuid.uuid5(_NS, f"{referral_id}:{service}"))


def case_payload(m: PrimeroMapping, doc: dict[str, Any], referral_id: str) -> dict[str, Any]:
    """Case fields (the `data` of POST/PATCH /api/v2/cases) for an inbound referral."""
    f, sf, o = m.fields, m.service_fields, m.options
    s = doc["subject"]
    data: dict[str, Any] = {f.external_id: referral_id, f.given_name: s["given_name"]}
    if s.get("family_name"):
        data[f.family_name] = s["family_name"]
    if s.get("other_names") and f.middle_name:
        data[f.middle_name] = s["other_names"][0]
    data[f.sex] = _reverse(o.sex, s["sex"], "subject.sex", "sex")
    if "date_of_birth" in s:
        data[f.date_of_birth] = s["date_of_birth"]
    if "age" in s:
        data[f.age] = s["age"]
    if f.age_estimated:
        data[f.age_estimated] = bool(s.get("age_estimated", False))
    if f.nationality:
        nat = []
        for code in s.get("nationality", []):
            key = next((k for k, v in o.nationality.items() if v == code), None)
            if key is None and o.match_country_names:
                from protocol import vocab
                key = norm(vocab.countries()[code].labels["en"].split(",")[0].split("(")[0])
            if key is None:
                raise RecordRejected("subject.nationality", UNKNOWN_OPTION,
                                     f"no Primero nationality option for {code}")
            nat.append(key)
        data[f.nationality] = nat
    if f.language and s.get("languages"):
        langs = []
        for code in s["languages"]:
            key = next((k for k, v in o.language.items() if v == code), None)
            if key is None and o.match_language_names:
                from protocol import vocab
                key = norm(vocab.languages()[code].labels["en"].split(",")[0].split(";")[0])
            if key is None:
                raise RecordRejected("subject.languages", UNKNOWN_OPTION,
                                     f"no Primero language option for {code}")
            langs.append(key)
        data[f.language] = langs
    for ident in s.get("identifiers", []):
        if ident["system"] == "unhcr_individual" and f.unhcr_individual_no:
            data[f.unhcr_individual_no] = ident["value"]
        elif ident["system"] == "unhcr_registration_group" and f.unhcr_id_no:
            data[f.unhcr_id_no] = ident["value"]
    data[f.protection_concerns] = [
        _reverse(o.protection_concerns, c, "concerns", "protection concern")
        for c in doc.get("concerns", [])]
    rl = m.inbound.priority_to_risk_level.get(doc["priority"])
    if rl is None:
        rl = _reverse(o.risk_level, doc["priority"], "priority", "risk level")
    data[f.risk_level] = rl
    consent = doc["consent"]
    granted = consent["status"] == "granted"
    data[f.consent_for_services] = granted
    data[f.disclosure_other_orgs] = granted
    try:
        data[f.interview_subject] = _reverse(o.interview_subject, consent["given_by"],
                                             "consent.given_by", "interview subject")
    except RecordRejected:
        if consent["legal_basis"] == "consent":
            raise
    data[f.module] = m.inbound.module_id
    if m.inbound.owned_by:
        data["owned_by"] = m.inbound.owned_by
    if doc.get("caregiver") and f.caregivers:
        cg = doc["caregiver"]
        data[f.caregivers] = [{
            "unique_id": external_service_id(referral_id, "caregiver"),
            m.caregiver_fields.given_name: " ".join(
                x for x in (cg["given_name"], cg.get("family_name")) if x),
            m.caregiver_fields.relationship: _reverse(o.caregiver_relationship,
                                                      cg["relationship"], "caregiver",
                                                      "relationship"),
        }]
    services = []
    for svc in doc["services"]:
        entry = {
            sf.unique_id: external_service_id(referral_id, svc),
            sf.service_type: _reverse(o.service_type, svc, "services", "service type"),
            sf.notes: doc["reason"],
            sf.external_id: referral_id,
            sf.status: "requested",
            "service_request_agency": doc["referrer"]["organization"],
            "service_request_title": doc["referrer"].get("position"),
            "service_request_contact": doc["referrer"].get("contact"),
            "service_request_name": doc["referrer"]["name"],
        }
        entry.update(m.inbound.service_constants)
        services.append({k: v for k, v in entry.items() if v is not None})
    data[f.services] = services
    data.update(m.inbound.case_constants)
    return data


def decision_patch(m: PrimeroMapping, status: str,
                   note: str | None = None) -> dict[str, Any] | None:
    """Body for PATCH /api/v2/cases/:id/referrals/:rid, or None when the status is not a
    Primero decision (received, in_progress). Unknown statuses refuse: never read as accepted."""
    if status in ("received", "in_progress") and status not in m.decisions:
        return None
    target = m.decisions.get(status)
    if target is None:
        raise RecordRejected("status", UNKNOWN_OPTION, f"no Primero referral status for {status}")
    data: dict[str, Any] = {"status": target}
    if note:
        if target == "rejected":
            data["rejected_reason"] = note[:1000]
        elif target == "done":
            data["rejection_note"] = note[:1000]
    return {"data": data}
