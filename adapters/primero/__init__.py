"""Primero v2 (CPIMS+ / GBVIMS+) adapter: export files and the live API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from ..base import ConvertOptions, Outcome, SourceRecord, safe_outcomes
from ..mapping import load_mapping
from .mapping import DEFAULT_MAPPING, PrimeroMapping, case_referrals
from .reader import read_cases

__all__ = ["PrimeroAdapter", "adapter"]


class PrimeroAdapter:
    name: ClassVar[str] = "primero"
    description: ClassVar[str] = ("UNICEF Primero v2 (CPIMS+/GBVIMS+): API list, JSON export, "
                                  "CSV export, live API sync")
    formats: ClassVar[tuple[str, ...]] = ("json", "csv", "xlsx")

    def load_mapping(self, path: Path | None) -> PrimeroMapping:
        return load_mapping(PrimeroMapping, DEFAULT_MAPPING, path)

    def read(self, path: Path, mapping: PrimeroMapping) -> Iterator[SourceRecord]:
        f = mapping.fields
        lists = frozenset(x for x in (f.nationality, f.language, f.protection_concerns,
                                      f.protection_status) if x)
        return read_cases(path, lists)

    def convert(self, record: SourceRecord, mapping: PrimeroMapping,
                options: ConvertOptions) -> list[Outcome]:
        return safe_outcomes(record.source_id,
                             iter(case_referrals(mapping, record, options)))


adapter = PrimeroAdapter()
