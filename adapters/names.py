"""Deterministic name -> code lookups built from the protocol vocabularies.

Why: Primero's country lookup ids are slugs of English names ("venezuela",
"el_salvador") and proGres exports carry display names ("Venezuela (Bolivarian
Republic of)"). Matching them against the ISO names the protocol already ships is
an exact, reviewable lookup (no fuzzy matching): a name that does not match is
refused like any unknown option id.
"""

from __future__ import annotations

import functools
import re
import unicodedata

__all__ = ["country_by_name", "language_by_name", "norm"]

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


@functools.lru_cache(maxsize=65536)
def norm(text: str) -> str:
    """Lowercase, strip accents, collapse everything else to single underscores."""
    decomposed = unicodedata.normalize("NFKD", text)
    ascii_ = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    return _NON_ALNUM.sub("_", ascii_).strip("_")


def _variants(label: str) -> set[str]:
    out = {norm(label)}
    for cut in (",", "(", ";"):
        if cut in label:
            out.add(norm(label.split(cut, 1)[0]))
    return {v for v in out if v}


#: common short forms that differ from the ISO names (UNHCR and Primero usage)
_COUNTRY_ALIASES = {
    "united_states_of_america": "US", "usa": "US", "bolivia": "BO", "venezuela": "VE",
    "iran": "IR", "syria": "SY", "russia": "RU", "tanzania": "TZ", "laos": "LA",
    "vietnam": "VN", "viet_nam": "VN", "south_korea": "KR", "north_korea": "KP",
    "moldova": "MD", "palestine": "PS", "state_of_palestine": "PS", "congo_drc": "CD",
    "democratic_republic_of_the_congo": "CD", "dr_congo": "CD", "drc": "CD",
    "republic_of_the_congo": "CG", "ivory_coast": "CI", "cote_d_ivoire": "CI",
    "stateless": "XX", "apatrida": "XX", "turkey": "TR", "turkiye": "TR",
    "micronesia": "FM", "czech_republic": "CZ", "cape_verde": "CV", "swaziland": "SZ",
    "burma": "MM", "macedonia": "MK", "taiwan": "TW",
}


@functools.cache
def _country_index() -> dict[str, str]:
    from protocol import vocab

    index: dict[str, str] = {}
    ambiguous: set[str] = set()
    for code, entry in vocab.countries().items():
        for label in entry.labels.values():
            for v in _variants(label):
                if v in index and index[v] != code:
                    ambiguous.add(v)
                index[v] = code
        index.setdefault(code.lower(), code)
    for v in ambiguous:
        index.pop(v, None)
    index.update(_COUNTRY_ALIASES)
    return index


def country_by_name(name: str) -> str | None:
    """ISO 3166-1 alpha-2 for a country name, slug or code; None if there is no exact match."""
    s = name.strip()
    if len(s) == 2 and s.isalpha():
        from protocol import vocab

        return s.upper() if s.upper() in vocab.ids("countries") else None
    return _country_index().get(norm(s))


@functools.cache
def _language_index() -> dict[str, str]:
    from protocol import vocab

    index: dict[str, str] = {}
    ambiguous: set[str] = set()
    for code, entry in vocab.languages().items():
        for label in entry.labels.values():
            for v in _variants(label):
                if v in index and index[v] != code:
                    ambiguous.add(v)
                index[v] = code
        index.setdefault(code, code)
    for v in ambiguous:
        index.pop(v, None)
    return index


def language_by_name(name: str) -> str | None:
    return _language_index().get(norm(name))
