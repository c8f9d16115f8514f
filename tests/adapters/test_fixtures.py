"""Every public sample payload either converts, is reported with a reason, or is refused as
unusable input with the file and position. Nothing crashes and nothing is silently defaulted."""

from __future__ import annotations

import csv
from pathlib import Path

import orjson
import pytest

from adapters.cli import run_adapt

ALL_JSON = sorted((Path(__file__).resolve().parents[2].parent / "shared" / "fixtures")
                  .glob("*/*.json"))


@pytest.mark.parametrize("system", ["primero", "progres"])
@pytest.mark.parametrize("path", ALL_JSON, ids=lambda p: p.name)
def test_every_fixture_is_accounted_for(system: str, path: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out, report = tmp_path / "o.jsonl", tmp_path / "r.csv"
    code = run_adapt(system, path, None, out, report, "vital_interest", "Oficial de protección")
    err = capsys.readouterr().err
    if code == 2:
        assert path.name in err and not out.exists()
        return
    docs = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    rows = list(csv.DictReader(report.open(encoding="utf-8")))
    for r in rows:
        assert r["source_id"] and r["code"] and r["reason"]
    rejected = [r for r in rows if r["code"] != "no_referral"]
    assert code == (1 if rejected else 0)
    assert f"{len(docs)} converted, {len(rejected)} rejected" in err


def test_invalid_json_fixtures_exit_2_with_position(fixtures_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    bad = fixtures_dir / "primero-progres-openfn" / "getPrimeroCases.json"
    assert run_adapt("primero", bad, None, tmp_path / "o.jsonl") == 2
    assert "getPrimeroCases.json:66:70: not valid JSON: trailing comma" in capsys.readouterr().err
    bad = fixtures_dir / "ping-primero-openfn" / "referral-status-update-to-ping.json"
    assert run_adapt("progres", bad, None, tmp_path / "o.jsonl") == 2
    assert "comments are not allowed" in capsys.readouterr().err


def test_dtp_fixtures_convert_with_an_instance_mapping(fixtures_dir: Path, tmp_path: Path) -> None:
    mapping = tmp_path / "dadaab.json"
    mapping.write_text(orjson.dumps({
        "extends": "default",
        "priority": {"codes": {"125080000": "urgent", "125080001": "high",
                               "125080002": "normal"}},
    }).decode())
    out, report = tmp_path / "o.jsonl", tmp_path / "r.csv"
    src = fixtures_dir / "primero-progres-openfn" / "flow1__progresReferralToUNICEF.json"
    assert run_adapt("progres", src, mapping, out, report, "vital_interest",
                     "Protection Officer, Dadaab") == 0
    lines = out.read_bytes().splitlines()
    assert len(lines) == 1  # two joined rows (one per language) are one intervention
    doc = orjson.loads(lines[0])
    assert doc["services"] == ["disability_support"]
    assert doc["concerns"] == ["child_associated_armed_groups"]
    assert doc["subject"]["languages"] == ["fr", "en"]
    assert doc["subject"]["date_of_birth"] == "2002-12-16"
    assert doc["consent"]["legal_basis"] == "vital_interest"
    assert doc["consent"]["attested_by"] == "Protection Officer, Dadaab"
    assert doc["referrer"]["organization"] == "DAD-17-PNR-00011"
    assert {"system": "unhcr_individual", "value": "DAD-00005708"} in doc["subject"]["identifiers"]
    # no partner and no business-unit name: the organisation is not invented
    src = fixtures_dir / "primero-progres-openfn" / "referralFromProgres_sample2408022.json"
    assert run_adapt("progres", src, mapping, out, report, "best_interests_of_child",
                     "Associate CP Officer") == 1
    row = next(csv.DictReader(report.open(encoding="utf-8")))
    assert (row["field"], row["code"]) == ("progres_businessunit", "missing_field")


def test_progres_without_attestation_refuses_with_consent_reason(fixtures_dir: Path,
                                                                 tmp_path: Path) -> None:
    src = fixtures_dir / "primero-progres-openfn" / "intervention_sample.json"
    out, report = tmp_path / "o.jsonl", tmp_path / "r.csv"
    assert run_adapt("progres", src, None, out, report) == 1
    rows = list(csv.DictReader(report.open(encoding="utf-8")))
    codes = {r["source_id"]: r["code"] for r in rows}
    assert codes["NUR-21-PRTITV-0000001"] == "consent_missing"
    # an unknown intervention type GUID is reported by id, never mapped to some default
    assert any(r["code"] == "unknown_option" and "96b00885" in r["reason"] for r in rows)
    # the joined rows of DAD-21-PRTITV-0000001 are one intervention, reported once
    assert sum(r["source_id"] == "DAD-21-PRTITV-0000001" for r in rows) == 1
    assert out.read_bytes() == b""


def test_primero_gambella_export_with_instance_mapping(fixtures_dir: Path,
                                                       tmp_path: Path) -> None:
    mapping = tmp_path / "gambella.json"
    mapping.write_text(orjson.dumps({
        "extends": "default",
        "options": {
            "sex": {"other_b25f252": "intersex", "unknown_4b34795": "unknown"},
            "service_type": {"documentation": "documentation", "cash_assistance": "cash_assistance"},
            "protection_concerns": {"rape": ["sgbv_survivor"], "emotional_or_psychological":
                                    ["violence_abuse_neglect"], "sexual_exploitation":
                                    ["survival_sex"]},
            "protection_status": {"living_with_biological_parent_or_primary_caregiver": []},
            "interview_subject": {"child": "subject"},
            "language": {"language1": "sw", "language6": "en"},
            "caregiver_relationship": {"mother": "mother"},
        },
        "outbound": {"network_users": ["unhcr_cw"]},
    }).decode())
    out, report = tmp_path / "o.jsonl", tmp_path / "r.csv"
    src = fixtures_dir / "primero-progres-openfn" / "primero_outboundReferral.json"
    code = run_adapt("primero", src, mapping, out, report)
    rows = list(csv.DictReader(report.open(encoding="utf-8")))
    docs = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert code == 1, rows  # the second service has no referral notes: refused, not invented
    assert len(docs) == 0 or docs[0]["caregiver"]["relationship"] == "mother"
    assert any(r["field"] == "service_referral_notes" and r["code"] == "missing_field"
               for r in rows)
    # a 12-year-old with no caregiver recorded: refused by the protocol's child rule
    src = fixtures_dir / "primero-progres-openfn" / "case_583069e.json"
    assert run_adapt("primero", src, mapping, out, report) == 1
    row = next(csv.DictReader(report.open(encoding="utf-8")))
    assert row["source_id"] == "583069e/4b2b3844-ae91-4d3f-8d90-cfcd1b4de9bb"
    assert (row["field"], row["code"]) == ("caregiver", "invalid_document")
