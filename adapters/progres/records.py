"""From proGres payloads and extracts to one normalised record per intervention.

proGres v4 data reaches partners keyed in several ways: the PING middleware's
`progres_individual.indiv.progres_givenname`, the DTP's `individuals.progres_givenname`
with lookup objects `{"Id", "Name"}`, warehouse/FetchXML extracts with bare logical
names plus `...name` display columns, and Dynamics "Export to Excel" display-label
headers. The mapping lists, per logical field, every key it may appear under; this
module resolves them once per header (CSV/XLSX) or per record (JSON).

PING and FetchXML joins return one row per intervention x specific need x language
(the SHP-2358 quirk), so rows are grouped by intervention before conversion; rows of
one intervention that disagree on a single-valued field are refused, not merged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..base import InputError, SourceRecord
from ..io import detect_format, read_json, read_table
from ..names import norm

__all__ = ["FieldIndex", "Lookup", "group_rows", "read_records", "records_from_json_value"]


@dataclass(frozen=True, slots=True)
class Lookup:
    """A Dynamics lookup/option value seen with both its id and its display name."""

    id: str
    name: str


def _value(v: Any) -> Any:
    if isinstance(v, dict):
        # DTP lookup object {"Id", "Name", "LogicalName"} or FetchXML {"@name", "#text"}
        if "Id" in v or "Name" in v:
            return Lookup(str(v.get("Id") or ""), str(v.get("Name") or ""))
        if "#text" in v:
            return Lookup(str(v.get("#text") or "").strip("{}").lower(), str(v.get("@name") or ""))
        return v
    if isinstance(v, str):
        s = v.strip()
        return s or None
    return v


class FieldIndex:
    """logical field -> the keys it may appear under, in order of preference."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self.fields = fields
        self._exact: dict[str, tuple[str, int]] = {}
        self._normed: dict[str, tuple[str, int]] = {}
        for logical, keys in fields.items():
            for rank, key in enumerate(keys):
                self._exact.setdefault(key, (logical, rank))
                self._normed.setdefault(norm(key), (logical, rank))

    def lookup(self, key: str) -> tuple[str, int] | None:
        return self._exact.get(key) or self._normed.get(norm(key))

    def header_plan(self, header: list[str]) -> list[tuple[int, str, str]]:
        """(column, logical field, source key) for the best column of each logical field."""
        best: dict[str, tuple[int, int, str]] = {}
        for col, key in enumerate(header):
            hit = self.lookup(key)
            if hit is None:
                continue
            logical, rank = hit
            if logical not in best or rank < best[logical][1]:
                best[logical] = (col, rank, key)
        return [(col, logical, key) for logical, (col, _rank, key) in best.items()]

    def normalise(self, record: dict[str, Any]) -> dict[str, tuple[str, Any]]:
        """logical field -> (source key, value) using the best-ranked key present."""
        out: dict[str, tuple[str, Any, int]] = {}
        for key, raw in record.items():
            hit = self._exact.get(key)
            if hit is None:
                hit = self._normed.get(norm(key))
                if hit is None:
                    continue
            logical, rank = hit
            v = _value(raw)
            if v is None:
                continue
            cur = out.get(logical)
            if cur is None or rank < cur[2]:
                out[logical] = (key, v, rank)
        return {k: (src, v) for k, (src, v, _r) in out.items()}


#: logical fields that may legitimately take several values across the rows of one intervention
MULTI = frozenset({"specific_need_code", "specific_need", "specific_need_label",
                   "specific_need_category", "specific_need_category_code", "language"})


@dataclass(slots=True)
class Grouped:
    """One intervention: single-valued fields, multi-valued fields, and any disagreement."""

    key: str
    position: str
    single: dict[str, tuple[str, Any]]
    multi: dict[str, list[tuple[str, Any]]]
    conflicts: list[str]


def group_rows(rows: Iterable[tuple[str, dict[str, tuple[str, Any]]]],
               key_fields: tuple[str, ...]) -> Iterator[Grouped]:
    """Group normalised rows by the first present key field, keeping first-seen order."""
    groups: dict[str, Grouped] = {}
    order: list[Grouped] = []
    for position, rec in rows:
        key = None
        for kf in key_fields:
            hit = rec.get(kf)
            if hit is not None:
                v = hit[1]
                key = v.name if isinstance(v, Lookup) else str(v)
                break
        if key is None:
            g = Grouped("", position, {}, {}, [])
            order.append(g)
        else:
            g = groups.get(key)  # type: ignore[assignment]
            if g is None:
                g = Grouped(key, position, {}, {}, [])
                groups[key] = g
                order.append(g)
        for logical, (src, v) in rec.items():
            if logical in MULTI:
                lst = g.multi.setdefault(logical, [])
                if (src, v) not in lst:
                    lst.append((src, v))
                continue
            cur = g.single.get(logical)
            if cur is None:
                g.single[logical] = (src, v)
            elif cur[1] != v and logical not in g.conflicts:
                g.conflicts.append(logical)
    yield from order


def records_from_json_value(path: Path, value: Any) -> list[tuple[str, Any]]:
    """PING `{"Data": [...]}`, DTP `{"interventions": [...]}`, FetchXML `{"result": [...]}`,
    or a bare array of records."""
    if isinstance(value, dict):
        for key in ("Data", "interventions", "result", "value", "data"):
            if isinstance(value.get(key), list):
                if key == "Data" and value.get("ErrorMessage"):
                    raise InputError(path, "PING response carries an ErrorMessage, not data")
                return [(f"{key}[{i}]", r) for i, r in enumerate(value[key])]
        if "ShippingProcessId" in value and "Data" in value:
            raise InputError(path, "this is an ingestion (write) payload, not a fetch result")
        raise InputError(path, "unrecognised proGres JSON: expected {\"Data\": [...]}, "
                         "{\"interventions\": [...]} or an array of records")
    if isinstance(value, list):
        return [(f"[{i}]", r) for i, r in enumerate(value)]
    raise InputError(path, f"unrecognised proGres JSON: top level is {type(value).__name__}")


def read_records(path: Path, index: FieldIndex,
                 key_fields: tuple[str, ...]) -> Iterator[Grouped]:
    fmt = detect_format(path)
    if fmt == "json":
        items = records_from_json_value(path, read_json(path))
        norm_rows: list[tuple[str, dict[str, tuple[str, Any]]]] = []
        for pos, rec in items:
            if isinstance(rec, dict):
                norm_rows.append((pos, index.normalise(rec)))
            else:
                norm_rows.append((pos, {"__not_object__": ("", True)}))
        yield from group_rows(norm_rows, key_fields)
        return
    header, rows = read_table(path)
    plan = index.header_plan(header)
    if not plan:
        raise InputError(path, "no column matches the mapping (neither progres_* logical names "
                         "nor display labels)", line=1)

    def gen() -> Iterator[tuple[str, dict[str, tuple[str, Any]]]]:
        n = 1
        for row in rows:
            n += 1
            rec: dict[str, tuple[str, Any]] = {}
            width = len(row)
            for col, logical, src in plan:
                if col < width:
                    v = row[col].strip()
                    if v:
                        rec[logical] = (src, v)
            yield f"row {n}", rec

    yield from group_rows(gen(), key_fields)


def source_record(g: Grouped) -> SourceRecord:
    return SourceRecord(g.key or g.position, {"group": g}, g.position)
