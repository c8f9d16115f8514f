"""UNHCR proGres v4 adapter: PING/DTP middleware payloads and CSV/XLSX extracts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from ..base import ConvertOptions, Outcome, SourceRecord, safe_outcomes
from ..mapping import load_mapping
from .mapping import DEFAULT_MAPPING, ProgresMapping, convert_group
from .records import read_records, source_record

__all__ = ["ProgresAdapter", "adapter"]

KEY_FIELDS = ("intervention_number", "intervention_id")


class ProgresAdapter:
    name: ClassVar[str] = "progres"
    description: ClassVar[str] = ("UNHCR proGres v4: PING/DTP interoperability JSON, CSV/XLSX "
                                  "extracts (logical names or display labels)")
    formats: ClassVar[tuple[str, ...]] = ("json", "csv", "xlsx")

    def load_mapping(self, path: Path | None) -> ProgresMapping:
        return load_mapping(ProgresMapping, DEFAULT_MAPPING, path)

    def read(self, path: Path, mapping: ProgresMapping) -> Iterator[SourceRecord]:
        for g in read_records(path, mapping.index(), KEY_FIELDS):
            yield source_record(g)

    def convert(self, record: SourceRecord, mapping: ProgresMapping,
                options: ConvertOptions) -> list[Outcome]:
        return safe_outcomes(record.source_id,
                             iter(convert_group(mapping, record.data["group"], options)))


adapter = ProgresAdapter()
