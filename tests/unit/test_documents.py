"""protocol.documents, protocol.vocab and protocol.schemas: the bodies of protocol v1."""

from __future__ import annotations

import base64
import copy
import csv
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import envelope, vocab
from protocol.documents import (
    ATTACHMENT_MAX_BYTES,
    KINDS,
    MONITORING_CATEGORIES,
    PRIORITIES,
    PRIORITY_DEADLINES,
    REPORTABLE_STATUSES,
    ConsentWithdrawn,
    Problem,
    Receipt,
    ReferralDocument,
    StatusChange,
    Subject,
    document_to_json,
    format_datetime,
    kind_of,
    monitoring_fields,
    parse_document,
    parse_referral,
    response_due,
)
from protocol.errors import ConsentMissing, Malformed, ProtocolError, TooLarge
from protocol.lifecycle import Status
from protocol.schemas import load_schema, schema_filename, schema_text
from protocol.schemas.export import export
from tests.strategies import documents_for_kind, referral_documents

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"

MINIMAL: dict[str, Any] = {
    "priority": "high",
    "services": ["legal_aid"],
    "concerns": ["sgbv_survivor"],
    "subject": {
        "given_name": "Ana",
        "family_name": "Pérez",
        "sex": "female",
        "age": 29,
        "nationality": ["VE"],
    },
    "consent": {
        "status": "granted",
        "given_by": "subject",
        "obtained_at": "2026-11-20T10:00:00Z",
        "legal_basis": "consent",
    },
    "reason": "Needs legal counselling on asylum procedure",
    "referrer": {"name": "Case worker", "organization": "Sin Fronteras"},
}

CAREGIVER = {"given_name": "Rosa", "family_name": "Pérez", "relationship": "mother"}
PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def minimal(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(MINIMAL)
    doc.update(changes)
    return doc


def b64(n: int) -> str:
    return base64.b64encode(b"\x89" * n).decode("ascii")


# ---------------------------------------------------------------------------------------------
# The minimal document and the normal form
# ---------------------------------------------------------------------------------------------


def test_minimal_document_from_the_issue_validates() -> None:
    doc = parse_document("referral", MINIMAL)
    assert isinstance(doc, ReferralDocument)
    assert doc.subject.family_name == "Pérez"
    assert doc.consent.obtained_at == datetime(2026, 11, 20, 10, tzinfo=UTC)
    assert doc.caregiver is None and doc.attachments == [] and doc.category == "sgbv"


def test_minimal_document_is_its_own_normal_form() -> None:
    assert document_to_json(parse_document("referral", MINIMAL)) == MINIMAL


def test_models_are_frozen_and_refuse_unknown_members() -> None:
    doc = parse_referral(MINIMAL)
    with pytest.raises(ValueError):
        doc.priority = "urgent"  # type: ignore[misc]
    with pytest.raises(ValueError):
        ReferralDocument.model_validate({**MINIMAL, "referral_id": "x"})


def test_times_are_held_in_utc_and_written_with_z_whole_seconds() -> None:
    consent = {**MINIMAL["consent"], "obtained_at": "2026-11-20T05:00:00.750-05:00"}
    doc = parse_referral(minimal(consent=consent))
    assert doc.consent.obtained_at == datetime(2026, 11, 20, 10, tzinfo=UTC)
    assert document_to_json(doc)["consent"]["obtained_at"] == "2026-11-20T10:00:00Z"
    assert format_datetime(datetime(2026, 1, 2, 3, 4, 5, 999, tzinfo=UTC)) == "2026-01-02T03:04:05Z"


def test_python_callers_may_pass_datetime_objects_but_not_naive_ones() -> None:
    at = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
    assert StatusChange(status="accepted", at=at).at == at
    with pytest.raises(ValueError):
        StatusChange(status="accepted", at=datetime(2026, 11, 28, 9, 30))


def test_wire_documents_need_strings_for_times() -> None:
    with pytest.raises(Malformed) as exc:
        parse_document("status", {"status": "accepted", "at": datetime.now(UTC)})
    assert exc.value.field == "at"


def test_constants() -> None:
    assert PRIORITIES == ("urgent", "high", "normal")
    assert PRIORITY_DEADLINES == {
        "urgent": timedelta(hours=24),
        "high": timedelta(hours=72),
        "normal": timedelta(days=14),
    }
    assert KINDS == ("referral", "status", "receipt", "consent_withdrawn", "problem")
    # The envelope and the lifecycle must agree with the bodies.
    assert KINDS == envelope.KINDS
    assert MONITORING_CATEGORIES == envelope.CATEGORIES
    assert set(REPORTABLE_STATUSES) == {s.value for s in Status} - {"requested"}
    t = datetime(2026, 11, 20, tzinfo=UTC)
    assert response_due("urgent", t) == t + timedelta(hours=24)


def test_monitoring_fields_are_content_free() -> None:
    doc = parse_document("referral", minimal(concerns=["unaccompanied_child", "sgbv_survivor"],
                                             caregiver=CAREGIVER))
    assert isinstance(doc, ReferralDocument)
    assert monitoring_fields(doc) == {"priority": "high", "category": "child_protection"}
    bare = parse_document("referral", minimal(concerns=[]))
    assert isinstance(bare, ReferralDocument)
    assert monitoring_fields(bare) == {"priority": "high", "category": "other"}


def test_kind_of_each_model() -> None:
    at = "2026-11-28T10:00:00Z"
    mid = "0193a0b0-0000-7000-8000-000000000001"
    samples = {
        "referral": MINIMAL,
        "status": {"status": "accepted", "at": at},
        "receipt": {"message_id": mid, "envelope_digest": "A" * 43, "received_at": at},
        "consent_withdrawn": {"withdrawn_at": at},
        "problem": {"message_id": mid, "code": "consent_missing", "detail": "consent scope"},
    }
    types = {
        "referral": ReferralDocument,
        "status": StatusChange,
        "receipt": Receipt,
        "consent_withdrawn": ConsentWithdrawn,
        "problem": Problem,
    }
    for kind, data in samples.items():
        doc = parse_document(kind, data)
        assert type(doc) is types[kind] and kind_of(doc) == kind
        assert document_to_json(doc) == data


# ---------------------------------------------------------------------------------------------
# Refusals: each constraint with its error class and field
# ---------------------------------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def apply(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for p in parents:
            target = target[int(p)] if isinstance(target, list) else target.setdefault(p, {})
        target[last] = value

    return apply


def _drop(path: str) -> Mutation:
    def apply(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for p in parents:
            target = target[p]
        del target[last]

    return apply


CHILD = {"given_name": "Luis", "sex": "male", "age": 12}
LOC = {"country": "MX", "lat": 16.75}

REFUSALS: list[tuple[str, Mutation, type[ProtocolError], str | None]] = [
    ("priority", _set("priority", "soon"), Malformed, "priority"),
    ("priority missing", _drop("priority"), Malformed, "priority"),
    ("unknown service", _set("services", ["massage"]), Malformed, "services.0"),
    ("no service", _set("services", []), Malformed, "services"),
    ("service twice", _set("services", ["legal_aid", "legal_aid"]), Malformed, "services"),
    ("unknown concern", _set("concerns", ["sgbv_survivor", "bad"]), Malformed, "concerns.1"),
    ("unknown member", _set("referral_id", "r-1"), Malformed, None),
    ("unknown nested member", _set("subject.eye_colour", "x"), Malformed, "subject"),
    ("no given name", _drop("subject.given_name"), Malformed, "subject.given_name"),
    ("blank given name", _set("subject.given_name", "   "), Malformed, "subject.given_name"),
    ("name too long", _set("subject.family_name", "x" * 201), Malformed, "subject.family_name"),
    ("control char", _set("subject.given_name", "A\x00na"), Malformed, "subject.given_name"),
    ("newline in name", _set("subject.given_name", "A\nna"), Malformed, "subject.given_name"),
    ("sex", _set("subject.sex", "f"), Malformed, "subject.sex"),
    ("age as string", _set("subject.age", "29"), Malformed, "subject.age"),
    ("age as bool", _set("subject.age", True), Malformed, "subject.age"),
    ("age negative", _set("subject.age", -1), Malformed, "subject.age"),
    ("age too high", _set("subject.age", 121), Malformed, "subject.age"),
    ("no age nor dob", _drop("subject.age"), Malformed, "subject.age"),
    ("estimated flag type", _set("subject.age_estimated", "yes"), Malformed,
     "subject.age_estimated"),
    ("dob format", _set("subject.date_of_birth", "20/01/1997"), Malformed,
     "subject.date_of_birth"),
    ("dob impossible", _set("subject.date_of_birth", "1997-02-30"), Malformed,
     "subject.date_of_birth"),
    ("dob before 1900", _set("subject.date_of_birth", "1899-12-31"), Malformed,
     "subject.date_of_birth"),
    ("dob after consent", _set("subject.date_of_birth", "2026-11-21"), Malformed,
     "subject.date_of_birth"),
    ("nationality", _set("subject.nationality", ["VE", "ZZ"]), Malformed, "subject.nationality.1"),
    ("nationality lower", _set("subject.nationality", ["ve"]), Malformed, "subject.nationality.0"),
    ("nationality twice", _set("subject.nationality", ["VE", "VE"]), Malformed,
     "subject.nationality"),
    ("language", _set("subject.languages", ["xx"]), Malformed, "subject.languages.0"),
    ("639-3 where 639-1 exists", _set("subject.languages", ["spa"]), Malformed,
     "subject.languages.0"),
    ("location XX", _set("subject.location", {"country": "XX"}), Malformed,
     "subject.location.country"),
    ("lat without lon", _set("subject.location", LOC), Malformed, "subject.location.lon"),
    ("lat range", _set("subject.location", {**LOC, "lat": 91.0, "lon": 0.0}), Malformed,
     "subject.location.lat"),
    ("contact method", _set("subject.safe_contact", {"method": "pigeon"}), Malformed,
     "subject.safe_contact.method"),
    ("identifier system", _set("subject.identifiers", [{"system": " x", "value": "1"}]),
     Malformed, "subject.identifiers.0.system"),
    ("identifier twice", _set("subject.identifiers", [{"system": "a", "value": "1"}] * 2),
     Malformed, "subject.identifiers"),
    ("child without caregiver", _set("subject", CHILD), Malformed, "caregiver"),
    ("child by dob without caregiver",
     _set("subject", {"given_name": "Luis", "sex": "male", "date_of_birth": "2010-01-01"}),
     Malformed, "caregiver"),
    ("caregiver relationship",
     _set("caregiver", {**CAREGIVER, "relationship": "boss"}), Malformed,
     "caregiver.relationship"),
    ("no consent", _drop("consent"), ConsentMissing, "consent"),
    ("null consent", _set("consent", None), ConsentMissing, "consent"),
    ("consent status", _set("consent.status", "maybe"), Malformed, "consent.status"),
    ("given_by", _set("consent.given_by", "neighbour"), Malformed, "consent.given_by"),
    ("legal basis", _set("consent.legal_basis", "because"), Malformed, "consent.legal_basis"),
    ("obtained_at naive", _set("consent.obtained_at", "2026-11-20T10:00:00"), Malformed,
     "consent.obtained_at"),
    ("obtained_at epoch", _set("consent.obtained_at", 1_795_000_000), Malformed,
     "consent.obtained_at"),
    ("obtained_at date only", _set("consent.obtained_at", "2026-11-20"), Malformed,
     "consent.obtained_at"),
    ("obtained_at missing", _drop("consent.obtained_at"), Malformed, "consent.obtained_at"),
    ("expiry before obtained", _set("consent.expires_at", "2026-11-20T09:00:00Z"), Malformed,
     "consent.expires_at"),
    ("empty scope", _set("consent.scope", {}), Malformed, "consent.scope.recipients"),
    ("scope node id", _set("consent.scope", {"recipients": ["Not A Node"]}), Malformed,
     "consent.scope.recipients.0"),
    ("scope node id --", _set("consent.scope", {"recipients": ["a--b"]}), Malformed,
     "consent.scope.recipients.0"),
    ("restriction too long", _set("consent.restrictions", ["x" * 1001]), Malformed,
     "consent.restrictions.0"),
    ("reason missing", _drop("reason"), Malformed, "reason"),
    ("reason blank", _set("reason", " \n\t "), Malformed, "reason"),
    ("reason too long", _set("reason", "x" * 4001), Malformed, "reason"),
    ("safety notes too long", _set("safety_notes", "x" * 4001), Malformed, "safety_notes"),
    ("referrer org", _drop("referrer.organization"), Malformed, "referrer.organization"),
    ("attachment media type",
     _set("attachments", [{"filename": "a.exe", "media_type": "application/x-msdownload",
                           "content_b64": b64(3)}]), Malformed, "attachments.0.media_type"),
    ("attachment path",
     _set("attachments", [{"filename": "../a.pdf", "media_type": "application/pdf",
                           "content_b64": b64(3)}]), Malformed, "attachments.0.filename"),
    ("attachment base64",
     _set("attachments", [{"filename": "a.pdf", "media_type": "application/pdf",
                           "content_b64": "not base64!"}]), Malformed,
     "attachments.0.content_b64"),
    ("attachment base64url",
     _set("attachments", [{"filename": "a.pdf", "media_type": "application/pdf",
                           "content_b64": "-_-_"}]), Malformed, "attachments.0.content_b64"),
    ("attachment empty",
     _set("attachments", [{"filename": "a.pdf", "media_type": "application/pdf",
                           "content_b64": ""}]), Malformed, "attachments.0.content_b64"),
    ("attachment over 1 MiB",
     _set("attachments", [{"filename": "a.pdf", "media_type": "application/pdf",
                           "content_b64": b64(ATTACHMENT_MAX_BYTES + 1)}]), TooLarge,
     "attachments.0.content_b64"),
    ("attachments over 4 MiB",
     _set("attachments", [{"filename": f"{i}.pdf", "media_type": "application/pdf",
                           "content_b64": b64(ATTACHMENT_MAX_BYTES)} for i in range(5)]),
     TooLarge, "attachments"),
]


@pytest.mark.parametrize(
    ("mutate", "error", "field"),
    [pytest.param(m, e, f, id=name) for name, m, e, f in REFUSALS],
)
def test_each_constraint_refuses_with_its_field(
    mutate: Mutation, error: type[ProtocolError], field: str | None
) -> None:
    doc = minimal()
    mutate(doc)
    with pytest.raises(ProtocolError) as exc:
        parse_document("referral", doc)
    assert type(exc.value) is error, exc.value.detail
    assert exc.value.field == field, exc.value.detail


def test_accepted_edge_cases() -> None:
    accepted = [
        minimal(subject={**CHILD}, caregiver=CAREGIVER),
        minimal(subject={**CHILD}, consent={**MINIMAL["consent"],
                                            "legal_basis": "best_interests_of_child"}),
        # 18 on the day consent was obtained: an adult.
        minimal(subject={"given_name": "Eva", "sex": "female", "date_of_birth": "2008-11-20"}),
        minimal(subject={**MINIMAL["subject"], "nationality": ["XX"], "languages": ["quc", "es"]}),
        minimal(subject={**MINIMAL["subject"], "location": {"country": "GT", "lat": 14,
                                                            "lon": -90.5}}),
        minimal(attachments=[{"filename": "consentimiento firmado.pdf",
                              "media_type": "application/pdf",
                              "content_b64": b64(ATTACHMENT_MAX_BYTES)}] * 4),
        minimal(reason="R" * 4000, safety_notes="No llamar después de las 18:00.\nUsar WhatsApp."),
    ]
    for doc in accepted:
        parse_document("referral", doc)
    minor_by_dob = minimal(
        subject={"given_name": "Eva", "sex": "female", "date_of_birth": "2008-11-21"}
    )
    with pytest.raises(Malformed):
        parse_document("referral", minor_by_dob)


def test_stated_age_or_dob_either_makes_a_child() -> None:
    subject = Subject(given_name="Ana", sex="female", age=17, date_of_birth=date(1990, 1, 1))
    assert subject.is_minor_on(date(2026, 1, 1))
    assert subject.age_on(date(2026, 1, 1)) == 36


def test_other_kinds_refuse() -> None:
    at = "2026-11-28T10:00:00Z"
    mid = "0193a0b0-0000-7000-8000-000000000001"
    cases: list[tuple[str, dict[str, Any], str | None]] = [
        ("status", {"status": "requested", "at": at}, "status"),
        ("status", {"status": "accepted"}, "at"),
        ("status", {"status": "accepted", "at": at, "note": "n" * 2001}, "note"),
        ("status", {"status": "accepted", "at": at, "reason_code": "No Capacity"}, "reason_code"),
        ("receipt", {"message_id": mid.upper(), "envelope_digest": "A" * 43, "received_at": at},
         "message_id"),
        ("receipt", {"message_id": mid, "envelope_digest": "A" * 44, "received_at": at},
         "envelope_digest"),
        ("receipt", {"message_id": mid, "envelope_digest": "A" * 42 + "B", "received_at": at},
         "envelope_digest"),
        ("consent_withdrawn", {"withdrawn_at": "yesterday"}, "withdrawn_at"),
        ("problem", {"message_id": mid, "code": "x", "detail": "d" * 501}, "detail"),
        ("problem", {"message_id": mid, "code": "Bad-Code", "detail": "d"}, "code"),
    ]
    for kind, data, field in cases:
        with pytest.raises(Malformed) as exc:
            parse_document(kind, data)
        assert exc.value.field == field, (kind, data)
    with pytest.raises(Malformed) as exc:
        parse_document("memo", {})
    assert exc.value.field == "kind"
    with pytest.raises(Malformed):
        parse_document("status", ["not", "an", "object"])


# ---------------------------------------------------------------------------------------------
# Errors never carry the offending value
# ---------------------------------------------------------------------------------------------

CANARY = "Zq7CANARYxJ9"


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    target = doc
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = value


def _assert_no_canary(exc: ProtocolError) -> None:
    texts = [str(exc), exc.detail, exc.field or "", json.dumps(exc.to_problem()), repr(exc)]
    for text in texts:
        assert CANARY not in text, text
        assert CANARY.lower() not in text.lower(), text


_CANARY_VALUES = st.sampled_from(
    [
        CANARY,
        f"{CANARY}@example.org",
        CANARY * 500,
        [CANARY],
        {CANARY: CANARY},
        f"2026-11-20T10:00:00Z{CANARY}",
        f"{CANARY}\x00",
        f"   {CANARY}   " + "x" * 5000,
    ]
)


@PROPERTY
@given(data=st.data(), kind=st.sampled_from(KINDS))
def test_errors_never_echo_the_value(data: st.DataObject, kind: str) -> None:
    doc = data.draw(documents_for_kind(kind))
    paths = _paths(doc)
    path = data.draw(st.sampled_from(paths))
    _replace(doc, path, data.draw(_CANARY_VALUES))
    if data.draw(st.booleans()):
        # An unknown member whose *name* is personal data must not be echoed either.
        parent = path[:-1]
        target: Any = doc
        for p in parent:
            target = target[p]
        if isinstance(target, dict):
            target[f"{CANARY} Pérez"] = CANARY
    try:
        parse_document(kind, doc)
    except ProtocolError as exc:
        _assert_no_canary(exc)


def test_unknown_member_name_is_not_echoed() -> None:
    doc = minimal()
    doc["subject"][f"{CANARY}-Ana"] = CANARY
    with pytest.raises(Malformed) as exc:
        parse_document("referral", doc)
    assert exc.value.field == "subject" and exc.value.detail == "unknown member"
    _assert_no_canary(exc.value)


# ---------------------------------------------------------------------------------------------
# Round trips and the schema
# ---------------------------------------------------------------------------------------------


@PROPERTY
@given(doc=referral_documents(shareable=False))
def test_round_trip(doc: dict[str, Any]) -> None:
    parsed = parse_document("referral", doc)
    normal = document_to_json(parsed)
    assert parse_document("referral", normal) == parsed
    assert document_to_json(parse_document("referral", normal)) == normal
    # The normal form survives JSON text unchanged (what the envelope signs).
    assert json.loads(json.dumps(normal, ensure_ascii=False)) == normal


@PROPERTY
@given(data=st.data(), kind=st.sampled_from(KINDS))
def test_round_trip_every_kind(data: st.DataObject, kind: str) -> None:
    doc = data.draw(documents_for_kind(kind))
    parsed = parse_document(kind, doc)
    assert parse_document(kind, document_to_json(parsed)) == parsed


def test_committed_schemas_equal_the_generated_ones() -> None:
    for kind in KINDS:
        path = ROOT / "protocol" / "schemas" / schema_filename(kind)
        assert path.read_text(encoding="utf-8") == schema_text(kind), (
            f"{path.name} is stale: run `python -m protocol.schemas.export` and commit"
        )
        assert load_schema(kind) == json.loads(schema_text(kind))


def test_export_writes_one_file_per_kind(tmp_path: Path) -> None:
    written = export(tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{k}.v1.schema.json" for k in KINDS)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), kind=st.sampled_from(KINDS))
def test_documents_in_normal_form_validate_against_the_exported_schema(
    data: st.DataObject, kind: str
) -> None:
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    doc = data.draw(documents_for_kind(kind, normal=True))
    validator = jsonschema_rs.Draft202012Validator(load_schema(kind))
    assert validator.is_valid(doc)


def test_schema_refuses_what_the_models_refuse_structurally() -> None:
    jsonschema_rs = pytest.importorskip("jsonschema_rs")
    validator = jsonschema_rs.Draft202012Validator(load_schema("referral"))
    assert validator.is_valid(MINIMAL)
    for bad in (minimal(priority="soon"), minimal(services=["massage"]), minimal(extra=1),
                minimal(reason="x" * 4001)):
        assert not validator.is_valid(bad)


# ---------------------------------------------------------------------------------------------
# Vocabularies
# ---------------------------------------------------------------------------------------------


def test_vocabularies_load_with_labels() -> None:
    for table in (vocab.services(), vocab.concerns()):
        for entry in table.values():
            assert entry.labels["en"] and entry.labels["es"], entry.id
    assert vocab.services()["legal_aid"].label("es") == "Asistencia y orientación legal"
    assert vocab.countries()["VE"].label().startswith("Venezuela")
    assert vocab.countries()["XX"].extra["user_assigned"] is True
    assert vocab.languages()["quc"].label() == "K'iche'"
    assert vocab.languages()["gn"].label("fr") == "Guarani"  # falls back to English
    assert len(vocab.countries()) == 250  # 249 ISO 3166-1 codes + XX
    assert vocab.services() is not vocab.services()  # callers get their own copy


def test_languages_prefer_two_letter_codes() -> None:
    langs = vocab.languages()
    for code in ("es", "pt", "en", "fr", "ht", "qu", "gn", "ay"):
        assert langs[code].extra["standard"] == "639-1"
    for code in ("quc", "kek", "mam", "cak", "yua", "guc", "cab", "miq", "gug", "mfs"):
        assert langs[code].extra["standard"] == "639-3"
    assert all(len(c) == 2 for c, e in langs.items() if e.extra["standard"] == "639-1")
    assert all(len(c) == 3 for c, e in langs.items() if e.extra["standard"] == "639-3")
    assert "spa" not in langs and "que" not in langs


def test_concern_categories_are_monitoring_categories() -> None:
    for entry in vocab.concerns().values():
        assert entry.category in MONITORING_CATEGORIES, entry.id


def test_concerns_map_only_to_known_unhcr_codes() -> None:
    known = vocab.specific_needs()
    for entry in vocab.concerns().values():
        for code in entry.unhcr_specific_needs:
            assert code in known, (entry.id, code)
    mapped = {c for e in vocab.concerns().values() for c in e.unhcr_specific_needs}
    # Everything but the "risk to others" codes has a concern.
    assert set(known) - mapped == {"LP-AP", "LP-CR", "LP-ST", "LP-VP"}


def test_shipped_specific_needs_equal_the_shared_reference() -> None:
    source = SHARED / "fixtures" / "vocab" / "specific_needs_codes.csv"
    if not source.exists():
        pytest.skip(f"{source} is not present")
    with source.open(encoding="utf-8", newline="") as fh:
        rows = {r["code"]: r for r in csv.DictReader(fh)}
    shipped = vocab.specific_needs()
    assert set(rows) == set(shipped)
    for code, row in rows.items():
        assert shipped[code].category == row["category"]
        assert shipped[code].label() == row["label"]


def test_concerns_for_specific_need() -> None:
    assert vocab.concerns_for_specific_need("SV-VA") == ["sgbv_survivor"]
    assert vocab.concerns_for_specific_need(" sc-uc ") == ["unaccompanied_child"]
    assert vocab.concerns_for_specific_need("SC") == ["unaccompanied_child", "separated_child"]
    assert vocab.concerns_for_specific_need("DS-EB") == ["disability"]
    assert vocab.concerns_for_specific_need("LP-AP") == []
    assert vocab.concerns_for_specific_need("LP-AP", category_fallback=True) == []
    assert vocab.concerns_for_specific_need("SM-ZZ") == []
    assert vocab.concerns_for_specific_need("SM-ZZ", category_fallback=True) == [
        "serious_medical_condition"
    ]
    assert vocab.concerns_for_specific_need("QQ-ZZ", category_fallback=True) == []
