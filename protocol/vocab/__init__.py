"""Controlled vocabularies of protocol v1, shipped as data files inside the package.

Why data files: the lists are shared with people who are not programmers (the network's
information-management focal points review labels and the UNHCR mapping), and the same files feed
the exported JSON Schema. Why importlib.resources: the product must run from a wheel or a zip
without the repository (or ../shared) beside it.

Files (each `{"vocabulary", "version", "description", "entries": [...]}`):

- services.json: services a referral may request (en/es labels).
- concerns.json: protection concerns (en/es labels, a coarse monitoring `category`, and the UNHCR
  specific-needs codes that map to the concern).
- specific_needs.json: UNHCR standardised specific-needs codes (2009 set, updated DS codes,
  proGres v3 legacy codes) with their category.
- countries.json: ISO 3166-1 alpha-2 plus the user-assigned `XX` for stateless persons.
- languages.json: ISO 639-1 plus ISO 639-3 for the region's languages that have no 639-1 code.

Ids are wire values: entries are only ever added, never renamed or removed, within v1.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

__all__ = [
    "VocabEntry",
    "concerns",
    "concerns_for_specific_need",
    "countries",
    "ids",
    "languages",
    "services",
    "specific_needs",
]


@dataclass(frozen=True, eq=True)
class VocabEntry:
    """One code of a vocabulary. `labels` maps a language code (en, es) to a display label."""

    id: str
    labels: Mapping[str, str]
    #: concerns: the monitoring category; specific needs: the UNHCR category code (e.g. "SV").
    category: str | None = None
    #: concerns only: UNHCR specific-needs codes mapped to this concern.
    unhcr_specific_needs: tuple[str, ...] = ()
    #: free extra attributes of the entry (`standard` for languages, `status` for specific needs,
    #: `user_assigned` for countries).
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def label(self, lang: str = "en") -> str:
        """Label in `lang`, falling back to English (every entry has one)."""
        return self.labels.get(lang) or self.labels["en"]


_KNOWN = {"id", "labels", "category", "unhcr_specific_needs"}


def _load(name: str) -> dict[str, VocabEntry]:
    text = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
    raw = json.loads(text)
    out: dict[str, VocabEntry] = {}
    for item in raw["entries"]:
        entry = VocabEntry(
            id=item["id"],
            labels=MappingProxyType(dict(item["labels"])),
            category=item.get("category"),
            unhcr_specific_needs=tuple(item.get("unhcr_specific_needs", ())),
            extra=MappingProxyType({k: v for k, v in item.items() if k not in _KNOWN}),
        )
        if entry.id in out:
            raise ValueError(f"{name}: duplicate id {entry.id}")
        out[entry.id] = entry
    return out


# Files are read once (cached read-only views); the public functions hand out a fresh dict so a
# caller that mutates its copy cannot change the vocabulary for everyone else.


@cache
def _table(name: str) -> Mapping[str, VocabEntry]:
    return MappingProxyType(_load(name))


def services() -> dict[str, VocabEntry]:
    """Requested-service ids (`ReferralDocument.services`)."""
    return dict(_table("services.json"))


def concerns() -> dict[str, VocabEntry]:
    """Protection-concern ids (`ReferralDocument.concerns`)."""
    return dict(_table("concerns.json"))


def specific_needs() -> dict[str, VocabEntry]:
    """UNHCR specific-needs codes; `category` is the code's category (e.g. "SV" for "SV-VA")."""
    return dict(_table("specific_needs.json"))


def countries() -> dict[str, VocabEntry]:
    """ISO 3166-1 alpha-2 codes, plus `XX` (stateless; `extra["user_assigned"]` is true)."""
    return dict(_table("countries.json"))


def languages() -> dict[str, VocabEntry]:
    """ISO 639-1 codes and regional ISO 639-3 codes (`extra["standard"]` tells which)."""
    return dict(_table("languages.json"))


def ids(name: str) -> frozenset[str]:
    """The ids of one vocabulary ("services", "concerns", ...), for fast membership tests."""
    return _ids(name)


@cache
def _ids(name: str) -> frozenset[str]:
    return frozenset(_table(f"{name}.json"))


@cache
def _concerns_by_code() -> Mapping[str, tuple[str, ...]]:
    index: dict[str, list[str]] = {}
    for entry in _table("concerns.json").values():
        for code in entry.unhcr_specific_needs:
            index.setdefault(code, []).append(entry.id)
    return MappingProxyType({k: tuple(v) for k, v in index.items()})


def concerns_for_specific_need(code: str, *, category_fallback: bool = False) -> list[str]:
    """Concern ids a UNHCR specific-needs code maps to (for adapters importing proGres data).

    Exact match by default: "SV-VA" gives ["sgbv_survivor"]; "SC" gives both child concerns.
    Every code in specific_needs.json is mapped except LP-AP, LP-CR, LP-ST and LP-VP, which
    describe a person as a risk to others and are deliberately not concerns: they give [].

    `category_fallback=True` is for codes this release does not know at all (a newer code in the
    source system): such a code falls back to the concerns that list its category code, the part
    before the first "-" ("SM-ZZ" -> "SM" -> ["serious_medical_condition"]). The caller opts in
    because the result is coarser than what the source recorded. A known code never falls back,
    so the deliberately unmapped ones stay unmapped. Matching ignores case and outer whitespace.
    """
    key = code.strip().upper()
    by_code = _concerns_by_code()
    found = by_code.get(key)
    if found is None and category_fallback and key not in _ids("specific_needs") and "-" in key:
        found = by_code.get(key.split("-", 1)[0])
    return list(found or ())
