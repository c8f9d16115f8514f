"""Spreadsheet adapter (CSV/XLSX + a column-mapping file) for organisations without a case system.

The mapping names, for each referral-document member, the column that holds it
(`"subject.given_name": "Nombre"`), optional translation tables for coded columns
(`"subject.sex": {"Mujer": "female"}`; matching ignores case and accents), list
separators, the date order, and constants for values that are the same for the
whole sheet (typically `referrer.organization`). Without a table a coded column
must already hold protocol codes. A sheet without consent columns needs the
operator's attested legal basis, as for proGres.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from ..base import (
    MISSING,
    UNKNOWN_OPTION,
    Converted,
    ConvertOptions,
    InputError,
    Outcome,
    RecordRejected,
    Rejection,
    SourceRecord,
    safe_outcomes,
)
from ..document import attested_consent, finalize, parse_age, parse_date, parse_instant
from ..io import read_table
from ..mapping import load_mapping
from ..names import country_by_name, language_by_name, norm

__all__ = ["SpreadsheetAdapter", "SpreadsheetMapping", "adapter"]

DEFAULT_MAPPING = Path(__file__).with_name("default_mapping.json")

TARGETS = (
    "source_id", "priority", "services", "concerns", "reason", "safety_notes",
    "subject.given_name", "subject.family_name", "subject.other_names", "subject.sex",
    "subject.gender_identity", "subject.date_of_birth", "subject.age", "subject.age_estimated",
    "subject.nationality", "subject.languages", "subject.identifier",
    "caregiver.given_name", "caregiver.family_name", "caregiver.relationship",
    "consent.status", "consent.given_by", "consent.obtained_at", "consent.legal_basis",
    "consent.attested_by", "consent.expires_at",
    "referrer.name", "referrer.organization", "referrer.position", "referrer.contact",
)
LISTS = frozenset({"services", "concerns", "subject.nationality", "subject.languages",
                   "subject.other_names"})
REQUIRED = ("subject.given_name", "subject.sex", "priority", "services", "reason")


class SpreadsheetMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    system: Literal["spreadsheet"]
    description: str = ""
    #: referral member -> column header
    columns: dict[str, str]
    #: referral member -> {cell value: protocol code}
    values: dict[str, dict[str, str]] = {}
    constants: dict[str, str] = {}
    list_separator: str = ";"
    date_order: Literal["ymd", "dmy"] = "ymd"
    #: identifier system written for `subject.identifier` (e.g. "sinfronteras_case")
    identifier_system: str = "spreadsheet_case"

    @field_validator("columns", "values", "constants")
    @classmethod
    def _targets(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = sorted(set(v) - set(TARGETS))
        if bad:
            raise ValueError(f"unknown referral member(s): {', '.join(bad)}; known: "
                             + ", ".join(TARGETS))
        return v

    @field_validator("values")
    @classmethod
    def _norm(cls, v: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        return {k: {norm(a): b for a, b in t.items()} for k, t in v.items()}

    @model_validator(mode="after")
    def _required(self) -> SpreadsheetMapping:
        missing = [t for t in REQUIRED if t not in self.columns and t not in self.constants]
        if missing:
            raise ValueError(f"columns: no column for {', '.join(missing)}")
        if "subject.date_of_birth" not in self.columns and "subject.age" not in self.columns:
            raise ValueError("columns: map subject.date_of_birth or subject.age")
        return self


def _translate(m: SpreadsheetMapping, target: str, raw: str, col: str,
               allowed: frozenset[str] | None) -> str:
    table = m.values.get(target)
    if table is not None:
        hit = table.get(norm(raw))
        if hit is not None:
            return hit
    if allowed is None or raw in allowed:
        return raw
    if target == "subject.nationality":
        code = country_by_name(raw)
        if code:
            return code
    if target == "subject.languages":
        code = language_by_name(raw)
        if code:
            return code
    shown = raw if len(raw) <= 40 and target not in ("subject.given_name",) else "(not shown)"
    raise RecordRejected(col, UNKNOWN_OPTION, f"unknown value {shown!r} for {target} in "
                         f"column {col}")


def _allowed(target: str) -> frozenset[str] | None:
    from protocol import vocab
    from protocol.documents import CONSENT_STATUSES, GIVEN_BY, LEGAL_BASES, PRIORITIES

    return {
        "priority": frozenset(PRIORITIES), "services": vocab.ids("services"),
        "concerns": vocab.ids("concerns"), "subject.nationality": vocab.ids("countries"),
        "subject.languages": vocab.ids("languages"),
        "subject.sex": frozenset({"female", "male", "intersex", "unknown"}),
        "consent.status": frozenset(CONSENT_STATUSES), "consent.given_by": frozenset(GIVEN_BY),
        "consent.legal_basis": frozenset(LEGAL_BASES),
        "caregiver.relationship": frozenset({"mother", "father", "grandparent", "sibling",
                                             "other_relative", "foster_carer", "legal_guardian",
                                             "institution", "other"}),
        "subject.age_estimated": frozenset({"true", "false"}),
    }.get(target)


def convert_row(m: SpreadsheetMapping, rec: SourceRecord, options: ConvertOptions) -> Converted:
    cells: dict[str, str] = rec.data
    val: dict[str, Any] = {}
    for target in TARGETS:
        col = m.columns.get(target)
        raw = cells.get(col, "").strip() if col else ""
        if not raw and target in m.constants:
            raw, col = m.constants[target], f"constants.{target}"
        if not raw:
            continue
        assert col is not None
        allowed = _allowed(target)
        if target in LISTS:
            items = [p.strip() for p in raw.split(m.list_separator) if p.strip()]
            out: list[str] = []
            for p in items:
                t = _translate(m, target, p, col, allowed)
                if t not in out:
                    out.append(t)
            val[target] = out
        else:
            val[target] = _translate(m, target, raw, col, allowed)
    for t in REQUIRED:
        if t not in val:
            raise RecordRejected(m.columns.get(t, t), MISSING, f"column {m.columns.get(t, t)} "
                                 f"({t}) is empty")

    def column_of(t: str) -> str:
        return m.columns.get(t, t)

    subject: dict[str, Any] = {"given_name": val["subject.given_name"], "sex": val["subject.sex"]}
    for t in ("family_name", "gender_identity", "other_names", "nationality", "languages"):
        if f"subject.{t}" in val:
            subject[t] = val[f"subject.{t}"]
    if "subject.date_of_birth" in val:
        subject["date_of_birth"] = parse_date(val["subject.date_of_birth"],
                                              column_of("subject.date_of_birth"),
                                              dmy=m.date_order == "dmy")
    if "subject.age" in val:
        subject["age"] = parse_age(val["subject.age"], column_of("subject.age"))
    if "date_of_birth" not in subject and "age" not in subject:
        raise RecordRejected(column_of("subject.date_of_birth"), MISSING,
                             "date of birth and age are both empty")
    if val.get("subject.age_estimated") == "true":
        subject["age_estimated"] = True
    if "subject.identifier" in val:
        subject["identifiers"] = [{"system": m.identifier_system,
                                   "value": val["subject.identifier"]}]
    for t in ("referrer.name", "referrer.organization"):
        if t not in val:
            raise RecordRejected(column_of(t), MISSING, f"{t} is empty: no caseworker details")
    referrer = {k.split(".")[1]: v for k, v in val.items() if k.startswith("referrer.")}
    if "consent.status" in val:
        consent: dict[str, Any] = {k.split(".")[1]: v for k, v in val.items()
                                   if k.startswith("consent.")}
        for t in ("consent.given_by", "consent.obtained_at", "consent.legal_basis"):
            if t not in val:
                raise RecordRejected(column_of(t), MISSING, f"{t} is empty")
        consent["obtained_at"] = parse_instant(val["consent.obtained_at"],
                                               column_of("consent.obtained_at"))
        if "expires_at" in consent:
            consent["expires_at"] = parse_instant(consent["expires_at"], column_of("consent.expires_at"))
    else:
        consent = attested_consent(options, "subject", "granted", "this spreadsheet")
    draft: dict[str, Any] = {
        "priority": val["priority"], "services": val["services"],
        "concerns": val.get("concerns", []), "subject": subject, "consent": consent,
        "reason": val["reason"], "referrer": referrer,
    }
    if "safety_notes" in val:
        draft["safety_notes"] = val["safety_notes"]
    if "caregiver.given_name" in val:
        if "caregiver.relationship" not in val:
            raise RecordRejected(column_of("caregiver.relationship"), MISSING,
                                 "caregiver relationship is empty")
        draft["caregiver"] = {k.split(".")[1]: v for k, v in val.items()
                              if k.startswith("caregiver.")}
    return Converted(rec.source_id, finalize(draft), {"system": "spreadsheet",
                                                      "row": rec.position})


class SpreadsheetAdapter:
    name: ClassVar[str] = "spreadsheet"
    description: ClassVar[str] = "CSV/XLSX sheets with a column-mapping file"
    formats: ClassVar[tuple[str, ...]] = ("csv", "xlsx")

    def load_mapping(self, path: Path | None) -> SpreadsheetMapping:
        return load_mapping(SpreadsheetMapping, DEFAULT_MAPPING, path)

    def read(self, path: Path, mapping: SpreadsheetMapping) -> Iterator[SourceRecord]:
        header, rows = read_table(path)
        present = {norm(h): h for h in header}
        resolved: dict[str, str] = {}
        missing: list[str] = []
        for target, colname in mapping.columns.items():
            h = colname if colname in header else present.get(norm(colname))
            if h is None:
                if target in REQUIRED or target == "source_id":
                    missing.append(colname)
                continue
            resolved[target] = h
        if missing:
            raise InputError(path, "missing column(s) named in the mapping: "
                             + ", ".join(missing), line=1)
        inv = {h: t for t, h in resolved.items()}
        sid_col = resolved.get("source_id")
        for n, row in enumerate(rows, start=2):
            cells = {mapping.columns[inv[h]]: v for h, v in zip(header, row, strict=False)
                     if h in inv}
            sid = (cells.get(mapping.columns["source_id"], "").strip()
                   if sid_col else "") or f"row {n}"
            yield SourceRecord(sid, cells, f"row {n}")

    def convert(self, record: SourceRecord, mapping: SpreadsheetMapping,
                options: ConvertOptions) -> list[Outcome]:
        def units() -> Iterator[Outcome]:
            try:
                yield convert_row(mapping, record, options)
            except RecordRejected as exc:
                yield Rejection(record.source_id, exc.field, exc.code, exc.reason)
        return safe_outcomes(record.source_id, units())


adapter = SpreadsheetAdapter()

