"""Read Primero cases from the shapes Primero actually produces.

Accepted: the API list `{"data": [...], "metadata": {...}}`, a single API case
`{"data": {...}}`, the JSON export `[{"id": ..., "data": {...}}, ...]`, a bare
array of flat cases, one flat case, an OpenFn state `{"_json": [...]}`, and the
CSV export (header = `id` + internal field names, raw lookup ids, no subforms).
Anything else is an InputError naming the file: guessing a shape would be a
silent default.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from ..base import InputError, SourceRecord
from ..io import detect_format, read_json, read_table

__all__ = ["cases_from_json_value", "read_cases"]

#: keys that make an object look like a flat Primero case
_CASE_KEYS = ("case_id", "short_id", "case_id_display", "unique_identifier")


def _looks_like_case(obj: dict[str, Any]) -> bool:
    return any(k in obj for k in _CASE_KEYS) or ("id" in obj and "data" not in obj)


def _source_id(case: dict[str, Any], index: int) -> str:
    for key in ("case_id_display", "short_id", "id", "case_id"):
        v = case.get(key)
        if isinstance(v, str) and v:
            return v
    return f"#{index}"


def cases_from_json_value(path: Path, value: Any) -> list[tuple[str, Any]]:
    """Pure shape detection: (position, case-or-garbage) pairs. Garbage elements are kept
    so that the converter reports them as rejected records rather than the reader dropping them."""
    if isinstance(value, dict):
        if "data" in value and isinstance(value["data"], list):
            return [(f"data[{i}]", c) for i, c in enumerate(value["data"])]
        if "data" in value and isinstance(value["data"], dict) and not _looks_like_case(value):
            return [("data", value["data"])]
        if "_json" in value and isinstance(value["_json"], list):
            return [(f"_json[{i}]", c) for i, c in enumerate(value["_json"])]
        if _looks_like_case(value):
            return [("$", value)]
        if "errors" in value:
            raise InputError(path, "file holds a Primero API error response, not cases")
        raise InputError(path, "unrecognised Primero JSON: expected {\"data\": [...]}, "
                         "an export array of {\"id\", \"data\"}, or case objects")
    if isinstance(value, list):
        out: list[tuple[str, Any]] = []
        for i, elem in enumerate(value):
            if (isinstance(elem, dict) and isinstance(elem.get("data"), dict)
                    and "id" in elem and not any(k in elem for k in _CASE_KEYS)):
                case = dict(elem["data"])
                case.setdefault("id", elem["id"])
                out.append((f"[{i}]", case))
            else:
                out.append((f"[{i}]", elem))
        return out
    raise InputError(path, f"unrecognised Primero JSON: top level is {type(value).__name__}")


_TRUE = {"true", "yes"}
_FALSE = {"false", "no"}


def _csv_value(field: str, raw: str, list_fields: frozenset[str]) -> Any:
    s = raw.strip()
    if s == "":
        return None
    if field in list_fields:
        if s.startswith("["):
            try:
                return orjson.loads(s)
            except orjson.JSONDecodeError:
                pass
        sep = "||" if "||" in s else ","
        return [p.strip() for p in s.split(sep) if p.strip()]
    if field.endswith("_section") and s.startswith("["):
        try:
            return orjson.loads(s)
        except orjson.JSONDecodeError:
            return s  # the converter reports it as malformed
    low = s.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    return s


def read_cases(path: Path, list_fields: frozenset[str] = frozenset()) -> Iterator[SourceRecord]:
    fmt = detect_format(path)
    if fmt == "json":
        for i, (pos, case) in enumerate(cases_from_json_value(path, read_json(path))):
            sid = _source_id(case, i) if isinstance(case, dict) else f"#{i}"
            yield SourceRecord(sid, case if isinstance(case, dict) else {"__not_object__": True},
                               pos)
        return
    header, rows = read_table(path)
    if "id" not in header and "case_id" not in header and "case_id_display" not in header:
        raise InputError(path, "CSV has no id, case_id or case_id_display column: "
                         "not a Primero case export", line=1)
    for n, row in enumerate(rows, start=2):
        case = {h: _csv_value(h, v, list_fields) for h, v in zip(header, row, strict=False)}
        yield SourceRecord(_source_id(case, n), case, f"row {n}")
