"""Generated proGres extracts and the adapter throughput benchmark (`make bench`).

The generator is deterministic (seeded) and also feeds the tests: Spanish and
Portuguese names with accents, and, when asked, a share of broken records
(missing names, malformed dates, unknown option ids, unknown intervention types,
rows of one intervention that disagree) whose rejection reasons are known.
"""

from __future__ import annotations

import csv
import random
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["FAULTS", "bench_progres", "generate_progres_csv"]

HEADER = [
    "progres_interventionnumber", "progres_lpinterventionid", "progres_id",
    "progres_registrationgroupidname", "progres_givenname", "progres_middlename",
    "progres_familyname", "progres_dateofbirth", "progres_sex", "progres_sexname",
    "progres_countryoforiginidname", "progres_interventiontype2", "progres_interventiontype2name",
    "progres_priority", "progres_priorityname", "spnsubcategory2code", "progres_languagecodeidname",
    "progres_reasonforreferral", "progres_interventiondescription", "user.internalemailaddress",
    "user.title", "progres_businessunitname",
]

GIVEN = ["Ana", "María José", "José", "Ángela", "Iñaki", "Sofía", "Nicolás", "Lucía", "Martín",
         "Valentina", "Jesús", "Camila", "Andrés", "Zoë", "Joaquín", "Ximena", "Raúl", "Inés",
         "João", "Conceição", "Begoña", "Germán", "Daniela", "Óscar"]
FAMILY = ["Pérez", "Gómez", "Núñez", "Rodríguez", "Hernández", "Muñoz", "Álvarez", "Ibáñez",
          "Castañeda", "Peña", "de la Cruz", "Gutiérrez", "Sánchez", "Díaz", "Oñate", "Ruíz",
          "Araújo", "Gonçalves", "O'Brien", "Quiñónez"]
COUNTRIES = ["Venezuela (Bolivarian Republic of)", "Honduras", "El Salvador", "Guatemala",
             "Colombia", "Nicaragua", "Haiti", "Cuba", "Ecuador"]
TYPES = [("b0b00885-b3c3-e611-80ca-00155d340529", "Alternative Care"),
         ("124d0594-77a1-ea11-8105-00155d680582", "BIA"),
         ("b2b00885-b3c3-e611-80ca-00155d340529", "Accessibility")]
LABEL_ONLY_TYPES = ["Legal Aid", "Health Assistance", "Family Tracing and Reunification"]
NEEDS = ["SV-VA", "SV-VF", "CR-CP", "DS-V", "SC-UC", "LP-ND", "WR-WR", "SM-CI", "FU-TR", "TR-PI"]
PRIORITY = [("Emergency", "urgent"), ("High", "high"), ("Medium", "normal")]
LANGS = ["Spanish", "English", "French", "Portuguese"]

#: fault kind -> (report field, report code) the converter must produce for it
FAULTS: dict[str, tuple[str, str]] = {
    "no_given_name": ("progres_givenname", "missing_field"),
    "bad_date": ("progres_dateofbirth", "malformed_value"),
    "unknown_sex": ("progres_sex", "unknown_option"),
    "unknown_type": ("progres_interventiontype2", "unknown_option"),
    "no_referrer": ("user.internalemailaddress", "missing_field"),
}


def _row(rng: random.Random, i: int) -> list[str]:
    tid, tlabel = rng.choice(TYPES) if rng.random() < 0.8 else ("", rng.choice(LABEL_ONLY_TYPES))
    pl, _ = rng.choice(PRIORITY)
    y, m, d = rng.randint(1950, 2005), rng.randint(1, 12), rng.randint(1, 28)
    sex = rng.choice([("125080000", "Female"), ("125080001", "Male")])
    return [
        f"803-24-PRTITV-{i:07d}", f"{i:08x}-4f5e-4d7c-9a57-5e7d1c3b9a10", f"803-{100000000 + i}",
        f"803-24-{1000000 + i // 3}", rng.choice(GIVEN), rng.choice(["", "del Carmen", "Luis"]),
        f"{rng.choice(FAMILY)} {rng.choice(FAMILY)}", f"{y:04d}-{m:02d}-{d:02d}T00:00:00Z",
        sex[0], sex[1], rng.choice(COUNTRIES), tid, tlabel, "", pl, rng.choice(NEEDS),
        rng.choice(LANGS),
        '[{"CreatedBy":"Caseworker","Text":"Necesita orientación legal y acompañamiento",'
        '"CreatedOn":"2024-03-01T10:00:00Z"}]',
        "<p>Referencia para atención especializada</p>", f"cw{i % 97}@partner.example",
        "Oficial de protección", "Costa Rica - San José",
    ]


def _break(row: list[str], kind: str) -> None:
    col = {h: n for n, h in enumerate(HEADER)}
    if kind == "no_given_name":
        row[col["progres_givenname"]] = ""
    elif kind == "bad_date":
        row[col["progres_dateofbirth"]] = "31/02/1990x"
    elif kind == "unknown_sex":
        row[col["progres_sex"]], row[col["progres_sexname"]] = "125080099", ""
    elif kind == "unknown_type":
        row[col["progres_interventiontype2"]] = "00000000-0000-0000-0000-000000000bad"
        row[col["progres_interventiontype2name"]] = ""
    elif kind == "no_referrer":
        row[col["user.internalemailaddress"]] = ""


def generate_progres_csv(path: Path, n: int, *, seed: int = 7, fault_rate: float = 0.0,
                         delimiter: str = ",") -> dict[str, str]:
    """Write an extract of `n` interventions; return {intervention number: fault kind}."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    faults: dict[str, str] = {}
    kinds = sorted(FAULTS)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter=delimiter, lineterminator="\n")
        w.writerow(HEADER)
        for i in range(n):
            row = _row(rng, i)
            if fault_rate and rng.random() < fault_rate:
                kind = kinds[i % len(kinds)]
                _break(row, kind)
                faults[row[0]] = kind
            w.writerow(row)
    return faults


def bench_progres(n: int = 100_000) -> dict[str, Any]:
    """Throughput of the proGres adapter (read, group, convert, validate, write JSONL)."""
    from .cli import run_adapt

    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "extract.csv"
        generate_progres_csv(src, n)
        out = Path(d) / "referrals.jsonl"
        t0 = time.perf_counter()
        code = run_adapt("progres", src, None, out, Path(d) / "report.csv",
                         legal_basis="vital_interest", attested_by="Bench operator")
        seconds = time.perf_counter() - t0
        lines = sum(1 for _ in out.open("rb")) if out.exists() else 0
    return {"records": n, "converted": lines, "exit_code": code, "seconds": round(seconds, 3),
            "records_per_s": round(n / seconds, 1) if seconds else 0.0}


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(bench_progres(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
