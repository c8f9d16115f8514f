"""Larger generated inputs: Spanish names and accents, missing and malformed fields, unknown
option ids. Every record converts or is reported with the expected field and code; reasons
never contain names."""

from __future__ import annotations

import csv
from pathlib import Path

import openpyxl
import orjson
import pytest

from adapters.bench import FAMILY, FAULTS, GIVEN, generate_progres_csv
from adapters.cli import list_adapters, run_adapt
from adapters.progres import adapter as progres
from adapters.progres.mapping import decisions_csv, decisions_ingestion


def _report(p: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(p.open(encoding="utf-8")))


@pytest.mark.parametrize("delimiter", [",", ";"])
def test_generated_extract_with_faults(tmp_path: Path, delimiter: str) -> None:
    src = tmp_path / "extract.csv"
    faults = generate_progres_csv(src, 3000, seed=11, fault_rate=0.1, delimiter=delimiter)
    out, report = tmp_path / "o.jsonl", tmp_path / "r.csv"
    code = run_adapt("progres", src, None, out, report, "vital_interest", "Oficial Núñez")
    rows = _report(report)
    docs = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert code == 1
    assert len(docs) + len(rows) == 3000
    got = {r["source_id"]: (r["field"], r["code"]) for r in rows}
    assert got == {sid: FAULTS[kind] for sid, kind in faults.items()}
    names = {n for g in GIVEN for n in g.split()} | {n for f in FAMILY for n in f.split()}
    for r in rows:
        assert not any(f" {n} " in f" {r['reason']} " for n in names if len(n) > 3), r
    assert any("é" in d["subject"]["family_name"] or "ñ" in d["subject"]["family_name"]
               for d in docs)
    assert all(d["consent"]["attested_by"] == "Oficial Núñez" for d in docs)


def test_generated_extract_as_xlsx_with_display_labels(tmp_path: Path) -> None:
    src = tmp_path / "extract.csv"
    generate_progres_csv(src, 200, seed=3)
    labels = {"progres_interventionnumber": "Intervention Number", "progres_id": "Individual ID",
              "progres_givenname": "Given Name", "progres_familyname": "Family Name",
              "progres_dateofbirth": "Date of Birth", "progres_sexname": "Sex",
              "progres_interventiontype2name": "Intervention Type",
              "progres_priorityname": "Priority", "spnsubcategory2code": "Specific Need Code",
              "progres_reasonforreferral": "Reason for Referral",
              "user.internalemailaddress": "Business Owner E-mail",
              "progres_businessunitname": "Business Unit",
              "progres_countryoforiginidname": "Country of Origin"}
    wb = openpyxl.Workbook()
    ws = wb.active
    rows = list(csv.reader(src.open(encoding="utf-8")))
    keep = [i for i, h in enumerate(rows[0]) if h in labels]
    ws.append([labels[rows[0][i]] for i in keep])
    for r in rows[1:]:
        ws.append([r[i] for i in keep])
    xlsx = tmp_path / "extract.xlsx"
    wb.save(xlsx)
    out, report = tmp_path / "o.jsonl", tmp_path / "r.csv"
    code = run_adapt("progres", xlsx, None, out, report, "vital_interest", "Operator")
    rows_r = _report(report)
    docs = out.read_bytes().splitlines()
    assert len(docs) + len(rows_r) == 200
    # label-only intervention types that the default maps convert; GUID-only ones need the id
    assert code in (0, 1) and len(docs) > 150


def test_unusable_inputs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.jsonl"
    assert run_adapt("progres", tmp_path / "missing.csv", None, out) == 2
    assert "file not found" in capsys.readouterr().err
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("progres_givenname,progres_id\nJos\xe9,1\n".encode("latin-1"))
    assert run_adapt("progres", bad, None, out) == 2
    assert "not UTF-8" in capsys.readouterr().err
    frag = tmp_path / "frag.json"
    frag.write_text('{"Data": [ {"a": 1}, // comment\n ]}')
    assert run_adapt("progres", frag, None, out) == 2
    assert "frag.json:1:" in capsys.readouterr().err
    assert run_adapt("nosuch", frag, None, out) == 2
    assert not out.exists()


def test_mapping_errors_are_listed_together(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    m = tmp_path / "m.json"
    m.write_text(orjson.dumps({"extends": "default", "sex": {"codes": {"125080002": "other"}},
                               "services": {"labels": {"Cash": "money"}},
                               "fields": {"bogus": ["x"]}}).decode())
    src = tmp_path / "e.csv"
    generate_progres_csv(src, 5)
    assert run_adapt("progres", src, m, tmp_path / "o.jsonl") == 2
    err = capsys.readouterr().err
    assert "'125080002' -> 'other'" in err and "'money'" in err and "bogus" in err
    m.write_text("{ not json")
    assert run_adapt("progres", src, m, tmp_path / "o.jsonl") == 2
    assert "m.json" in capsys.readouterr().err


def test_legal_basis_needs_attestation(tmp_path: Path) -> None:
    src = tmp_path / "e.csv"
    generate_progres_csv(src, 5)
    assert run_adapt("progres", src, None, tmp_path / "o.jsonl", None, "vital_interest", None) == 2
    assert run_adapt("progres", src, None, tmp_path / "o.jsonl", None, "because", "X") == 2


def test_decisions_write_back_fail_closed() -> None:
    m = progres.load_mapping(None)
    payload, rejected = decisions_ingestion(m, [
        {"external_id": "803-23-PRTITV-1000642", "status": "accepted", "at": "2026-11-21T10:00:00Z"},
        {"external_id": "803-23-PRTITV-1000387", "status": "declined", "at": "2026-11-21T10:00:00Z",
         "note": "Sin cupo en el albergue"},
        {"external_id": "803-22-PRTITV-0000005", "status": "completed", "at": "2026-11-21T10:00:00Z"},
    ])
    assert [d["ExternalId"] for d in payload["Data"]] == ["803-23-PRTITV-1000642",
                                                          "803-23-PRTITV-1000387"]
    assert {"Name": "progres_reviewdecision", "Value": 125080000} in payload["Data"][0]["Fields"]
    assert set(payload) == {"ShippingProcessId", "InteropId", "Data"}
    assert [(r.source_id, r.code) for r in rejected] == [("803-22-PRTITV-0000005",
                                                          "unknown_option")]
    text, _ = decisions_csv(m, [{"external_id": "X-1", "status": "declined", "at": "2026-11-21",
                                 "note": "no"}])
    assert text.splitlines()[0].startswith("progres_interventionnumber,progres_reviewdecision")
    assert "X-1,125080001" in text


def test_entry_points_list_builtin_adapters() -> None:
    names = {a.name: a for a in list_adapters()}
    assert {"primero", "progres", "spreadsheet"} <= set(names)
    assert all(a.error is None for a in names.values())


def test_spreadsheet_with_spanish_column_mapping(tmp_path: Path) -> None:
    sheet = tmp_path / "casos.csv"
    sheet.write_text(
        "Código;Nombre;Apellidos;Sexo;Fecha de nacimiento;Nacionalidad;Servicios;Motivo;Prioridad\n"
        "SF-001;Ana;Pérez;Mujer;14/03/1997;Venezuela;Asesoría legal;Orientación sobre asilo;Alta\n"
        "SF-002;José;Núñez;Hombre;31/02/1990;Honduras;Asesoría legal;Refugio;Alta\n"
        "SF-003;Inés;Ibáñez;Otro;01/01/1990;Honduras;Asesoría legal;Refugio;Alta\n",
        encoding="utf-8")
    m = tmp_path / "m.json"
    m.write_text(orjson.dumps({
        "system": "spreadsheet",
        "columns": {"source_id": "Código", "subject.given_name": "Nombre",
                    "subject.family_name": "Apellidos", "subject.sex": "Sexo",
                    "subject.date_of_birth": "Fecha de nacimiento",
                    "subject.nationality": "Nacionalidad", "services": "Servicios",
                    "reason": "Motivo", "priority": "Prioridad"},
        "values": {"subject.sex": {"Mujer": "female", "Hombre": "male"},
                   "services": {"Asesoría legal": "legal_aid"},
                   "priority": {"Alta": "high", "Urgente": "urgent", "Normal": "normal"}},
        "constants": {"referrer.organization": "Sin Fronteras", "referrer.name": "Lucía Gómez"},
        "date_order": "dmy", "list_separator": ","}).decode())
    out, report = tmp_path / "o.jsonl", tmp_path / "r.csv"
    assert run_adapt("spreadsheet", sheet, m, out, report, "consent", "Lucía Gómez") == 1
    doc = orjson.loads(out.read_bytes().splitlines()[0])
    assert doc["subject"]["nationality"] == ["VE"] and doc["services"] == ["legal_aid"]
    assert doc["subject"]["date_of_birth"] == "1997-03-14"
    got = {r["source_id"]: (r["field"], r["code"]) for r in _report(report)}
    assert got == {"SF-002": ("Fecha de nacimiento", "malformed_value"),
                   "SF-003": ("Sexo", "unknown_option")}
