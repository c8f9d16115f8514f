"""proGres v4 <-> referral document: mapping model and pure conversions.

Outbound: one LP intervention (possibly several joined rows) becomes one referral.
Option sets are Dynamics integers (125080000...) with `...name` display columns;
intervention types and services are instance GUIDs. A code is looked up in the
id table first, then its display label in the label table; neither refuses the
record naming the field and the code. Specific-needs codes (SV-VA, CR-CP, DS-V)
map to protocol concerns through the protocol's own table.

proGres holds no consent record, so conversion refuses unless the operator
states the legal basis and who attests it; both are written into the referral.

Write-back: decisions in the PING ingestion shape and as CSV for manual import.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from ..base import (
    CONFLICT,
    MALFORMED,
    MISSING,
    UNKNOWN_OPTION,
    Converted,
    ConvertOptions,
    Outcome,
    RecordRejected,
    Rejection,
)
from ..document import attested_consent, finalize, parse_age, parse_date, strip_html
from ..mapping import check_values, service_ids
from ..names import country_by_name, language_by_name, norm
from .records import FieldIndex, Grouped, Lookup

__all__ = ["DEFAULT_MAPPING", "ProgresMapping", "convert_group", "decisions_csv",
           "decisions_ingestion"]

DEFAULT_MAPPING = Path(__file__).with_name("default_mapping.json")

#: logical fields the converter reads; the mapping must list keys for these
REQUIRED_FIELDS = ("intervention_number", "individual_id", "given_name", "family_name", "sex",
                   "date_of_birth", "intervention_type")
KNOWN_FIELDS = frozenset((*REQUIRED_FIELDS,
    "intervention_id", "registration_group", "middle_name", "common_name", "age", "sex_label",
    "nationality", "intervention_type_label", "priority", "priority_label",
    "specific_need_code", "specific_need", "specific_need_label", "specific_need_category",
    "specific_need_category_code", "language", "reason", "description", "referrer_name",
    "referrer_email", "referrer_phone", "referrer_position", "referrer_organization",
    "business_unit", "interoperability_referral_id"))


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OptionSet(_M):
    """Dynamics option set: integer code -> target, and display label -> target."""

    codes: dict[str, str] = {}
    labels: dict[str, str] = {}

    @field_validator("codes")
    @classmethod
    def _norm_codes(cls, v: dict[str, str]) -> dict[str, str]:
        return {k.lower().strip("{}"): t for k, t in v.items()}

    @field_validator("labels")
    @classmethod
    def _norm_labels(cls, v: dict[str, str]) -> dict[str, str]:
        return {norm(k): t for k, t in v.items()}


class AttestedConsent(_M):
    """What the consent record says when the operator attests a legal basis."""

    given_by: Literal["subject", "caregiver", "guardian", "legal_representative"] = "subject"
    status: Literal["granted", "refused", "withdrawn", "not_recorded"] = "granted"


class DecisionOut(_M):
    shipping_process_id: str | None = None
    interop_id: str | None = None
    #: which ref identifies the record in proGres (ExternalId of the ingestion payload)
    key_field: str = "progres_interventionnumber"
    status_field: str = "progres_reviewdecision"
    reason_field: str = "progres_interoperabiltyreferralrejectionreason"
    comment_field: str = "progres_comments"
    date_field: str = "progres_reviewdate"
    #: protocol status -> proGres option value
    status_codes: dict[str, int] = {}


class ProgresMapping(_M):
    system: Literal["progres"]
    description: str = ""
    fields: dict[str, list[str]]
    sex: OptionSet
    priority: OptionSet
    services: OptionSet
    #: v4 specific-needs sub-category labels -> UNHCR codes
    specific_need_labels: dict[str, str] = {}
    languages: dict[str, str] = {}
    match_language_names: bool = True
    countries: dict[str, str] = {}
    match_country_names: bool = True
    attested_consent: AttestedConsent = AttestedConsent()
    decisions: DecisionOut = DecisionOut()

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = sorted(set(v) - KNOWN_FIELDS)
        if unknown:
            raise ValueError(f"unknown logical field(s): {', '.join(unknown)}")
        missing = [f for f in REQUIRED_FIELDS if not v.get(f)]
        if missing:
            raise ValueError(f"no source keys for required field(s): {', '.join(missing)}")
        return v

    @field_validator("sex")
    @classmethod
    def _sex(cls, v: OptionSet) -> OptionSet:
        allowed = frozenset({"female", "male", "intersex", "unknown"})
        check_values(v.codes, allowed, "sex")
        check_values(v.labels, allowed, "sex")
        return v

    @field_validator("priority")
    @classmethod
    def _prio(cls, v: OptionSet) -> OptionSet:
        allowed = frozenset({"urgent", "high", "normal"})
        check_values(v.codes, allowed, "priority")
        check_values(v.labels, allowed, "priority")
        return v

    @field_validator("services")
    @classmethod
    def _services(cls, v: OptionSet) -> OptionSet:
        check_values(v.codes, service_ids(), "service id")
        check_values(v.labels, service_ids(), "service id")
        return v

    @field_validator("specific_need_labels")
    @classmethod
    def _codes(cls, v: dict[str, str]) -> dict[str, str]:
        from protocol import vocab

        check_values(v, vocab.ids("specific_needs"), "UNHCR specific-needs code")
        return {norm(k): c for k, c in v.items()}

    @model_validator(mode="after")
    def _decisions(self) -> ProgresMapping:
        bad = [k for k in self.decisions.status_codes
               if k not in ("received", "accepted", "declined", "in_progress", "completed")]
        if bad:
            raise ValueError(f"decisions.status_codes: not recipient statuses: {bad}")
        return self

    def index(self) -> FieldIndex:
        return FieldIndex(self.fields)


# ---------------------------------------------------------------------------------------------
# conversion
# ---------------------------------------------------------------------------------------------

_CODE = re.compile(r"^[A-Za-z0-9_.:{}\- ]{1,64}$")
_SN_CODE = re.compile(r"^[A-Z]{2}(-\s?[A-Z]{1,3})?$")


def _shown(v: str) -> str:
    """A source value may appear in a reason only when it looks like a code, not like text."""
    return v if _CODE.match(v) else "(value not shown)"


class _G:
    """Read access to one grouped intervention with conflict checks."""

    def __init__(self, g: Grouped) -> None:
        self.g = g

    def get(self, name: str) -> tuple[str, Any] | None:
        if name in self.g.conflicts:
            src = self.g.single[name][0]
            raise RecordRejected(src, CONFLICT,
                                 f"rows of this intervention disagree on {src}")
        return self.g.single.get(name)

    def text(self, name: str) -> str | None:
        hit = self.get(name)
        if hit is None:
            return None
        v = hit[1]
        if isinstance(v, Lookup):
            return v.name or None
        s = str(v).strip()
        return s or None

    def need(self, name: str, key_hint: str) -> tuple[str, Any]:
        hit = self.get(name)
        if hit is None:
            raise RecordRejected(key_hint, MISSING, f"{key_hint} is empty")
        return hit


def _option(opt: OptionSet, hit: tuple[str, Any], label: str | None, what: str) -> str:
    src, v = hit
    code: str | None
    if isinstance(v, Lookup):
        code, label = v.id.lower().strip("{}") or None, label or v.name
    elif isinstance(v, bool):
        raise RecordRejected(src, MALFORMED, f"{src} is not an option value")
    elif isinstance(v, int | float):
        code = str(int(v))
    else:
        s = str(v).strip()
        if s.lstrip("-").isdigit() or len(s) == 36 or s.startswith("{"):
            code = s.lower().strip("{}")
        else:
            code, label = None, label or s
    if code is not None and code in opt.codes:
        return opt.codes[code]
    if label and norm(label) in opt.labels:
        return opt.labels[norm(label)]
    if code is not None:
        raise RecordRejected(src, UNKNOWN_OPTION, f"unknown {what} id {_shown(code)} for {src}")
    raise RecordRejected(src, UNKNOWN_OPTION, f"unknown {what} label {_shown(label or '')} "
                         f"for {src}")


def _specific_need_codes(m: ProgresMapping, g: Grouped) -> list[tuple[str, str]]:
    """(source key, UNHCR code) for every specific need of the intervention."""
    from protocol import vocab

    known = vocab.ids("specific_needs")
    out: list[tuple[str, str]] = []
    subs = g.multi.get("specific_need_code", []) + g.multi.get("specific_need_label", []) + \
        g.multi.get("specific_need", [])
    cats = g.multi.get("specific_need_category_code", []) + \
        g.multi.get("specific_need_category", [])
    for src, v in subs + (cats if not subs else []):
        label = v.name if isinstance(v, Lookup) else str(v).strip()
        gid = v.id if isinstance(v, Lookup) else ""
        cand = label.upper().replace(" ", "")
        if _SN_CODE.match(label.upper()) and cand in known:
            code = cand
        else:
            code = m.specific_need_labels.get(norm(label), "")
        if not code:
            if not label and not gid:
                continue
            raise RecordRejected(src, UNKNOWN_OPTION, "unknown specific-needs value "
                                 f"{_shown(gid) if gid else '(label not shown)'} for {src}")
        if (src, code) not in out:
            out.append((src, code))
    return out


def _concerns(m: ProgresMapping, g: Grouped) -> list[str]:
    from protocol import vocab

    out: list[str] = []
    codes = _specific_need_codes(m, g)
    # a sub-category code is more precise than its category: drop categories already covered
    subs = {c.split("-")[0] for _s, c in codes if "-" in c}
    for _src, code in codes:
        if "-" not in code and code in subs:
            continue
        for c in vocab.concerns_for_specific_need(code):
            if c not in out:
                out.append(c)
    return out[:20]


def _languages(m: ProgresMapping, g: Grouped) -> list[str]:
    out: list[str] = []
    for src, v in g.multi.get("language", []):
        label = v.name if isinstance(v, Lookup) else str(v)
        code = m.languages.get(label) or (language_by_name(label) if m.match_language_names
                                          else None)
        if code is None:
            raise RecordRejected(src, UNKNOWN_OPTION, f"unknown language {_shown(label)} for "
                                 f"{src}")
        if code not in out:
            out.append(code)
    return out[:10]


def _reason(g: _G) -> str:
    parts: list[str] = []
    hit = g.get("reason")
    if hit is not None:
        raw = hit[1]
        items: Any = raw
        if isinstance(raw, str) and raw.strip().startswith("["):
            try:
                items = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise RecordRejected(hit[0], MALFORMED, f"{hit[0]} is not a JSON array "
                                     "of comments") from None
        if isinstance(items, list):
            parts.extend(strip_html(str(i.get("Text", ""))) for i in items if isinstance(i, dict))
        elif isinstance(items, str):
            parts.append(strip_html(items))
    desc = g.text("description")
    if desc:
        parts.append(strip_html(desc))
    text = "\n".join(p for p in parts if p).strip()
    if not text:
        raise RecordRejected("progres_reasonforreferral", MISSING,
                             "no reason for referral: progres_reasonforreferral and "
                             "progres_interventiondescription are empty")
    return text[:4000]


def convert_group(m: ProgresMapping, g: Grouped, options: ConvertOptions) -> list[Outcome]:
    sid = g.key or g.position
    if "__not_object__" in g.single:
        return [Rejection(sid, "", MALFORMED, f"{g.position}: record is not a JSON object")]
    try:
        return [_convert(m, g, options)]
    except RecordRejected as exc:
        return [Rejection(sid, exc.field, exc.code, exc.reason)]


def _convert(m: ProgresMapping, grouped: Grouped, options: ConvertOptions) -> Converted:
    g = _G(grouped)
    if not grouped.key:
        raise RecordRejected("progres_interventionnumber", MISSING,
                             "no intervention number or id: record cannot be identified")
    indiv = g.text("individual_id")
    if not indiv:
        raise RecordRejected("progres_id", MISSING, "progres_id (individual id) is empty")
    given = g.text("given_name")
    if not given:
        raise RecordRejected("progres_givenname", MISSING, "progres_givenname is empty")
    subject: dict[str, Any] = {"given_name": given}
    fam = g.text("family_name")
    if fam:
        subject["family_name"] = fam
    others = [t for n in ("middle_name", "common_name") if (t := g.text(n))]
    if others:
        subject["other_names"] = list(dict.fromkeys(others))
    sex_label = g.text("sex_label")
    sex_hit = g.get("sex") or (("progres_sexname", sex_label) if sex_label else None)
    if sex_hit is None:
        raise RecordRejected("progres_sex", MISSING, "progres_sex is empty")
    subject["sex"] = _option(m.sex, sex_hit, sex_label, "option")
    dob = g.get("date_of_birth")
    if dob is not None:
        subject["date_of_birth"] = parse_date(dob[1] if not isinstance(dob[1], Lookup)
                                              else dob[1].name, dob[0], dmy=True)
    age = g.get("age")
    if age is not None:
        subject["age"] = parse_age(age[1], age[0])
    if dob is None and age is None:
        raise RecordRejected("progres_dateofbirth", MISSING,
                             "progres_dateofbirth and progres_age are both empty")
    nat = g.get("nationality")
    if nat is not None:
        label = nat[1].name if isinstance(nat[1], Lookup) else str(nat[1])
        code = m.countries.get(label) or (country_by_name(label) if m.match_country_names
                                          else None)
        if code is None:
            raise RecordRejected(nat[0], UNKNOWN_OPTION, f"unknown country {_shown(label)} "
                                 f"for {nat[0]}")
        subject["nationality"] = [code]
    langs = _languages(m, grouped)
    if langs:
        subject["languages"] = langs
    ids = [{"system": "unhcr_individual", "value": indiv}]
    rg = g.text("registration_group")
    if rg:
        ids.append({"system": "unhcr_registration_group", "value": rg})
    ids.append({"system": "progres_intervention", "value": grouped.key})
    subject["identifiers"] = ids

    itype = g.get("intervention_type")
    itype_label = g.text("intervention_type_label")
    if itype is None and itype_label is None:
        raise RecordRejected("progres_interventiontype2", MISSING,
                             "progres_interventiontype2 (intervention type) is empty")
    service = _option(m.services, itype if itype is not None else
                      ("interventiontype.progres_description", itype_label),
                      itype_label, "intervention type")
    prio_label = g.text("priority_label")
    prio_hit = g.get("priority") or (("progres_priorityname", prio_label) if prio_label else None)
    if prio_hit is None:
        raise RecordRejected("progres_priority", MISSING, "progres_priority is empty")
    priority = _option(m.priority, prio_hit, prio_label, "option")

    consent = attested_consent(options, m.attested_consent.given_by, m.attested_consent.status,
                               "proGres")
    referrer = _referrer(g)
    draft: dict[str, Any] = {
        "priority": priority,
        "services": [service],
        "concerns": _concerns(m, grouped),
        "subject": subject,
        "consent": consent,
        "reason": _reason(g),
        "referrer": referrer,
    }
    doc = finalize(draft)
    refs = {"system": "progres", "progres_interventionnumber": grouped.key,
            "progres_individual": indiv}
    for name, key in (("intervention_id", "progres_lpinterventionid"),
                      ("interoperability_referral_id", "progres_interoperabilityreferralid")):
        t = g.text(name)
        if t:
            refs[key] = t
    return Converted(grouped.key, doc, refs)


def _referrer(g: _G) -> dict[str, Any]:
    email = g.text("referrer_email")
    name = g.text("referrer_name") or email
    if not name:
        raise RecordRejected("user.internalemailaddress", MISSING,
                             "no caseworker: business owner name and e-mail are empty")
    org = g.text("referrer_organization") or g.text("business_unit")
    if not org:
        raise RecordRejected("progres_businessunit", MISSING,
                             "no referring organisation: partner and business unit are empty")
    ref: dict[str, Any] = {"name": name[:200], "organization": org[:200]}
    pos = g.text("referrer_position")
    if pos:
        ref["position"] = pos[:200]
    contact = email or g.text("referrer_phone")
    if contact:
        ref["contact"] = contact[:200]
    return ref


# ---------------------------------------------------------------------------------------------
# decisions back to proGres
# ---------------------------------------------------------------------------------------------

def _decision_fields(m: ProgresMapping, status: str, at: str,
                     note: str | None) -> list[dict[str, Any]]:
    d = m.decisions
    if status not in d.status_codes:
        raise RecordRejected("status", UNKNOWN_OPTION, f"no proGres option for status {status}")
    fields: list[dict[str, Any]] = [{"Name": d.status_field, "Value": d.status_codes[status]},
                                    {"Name": d.date_field, "Value": at}]
    if note:
        fields.append({"Name": d.reason_field if status == "declined" else d.comment_field,
                       "Value": note[:2000]})
    return fields


def decisions_ingestion(m: ProgresMapping,
                        decisions: list[dict[str, Any]]) -> tuple[dict[str, Any], list[Rejection]]:
    """PING ingestion payload `{ShippingProcessId, InteropId, Data[{ExternalId, Fields}]}`.

    Each decision: {"external_id": <proGres key>, "status": <protocol status>, "at": <instant>,
    "note": optional}. Statuses without a configured proGres option are refused, never sent as
    some other value.
    """
    d = m.decisions
    data: list[dict[str, Any]] = []
    rejected: list[Rejection] = []
    for dec in decisions:
        ext = str(dec.get("external_id") or "")
        try:
            if not ext:
                raise RecordRejected("external_id", MISSING, "decision has no proGres key")
            fields = [{"Name": d.key_field, "Value": ext}]
            fields += _decision_fields(m, str(dec.get("status")), str(dec.get("at") or ""),
                                       dec.get("note"))
            data.append({"ExternalId": ext, "Attachments": [], "Fields": fields})
        except RecordRejected as exc:
            rejected.append(Rejection(ext or "?", exc.field, exc.code, exc.reason))
    payload = {"ShippingProcessId": d.shipping_process_id, "InteropId": d.interop_id,
               "Data": data}
    return payload, rejected


def decisions_csv(m: ProgresMapping, decisions: list[dict[str, Any]]) -> tuple[str, list[Rejection]]:
    """The same decisions as a CSV for manual import (one column per proGres field)."""
    payload, rejected = decisions_ingestion(m, decisions)
    d = m.decisions
    cols = [d.key_field, d.status_field, d.date_field, d.reason_field, d.comment_field]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for item in payload["Data"]:
        w.writerow({f["Name"]: f["Value"] for f in item["Fields"]})
    return buf.getvalue(), rejected
