"""Regenerate the code lists in this folder (a maintainer's tool, never run by the product).

Why: countries.json, languages.json and specific_needs.json are copies of public standards. The
product must not need anything outside the repository at run time, so the lists are committed;
this script documents where they come from and makes a refresh reproducible:

- ISO 3166-1 alpha-2 and ISO 639 names (English, Spanish) from Debian's `iso-codes` package
  (/usr/share/iso-codes/json and its gettext catalogues);
- UNHCR specific-needs codes from ../shared/fixtures/vocab/specific_needs_codes.csv.

Run: `python -m protocol.vocab._generate [path/to/specific_needs_codes.csv]`.
"""

from __future__ import annotations

import csv
import gettext
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ISO = Path("/usr/share/iso-codes/json")
LOCALES = "/usr/share/locale"

#: ISO 639-3 codes of languages spoken by people the network serves that have no ISO 639-1 code:
#: Mayan, Nahuan, Quechuan and other Indigenous languages of Mexico, Central and South America,
#: Caribbean creoles, the region's sign languages, and a few languages of extra-continental
#: migrants in transit through the Darién. A code with a two-letter equivalent is never listed
#: here: BCP 47 (RFC 5646 section 2.2.1) requires the shortest code, so `es` and never `spa`.
REGIONAL_639_3 = (
    # Mayan (Guatemala, Mexico, Belize, Honduras)
    "quc kek mam cak tzj ixl poh acr kjb jac mop caa poc yua tzo tzh ctu toj "
    # Nahuan and other languages of Mexico and El Salvador
    "ppl ngu nhe nhw ncj nch azz ote maz mxt mix zap zai "
    # Central America, Colombia, Venezuela, Andes, Southern Cone
    "cab miq gym bzd guc wba aoc pbb emp kbh arn shp cni gug quz quy qub qvi qug "
    # Caribbean creoles
    "jam trf srn gcr "
    # Sign languages of the region
    "mfs gsm hds esn ncs csr csn vsl ecs prl csg bzs doq ase ssp "
    # Migrants in transit from outside the continent
    "cmn yue snk mnk sus"
).split()

#: User-assigned ISO 3166-1 code for statelessness (ISO 3166-1 section 8.1.3 reserves XA-XZ for
#: users; ICAO Doc 9303 uses XXA for stateless persons). Unknown nationality is an empty list.
STATELESS = {"id": "XX", "labels": {"en": "Stateless", "es": "Apátrida"}, "user_assigned": True}

#: Spanish country names where the iso-codes catalogue is wrong or untranslated.
COUNTRY_ES_FIXES = {"DZ": "Argelia", "SR": "Surinam", "TR": "Turquía"}

#: Spanish language names, curated: the iso-codes catalogue is patchy for languages (missing or
#: misspelt names), so only these are shipped; other languages fall back to the English name.
LANGUAGE_ES = {
    "am": "Amárico",
    "ar": "Árabe",
    "ay": "Aimara",
    "bn": "Bengalí",
    "de": "Alemán",
    "en": "Inglés",
    "es": "Español",
    "fa": "Persa",
    "ff": "Fula",
    "fr": "Francés",
    "gn": "Guaraní",
    "hi": "Hindi",
    "ht": "Criollo haitiano",
    "it": "Italiano",
    "ln": "Lingala",
    "ne": "Nepalí",
    "pa": "Panyabí",
    "ps": "Pastún",
    "pt": "Portugués",
    "qu": "Quechua",
    "ru": "Ruso",
    "so": "Somalí",
    "ti": "Tigriña",
    "tr": "Turco",
    "uk": "Ucraniano",
    "ur": "Urdu",
    "wo": "Wolof",
    "zh": "Chino",
    "quc": "K'iche'",
    "kek": "Q'eqchi'",
    "mam": "Mam",
    "cak": "Kaqchikel",
    "tzj": "Tz'utujil",
    "ixl": "Ixil",
    "poh": "Poqomchi'",
    "acr": "Achi",
    "kjb": "Q'anjob'al",
    "jac": "Popti' (jakalteko)",
    "mop": "Mopán",
    "caa": "Ch'orti'",
    "poc": "Poqomam",
    "yua": "Maya yucateco",
    "tzo": "Tsotsil",
    "tzh": "Tseltal",
    "ctu": "Ch'ol",
    "toj": "Tojolab'al",
    "ppl": "Náhuat (pipil)",
    "ngu": "Náhuatl de Guerrero",
    "nhe": "Náhuatl de la Huasteca oriental",
    "nhw": "Náhuatl de la Huasteca occidental",
    "ncj": "Náhuatl del norte de Puebla",
    "nch": "Náhuatl de la Huasteca central",
    "azz": "Náhuatl de la Sierra de Puebla",
    "ote": "Otomí del Mezquital",
    "maz": "Mazahua",
    "mxt": "Mixteco de Jamiltepec",
    "mix": "Mixteco de Mixtepec",
    "zap": "Zapoteco",
    "zai": "Zapoteco del Istmo",
    "cab": "Garífuna",
    "miq": "Miskito",
    "gym": "Ngäbere",
    "bzd": "Bribri",
    "guc": "Wayuunaiki",
    "wba": "Warao",
    "aoc": "Pemón",
    "pbb": "Nasa yuwe (páez)",
    "emp": "Emberá del norte",
    "kbh": "Camsá",
    "arn": "Mapudungun",
    "shp": "Shipibo-konibo",
    "cni": "Asháninka",
    "gug": "Guaraní paraguayo",
    "quz": "Quechua cusqueño",
    "quy": "Quechua ayacuchano",
    "qub": "Quechua de Huallaga",
    "qvi": "Kichwa de Imbabura",
    "qug": "Kichwa de Chimborazo",
    "jam": "Criollo jamaiquino",
    "trf": "Criollo trinitense",
    "srn": "Sranan tongo",
    "gcr": "Criollo guayanés",
    "mfs": "Lengua de señas mexicana",
    "gsm": "Lengua de señas guatemalteca",
    "hds": "Lengua de señas hondureña",
    "esn": "Lengua de señas salvadoreña",
    "ncs": "Lengua de señas nicaragüense",
    "csr": "Lengua de señas costarricense",
    "csn": "Lengua de señas colombiana",
    "vsl": "Lengua de señas venezolana",
    "ecs": "Lengua de señas ecuatoriana",
    "prl": "Lengua de señas peruana",
    "csg": "Lengua de señas chilena",
    "bzs": "Lengua de señas brasileña (Libras)",
    "doq": "Lengua de señas dominicana",
    "ase": "Lengua de señas americana",
    "ssp": "Lengua de signos española",
    "cmn": "Chino mandarín",
    "yue": "Chino cantonés",
    "snk": "Soninké",
    "mnk": "Mandinga",
    "sus": "Susu",
}


def _es(domain: str) -> gettext.NullTranslations:
    try:
        return gettext.translation(domain, localedir=LOCALES, languages=["es"])
    except FileNotFoundError:
        return gettext.NullTranslations()


def countries() -> dict[str, Any]:
    data = json.loads((ISO / "iso_3166-1.json").read_text("utf-8"))["3166-1"]
    es = _es("iso_3166-1")
    entries: list[dict[str, Any]] = [
        {
            "id": c["alpha_2"],
            "labels": {
                "en": c["name"],
                "es": COUNTRY_ES_FIXES.get(c["alpha_2"]) or es.gettext(c["name"]),
            },
        }
        for c in sorted(data, key=lambda c: c["alpha_2"])
    ]
    entries.append(STATELESS)
    return {
        "vocabulary": "iso3166-1-alpha2",
        "version": 1,
        "description": "ISO 3166-1 alpha-2 country codes (names from Debian iso-codes) plus the "
        "user-assigned code XX for stateless persons. Unknown nationality is an empty list.",
        "entries": entries,
    }


def languages() -> dict[str, Any]:
    data = json.loads((ISO / "iso_639-3.json").read_text("utf-8"))["639-3"]
    by3 = {lang["alpha_3"]: lang for lang in data}
    entries: list[dict[str, Any]] = []
    for lang in sorted((x for x in data if x.get("alpha_2")), key=lambda x: x["alpha_2"]):
        entries.append(_language(lang["alpha_2"], lang["name"], "639-1"))
    for code in REGIONAL_639_3:
        lang = by3[code]
        if lang.get("alpha_2"):
            raise SystemExit(f"{code} has an ISO 639-1 code; list that one instead")
        entries.append(_language(code, lang["name"], "639-3"))
    return {
        "vocabulary": "iso639",
        "version": 1,
        "description": "ISO 639-1 codes, plus ISO 639-3 codes for languages of the region that "
        "have no two-letter code (Indigenous languages, creoles, sign languages). Names from "
        "Debian iso-codes.",
        "entries": entries,
    }


def _language(code: str, name: str, standard: str) -> dict[str, Any]:
    labels = {"en": name}
    if code in LANGUAGE_ES:
        labels["es"] = LANGUAGE_ES[code]
    return {"id": code, "labels": labels, "standard": standard}


def specific_needs(csv_path: Path) -> dict[str, Any]:
    with csv_path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {
        "vocabulary": "unhcr.specific_needs",
        "version": 1,
        "description": "UNHCR standardised specific-needs codes (2009 guidance, updated DS codes "
        "of proGres v4, proGres v3 legacy codes); copied from the project's shared reference "
        "fixtures/vocab/specific_needs_codes.csv. `status` tells which set a code comes from.",
        "entries": [
            {
                "id": r["code"],
                "category": r["category"],
                "labels": {"en": r["label"]},
                "status": r["status"],
            }
            for r in rows
        ],
    }


def _write(name: str, value: dict[str, Any]) -> None:
    # One entry per line: small diffs when a list is refreshed.
    head = {k: v for k, v in value.items() if k != "entries"}
    lines = [json.dumps(e, ensure_ascii=False) for e in value["entries"]]
    text = json.dumps(head, ensure_ascii=False, indent=2)[:-2]
    text += ',\n  "entries": [\n    ' + ",\n    ".join(lines) + "\n  ]\n}\n"
    (HERE / name).write_text(text, encoding="utf-8")


def main(argv: list[str]) -> None:
    default_csv = HERE.parents[2] / "shared/fixtures/vocab/specific_needs_codes.csv"
    csv_path = Path(argv[0]) if argv else default_csv
    _write("countries.json", countries())
    _write("languages.json", languages())
    _write("specific_needs.json", specific_needs(csv_path))


if __name__ == "__main__":
    main(sys.argv[1:])
