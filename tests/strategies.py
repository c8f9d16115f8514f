"""Hypothesis strategies for protocol v1 documents, shared by every test that needs bodies.

All strategies yield JSON dicts (what arrives on the wire), not models:

- `referral_documents(normal=False, shareable=True)`: valid referrals. Spanish and Indigenous
  names with accents and apostrophes, adults and children (with caregivers, or without one under
  the best-interests basis), optional contact, location, identifiers, scopes, attachments.
  `normal=True` yields the normal form (what `document_to_json` writes); otherwise times may
  carry offsets or fractions and defaults may be spelled out. `shareable=True` (default) yields
  referrals that `check_consent` accepts for any recipient at any `now` from
  SHAREABLE_FROM to SHAREABLE_UNTIL; `shareable=False` also yields refused, withdrawn,
  expiring and scoped consents.
- `status_changes()`, `receipts()`, `consent_withdrawals()`, `problems()`.
- `documents_for_kind(kind)`: the strategy for an envelope kind.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from protocol import vocab
from protocol.documents import (
    GIVEN_BY,
    KINDS,
    LEGAL_BASES,
    PRIORITIES,
    REPORTABLE_STATUSES,
    document_to_json,
    parse_document,
)

__all__ = [
    "FAMILY_NAMES",
    "GIVEN_NAMES",
    "SHAREABLE_FROM",
    "SHAREABLE_UNTIL",
    "consent_withdrawals",
    "documents_for_kind",
    "instants",
    "node_ids",
    "problems",
    "receipts",
    "referral_documents",
    "status_changes",
    "uuids",
]

#: Referrals from `referral_documents(shareable=True)` pass check_consent at any `now` in
#: [SHAREABLE_FROM, SHAREABLE_UNTIL): consent obtained before, expiring (if at all) after.
SHAREABLE_FROM = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SHAREABLE_UNTIL = datetime(2031, 1, 1, tzinfo=UTC)
_EARLIEST = datetime(2024, 1, 1, tzinfo=UTC)

GIVEN_NAMES = (
    "Ana",
    "José",
    "María José",
    "Néstor",
    "Begoña",
    "Xiomara",
    "Yésica",
    "Jhon Fredy",
    "Luz Ángela",
    "Wílmer",
    "Itzel",
    "Ixchel",
    "Nohemí",
    "Ñusta",
    "Q'anil",
    "Raíssa",
    "Dayanara",
    "Jean-Baptiste",
)
FAMILY_NAMES = (
    "Pérez",
    "Gómez Núñez",
    "Muñoz",
    "Hernández",
    "Quispe Mamani",
    "de la Cruz",
    "Peña",
    "Ibáñez",
    "Córdova",
    "Tz'ib",
    "Cux Xicay",
    "Saint-Fleur",
    "Guaicaipuro",
    "Ch'ok",
)

_NAME_CHARS = st.characters(categories=["L", "M", "N", "P", "S"]) | st.sampled_from(" '-")
_TEXT_CHARS = _NAME_CHARS | st.sampled_from("\n\t")


def _line(max_size: int) -> st.SearchStrategy[str]:
    return st.text(_NAME_CHARS, min_size=1, max_size=max_size).filter(lambda s: s.strip() != "")


def _text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(_TEXT_CHARS, min_size=1, max_size=max_size).filter(lambda s: s.strip() != "")


def names() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(GIVEN_NAMES),
        st.sampled_from(FAMILY_NAMES),
        _line(40),
        st.just("Ñ" * 200),
    )


def _codes(table: str, max_size: int, exclude: str = "") -> st.SearchStrategy[list[str]]:
    ids = sorted(vocab.ids(table) - {exclude})
    return st.lists(st.sampled_from(ids), max_size=max_size, unique=True)


def uuids() -> st.SearchStrategy[str]:
    """Lowercase UUID strings (message ids)."""
    return st.uuids().map(str)


def node_ids() -> st.SearchStrategy[str]:
    """Node ids per SPEC section 2."""
    return st.from_regex(r"\A[a-z0-9][a-z0-9-]{1,20}[a-z0-9]\Z").filter(lambda s: "--" not in s)


def instants(
    lo: datetime = _EARLIEST, hi: datetime = SHAREABLE_FROM
) -> st.SearchStrategy[datetime]:
    return st.datetimes(
        min_value=lo.replace(tzinfo=None),
        max_value=hi.replace(tzinfo=None),
        timezones=st.just(UTC),
    ).map(lambda d: d.replace(microsecond=0))


@st.composite
def _spell(draw: st.DrawFn, value: datetime, normal: bool) -> str:
    """An RFC 3339 spelling of `value`: the normal one, or (if allowed) one with an offset."""
    if normal or draw(st.booleans()):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    offset = draw(st.sampled_from([-5, -3, 0, 2]))
    local = value.astimezone(timezone(timedelta(hours=offset)))
    text = local.isoformat()
    if draw(st.booleans()):  # a fraction: truncated to whole seconds by the parser
        text = text[:19] + ".5" + text[19:]
    return text


def _maybe(draw: st.DrawFn, doc: dict[str, Any], key: str, strategy: Any) -> None:
    if draw(st.booleans()):
        doc[key] = draw(strategy)


@st.composite
def _safe_contact(draw: st.DrawFn) -> dict[str, Any]:
    c: dict[str, Any] = {
        "method": draw(st.sampled_from(["phone", "whatsapp", "signal", "in_person", "other"]))
    }
    _maybe(draw, c, "value", st.sampled_from(["+502 5555 0101", "ana@example.org", "Casa 3"]))
    _maybe(draw, c, "notes", _text(100))
    return c


@st.composite
def _location(draw: st.DrawFn) -> dict[str, Any]:
    loc: dict[str, Any] = {
        "country": draw(st.sampled_from(sorted(vocab.ids("countries") - {"XX"})))
    }
    _maybe(draw, loc, "admin1", st.sampled_from(["Chiapas", "GT01", "Norte de Santander"]))
    _maybe(draw, loc, "admin2", names())
    _maybe(draw, loc, "place", names())
    if draw(st.booleans()):
        loc["lat"] = draw(st.floats(-90, 90, allow_nan=False))
        loc["lon"] = draw(st.floats(-180, 180, allow_nan=False))
    return loc


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a common year
        return day.replace(year=day.year - years, day=28)


@st.composite
def _subject(draw: st.DrawFn, on: date, minor: bool) -> dict[str, Any]:
    s: dict[str, Any] = {
        "given_name": draw(names()),
        "sex": draw(st.sampled_from(["female", "male", "intersex", "unknown"])),
    }
    _maybe(draw, s, "family_name", names())
    _maybe(draw, s, "other_names", st.lists(names(), min_size=1, max_size=3))
    _maybe(draw, s, "gender_identity", st.sampled_from(["mujer trans", "no binaria", "hombre"]))
    ages = st.integers(0, 17) if minor else st.integers(18, 120)
    age = draw(ages)
    how = draw(st.sampled_from(["age", "dob", "both"]))
    if how in ("age", "both"):
        s["age"] = age
    if how in ("dob", "both"):
        # Born between A+1 years (exclusive) and A years before `on`: exactly A years old then.
        latest = _years_before(on, age)
        earliest = max(_years_before(on, age + 1) + timedelta(days=1), date(1900, 1, 1))
        s["date_of_birth"] = draw(st.dates(min_value=earliest, max_value=latest)).isoformat()
    if draw(st.booleans()):
        s["age_estimated"] = draw(st.booleans())
    _maybe(draw, s, "nationality", _codes("countries", 3))
    _maybe(draw, s, "languages", _codes("languages", 4))
    _maybe(draw, s, "safe_contact", _safe_contact())
    _maybe(draw, s, "location", _location())
    if draw(st.booleans()):
        systems = ["unhcr_individual", "primero_case", "national_id_ve", "passport_hn"]
        s["identifiers"] = draw(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "system": st.sampled_from(systems),
                        "value": st.from_regex(r"\A[0-9A-Z-]{3,20}\Z"),
                    }
                ),
                max_size=3,
                unique_by=lambda i: (i["system"], i["value"]),
            )
        )
    return s


@st.composite
def _caregiver(draw: st.DrawFn) -> dict[str, Any]:
    c: dict[str, Any] = {
        "given_name": draw(names()),
        "relationship": draw(
            st.sampled_from(["mother", "father", "grandparent", "legal_guardian"])
        ),
    }
    _maybe(draw, c, "family_name", names())
    _maybe(draw, c, "contact", _safe_contact())
    _maybe(draw, c, "informed_of_referral", st.booleans())
    _maybe(draw, c, "notes", _text(200))
    return c


@st.composite
def _consent(
    draw: st.DrawFn, obtained: datetime, normal: bool, shareable: bool, basis: str | None
) -> dict[str, Any]:
    legal_basis = basis or draw(st.sampled_from(LEGAL_BASES))
    status = "granted"
    if legal_basis != "consent" and draw(st.booleans()):
        status = draw(st.sampled_from(["withdrawn", "refused"]))
    elif not shareable:
        status = draw(st.sampled_from(["granted", "withdrawn", "refused"]))
    c: dict[str, Any] = {
        "status": status,
        "given_by": draw(st.sampled_from(GIVEN_BY)),
        "obtained_at": draw(_spell(obtained, normal)),
        "legal_basis": legal_basis,
    }
    if status != "granted" and (shareable or draw(st.booleans())):
        c["attested_by"] = "Oficial de protección de la niñez"
    elif draw(st.booleans()):
        c["attested_by"] = draw(names())
    if draw(st.booleans()):
        lo = SHAREABLE_UNTIL if shareable else obtained + timedelta(seconds=1)
        expiry = draw(instants(lo, datetime(2035, 1, 1, tzinfo=UTC)))
        c["expires_at"] = draw(_spell(expiry, normal))
    if draw(st.booleans()):
        scope: dict[str, Any] = {"purposes": ["service_provision"]}
        if not shareable:
            scope["recipients"] = draw(st.lists(node_ids(), min_size=1, max_size=3, unique=True))
            _maybe(draw, scope, "organizations", st.lists(names(), min_size=1, max_size=2))
        c["scope"] = scope
    _maybe(draw, c, "restrictions", st.lists(_text(120), min_size=1, max_size=3))
    _maybe(draw, c, "child_assent", st.booleans())
    return c


@st.composite
def _attachment(draw: st.DrawFn) -> dict[str, Any]:
    media, ext = draw(
        st.sampled_from([("application/pdf", "pdf"), ("image/jpeg", "jpg"), ("text/plain", "txt")])
    )
    content = draw(st.binary(min_size=1, max_size=64))
    return {
        "filename": f"{draw(st.sampled_from(['consentimiento', 'informe médico', 'carta']))}.{ext}",
        "media_type": media,
        "content_b64": base64.b64encode(content).decode("ascii"),
    }


@st.composite
def _referral(draw: st.DrawFn, shareable: bool, normal: bool) -> dict[str, Any]:
    obtained = draw(instants())
    minor = draw(st.integers(0, 3)) == 0
    basis = None
    with_caregiver = minor or draw(st.integers(0, 4)) == 0
    if minor and draw(st.booleans()):
        # Best-interests basis: a child may be referred without a caregiver.
        basis, with_caregiver = "best_interests_of_child", draw(st.booleans())
    doc: dict[str, Any] = {
        "priority": draw(st.sampled_from(PRIORITIES)),
        "services": draw(_codes("services", 4).filter(bool)),
        "subject": draw(_subject(obtained.date(), minor)),
        "consent": draw(_consent(obtained, normal, shareable, basis)),
        "reason": draw(
            st.one_of(
                st.just("Necesita asesoría legal sobre el procedimiento de asilo."),
                _text(300),
                st.just("Ñ" * 4000),
            )
        ),
        "referrer": {
            "name": draw(names()),
            "organization": draw(st.sampled_from(["Sin Fronteras", "Casa del Migrante", "HIAS"])),
        },
    }
    _maybe(draw, doc, "concerns", _codes("concerns", 3))
    if with_caregiver:
        doc["caregiver"] = draw(_caregiver())
    _maybe(draw, doc, "safety_notes", _text(300))
    if draw(st.booleans()):
        doc["referrer"]["contact"] = "+52 55 5555 0000"
    _maybe(draw, doc, "attachments", st.lists(_attachment(), min_size=1, max_size=2))
    if not normal and draw(st.booleans()):
        doc.setdefault("concerns", [])  # an explicit default: valid, though not normal form
    return doc


def referral_documents(
    *, normal: bool = False, shareable: bool = True
) -> st.SearchStrategy[dict[str, Any]]:
    """Valid referral documents as JSON dicts (see the module docstring)."""
    strategy = _referral(shareable, normal)
    if normal:
        return strategy.map(lambda d: document_to_json(parse_document("referral", d)))
    return strategy


@st.composite
def _status(draw: st.DrawFn, normal: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "status": draw(st.sampled_from(REPORTABLE_STATUSES)),
        "at": draw(_spell(draw(instants()), normal)),
    }
    _maybe(draw, doc, "note", st.one_of(st.just("Cita el lunes a las 9:00"), _text(200)))
    _maybe(draw, doc, "reason_code", st.sampled_from(["no_capacity", "out_of_area", "duplicate"]))
    return doc


def status_changes(*, normal: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    return _status(normal)


@st.composite
def _receipt(draw: st.DrawFn, normal: bool) -> dict[str, Any]:
    digest = hashlib.sha256(draw(st.binary(max_size=32))).digest()
    return {
        "message_id": draw(uuids()),
        "envelope_digest": base64.urlsafe_b64encode(digest).decode("ascii").rstrip("="),
        "received_at": draw(_spell(draw(instants()), normal)),
    }


def receipts(*, normal: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    return _receipt(normal)


@st.composite
def _withdrawal(draw: st.DrawFn, normal: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {"withdrawn_at": draw(_spell(draw(instants()), normal))}
    _maybe(draw, doc, "note", _text(200))
    return doc


def consent_withdrawals(*, normal: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    return _withdrawal(normal)


def problems() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "message_id": uuids(),
            "code": st.sampled_from(["malformed", "consent_missing", "too_large", "replayed"]),
            "detail": st.sampled_from(["consent scope", "document is not in normal form"]),
        }
    )


def documents_for_kind(kind: str, *, normal: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    """Valid documents of an envelope kind (`protocol.documents.KINDS`)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    if kind == "referral":
        return referral_documents(normal=normal)
    if kind == "status":
        return status_changes(normal=normal)
    if kind == "receipt":
        return receipts(normal=normal)
    if kind == "consent_withdrawn":
        return consent_withdrawals(normal=normal)
    return problems()
